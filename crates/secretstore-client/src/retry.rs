//! When to try a request again and how long to wait first, following Stripe's SDKs: network
//! failures, 409 (a conflict such as an idempotency key still in use), 429 and 5xx are retried
//! unless the server says `Stripe-Should-Retry: false`, and anything is retried when it says
//! `Stripe-Should-Retry: true`. Waits grow exponentially with jitter (so many clients that
//! failed together do not come back together), and a `Retry-After` is never undercut.
//!
//! Retrying a POST is safe only because every logical call carries one `Idempotency-Key` across
//! all its attempts: the server runs it at most once and replays the first answer.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// A `Retry-After` longer than this is not waited out: the call fails with the server's answer
/// instead of sleeping for minutes inside a request.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Attempts after the first.
    pub(crate) max_retries: u32,
    /// The wait before the first retry, before jitter.
    pub(crate) initial_backoff: Duration,
    /// No wait computed from the backoff is longer than this.
    pub(crate) max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Retry(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After a network failure or timeout on attempt `retry` (0 for the first attempt).
    pub(crate) fn after_transport_error(&self, retry: u32) -> Verdict {
        if retry >= self.max_retries {
            return Verdict::GiveUp;
        }
        Verdict::Retry(self.backoff(retry))
    }

    /// After an error answer on attempt `retry`.
    pub(crate) fn after_answer(
        &self,
        retry: u32,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Verdict {
        if retry >= self.max_retries || !should_retry(status, headers) {
            return Verdict::GiveUp;
        }
        let backoff = self.backoff(retry);
        match retry_after(headers) {
            Some(asked) if asked > MAX_RETRY_AFTER => Verdict::GiveUp,
            Some(asked) => Verdict::Retry(backoff.max(asked)),
            None => Verdict::Retry(backoff),
        }
    }

    /// `initial * 2^retry`, capped, then scaled by a random factor in [0.5, 1].
    fn backoff(&self, retry: u32) -> Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(31)));
        let capped = doubled.min(self.max_backoff);
        let mut byte = [0u8; 1];
        // Without randomness the wait is simply not jittered.
        let random = match getrandom::getrandom(&mut byte) {
            Ok(()) => f64::from(byte[0]) / 255.0,
            Err(_) => 1.0,
        };
        capped.mul_f64(0.5 + 0.5 * random)
    }
}

/// Stripe's rules: the server's `Stripe-Should-Retry` wins; otherwise 409, 429 and 5xx.
fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
    {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` in seconds (whole or fractional). The HTTP-date form is rare on APIs and is
/// treated as absent: the backoff applies.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    let seconds: f64 = text.parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// A fresh idempotency key: a random (version 4) UUID, as Stripe's SDKs send.
pub(crate) fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is what matters here: fall back on the clock and a counter.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        bytes[8..].copy_from_slice(&(count ^ u64::from(std::process::id())).to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn retries_what_stripe_retries() {
        let policy = RetryPolicy::default();
        let none = headers(&[]);
        for status in [409, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert!(matches!(
                policy.after_answer(0, status, &none),
                Verdict::Retry(_)
            ));
        }
        for status in [400, 401, 403, 404] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert_eq!(policy.after_answer(0, status, &none), Verdict::GiveUp);
        }
    }

    #[test]
    fn the_server_header_wins() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_answer(
                0,
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(&[("stripe-should-retry", "false")])
            ),
            Verdict::GiveUp
        );
        assert!(matches!(
            policy.after_answer(
                0,
                StatusCode::BAD_REQUEST,
                &headers(&[("stripe-should-retry", "true")])
            ),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn retry_after_is_never_undercut_and_too_long_gives_up() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.after_answer(
                0,
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "3")])
            ),
            Verdict::Retry(Duration::from_secs(3))
        );
        assert_eq!(
            policy.after_answer(
                0,
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("retry-after", "3600")])
            ),
            Verdict::GiveUp
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 40,
            ..RetryPolicy::default()
        };
        for retry in 0..40 {
            let Verdict::Retry(wait) = policy.after_transport_error(retry) else {
                panic!("retry {retry} gave up");
            };
            let full = Duration::from_millis(500)
                .saturating_mul(2u32.saturating_pow(retry))
                .min(Duration::from_secs(8));
            assert!(wait <= full && wait >= full / 2, "{retry}: {wait:?}");
        }
        assert_eq!(policy.after_transport_error(40), Verdict::GiveUp);
    }

    #[test]
    fn idempotency_keys_are_uuids_and_differ() {
        let a = new_idempotency_key();
        let b = new_idempotency_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
