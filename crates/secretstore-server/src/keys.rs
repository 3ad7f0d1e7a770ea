//! The root key ring, from the sources the configuration names: the first is the active
//! version. Each source becomes a `RootKeyProvider`, which wraps and unwraps but never hands out
//! its key's bytes; for an HSM (PKCS#11) they never leave the token.

use std::sync::Arc;

use secretstore_crypto::{
    EnvRootKey, FileRootKey, LocalRootKey, Pkcs11RootKey, RootKeyProvider, RootKeyring,
};

use crate::app::StartError;
use crate::config::{RootKeySource, StorageConfig};
use crate::storage::existing_data;

/// Loads every source and makes the ring. `generate` lets a dev-mode start generate its key
/// file; a reload (SIGHUP) never generates one.
pub fn load_keyring(
    sources: &[RootKeySource],
    storage: &StorageConfig,
    generate: bool,
) -> Result<RootKeyring, StartError> {
    let mut providers = sources
        .iter()
        .map(|source| load(source, storage, generate))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let Some(active) = providers.next() else {
        return Err(StartError::NoRootKey);
    };
    for provider in std::iter::once(&active).chain(providers.as_slice()) {
        tracing::info!(source = %provider.describe(), id = %provider.id(), "root key loaded");
    }
    Ok(RootKeyring::new(active, providers.collect())?)
}

fn load(
    source: &RootKeySource,
    storage: &StorageConfig,
    generate: bool,
) -> Result<Arc<dyn RootKeyProvider>, StartError> {
    Ok(match source {
        RootKeySource::File(path) => Arc::new(LocalRootKey::load(&FileRootKey::new(path))?),
        RootKeySource::Env { variable, value } => Arc::new(LocalRootKey::load(&EnvRootKey::new(
            variable,
            value.as_str(),
        ))?),
        RootKeySource::DevGenerated(path) => {
            if !generate || path.exists() {
                return Ok(Arc::new(LocalRootKey::load(&FileRootKey::new(path))?));
            }
            // A new key cannot open data sealed under another: generating one beside existing
            // data would only leave a wrong key behind for the next start to trip over.
            if let Some(database) = existing_data(storage) {
                return Err(StartError::DevRootKeyMissing {
                    key: path.clone(),
                    database,
                });
            }
            let (key, created) = FileRootKey::load_or_generate(path)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "dev mode generated a root key into the data directory; anyone who can read \
                     that file can read every secret. Production keeps the key outside the data \
                     (--root-key-file, SECRETSTORE_ROOT_KEY or an HSM)"
                );
            }
            Arc::new(LocalRootKey::new(key))
        }
        RootKeySource::Key(key) => Arc::new(LocalRootKey::new(key.clone())),
        RootKeySource::Pkcs11(key) => Arc::new(Pkcs11RootKey::open_with_pin_file(
            &key.module,
            &key.token_label,
            &key.pin_file,
            &key.key_label,
        )?),
    })
}
