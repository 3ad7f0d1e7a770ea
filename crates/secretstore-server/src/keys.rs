//! The root key, from the source the configuration names.

use secretstore_crypto::{CryptoError, EnvRootKey, FileRootKey, RootKey, RootKeySource as _};

use crate::config::RootKeySource;

pub fn load_root_key(source: &RootKeySource) -> Result<RootKey, CryptoError> {
    match source {
        RootKeySource::File(path) => {
            let source = FileRootKey::new(path);
            tracing::info!(source = %source.describe(), "loading the root key");
            source.load()
        }
        RootKeySource::Env { variable, value } => {
            let source = EnvRootKey::new(variable, value.as_str());
            tracing::info!(source = %source.describe(), "loading the root key");
            source.load()
        }
        RootKeySource::DevGenerated(path) => {
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
