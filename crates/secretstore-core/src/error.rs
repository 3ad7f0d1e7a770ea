//! The errors of the domain and of storage. Each says what went wrong in terms a caller can act
//! on; none carries a payload or key material. The HTTP layer maps them to Stripe's error JSON in
//! exactly one place.

use secretstore_crypto::CryptoError;

use crate::ids::SecretId;
use crate::secret::{InvalidExpiry, SecretName};

/// Which list cursor a request used, so "not found" can name the right parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    StartingAfter,
    EndingBefore,
}

/// What a storage backend reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A new name would take the scope past its maximum of live secrets.
    #[error("the scope already holds its maximum of {max} secrets")]
    ScopeFull { max: u32 },
    /// A list cursor names no secret in the scope listed.
    #[error("no such secret for the list cursor")]
    CursorNotFound { kind: CursorKind, id: String },
    /// Sealing the payload failed inside the write; nothing was stored.
    #[error("sealing the payload failed: {0}")]
    Seal(#[from] CryptoError),
    /// Storage cannot take writes (or any request) right now: disk full, read-only, shutting
    /// down. Retrying later may succeed, and nothing stored was harmed.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a damaged database. Logged, never shown to clients.
    #[error("storage failed: {0}")]
    Internal(String),
}

/// What the service reports to the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("No such secret: '{name}'")]
    NotFound { name: SecretName },
    #[error("the scope already holds its maximum of {max} secrets")]
    ScopeFull { max: u32 },
    #[error("expires_at {0}")]
    InvalidExpiry(#[from] InvalidExpiry),
    #[error("no such secret for the list cursor")]
    CursorNotFound { kind: CursorKind, id: String },
    /// A stored payload failed to open: wrong key, tampering, or a ciphertext moved between rows.
    #[error("the sealed payload of secret {id} failed to open: {source}")]
    Unsealable { id: SecretId, source: CryptoError },
    /// A kept idempotent answer failed to open.
    #[error("a kept idempotent answer failed to open: {0}")]
    KeptAnswerUnsealable(CryptoError),
    /// The root key given at start-up is not the one the data was written with.
    #[error(
        "the root key (id {given}) does not open this data, which was written with a different \
         root key; start with the root key the data was created with"
    )]
    WrongRootKey { given: String },
    #[error(transparent)]
    Crypto(CryptoError),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("storage failed: {0}")]
    Storage(String),
}

impl From<StoreError> for CoreError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ScopeFull { max } => CoreError::ScopeFull { max },
            StoreError::CursorNotFound { kind, id } => CoreError::CursorNotFound { kind, id },
            StoreError::Seal(e) => CoreError::Crypto(e),
            StoreError::Unavailable(why) => CoreError::Unavailable(why),
            StoreError::Internal(why) => CoreError::Storage(why),
        }
    }
}
