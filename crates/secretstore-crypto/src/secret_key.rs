//! A 256-bit key that is not a root key: a namespace's key-encryption key, a per-secret data
//! key, or a service key (the digest key) once it is stored wrapped instead of derived. Such keys
//! only ever leave this crate wrapped, so their bytes stay crate-private. The AES-256-GCM key
//! wrap every layer of the hierarchy uses (a local root key wrapping a namespace key, a namespace
//! key wrapping a data key) is here too, so there is one layout for a wrapped key:
//! `nonce(12) | ciphertext(32) | tag(16)`.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::{random, CryptoError};

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
pub(crate) const KEY_LEN: usize = 32;
/// The length of a wrapped key: `nonce(12) | ciphertext(32) | tag(16)`.
pub(crate) const WRAPPED_KEY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// A 256-bit key, wiped on drop, never shown by `Debug`.
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, CryptoError> {
        random::<KEY_LEN>().map(Self)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A key that is already wiped on drop (a root key provider's legacy subkey) becomes a
/// `SecretKey` without another copy left behind.
impl From<Zeroizing<[u8; KEY_LEN]>> for SecretKey {
    fn from(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(bytes)
    }
}

/// Wraps `key` under `cipher` with a fresh random nonce; the result is self-contained (nonce
/// first) and opens only with the same `aad`.
pub(crate) fn wrap_key(
    cipher: &Aes256Gcm,
    aad: &[u8],
    key: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    let nonce = random::<NONCE_LEN>()?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(nonce.as_ref()),
            Payload {
                msg: key.bytes(),
                aad,
            },
        )
        .map_err(|_| CryptoError::Malformed)?;
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`wrap_key`] made: `Malformed` if it is not a wrapped key's length, `Tampered`
/// if it does not authenticate under `cipher` and `aad`.
pub(crate) fn unwrap_key(
    cipher: &Aes256Gcm,
    aad: &[u8],
    wrapped: &[u8],
) -> Result<SecretKey, CryptoError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(CryptoError::Malformed);
    }
    let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
    let opened = Zeroizing::new(
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Tampered)?,
    );
    secret_key_from_slice(&opened)
}

/// A key from bytes something else produced (an AEAD's output, an HSM's answer), which must be
/// exactly 32 bytes long.
pub(crate) fn secret_key_from_slice(bytes: &[u8]) -> Result<SecretKey, CryptoError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(CryptoError::Malformed);
    }
    key.copy_from_slice(bytes);
    Ok(SecretKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::KeyInit;

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new_from_slice(SecretKey::generate().unwrap().bytes()).unwrap()
    }

    #[test]
    fn generated_keys_differ_and_debug_never_shows_them() {
        let a = SecretKey::generate().unwrap();
        assert_ne!(a.bytes(), SecretKey::generate().unwrap().bytes());
        assert_eq!(format!("{a:?}"), "SecretKey([REDACTED])");
        let fixed = SecretKey::from_bytes([7u8; 32]);
        assert!(!format!("{fixed:?}").contains('7'));
    }

    #[test]
    fn a_wrapped_key_opens_only_with_its_cipher_and_aad() {
        let cipher = cipher();
        let key = SecretKey::generate().unwrap();
        let wrapped = wrap_key(&cipher, b"ns-1", &key).unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert!(!wrapped.windows(KEY_LEN).any(|w| w == key.bytes()));
        let opened = unwrap_key(&cipher, b"ns-1", &wrapped).unwrap();
        assert_eq!(opened.bytes(), key.bytes());
        assert!(matches!(
            unwrap_key(&cipher, b"ns-2", &wrapped),
            Err(CryptoError::Tampered)
        ));
        assert!(matches!(
            unwrap_key(&self::cipher(), b"ns-1", &wrapped),
            Err(CryptoError::Tampered)
        ));
        for i in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    unwrap_key(&cipher, b"ns-1", &bad),
                    Err(CryptoError::Tampered)
                ),
                "byte {i}"
            );
        }
        assert!(matches!(
            unwrap_key(&cipher, b"ns-1", &wrapped[1..]),
            Err(CryptoError::Malformed)
        ));
    }
}
