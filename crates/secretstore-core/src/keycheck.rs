//! The root key check: data written under one root key refuses to be served under another. The
//! first start seals a known value under the key into the store's metadata; every later start
//! opens it, so a wrong key fails at start-up with a clear message instead of answering every
//! find with an error.

use secretstore_crypto::Envelope;

use crate::error::KeyCheckError;
use crate::store::MetaStore;

const ROOT_KEY_CHECK: &str = "root_key_check";
const ROOT_KEY_CHECK_AAD: &[u8] = b"secretstore/root-key-check/v1";
const ROOT_KEY_CHECK_PLAINTEXT: &[u8] = b"secretstore opens this data with this root key";

/// Refuses to run against data written under another root key; records the check on first use.
pub async fn verify_root_key(
    meta: &dyn MetaStore,
    envelope: &Envelope,
) -> Result<(), KeyCheckError> {
    match meta.meta_get(ROOT_KEY_CHECK).await? {
        Some(sealed) => match envelope.open(ROOT_KEY_CHECK_AAD, &sealed) {
            Ok(plain) if plain.as_slice() == ROOT_KEY_CHECK_PLAINTEXT => Ok(()),
            Ok(_) | Err(_) => Err(KeyCheckError::WrongRootKey {
                given: envelope.key_id().to_string(),
            }),
        },
        None => {
            let sealed = envelope
                .seal(ROOT_KEY_CHECK_AAD, ROOT_KEY_CHECK_PLAINTEXT)
                .map_err(KeyCheckError::Crypto)?;
            meta.meta_put(ROOT_KEY_CHECK, sealed).await?;
            Ok(())
        }
    }
}
