//! The errors of the domain and of storage. Each says what went wrong in terms a caller can act
//! on; none carries a payload or key material. The HTTP layer maps them to Stripe's error JSON in
//! exactly one place (its table of error codes).

use secretstore_crypto::CryptoError;

use crate::ids::SecretId;
use crate::secret::{InvalidExpiry, SecretName};

/// Which list cursor a request used, so "not found" can name the right parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    StartingAfter,
    EndingBefore,
}

/// Why the seal closure of a put failed (a broken random source, say). Storage reports it as it
/// is; it never holds key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sealing the payload failed: {0}")]
pub struct SealError(pub String);

impl From<CryptoError> for SealError {
    fn from(err: CryptoError) -> Self {
        SealError(err.to_string())
    }
}

/// What a storage backend reports. `Clone`, so one failure can answer every job of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A new name would take the scope past its maximum of live secrets.
    #[error("the scope already holds its maximum of {max} secrets")]
    ScopeFull { max: u32 },
    /// A list cursor names no secret in the scope listed.
    #[error("no such secret for the list cursor")]
    CursorNotFound { kind: CursorKind, id: String },
    /// Sealing the payload failed inside the write; nothing was stored.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The object to create exists already (named, as in "account acct_1").
    #[error("{0} exists already")]
    AlreadyExists(String),
    /// An object the write refers to does not exist (named, as in "account acct_1").
    #[error("{0} does not exist")]
    Missing(String),
    /// Storage cannot take writes (or any request) right now: disk full, read-only, shutting
    /// down. Retrying later may succeed, and nothing stored was harmed.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The backend does not do this at all, and never will by retrying: the sentence says
    /// what to use instead (a backup of PostgreSQL is taken with pg_dump, not by the server).
    /// Nothing is wrong with storage.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else: a bug or a damaged database. Logged, never shown to clients.
    #[error("storage failed: {0}")]
    Internal(String),
}

/// What the service reports to the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No live secret has this name in the scope asked.
    #[error("no live secret named {name:?} in the scope")]
    NotFound { name: SecretName },
    #[error("expires_at {0}")]
    InvalidExpiry(#[from] InvalidExpiry),
    /// A stored payload failed to open: wrong key, tampering, or a ciphertext moved between rows.
    #[error("the sealed payload of secret {id} failed to open: {source}")]
    Unsealable { id: SecretId, source: CryptoError },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key of the hierarchy could not be had (a root key version missing, a stored key
    /// altered, the HSM failing).
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}
