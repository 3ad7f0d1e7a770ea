//! Envelope encryption under a key hierarchy. Every payload is sealed with AES-256-GCM under a
//! fresh random 256-bit data key, and the data key is wrapped under a key above it. Both layers
//! take the caller's associated data, so a sealed value opens only for the identity it was
//! sealed for: moved to another row, it fails instead of yielding another tenant's secret.
//!
//! The hierarchy (format 2):
//!
//! - the **root key**, kept outside the database: a file or the environment
//!   ([`LocalRootKey`]), or an HSM through PKCS#11 (`Pkcs11RootKey`, feature `pkcs11`), where
//!   it never leaves the token. A [`RootKeyProvider`] wraps and unwraps with it but never hands
//!   out its bytes. Root keys form a [`RootKeyring`]: the active version wraps what is new, the
//!   older ones only unwrap, and each is named by its public id ([`KeyId`]);
//! - one **key-encryption key per namespace** ([`Kek`]), stored wrapped by the root key beside
//!   the id of the root key version that wrapped it;
//! - one **data key per secret**, stored wrapped by its namespace's key, beside its ciphertext,
//!   in the sealed value itself ([`envelope_v2`]).
//!
//! Every wrapped value names the version of the key that wrapped it, so rotating a root key
//! re-wraps namespace keys and rotating a namespace key re-wraps data keys
//! ([`envelope_v2::rewrap`]); neither touches a payload's ciphertext.
//!
//! Sealed format 2 (all lengths fixed but the ciphertext's):
//!
//! ```text
//! version(1) = 2 | kek version(4, big-endian) | wrap nonce(12) | wrapped data key(32 + 16 tag)
//!                | payload nonce(12) | ciphertext(n + 16 tag)
//! ```
//!
//! The header is bound into the wrap layer's associated data only, so a re-wrap changes the
//! header and the wrapped data key and nothing after them.
//!
//! Sealed format 1 (legacy, [`Envelope`]): the data key is wrapped directly under a
//! key-encryption key derived from the root key's bytes (HKDF), and the header is bound into both
//! layers, so a re-wrap would mean re-encrypting the payload. Values in it stay readable
//! ([`RootKeyProvider::open_v1`], [`RootKeyring::open_v1`]), by a root key that has bytes, until
//! they are sealed again in format 2:
//!
//! ```text
//! version(1) = 1 | root key id(8) | wrap nonce(12) | wrapped data key(32 + 16 tag)
//!                | payload nonce(12) | ciphertext(n + 16 tag)
//! ```
//!
//! A local root key's id is a fingerprint (HMAC of a constant), safe to store and log, the same
//! in both formats; an HSM's is computed inside the token ([`sealed_format`] reads either
//! format's header).
//!
//! `DigestKey` makes keyed digests of credentials for what is stored about them apart from their
//! look-up (the owner of an idempotency record) and keys the audit chain. Format 1 derived it
//! from the root key; under the hierarchy it is a stored key, wrapped by the root key, and an
//! existing directory's is carried over once ([`RootKeyProvider::legacy_subkey`] with
//! [`DigestKey::LEGACY_INFO`]). `private_path` is the rule every file holding key material or
//! sealed data is held to: owned by the server's user, nothing for group or others.

mod digest_key;
mod entropy;
mod envelope;
pub mod envelope_v2;
mod keyring;
#[cfg(feature = "pkcs11")]
mod pkcs11;
pub mod private_path;
mod provider;
mod root_key;
mod secret_key;

pub use digest_key::{DigestKey, KeyedDigest};
pub use entropy::fill as fill_random;
pub use envelope::Envelope;
pub use envelope_v2::{sealed_format, Kek, SealedFormat};
pub use keyring::RootKeyring;
#[cfg(feature = "pkcs11")]
pub use pkcs11::Pkcs11RootKey;
pub use private_path::{ensure_private, NotPrivate};
pub use provider::{LocalRootKey, RootKeyProvider};
pub use root_key::{EnvRootKey, FileRootKey, KeyId, RootKey, RootKeySource};
pub use secret_key::SecretKey;

/// Why sealing, opening or loading a key failed. Messages never include key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the sealed value is too short or has an unknown format version")]
    Malformed,
    #[error("the sealed value was written under root key {0}, which this server does not have")]
    UnknownRootKey(KeyId),
    #[error(
        "the sealed value's data key is wrapped under version {0} of its namespace key, not \
         the version given to open it"
    )]
    UnknownKeyVersion(u32),
    #[error(
        "the sealed value failed authentication: it was altered, or moved from the record it \
         was sealed for"
    )]
    Tampered,
    #[error(
        "root key {id} is configured twice ({first} and {second}); give each root key \
         version once"
    )]
    DuplicateRootKey {
        id: KeyId,
        first: String,
        second: String,
    },
    #[error("the operating system's random source failed")]
    Random,
    #[error("root key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("root key from {source_name}: {reason}")]
    KeyFormat { source_name: String, reason: String },
    /// A root key in an HSM could not be reached or used (PKCS#11); the sentence says which
    /// module, token or key, and why.
    #[error("{0}")]
    Hsm(String),
    #[error(transparent)]
    NotPrivate(#[from] NotPrivate),
}

/// `N` bytes from the operating system's random source ([`fill_random`]), wiped on drop since
/// most are keys.
pub(crate) fn random<const N: usize>() -> Result<zeroize::Zeroizing<[u8; N]>, CryptoError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; N]);
    fill_random(bytes.as_mut())?;
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod test_support {
    use zeroize::Zeroizing;

    use crate::CryptoError;

    /// Asserts that `open` gives `payload` for the `aad` it was sealed with, and fails as
    /// tampered with for `other_aad`: the value is bound to its record.
    pub(crate) fn assert_opens_only_with(
        open: impl Fn(&[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>,
        aad: &[u8],
        other_aad: &[u8],
        payload: &[u8],
    ) {
        assert_eq!(open(aad).unwrap().as_slice(), payload);
        assert!(matches!(open(other_aad), Err(CryptoError::Tampered)));
    }
}
