//! What every request and answer goes through, whatever route serves it (`stamp`, one layer:
//! each layer costs a boxed future per request). It gives each request a unique `Request-Id`,
//! refuses oversized headers (`headers_too_large`), sets `Cache-Control: no-store` (answers may
//! hold secrets), and writes one log line with the request id, method, path (never the query:
//! it may carry parameters), status, latency, error code and, for an unexpected failure, its
//! cause (logged here and only here).
//!
//! It also drafts and finally writes the request's audit record (`audit`), before the answer
//! leaves.
//!
//! On the public API (not the admin API, which is not Stripe's) it refuses a `Stripe-Version`
//! that cannot be a version, as Stripe does (`api_version`), and every answer echoes the Stripe
//! headers of its request that the SDKs read back (`Echoes`): `Stripe-Version`,
//! `Stripe-Account`, and on a POST its `Idempotency-Key`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::IntoResponse as _;
use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use secretstore_core::audit::Text;
use secretstore_core::ids::ALPHANUMERIC;
use secretstore_core::{AuditTicket, RequestId};

use crate::audit::{Auditor, ClientAddr};
use crate::error::{ApiError, Code};
use crate::headers as names;
use crate::{admin, idempotency, ops, HttpLimits};

/// 20 characters drawn from a per-thread generator seeded from the OS random source once. Ids
/// need to be unique, not secret, so this spares every request a `getrandom` call.
pub fn new_request_id() -> RequestId {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(seed());
    }
    let mut id = [0u8; RequestId::LEN];
    id[..4].copy_from_slice(b"req_");
    STATE.with(|state| {
        for half in 0..2 {
            // splitmix64: every state is visited once per 2^64 steps, and the output mix makes
            // consecutive ids look unrelated.
            let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            for slot in &mut id[4 + half * 10..14 + half * 10] {
                *slot = ALPHANUMERIC[(z % 62) as usize];
                z /= 62;
            }
        }
    });
    // Every byte is ASCII by construction.
    RequestId::new(id).unwrap_or_else(unreachable_id)
}

/// Never reached: `new_request_id` only writes `req_` and alphanumerics.
#[cold]
fn unreachable_id() -> RequestId {
    RequestId::new(*b"req_00000000000000000000").expect("a fixed, valid id")
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Ids are not secrets: the clock and the thread still make a usable seed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let here = 0u8;
        bytes = (nanos ^ (std::ptr::addr_of!(here) as u64).rotate_left(32)).to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// Longest `Stripe-Version` taken; a longer one cannot be a version.
const MAX_VERSION_LEN: usize = 64;

/// Whether `text` can be a Stripe API version: a date, `YYYY-MM-DD`, optionally followed by
/// `.` and a release name in lowercase letters (`2024-06-20`, `2025-03-31.basil`). Which
/// versions exist is not checked: this server answers every one alike.
fn is_api_version(text: &str) -> bool {
    let (date, release) = match text.split_once('.') {
        Some((date, release)) => (date, Some(release)),
        None => (text, None),
    };
    let number = |part: &str, len: usize| {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let well_formed_date = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(year), Some(month), Some(day), None) => {
            number(year, 4).is_some()
                && number(month, 2).is_some_and(|m| (1..=12).contains(&m))
                && number(day, 2).is_some_and(|d| (1..=31).contains(&d))
        }
        _ => false,
    };
    well_formed_date
        && release
            .is_none_or(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()))
}

/// The request's `Stripe-Version`, if it has one and it can be a version; a refusal if it
/// cannot.
fn api_version(headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
    let Some(value) = headers.get(names::STRIPE_VERSION) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if text.len() <= MAX_VERSION_LEN && is_api_version(text) => {
            Ok(Some(value.clone()))
        }
        Ok(text) => Err(ApiError::api_version_invalid(Some(text))),
        Err(_) => Err(ApiError::api_version_invalid(None)),
    }
}

/// Longest `Stripe-Account` echoed back (an account id is far shorter); anything longer or
/// unprintable is not echoed.
const MAX_ACCOUNT_LEN: usize = 255;

/// What `stamp` needs to know about the listener it serves.
#[derive(Debug, Clone)]
pub struct Edge {
    pub limits: HttpLimits,
    /// The public API speaks Stripe's headers (docs/api.md §5); the admin API does not.
    pub stripe: bool,
    /// Writes each request's audit record; `None` when auditing is off.
    pub auditor: Option<Arc<Auditor>>,
}

/// The operation a request reaches, as the audit log names it.
fn operation(edge: &Edge, request: &Request) -> Text {
    if edge.stripe {
        return ops::operation_name(request.method(), request.uri().path()).into();
    }
    match admin::route_of(request.method(), request.uri().path()) {
        Some(route) => format!("admin {} {route}", request.method()).into(),
        None => "unknown".into(),
    }
}

/// The request headers an answer of the public API echoes, as Stripe's answers do: the SDKs
/// read them back (stripe-node's `lastResponse.apiVersion`, `.stripeAccount`,
/// `.idempotencyKey`; stripe-python's `last_response.idempotency_key`).
#[derive(Debug, Default)]
struct Echoes {
    version: Option<HeaderValue>,
    account: Option<HeaderValue>,
    idempotency_key: Option<HeaderValue>,
}

/// A header's value, if it is printable ASCII of at most `max` bytes.
fn printable(headers: &HeaderMap, name: http::HeaderName, max: usize) -> Option<HeaderValue> {
    headers
        .get(name)
        .filter(|v| v.len() <= max && v.to_str().is_ok())
        .cloned()
}

impl Echoes {
    /// What the answer to `request` echoes; the request's refusal instead, if its
    /// `Stripe-Version` is not a version.
    fn of(request: &Request) -> (Self, Option<ApiError>) {
        let headers = request.headers();
        let (version, refusal) = match api_version(headers) {
            Ok(version) => (version, None),
            Err(refusal) => (None, Some(refusal)),
        };
        let echoes = Self {
            version,
            account: printable(headers, names::STRIPE_ACCOUNT, MAX_ACCOUNT_LEN),
            // Only a key the idempotency protocol took: a malformed one is refused, not echoed.
            idempotency_key: match idempotency::key_of(request.method(), headers) {
                Some(Ok(_)) => headers.get(names::IDEMPOTENCY_KEY).cloned(),
                _ => None,
            },
        };
        (echoes, refusal)
    }

    fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in [
            (names::STRIPE_VERSION, self.version),
            (names::STRIPE_ACCOUNT, self.account),
            (names::IDEMPOTENCY_KEY, self.idempotency_key),
        ] {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        }
    }
}

/// Bytes a request's headers take on the wire, near enough: names, values and separators.
fn header_bytes(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// The refusal of a request whose headers add up to more than the limit, if it is one.
fn headers_too_large(request: &Request, limits: &HttpLimits) -> Option<ApiError> {
    (header_bytes(request) > limits.max_header_bytes).then(|| {
        ApiError::new(
            Code::HeadersTooLarge,
            format!(
                "The request's headers are larger than this server's limit of {} bytes.",
                limits.max_header_bytes
            ),
        )
    })
}

/// A request's path as the log shows it: its first 200 characters. Cut only when a line is
/// written: above the info level (`--log warn`), a request that succeeds writes none.
struct ShownPath<'a>(&'a str);

impl std::fmt::Display for ShownPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self
            .0
            .char_indices()
            .nth(200)
            .map_or(self.0.len(), |(at, _)| at);
        f.write_str(&self.0[..end])
    }
}

pub async fn stamp(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = new_request_id();
    request.extensions_mut().insert(id);
    let method = request.method().clone();
    // The request is handed on; its URI shares the request's buffer, so keeping it is cheap.
    let uri = request.uri().clone();
    let (echoes, bad_version) = if edge.stripe {
        Echoes::of(&request)
    } else {
        (Echoes::default(), None)
    };

    // Probes of a load balancer or orchestrator are not requests of the API: not audited.
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let auditor = edge.auditor.as_ref().filter(|_| !probe);
    let slot = auditor.map(|auditor| {
        let client = request.extensions().get::<ClientAddr>();
        let slot = auditor.begin(id, client, operation(&edge, &request));
        request.extensions_mut().insert(Arc::clone(&slot));
        slot
    });

    let refusal = headers_too_large(&request, &edge.limits).or(bad_version);
    // An admin request that changes the tenant directory commits its record with the change.
    let changes_directory = !edge.stripe && request.method() != http::Method::GET;
    let mut response = match (refusal, auditor, &slot) {
        (Some(refusal), _, _) => refusal.into_response(),
        (None, Some(auditor), Some(slot)) if changes_directory => {
            let ticket = AuditTicket {
                slot: Arc::clone(slot),
                chain: Arc::clone(auditor.chain()),
            };
            secretstore_core::audit::with_directory_record(ticket, next.run(request)).await
        }
        (None, _, _) => next.run(request).await,
    };
    if let (Some(auditor), Some(slot)) = (auditor, &slot) {
        response = auditor.finish(slot, response).await;
    }

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(names::REQUEST_ID, value);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    echoes.apply(headers);
    let status = response.status().as_u16();
    // Whole microseconds shown as milliseconds: 3.294, not 3.2939480000000003.
    let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
    let shown_path = ShownPath(uri.path());
    match response.extensions().get::<ApiError>() {
        Some(err) if status >= 500 => tracing::warn!(
            request_id = %id, %method, path = %shown_path, status, latency_ms,
            code = err.code.wire(), cause = err.cause.as_deref(), "request failed"
        ),
        Some(err) => tracing::info!(
            request_id = %id, %method, path = %shown_path, status, latency_ms,
            code = err.code.wire(), "request refused"
        ),
        None => tracing::info!(
            request_id = %id, %method, path = %shown_path, status, latency_ms, "request"
        ),
    }
    crate::metrics::request_served(edge.stripe, &method, uri.path(), status, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_dates_with_an_optional_release_name() {
        for good in [
            "2024-06-20",
            "2025-03-31.basil",
            "2026-10-28.endive",
            "2025-04-30.preview",
            "2011-06-21",
        ] {
            assert!(is_api_version(good), "{good}");
        }
        for bad in [
            "garbage",
            "",
            "2024-6-20",
            "2024-06-2",
            "24-06-20",
            "2024-13-01",
            "2024-00-10",
            "2024-06-32",
            "2024-06-00",
            "2024/06/20",
            "2024-06-20.",
            "2024-06-20.Basil",
            "2024-06-20.basil2",
            "2024-06-20.basil.x",
            "2024-06-20-01",
            "2024-06-20 ",
            "+024-06-20",
            "2024-06-20; beta=v1",
        ] {
            assert!(!is_api_version(bad), "{bad}");
        }
    }

    #[test]
    fn request_ids_have_the_shape_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let id = new_request_id().as_str().to_owned();
            assert_eq!(id.len(), 24);
            assert!(id.starts_with("req_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(id));
        }
    }
}
