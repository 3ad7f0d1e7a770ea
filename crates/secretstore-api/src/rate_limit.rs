//! Requests per second per credential and account (Stripe counts per account), so one tenant's
//! runaway loop cannot take the store from the others. Answered with Stripe's 429
//! `rate_limit`, `Retry-After` and `Stripe-Should-Retry`, which the official SDKs back off on.
//! On by default in production mode (100 a second, bursts of twice that); off in dev mode.
//!
//! Memory is bounded: a credential reaches the limiter only once authenticated, the periodic
//! sweep forgets buckets that have refilled, and past `max_tracked` buckets (a flood of
//! distinct credentials in dev mode, where any key is valid) the oldest state is dropped.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderValue;
use parking_lot::RwLock;
use secretstore_core::{AccountId, CredentialId};

use crate::error::{ApiError, Code};

/// Buckets kept at most, by default (about 100 bytes each).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// How often (in checks) the bound is looked at.
const BOUND_EVERY: u64 = 1024;

type Limiter = DefaultKeyedRateLimiter<(CredentialId, AccountId)>;

/// A token bucket per credential and account (keyed by the credential's id, a hash, never the
/// credential itself).
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<RwLock<Arc<Limiter>>>,
    quota: Quota,
    per_second: NonZeroU32,
    max_tracked: usize,
    checks: Arc<AtomicU64>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .field("max_tracked", &self.max_tracked)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// Allows `per_second` requests a second per credential and account, with bursts of twice
    /// as many.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self::bounded(per_second, DEFAULT_MAX_TRACKED)
    }

    /// As `per_second`, keeping at most about `max_tracked` buckets.
    pub fn bounded(per_second: NonZeroU32, max_tracked: usize) -> Self {
        let burst = per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: Arc::new(RwLock::new(Arc::new(Limiter::keyed(quota)))),
            quota,
            per_second,
            max_tracked,
            checks: Arc::default(),
        }
    }

    pub fn check(&self, credential: &CredentialId, account: &AccountId) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % BOUND_EVERY == BOUND_EVERY - 1 {
            self.bound();
        }
        let limiter = Arc::clone(&self.limiter.read());
        limiter
            .check_key(&(*credential, account.clone()))
            .map_err(|_| {
                secretstore_core::metrics::rate_limited();
                let mut err = ApiError::new(
                    Code::RateLimit,
                    format!(
                        "Too many requests hit the API too quickly: this key may make {} \
                         requests a second on this account. Retry after a short wait, with \
                         exponential backoff.",
                        self.per_second
                    ),
                );
                err.retry_after = Some(HeaderValue::from_static("1"));
                err
            })
    }

    /// Buckets tracked right now.
    pub fn tracked(&self) -> usize {
        self.limiter.read().len()
    }

    /// Forgets buckets that have refilled (they hold nothing a fresh one would not), and past
    /// the bound, everything: memory stays bounded whatever the flood.
    fn bound(&self) {
        let limiter = Arc::clone(&self.limiter.read());
        if limiter.len() <= self.max_tracked {
            return;
        }
        limiter.retain_recent();
        if limiter.len() > self.max_tracked {
            tracing::warn!(
                tracked = limiter.len(),
                max = self.max_tracked,
                "too many rate-limited credentials at once; their buckets start again"
            );
            *self.limiter.write() = Arc::new(Limiter::keyed(self.quota));
        }
    }

    /// Forgets credentials that have not been seen for a while. Called by the periodic sweep.
    pub fn forget_idle(&self) {
        let limiter = Arc::clone(&self.limiter.read());
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: usize) -> AccountId {
        AccountId::parse(&format!("acct_{n}")).unwrap()
    }

    #[test]
    fn bursts_of_twice_the_rate_then_refusals_per_credential_and_account() {
        let limit = RateLimit::per_second(NonZeroU32::new(5).unwrap());
        let key = CredentialId::of(b"sk_test_a");
        let passed = (0..30)
            .filter(|_| limit.check(&key, &account(1)).is_ok())
            .count();
        assert!((10..=11).contains(&passed), "{passed} passed");
        let refused = limit.check(&key, &account(1)).unwrap_err();
        assert_eq!(refused.code, Code::RateLimit);
        // The same key on another account, and another key, have budgets of their own.
        assert!(limit.check(&key, &account(2)).is_ok());
        assert!(limit
            .check(&CredentialId::of(b"sk_test_b"), &account(1))
            .is_ok());
    }

    #[test]
    fn a_flood_of_distinct_credentials_stays_bounded() {
        let limit = RateLimit::bounded(NonZeroU32::new(100).unwrap(), 10_000);
        let mut most = 0;
        for n in 0..300_000u32 {
            let key = CredentialId::of(&n.to_le_bytes());
            let _ = limit.check(&key, &account(1));
            most = most.max(limit.tracked());
        }
        assert!(
            most <= 10_000 + BOUND_EVERY as usize,
            "{most} buckets at most"
        );
    }
}
