//! secretstore's HTTP layer: Stripe's Secret Store wire format on axum. `router` builds the
//! service (the operations of `ops`, health checks, JSON answers for every unknown route,
//! method, oversized, slow or malformed request, and panics), and `serve` runs it with bounds
//! on what each client may hold until a shutdown, finishing in-flight requests first.
//!
//! A request flows one way: `middleware` (request id, header limit, log line) -> `auth::Caller`
//! (who, and the rate limit) -> `idempotency::KeyHeader` -> `extract::StripeForm` (parameters)
//! -> the operation's `parse` (`params`) -> `authorize` (core) -> `idempotency` -> the
//! service (core) -> `render`. Every error on the way is an `error::ApiError` from one table of
//! codes. docs/api.md describes the API; docs/errors.md the errors.

pub mod admin;
pub mod audit;
pub mod auth;
mod connections;
pub mod error;
pub mod extract;
pub mod form;
pub(crate) mod headers;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod params;
pub mod rate_limit;
pub mod render;
mod server;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use secretstore_core::{Lifecycle, SecretService};
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{Authenticator, DevAuthenticator};
pub use error::ApiError;
pub use idempotency::Idempotency;
pub use rate_limit::RateLimit;
pub use server::{serve, Shutdown, MAX_LINGERING};

/// The largest valid request is three 5,000-character fields of 4-byte characters, each byte
/// percent-encoded (12 bytes a character): 180,000 bytes plus names and brackets.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// The default bound on request bodies in flight: 64 MiB, 256 bodies of the largest size,
/// what the 256 MiB a whole server may use by default can spare.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// Bounds on what one client may hold or send. Every one is a flag of `secretstore serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's body; slower ones are refused with 408.
    pub body_timeout: Duration,
    /// Time a client has to send a request's headers, and the longest a keep-alive connection
    /// may sit idle between requests.
    pub header_timeout: Duration,
    /// Largest total size of a request's headers, in bytes; larger ones are refused with 431.
    pub max_header_bytes: usize,
    /// Connections open at once; when all are taken, the longest-idle one is closed to make
    /// room, and only if none is idle does a new connection get a 503 and close.
    pub max_connections: usize,
    /// Connections one client address may hold open at once; beyond it a new one gets a 503.
    pub max_connections_per_client: usize,
    /// Bytes of request bodies being received or decoded at once, over every connection; a
    /// body that would go past it is refused with 503 `server_busy` (retryable) before it is
    /// read.
    pub max_body_bytes_in_flight: usize,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections: 10_000,
            max_connections_per_client: 1_000,
            max_body_bytes_in_flight: DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// What every handler shares, behind one `Arc`: axum clones the state for every extractor of
/// every request, and cloning the parts one by one (a dozen reference counts, each touched
/// twice) showed up as 6% of a find's CPU.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of `AppState`.
#[derive(Debug)]
pub struct AppParts {
    pub service: SecretService,
    pub idempotency: Idempotency,
    /// Storage as a whole, for the readiness check.
    pub storage: Arc<dyn Lifecycle>,
    pub auth: Arc<dyn Authenticator>,
    pub limits: HttpLimits,
    /// Requests a second per credential; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
    /// The bytes of request bodies that may be in flight at once (`limits`).
    pub bodies: extract::BodyBudget,
    /// Writes every request's audit record; `None` when auditing is off (`--no-audit`).
    pub auditor: Option<Arc<audit::Auditor>>,
}

pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let auditor = state.auditor.clone();
    ops::router()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(unrecognized)
        .method_not_allowed_fallback(unrecognized)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn_with_state(
            middleware::Edge {
                limits,
                stripe: true,
                auditor,
            },
            middleware::stamp,
        ))
}

async fn unrecognized(request: Request) -> Response {
    ApiError::unrecognized_url(
        request.method().as_str(),
        request.uri().path(),
        ops::routes_sentence(),
    )
    .into_response()
}

pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message may hold anything; it is printed by the panic hook, not sent or logged.
    ApiError::internal("a request handler panicked").into_response()
}

async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.storage.check_ready().await {
        Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#),
        Err(err) => ApiError::unavailable(format!("readiness check failed: {err}")).into_response(),
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
