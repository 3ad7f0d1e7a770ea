//! Requests per second per credential, so one tenant's runaway loop cannot take the store from
//! the others. Answered with Stripe's 429 `rate_limit`, `Retry-After` and `Stripe-Should-Retry`,
//! which the official SDKs back off on. Off unless the operator sets a rate.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderValue;
use secretstore_core::CredentialId;

use crate::error::{ApiError, Code};

/// A token bucket per credential (keyed by its id, a hash, never the credential itself).
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<CredentialId>>,
    per_second: NonZeroU32,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// Allows `per_second` requests a second per credential, with bursts of as many.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(
                per_second,
            ))),
            per_second,
        }
    }

    pub fn check(&self, credential: &CredentialId) -> Result<(), ApiError> {
        self.limiter.check_key(credential).map_err(|_| {
            let mut err = ApiError::new(
                Code::RateLimit,
                format!(
                    "Too many requests hit the API too quickly: this key may make {} requests \
                     a second. Retry after a short wait, with exponential backoff.",
                    self.per_second
                ),
            );
            err.retry_after = Some(HeaderValue::from_static("1"));
            err
        })
    }

    /// Forgets credentials that have not been seen for a while, so many distinct keys cannot
    /// grow memory without bound. Called by the periodic sweep.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
