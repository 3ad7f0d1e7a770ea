//! Sealed format 2: a payload sealed under a fresh data key, the data key wrapped under a
//! namespace's key-encryption key (a [`Kek`], itself stored wrapped by the root key). Rotating a
//! namespace key re-wraps data keys ([`rewrap`]) and never touches a payload's ciphertext, so
//! the payload layer's associated data leaves out the header, which names the namespace key's
//! version and so changes on a rotation.
//!
//! ```text
//! version(1) = 2 | kek version(4, big-endian) | wrap nonce(12) | wrapped data key(32 + 16 tag)
//!                | payload nonce(12) | ciphertext(n + 16 tag)
//! ```
//!
//! Wrap layer AAD: `"secretstore data key v2" | header(5) | caller's aad`. Payload layer AAD:
//! `"secretstore payload v2" | caller's aad`. The caller's aad (the secret's identity) is in
//! both, so neither a wrapped data key nor a payload opens when moved to another record; the
//! constants keep the two layers, and format 1, from ever accepting each other's bytes.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::envelope;
use crate::root_key::KeyId;
use crate::secret_key::{unwrap_key, wrap_key, SecretKey, NONCE_LEN, TAG_LEN, WRAPPED_KEY_LEN};
use crate::{random, CryptoError};

const VERSION: u8 = 2;
const HEADER_LEN: usize = 1 + 4;
const MIN_LEN: usize = HEADER_LEN + WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN;
const DATA_KEY_DOMAIN: &[u8] = b"secretstore data key v2";
const PAYLOAD_DOMAIN: &[u8] = b"secretstore payload v2";

/// A namespace's key-encryption key, unwrapped, with the version stored in what it wraps.
pub struct Kek {
    version: u32,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Kek {
    pub fn new(version: u32, key: &SecretKey) -> Self {
        Self {
            version,
            cipher: Aes256Gcm::new(key.bytes().into()),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

/// Which format a sealed value is in, and which key it needs, read from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedFormat {
    /// Format 1 ([`crate::Envelope`]): the data key is wrapped by the root key `root`.
    V1 { root: KeyId },
    /// Format 2: the data key is wrapped by version `kek_version` of its namespace's key.
    V2 { kek_version: u32 },
}

/// Reads a sealed value's format and key from its header; `Malformed` if it is neither format
/// or too short to be one.
pub fn sealed_format(sealed: &[u8]) -> Result<SealedFormat, CryptoError> {
    match sealed.first() {
        Some(&envelope::VERSION) => Ok(SealedFormat::V1 {
            root: envelope::root_key_id(sealed)?,
        }),
        Some(&VERSION) => Ok(SealedFormat::V2 {
            kek_version: Parts::parse(sealed)?.kek_version,
        }),
        _ => Err(CryptoError::Malformed),
    }
}

/// Seals `plaintext` under a fresh data key wrapped by `kek`; the result opens only with the
/// same `aad`.
pub fn seal(kek: &Kek, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let data_key = SecretKey::generate()?;
    let payload_nonce = random::<NONCE_LEN>()?;
    let ciphertext = payload_cipher(&data_key)
        .encrypt(
            Nonce::from_slice(payload_nonce.as_ref()),
            Payload {
                msg: plaintext,
                aad: &payload_aad(aad),
            },
        )
        .map_err(|_| CryptoError::Malformed)?;
    let mut out = wrapped_header(kek, aad, &data_key, NONCE_LEN + ciphertext.len())?;
    out.extend_from_slice(payload_nonce.as_ref());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a value sealed by [`seal`] under `kek` with the same `aad`. A value whose data key is
/// wrapped by another version of the namespace key is `UnknownKeyVersion`, naming that version.
pub fn open(kek: &Kek, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let parts = Parts::parse(sealed)?;
    let data_key = parts.data_key(kek, aad)?;
    let (nonce, ciphertext) = parts.payload.split_at(NONCE_LEN);
    payload_cipher(&data_key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &payload_aad(aad),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Tampered)
}

/// Re-wraps the data key of a value sealed under `old` so that it opens under `new`. Only the
/// header and the wrapped data key change: the payload nonce and ciphertext are copied as they
/// are, unread, so a rotation costs the same whatever the payload's size.
pub fn rewrap(old: &Kek, new: &Kek, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let parts = Parts::parse(sealed)?;
    let data_key = parts.data_key(old, aad)?;
    let mut out = wrapped_header(new, aad, &data_key, parts.payload.len())?;
    out.extend_from_slice(parts.payload);
    Ok(out)
}

/// A format 2 value split at its fixed offsets.
struct Parts<'a> {
    kek_version: u32,
    header: &'a [u8],
    wrapped: &'a [u8],
    /// The payload nonce and ciphertext, which no key rotation changes.
    payload: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(sealed: &'a [u8]) -> Result<Self, CryptoError> {
        if sealed.len() < MIN_LEN || sealed[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (wrapped, payload) = rest.split_at(WRAPPED_KEY_LEN);
        let mut version = [0u8; 4];
        version.copy_from_slice(&header[1..]);
        Ok(Self {
            kek_version: u32::from_be_bytes(version),
            header,
            wrapped,
            payload,
        })
    }

    fn data_key(&self, kek: &Kek, aad: &[u8]) -> Result<SecretKey, CryptoError> {
        if self.kek_version != kek.version {
            return Err(CryptoError::UnknownKeyVersion(self.kek_version));
        }
        unwrap_key(&kek.cipher, &wrap_aad(self.header, aad), self.wrapped)
    }
}

/// The header for `kek` followed by `data_key` wrapped under it, with room for `payload_len`
/// more bytes.
fn wrapped_header(
    kek: &Kek,
    aad: &[u8],
    data_key: &SecretKey,
    payload_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(HEADER_LEN + WRAPPED_KEY_LEN + payload_len);
    out.push(VERSION);
    out.extend_from_slice(&kek.version.to_be_bytes());
    let wrapped = wrap_key(&kek.cipher, &wrap_aad(&out, aad), data_key)?;
    out.extend_from_slice(&wrapped);
    Ok(out)
}

fn wrap_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    [DATA_KEY_DOMAIN, header, aad].concat()
}

fn payload_aad(aad: &[u8]) -> Vec<u8> {
    [PAYLOAD_DOMAIN, aad].concat()
}

fn payload_cipher(data_key: &SecretKey) -> Aes256Gcm {
    Aes256Gcm::new(data_key.bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, RootKey};

    fn kek(version: u32) -> Kek {
        Kek::new(version, &SecretKey::generate().unwrap())
    }

    #[test]
    fn round_trips_and_never_contains_the_plaintext() {
        let kek = kek(1);
        let plaintext = b"sk_live_very_secret_value";
        let sealed = seal(&kek, b"row-1", plaintext).unwrap();
        assert!(!sealed.windows(plaintext.len()).any(|w| w == plaintext));
        assert_eq!(sealed.len(), MIN_LEN + plaintext.len());
        assert_eq!(&sealed[..HEADER_LEN], &[2, 0, 0, 0, 1]);
        assert_eq!(open(&kek, b"row-1", &sealed).unwrap().as_slice(), plaintext);
        let empty = seal(&kek, b"row-1", b"").unwrap();
        assert!(open(&kek, b"row-1", &empty).unwrap().is_empty());
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let kek = kek(1);
        assert_ne!(
            seal(&kek, b"a", b"x").unwrap(),
            seal(&kek, b"a", b"x").unwrap()
        );
    }

    #[test]
    fn other_aad_fails_to_open() {
        let kek = kek(1);
        let sealed = seal(&kek, b"tenant-a/secret-1", b"payload").unwrap();
        assert!(matches!(
            open(&kek, b"tenant-b/secret-1", &sealed),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let kek = kek(7);
        let sealed = seal(&kek, b"aad", b"payload").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&kek, b"aad", &bad).is_err(), "byte {i}");
        }
        assert!(open(&kek, b"aad", &sealed[..sealed.len() - 1]).is_err());
        assert!(open(&kek, b"aad", &sealed[..MIN_LEN - 1]).is_err());
        assert!(open(&kek, b"aad", &[]).is_err());
    }

    #[test]
    fn another_version_is_reported_by_number_and_another_key_as_tampered() {
        let sealed = seal(&kek(3), b"aad", b"payload").unwrap();
        assert!(matches!(
            open(&kek(4), b"aad", &sealed),
            Err(CryptoError::UnknownKeyVersion(3))
        ));
        assert!(matches!(
            open(&kek(3), b"aad", &sealed),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn rewrap_keeps_the_payload_bytes_and_opens_only_with_the_new_key() {
        let (old, new) = (kek(1), kek(2));
        let sealed = seal(&old, b"row-1", b"payload").unwrap();
        let rewrapped = rewrap(&old, &new, b"row-1", &sealed).unwrap();
        let payload_at = HEADER_LEN + WRAPPED_KEY_LEN;
        assert_eq!(rewrapped.len(), sealed.len());
        assert_eq!(rewrapped[payload_at..], sealed[payload_at..]);
        assert_ne!(rewrapped[..payload_at], sealed[..payload_at]);
        assert_eq!(
            sealed_format(&rewrapped).unwrap(),
            SealedFormat::V2 { kek_version: 2 }
        );
        assert_eq!(
            open(&new, b"row-1", &rewrapped).unwrap().as_slice(),
            b"payload"
        );
        assert!(matches!(
            open(&old, b"row-1", &rewrapped),
            Err(CryptoError::UnknownKeyVersion(2))
        ));
        assert!(matches!(
            open(&kek(2), b"row-1", &rewrapped),
            Err(CryptoError::Tampered)
        ));
        // Only the key the value is under, and its own aad, can re-wrap it.
        assert!(matches!(
            rewrap(&new, &old, b"row-1", &sealed),
            Err(CryptoError::UnknownKeyVersion(1))
        ));
        assert!(matches!(
            rewrap(&old, &new, b"row-2", &sealed),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn a_payload_moved_under_another_data_key_does_not_open() {
        let kek = kek(1);
        let a = seal(&kek, b"row", b"payload a").unwrap();
        let b = seal(&kek, b"row", b"payload b").unwrap();
        let payload_at = HEADER_LEN + WRAPPED_KEY_LEN;
        let spliced = [&a[..payload_at], &b[payload_at..]].concat();
        assert!(matches!(
            open(&kek, b"row", &spliced),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn the_format_and_key_are_read_from_the_header() {
        let root = RootKey::generate().unwrap();
        let v1 = Envelope::new(&root).seal(b"aad", b"payload").unwrap();
        assert_eq!(
            sealed_format(&v1).unwrap(),
            SealedFormat::V1 { root: root.id() }
        );
        let v2 = seal(&kek(0x0102_0304), b"aad", b"payload").unwrap();
        assert_eq!(&v2[1..HEADER_LEN], &[1, 2, 3, 4]);
        assert_eq!(
            sealed_format(&v2).unwrap(),
            SealedFormat::V2 {
                kek_version: 0x0102_0304
            }
        );
        for junk in [&[][..], &[3u8; 200][..], &v1[..20], &v2[..20]] {
            assert!(matches!(sealed_format(junk), Err(CryptoError::Malformed)));
        }
        // Neither format opens as the other.
        assert!(matches!(
            open(&kek(1), b"aad", &v1),
            Err(CryptoError::Malformed)
        ));
        assert!(Envelope::new(&root).open(b"aad", &v2).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let kek = Kek::new(5, &SecretKey::from_bytes([7u8; 32]));
        assert_eq!(format!("{kek:?}"), "Kek { version: 5, .. }");
        assert_eq!(kek.version(), 5);
    }
}
