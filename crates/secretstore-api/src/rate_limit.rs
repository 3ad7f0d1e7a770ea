//! Requests per second per credential, so one tenant's runaway loop cannot take the store from
//! the others. Answered with Stripe's 429 `rate_limit`, `Retry-After` and `Stripe-Should-Retry`,
//! which the official SDKs back off on. Off unless the operator sets a rate.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorType};

/// A token bucket per credential (keyed by a hash of it, never the credential itself).
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<[u8; 32]>>,
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

    pub fn check(&self, credential: &[u8]) -> Result<(), ApiError> {
        let key: [u8; 32] = Sha256::digest(credential).into();
        self.limiter.check_key(&key).map_err(|_| {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::InvalidRequestError,
                Some("rate_limit"),
                format!(
                    "Too many requests hit the API too quickly: this key may make {} requests \
                     a second. Retry after a short wait, with exponential backoff.",
                    self.per_second
                ),
            );
            err.should_retry = Some(true);
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
