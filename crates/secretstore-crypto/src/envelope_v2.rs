//! Sealed format 2: a payload sealed under a fresh data key, the data key wrapped under a
//! namespace's key-encryption key (a [`Kek`], itself stored wrapped by the root key). Rotating a
//! namespace key re-wraps data keys ([`rewrap`]) and never touches a payload's ciphertext, so
//! the payload layer's associated data leaves out the header, which names the namespace key's
//! version and so changes on a rotation.
//!
//! ```text
//! format(1) = 2 or 3 | kek version(4, big-endian) | wrap nonce(12)
//!                    | wrapped data key(32 + 16 tag) | payload nonce(12) | ciphertext(n + 16 tag)
//! ```
//!
//! The first byte is 3 when the key-encryption key is a user's ([`Kek::for_user`]: the
//! namespace key's version combined with the user's own key, so that destroying either one
//! destroys what it sealed), 2 when it is the namespace key alone. Both are this same format.
//!
//! Wrap layer AAD: `"secretstore data key v2" | header(5) | caller's aad`. Payload layer AAD:
//! `"secretstore payload v2" | caller's aad`. The caller's aad (the secret's identity) is in
//! both, so neither a wrapped data key nor a payload opens when moved to another record; the
//! constants keep the two layers, and format 1, from ever accepting each other's bytes.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::envelope;
use crate::root_key::KeyId;
use crate::secret_key::{unwrap_key, wrap_key, SecretKey, NONCE_LEN, TAG_LEN, WRAPPED_KEY_LEN};
use crate::{random, CryptoError};

const VERSION: u8 = 2;
/// The first byte of a value whose data key is wrapped by a user's combined key.
const VERSION_USER: u8 = 3;
const HEADER_LEN: usize = 1 + 4;
const MIN_LEN: usize = HEADER_LEN + WRAPPED_KEY_LEN + NONCE_LEN + TAG_LEN;
const DATA_KEY_DOMAIN: &[u8] = b"secretstore data key v2";
const PAYLOAD_DOMAIN: &[u8] = b"secretstore payload v2";

/// A namespace's key-encryption key, unwrapped, with the version stored in what it wraps.
pub struct Kek {
    version: u32,
    /// The first byte of what it seals: `VERSION`, or `VERSION_USER` for a user's key.
    format: u8,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .field("per_user", &self.per_user())
            .finish_non_exhaustive()
    }
}

impl Kek {
    pub fn new(version: u32, key: &SecretKey) -> Self {
        Self {
            version,
            format: VERSION,
            cipher: Aes256Gcm::new(key.bytes().into()),
        }
    }

    /// The key that wraps the data keys of one user's secrets in a namespace: derived (HKDF-
    /// SHA-256) from version `version` of the namespace key and from the user's own key, with
    /// `context` (the namespace and the user) as its info. Without either key it cannot be
    /// made again, so removing the namespace or the user, which destroys its key, destroys
    /// every data key it wrapped.
    pub fn for_user(
        version: u32,
        namespace_key: &SecretKey,
        user_key: &SecretKey,
        context: &[u8],
    ) -> Self {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(namespace_key.bytes());
        ikm[32..].copy_from_slice(user_key.bytes());
        let hkdf = Hkdf::<Sha256>::new(Some(USER_KEK_SALT), ikm.as_ref());
        let mut derived = Zeroizing::new([0u8; 32]);
        hkdf.expand(context, derived.as_mut())
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        Self {
            version,
            format: VERSION_USER,
            cipher: Aes256Gcm::new(derived.as_ref().into()),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether this is a user's combined key (`for_user`).
    pub fn per_user(&self) -> bool {
        self.format == VERSION_USER
    }
}

const USER_KEK_SALT: &[u8] = b"secretstore user key-encryption key v1";

/// Which format a sealed value is in, and which key it needs, read from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedFormat {
    /// Format 1 ([`crate::Envelope`]): the data key is wrapped by the root key `root`.
    V1 { root: KeyId },
    /// Format 2: the data key is wrapped by version `kek_version` of its namespace's key, or
    /// (`per_user`) by that version combined with its user's key (`Kek::for_user`).
    V2 { kek_version: u32, per_user: bool },
}

/// Reads a sealed value's format and key from its header; `Malformed` if it is neither format
/// or too short to be one.
pub fn sealed_format(sealed: &[u8]) -> Result<SealedFormat, CryptoError> {
    match sealed.first() {
        Some(&envelope::VERSION) => Ok(SealedFormat::V1 {
            root: envelope::root_key_id(sealed)?,
        }),
        Some(&VERSION | &VERSION_USER) => Ok(SealedFormat::V2 {
            kek_version: Parts::parse(sealed)?.kek_version,
            per_user: sealed[0] == VERSION_USER,
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
/// wrapped by another version of the namespace key is `UnknownKeyVersion`, naming that version;
/// one wrapped by a user's key when `kek` is not one (or the reverse) is `Tampered`.
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
/// are, unread, so a rotation costs the same whatever the payload's size. `old` and `new` may
/// differ in kind too (a user's secret sealed under the namespace key alone moves to the user's
/// key).
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
    format: u8,
    header: &'a [u8],
    wrapped: &'a [u8],
    /// The payload nonce and ciphertext, which no key rotation changes.
    payload: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(sealed: &'a [u8]) -> Result<Self, CryptoError> {
        if sealed.len() < MIN_LEN || !matches!(sealed[0], VERSION | VERSION_USER) {
            return Err(CryptoError::Malformed);
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (wrapped, payload) = rest.split_at(WRAPPED_KEY_LEN);
        let mut version = [0u8; 4];
        version.copy_from_slice(&header[1..]);
        Ok(Self {
            kek_version: u32::from_be_bytes(version),
            format: sealed[0],
            header,
            wrapped,
            payload,
        })
    }

    fn data_key(&self, kek: &Kek, aad: &[u8]) -> Result<SecretKey, CryptoError> {
        if self.kek_version != kek.version {
            return Err(CryptoError::UnknownKeyVersion(self.kek_version));
        }
        if self.format != kek.format {
            return Err(CryptoError::Tampered);
        }
        unwrap_key(&kek.cipher, &wrap_aad(self.header, aad), self.wrapped)
    }
}

/// The header for `kek` followed by `data_key` wrapped under it, with room for `payload_len`
/// more bytes.
/// What every value sealed under version `kek_version` of a namespace key starts with: alone,
/// or (`per_user`) combined with a user's key. A rotation looks for values that do not.
pub fn header(kek_version: u32, per_user: bool) -> [u8; HEADER_LEN] {
    let v = kek_version.to_be_bytes();
    let format = if per_user { VERSION_USER } else { VERSION };
    [format, v[0], v[1], v[2], v[3]]
}

fn wrapped_header(
    kek: &Kek,
    aad: &[u8],
    data_key: &SecretKey,
    payload_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(HEADER_LEN + WRAPPED_KEY_LEN + payload_len);
    out.extend_from_slice(&header(kek.version, kek.per_user()));
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
            SealedFormat::V2 {
                kek_version: 2,
                per_user: false
            }
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
                kek_version: 0x0102_0304,
                per_user: false
            }
        );
        for junk in [&[][..], &[4u8; 200][..], &v1[..20], &v2[..20]] {
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
        assert_eq!(
            format!("{kek:?}"),
            "Kek { version: 5, per_user: false, .. }"
        );
        assert_eq!(kek.version(), 5);
    }

    #[test]
    fn a_users_key_needs_both_keys_and_its_context_and_is_told_apart_by_its_header() {
        let (namespace, user) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let key = Kek::for_user(4, &namespace, &user, b"ns/usr_1");
        assert!(key.per_user());
        let sealed = seal(&key, b"row", b"payload").unwrap();
        assert_eq!(&sealed[..HEADER_LEN], &[3, 0, 0, 0, 4]);
        assert_eq!(
            sealed_format(&sealed).unwrap(),
            SealedFormat::V2 {
                kek_version: 4,
                per_user: true
            }
        );
        let again = Kek::for_user(4, &namespace, &user, b"ns/usr_1");
        assert_eq!(
            open(&again, b"row", &sealed).unwrap().as_slice(),
            b"payload"
        );
        let other_user = SecretKey::generate().unwrap();
        for wrong in [
            Kek::for_user(4, &namespace, &other_user, b"ns/usr_1"),
            Kek::for_user(4, &other_user, &user, b"ns/usr_1"),
            Kek::for_user(4, &namespace, &user, b"ns/usr_2"),
            Kek::new(4, &namespace),
            Kek::new(4, &user),
        ] {
            assert!(matches!(
                open(&wrong, b"row", &sealed),
                Err(CryptoError::Tampered)
            ));
        }
        // The namespace key alone moves to the user's key by a re-wrap, and back.
        let plain = Kek::new(4, &namespace);
        let under_namespace = seal(&plain, b"row", b"payload").unwrap();
        let moved = rewrap(&plain, &key, b"row", &under_namespace).unwrap();
        assert_eq!(moved[0], 3);
        assert_eq!(open(&key, b"row", &moved).unwrap().as_slice(), b"payload");
        assert!(matches!(
            open(&plain, b"row", &moved),
            Err(CryptoError::Tampered)
        ));
    }
}
