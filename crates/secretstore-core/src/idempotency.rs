//! The records behind `Idempotency-Key`, as storage keeps them: who asked (a digest the HTTP
//! layer makes of the credential and the account, never the credential) with which key, a
//! fingerprint of the request, and the answer kept for it as one opaque sealed blob. What the
//! blob holds (an HTTP status and body), how long it is replayed, how long a claim may be held
//! and how many bytes one owner may keep are decided by the HTTP layer's idempotency module;
//! storage only compares the instants and sums the bytes it is given (`KeptAnswer::bytes`).

use crate::principal::CredentialId;

/// A key as one owner used it; keys of different owners never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The owner: the HTTP layer's keyed digest of the credential and the account it acted on.
    pub credential: CredentialId,
    /// The `Idempotency-Key` header, at most 255 characters.
    pub key: String,
}

impl IdempotencyKey {
    pub fn new(credential: CredentialId, key: &str) -> Self {
        Self {
            credential,
            key: key.to_owned(),
        }
    }
}

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// Identifies the request the answer was for; a reuse of the key with another fingerprint
    /// is refused.
    pub fingerprint: [u8; 32],
    /// The answer, sealed; opaque to storage.
    pub sealed: Vec<u8>,
    /// Unix seconds when the answer was kept.
    pub created: i64,
}

impl KeptAnswer {
    /// What the answer counts towards its owner's quota (`IdempotencyStore::idempotency_complete`):
    /// the bytes stored for it, its sealed blob, its key, and the owner's and the fingerprint's
    /// digests (32 bytes each). The database's own overhead (pages, indexes) is not counted.
    pub fn bytes(&self, key: &IdempotencyKey) -> u64 {
        (self.sealed.len() + key.key.len() + 2 * 32) as u64
    }
}

/// What completing a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The answer is kept, to be replayed while it is fresh.
    Kept,
    /// Keeping the answer would have taken its owner's kept answers past the quota: nothing
    /// was kept, and the claim is released all the same, so a retry with the key runs again.
    OverQuota,
}

/// The instants a claim is judged against, computed by the caller from its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimTimes {
    /// The time of the claim; a new claim is held from then.
    pub now: i64,
    /// A kept answer created at or before this instant is stale: as if there were none.
    pub kept_after: i64,
    /// A claim taken at or before this instant was abandoned (its holder died): it is free.
    pub held_after: i64,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// Nobody holds it: the request runs and must complete or release the claim.
    Claimed,
    /// Another request with this key is still running.
    InFlight,
    /// A request with this key already completed.
    Kept(KeptAnswer),
}
