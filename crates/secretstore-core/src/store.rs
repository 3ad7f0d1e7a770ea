//! The narrow interface every storage backend implements, and the records that cross it.
//!
//! A backend stores sealed bytes and metadata; it never sees a plaintext payload. It is
//! responsible for atomicity (a put either fully happens or not at all), durability (a put or
//! delete that returned `Ok` survives a crash), the per-scope maximum (checked in the same
//! transaction as the insert, so concurrent puts cannot overshoot it) and ordering (list is
//! newest first in the exact order puts created the secrets). One conformance suite runs against
//! every backend.

use async_trait::async_trait;
use secretstore_crypto::CryptoError;

use crate::error::{CursorKind, StoreError};
use crate::idempotency::{IdempotencyClaim, IdempotencyKey, KeptAnswer};
use crate::ids::{Namespace, SecretId};
use crate::secret::{Scope, SecretKey};

/// A secret as stored: metadata in the clear, payload sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub id: SecretId,
    pub key: SecretKey,
    /// Unix seconds when this scope + name was first created; a replace keeps it.
    pub created: i64,
    pub expires_at: Option<i64>,
    /// The envelope: wrapped data key, nonce and ciphertext. Opaque to storage.
    pub sealed: Vec<u8>,
}

/// Seals the payload for the id the secret will have. The backend calls it exactly once, inside
/// the write, after deciding whether the put creates (the request's `new_id`) or replaces (the
/// existing id): the ciphertext is bound to the id, so it cannot be made earlier.
pub type Seal = Box<dyn FnOnce(&SecretId) -> Result<Vec<u8>, CryptoError> + Send>;

/// Create or replace one secret.
pub struct PutRequest {
    pub key: SecretKey,
    /// The id of the secret if this put creates it.
    pub new_id: SecretId,
    /// The time of the request: `created` of a new secret, and the instant against which
    /// existing secrets are live or expired.
    pub now: i64,
    pub expires_at: Option<i64>,
    /// Live secrets the scope may hold; a put of a new name into a full scope fails with
    /// `StoreError::ScopeFull` and changes nothing.
    pub max_per_scope: u32,
    pub seal: Seal,
}

impl std::fmt::Debug for PutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutRequest")
            .field("key", &self.key)
            .field("new_id", &self.new_id)
            .field("now", &self.now)
            .field("expires_at", &self.expires_at)
            .field("max_per_scope", &self.max_per_scope)
            .finish_non_exhaustive()
    }
}

/// Where a list page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    /// Secrets older than this one (the next page).
    StartingAfter(SecretId),
    /// Secrets newer than this one (the previous page), still answered newest first.
    EndingBefore(SecretId),
}

impl ListCursor {
    pub fn kind(&self) -> CursorKind {
        match self {
            ListCursor::StartingAfter(_) => CursorKind::StartingAfter,
            ListCursor::EndingBefore(_) => CursorKind::EndingBefore,
        }
    }

    pub fn id(&self) -> &SecretId {
        match self {
            ListCursor::StartingAfter(id) | ListCursor::EndingBefore(id) => id,
        }
    }
}

/// One page of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub namespace: Namespace,
    pub scope: Scope,
    pub limit: u32,
    pub cursor: Option<ListCursor>,
    /// Secrets expired at this instant are left out.
    pub now: i64,
}

/// A page of live secrets, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredList {
    pub items: Vec<SealedSecret>,
    /// More live secrets exist beyond this page in the direction of travel (older for
    /// `starting_after` or no cursor, newer for `ending_before`).
    pub has_more: bool,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the secret, or replaces the payload and `expires_at` of the live secret with the
    /// same key (keeping its id and `created`). An expired secret with the same key is treated
    /// as absent: it is removed and a new one created. Returns the secret as now stored.
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError>;

    /// The live secret with this key, if any.
    async fn get(&self, key: &SecretKey, now: i64) -> Result<Option<SealedSecret>, StoreError>;

    /// Removes the live secret with this key and returns it as it was; `None` if there is no
    /// live one (an expired one is not deleted by this call, and not returned).
    async fn delete(&self, key: &SecretKey, now: i64) -> Result<Option<SealedSecret>, StoreError>;

    /// A page of live secrets of one scope. A cursor that names no secret of that namespace and
    /// scope is `StoreError::CursorNotFound`.
    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError>;

    /// Deletes secrets expired at `now` and idempotency records older than their time to live;
    /// returns how many secrets went.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// Claims an idempotency key for a request about to run, or reports that another request
    /// holds it, or returns the answer kept for it (if younger than its time to live).
    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        now: i64,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Keeps the answer of a claimed key (durably) and releases the claim.
    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        answer: KeptAnswer,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Releases a claim without keeping an answer, so a retry with the key runs again.
    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError>;

    /// A small named value of the store itself (the root key check, for one).
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets a named value, durably.
    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError>;

    /// Storage answers: for `/readyz`.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and stops accepting new ones; for a clean shutdown.
    async fn close(&self) -> Result<(), StoreError>;
}
