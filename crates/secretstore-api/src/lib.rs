//! secretstore's HTTP layer: Stripe's Secret Store wire format on axum. `router` builds the whole
//! service (the four operations, health checks, JSON answers for every unknown route, method,
//! oversized, slow or malformed request, and panics), and `serve` runs it with bounds on what
//! each client may hold until a shutdown signal, finishing in-flight requests first. Tests build the router in-process; the binary serves it.

pub mod auth;
pub mod error;
pub mod form;
pub mod middleware;
pub mod params;
pub mod rate_limit;
pub mod render;
mod secrets;
mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use secretstore_core::SecretService;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::{Authenticator, DevAuthenticator};
pub use error::ApiError;
pub use rate_limit::RateLimit;
pub use server::{serve, ServerLimits};

/// The largest valid request is three 5,000-character fields of 4-byte characters, each byte
/// percent-encoded (12 bytes a character): 180,000 bytes plus names and brackets.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// A body not received in full within this time is refused with 408.
    pub body_timeout: Duration,
    /// Requests whose headers add up to more bytes than this are refused with 431.
    pub max_header_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        let limits = ServerLimits::default();
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: limits.body_timeout,
            max_header_bytes: limits.max_header_bytes,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub service: SecretService,
    pub auth: Arc<dyn Authenticator>,
    pub config: ApiConfig,
    /// Requests a second per credential; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
}

pub fn router(state: AppState) -> Router {
    let config = state.config;
    Router::new()
        .route("/v1/apps/secrets", post(secrets::set).get(secrets::list))
        .route("/v1/apps/secrets/find", get(secrets::find))
        .route("/v1/apps/secrets/delete", post(secrets::delete))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(unrecognized)
        .method_not_allowed_fallback(unrecognized)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn_with_state(
            config,
            middleware::stamp,
        ))
}

async fn unrecognized(request: Request) -> Response {
    ApiError::unrecognized_url(request.method().as_str(), request.uri().path()).into_response()
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message may hold anything; it is printed by the panic hook, not sent.
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.service.store().check_ready().await {
        Ok(()) => json(StatusCode::OK, r#"{"status":"ready"}"#),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            ApiError::unavailable().into_response()
        }
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
