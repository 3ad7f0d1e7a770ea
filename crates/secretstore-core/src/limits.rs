//! The numbers that bound what a request may ask for, in one place so the HTTP edge, the
//! service and the documentation agree.

/// Longest `name`, `payload`, `scope[user]`, cursor or `expand` item, in Unicode scalar values.
pub const MAX_STRING_CHARS: usize = 5_000;

/// `expires_at` may be at most this far ahead: 100 years of 365.25 days (Stripe's rule).
pub const MAX_EXPIRY_AHEAD_SECS: i64 = 3_155_760_000;

/// List page sizes (Stripe's): 1 to 100, 10 when not given.
pub const MIN_LIST_LIMIT: u32 = 1;
pub const MAX_LIST_LIMIT: u32 = 100;
pub const DEFAULT_LIST_LIMIT: u32 = 10;

/// Limits an operator may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live secrets one scope may hold (Stripe: 10 per account scope and per user scope).
    pub max_secrets_per_scope: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_secrets_per_scope: 10,
        }
    }
}
