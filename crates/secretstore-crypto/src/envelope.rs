//! Sealed format 1 (legacy): sealing and opening under a root key. The key-encryption key is
//! derived from the root key (`RootKey::derive`), so the root key itself is never used directly
//! as a cipher key. Format 2 ([`crate::envelope_v2`]) replaces it; values in this one are opened
//! through a root key provider until they are sealed again.

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use crate::root_key::{KeyId, RootKey};
use crate::secret_key::{KEY_LEN as DATA_KEY_LEN, NONCE_LEN, TAG_LEN, WRAPPED_KEY_LEN};
use crate::{random, CryptoError};

pub(crate) const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const MIN_LEN: usize = HEADER_LEN + WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN;

/// Seals and opens values under one root key.
pub struct Envelope {
    key_id: KeyId,
    kek: Aes256Gcm,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The id of the root key a version 1 value was sealed under, read from its header: what a
/// keyring needs to pick the key that opens it.
pub(crate) fn root_key_id(sealed: &[u8]) -> Result<KeyId, CryptoError> {
    if sealed.len() < MIN_LEN || sealed[0] != VERSION {
        return Err(CryptoError::Malformed);
    }
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&sealed[1..HEADER_LEN]);
    Ok(KeyId(key_id))
}

/// Associated data for both layers: the header (so the version and key id cannot be swapped)
/// followed by the caller's identity bytes.
fn full_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + aad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(aad);
    out
}

impl Envelope {
    pub fn new(root: &RootKey) -> Self {
        let kek = root.derive(b"secretstore key-encryption key v1");
        Self {
            key_id: root.id(),
            kek: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.as_ref())),
        }
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Seals `plaintext` under a fresh data key; the result opens only with the same `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let data_key = random::<DATA_KEY_LEN>()?;
        let wrap_nonce = random::<NONCE_LEN>()?;
        let payload_nonce = random::<NONCE_LEN>()?;

        let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.key_id.0);
        let aad = full_aad(&out[..HEADER_LEN], aad);

        let wrapped = self
            .kek
            .encrypt(
                Nonce::from_slice(wrap_nonce.as_ref()),
                AeadPayload {
                    msg: data_key.as_ref(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.as_ref()));
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(payload_nonce.as_ref()),
                AeadPayload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;

        out.extend_from_slice(wrap_nonce.as_ref());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(payload_nonce.as_ref());
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value sealed with [`Envelope::seal`] under the same root key and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key_id = root_key_id(sealed)?;
        if key_id != self.key_id {
            return Err(CryptoError::UnknownRootKey(key_id));
        }
        let aad = full_aad(&sealed[..HEADER_LEN], aad);
        let (wrap_nonce, rest) = sealed[HEADER_LEN..].split_at(NONCE_LEN);
        let (wrapped, rest) = rest.split_at(DATA_KEY_LEN + TAG_LEN);
        let (payload_nonce, ciphertext) = rest.split_at(NONCE_LEN);

        let data_key = Zeroizing::new(
            self.kek
                .decrypt(
                    Nonce::from_slice(wrap_nonce),
                    AeadPayload {
                        msg: wrapped,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Tampered)?,
        );
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key));
        cipher
            .decrypt(
                Nonce::from_slice(payload_nonce),
                AeadPayload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope::new(&RootKey::generate().unwrap())
    }

    #[test]
    fn round_trips_and_never_contains_the_plaintext() {
        let env = envelope();
        let plaintext = b"sk_live_very_secret_value";
        let sealed = env.seal(b"row-1", plaintext).unwrap();
        assert!(!sealed.windows(plaintext.len()).any(|w| w == plaintext));
        assert_eq!(env.open(b"row-1", &sealed).unwrap().as_slice(), plaintext);
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let env = envelope();
        assert_ne!(env.seal(b"a", b"x").unwrap(), env.seal(b"a", b"x").unwrap());
    }

    #[test]
    fn other_aad_fails_to_open() {
        let env = envelope();
        let sealed = env.seal(b"tenant-a/secret-1", b"payload").unwrap();
        assert!(matches!(
            env.open(b"tenant-b/secret-1", &sealed),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let env = envelope();
        let sealed = env.seal(b"aad", b"payload").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(env.open(b"aad", &bad).is_err(), "byte {i}");
        }
        assert!(env.open(b"aad", &sealed[..sealed.len() - 1]).is_err());
        assert!(env.open(b"aad", &[]).is_err());
    }

    #[test]
    fn another_root_key_is_reported_by_id() {
        let sealed = envelope().seal(b"aad", b"payload").unwrap();
        assert!(matches!(
            envelope().open(b"aad", &sealed),
            Err(CryptoError::UnknownRootKey(_))
        ));
    }
}
