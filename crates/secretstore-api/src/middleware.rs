//! What every request and answer goes through, whatever route serves it: the header-size limit,
//! a unique `Request-Id`, `Cache-Control: no-store` (answers may hold secrets), `Stripe-Version`
//! echoed, and one log line with the request id, method, path (never the query: it may carry
//! parameters), status and latency.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::IntoResponse as _;
use axum::response::Response;
use http::{HeaderValue, StatusCode};

use crate::error::{ApiError, ErrorType};
use crate::ApiConfig;

/// The request's id, placed in extensions so handlers can log with it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const ALPHANUMERIC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl RequestId {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 20];
        // A failing random source still gets unique-enough ids from the clock; ids are not secrets.
        if getrandom::getrandom(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            bytes[..16].copy_from_slice(&nanos.to_le_bytes());
        }
        let mut id = String::with_capacity(24);
        id.push_str("req_");
        id.extend(
            bytes
                .iter()
                .map(|b| ALPHANUMERIC[(*b % 62) as usize] as char),
        );
        Self(id)
    }
}

/// Longest `Stripe-Version` echoed back; anything longer or unprintable is not echoed.
const MAX_VERSION_LEN: usize = 64;

/// Bytes a request's headers take on the wire, near enough: names, values and separators.
fn header_bytes(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

pub async fn stamp(State(config): State<ApiConfig>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::generate();
    request.extensions_mut().insert(id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let version = request
        .headers()
        .get("stripe-version")
        .filter(|v| v.len() <= MAX_VERSION_LEN && v.to_str().is_ok())
        .cloned();

    let mut response = if header_bytes(&request) > config.max_header_bytes {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorType::InvalidRequestError,
            Some("headers_too_large"),
            format!(
                "The request's headers are larger than this server's limit of {} bytes.",
                config.max_header_bytes
            ),
        )
        .into_response()
    } else {
        next.run(request).await
    };

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        headers.insert("request-id", value);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let Some(version) = version {
        headers.insert("stripe-version", version);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let shown_path: String = path.chars().take(200).collect();
    match response.extensions().get::<ApiError>() {
        Some(err) if status >= 500 => tracing::warn!(
            request_id = %id.0, %method, path = %shown_path, status, latency_ms,
            code = err.code, "request failed"
        ),
        Some(err) => tracing::info!(
            request_id = %id.0, %method, path = %shown_path, status, latency_ms,
            code = err.code, "request refused"
        ),
        None => tracing::info!(
            request_id = %id.0, %method, path = %shown_path, status, latency_ms, "request"
        ),
    }
    response
}
