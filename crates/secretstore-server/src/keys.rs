//! The root key, from the source the configuration names.

use secretstore_crypto::{EnvRootKey, FileRootKey, RootKey, RootKeySource as _};

use crate::app::StartError;
use crate::config::{RootKeySource, StorageConfig};
use crate::storage::existing_data;

pub fn load_root_key(
    source: &RootKeySource,
    storage: &StorageConfig,
) -> Result<RootKey, StartError> {
    match source {
        RootKeySource::File(path) => {
            let source = FileRootKey::new(path);
            tracing::info!(source = %source.describe(), "loading the root key");
            Ok(source.load()?)
        }
        RootKeySource::Env { variable, value } => {
            let source = EnvRootKey::new(variable, value.as_str());
            tracing::info!(source = %source.describe(), "loading the root key");
            Ok(source.load()?)
        }
        RootKeySource::DevGenerated(path) => {
            // A new key cannot open data sealed under another: generating one beside existing
            // data would only leave a wrong key behind for the next start to trip over.
            if !path.exists() {
                if let Some(database) = existing_data(storage) {
                    return Err(StartError::DevRootKeyMissing {
                        key: path.clone(),
                        database,
                    });
                }
            }
            let (key, created) = FileRootKey::load_or_generate(path)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "dev mode generated a root key into the data directory; anyone who can read \
                     that file can read every secret. Production keeps the key outside the data \
                     (--root-key-file or SECRETSTORE_ROOT_KEY)"
                );
            }
            Ok(key)
        }
        RootKeySource::Key(key) => Ok(key.clone()),
    }
}
