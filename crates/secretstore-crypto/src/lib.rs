//! Envelope encryption. Every payload is sealed with AES-256-GCM under a fresh random 256-bit
//! data key; the data key is itself sealed (wrapped) under a key-encryption key derived from the
//! root key, which comes from outside the database (a file or the environment). Both layers take
//! the caller's associated data, so a sealed value opens only for the identity it was sealed for:
//! moved to another row, it fails instead of yielding another tenant's secret.
//!
//! Sealed format, version 1 (all lengths fixed):
//!
//! ```text
//! version(1) | root key id(8) | wrap nonce(12) | wrapped data key(32 + 16 tag)
//!            | payload nonce(12) | ciphertext(n + 16 tag)
//! ```
//!
//! The root key id is a fingerprint (HMAC of a constant), safe to store and log, that lets a
//! future rotation find which root key wrapped a value.
//!
//! `DigestKey`, also derived from the root key, makes keyed digests of credentials for what is
//! stored about them apart from their look-up (the owner of an idempotency record).
//! `private_path` is the rule every file holding key material or sealed data is held to: owned
//! by the server's user, nothing for group or others.

mod digest_key;
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

/// `N` bytes from the operating system's random source, wiped on drop since most are keys.
pub(crate) fn random<const N: usize>() -> Result<zeroize::Zeroizing<[u8; N]>, CryptoError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; N]);
    getrandom::getrandom(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}
