//! The records behind `Idempotency-Key`: who asked (a hash of the credential, never the
//! credential), with which key, what the request was (a fingerprint of method, path and
//! parameters) and the answer kept for it, sealed like a payload because it may hold one.

use sha2::{Digest, Sha256};

/// A key as one credential used it; keys of different credentials never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// SHA-256 of the credential.
    pub credential: [u8; 32],
    /// The `Idempotency-Key` header, at most 255 characters.
    pub key: String,
}

impl IdempotencyKey {
    pub fn new(credential: &[u8], key: &str) -> Self {
        Self {
            credential: Sha256::digest(credential).into(),
            key: key.to_owned(),
        }
    }

    /// Associated data for sealing the kept answer: it opens only under this credential and key.
    pub fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.key.len());
        aad.extend_from_slice(b"secretstore/idempotent-answer/v1\0");
        aad.extend_from_slice(&self.credential);
        aad.extend_from_slice(self.key.as_bytes());
        aad
    }
}

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// SHA-256 over the request's method, path and canonical parameters; a reuse of the key
    /// with a different fingerprint is refused.
    pub fingerprint: [u8; 32],
    pub status: u16,
    /// The response body, sealed.
    pub sealed_body: Vec<u8>,
    /// Unix seconds when the answer was kept.
    pub created: i64,
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
