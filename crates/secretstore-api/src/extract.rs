//! The `StripeForm` extractor: a request's parameters as Stripe's API takes them. The query
//! string always counts; on a POST the body is merged after it (early Stripe Apps code sends
//! `scope` and `name` in the query of a POST). The body is read within the limits (size, time)
//! and only as `application/x-www-form-urlencoded`; each refusal is its own documented error.
//! The body may hold a payload: it is decoded where it lies and wiped afterwards when this is
//! its only holder (`WipedBody`).

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use tokio::sync::{Semaphore, SemaphorePermit};
use zeroize::Zeroize as _;

use crate::error::{ApiError, Code};
use crate::form::Form;
use crate::AppState;

/// The decoded parameters of a request, with what identifies the request for idempotency.
#[derive(Debug)]
pub struct StripeForm {
    pub form: Form,
    pub method: Method,
    /// The request's URI (cheap to keep: it shares the request's buffer).
    pub uri: Uri,
}

fn is_form_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A request body, wiped when dropped if nothing else holds its memory: true of a body
/// collected from several chunks, or handed over whole (as the router tests do). A body that
/// hyper read in one piece shares hyper's read buffer, which only hyper frees; that copy is out
/// of reach here.
struct WipedBody(Bytes);

impl Drop for WipedBody {
    fn drop(&mut self) {
        if let Ok(mut only) = std::mem::take(&mut self.0).try_into_mut() {
            only[..].zeroize();
        }
    }
}

/// The bytes of request bodies that may be received and decoded at once, over every
/// connection: without it, thousands of clients each stalling half-way through a body of the
/// largest size hold gigabytes. A body reserves what it declares (or, sent without a length,
/// the most a body may be) before its first byte is read, and gives it back once decoded.
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    fn reserve(&self, bytes: usize) -> Result<SemaphorePermit<'_>, ApiError> {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.0.try_acquire_many(bytes).map_err(|_| {
            let mut err = ApiError::new(
                Code::ServerBusy,
                "The server is receiving as many request bodies as it takes at once. Retry \
                 shortly.",
            );
            err.retry_after = Some(HeaderValue::from_static("1"));
            err
        })
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        Code::RequestTooLarge,
        format!("The request body is larger than this server's limit of {max} bytes."),
    )
}

impl FromRequest<AppState> for StripeForm {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limits = &state.limits;
        let (parts, body) = request.into_parts();
        let mut form = Form::new(parts.headers.contains_key(crate::headers::IDEMPOTENCY_KEY));
        if let Some(query) = parts.uri.query() {
            form.extend_from(query.as_bytes())?;
        }
        if parts.method == Method::POST {
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
                return Err(too_large(limits.max_body_bytes));
            }
            // Held until the form is decoded, when the body's bytes are gone (wiped).
            let _reserved = state
                .bodies
                .reserve(declared.map_or(limits.max_body_bytes, |n| n as usize))?;
            let read = axum::body::to_bytes(body, limits.max_body_bytes);
            let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
                Ok(Ok(bytes)) => WipedBody(bytes),
                Ok(Err(err)) => {
                    let inner = err.into_inner();
                    if inner
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        return Err(too_large(limits.max_body_bytes));
                    }
                    return Err(ApiError::new(
                        Code::BodyInvalid,
                        "The request body could not be read: its chunked encoding is malformed \
                         or the connection closed before it ended.",
                    ));
                }
                Err(_) => {
                    return Err(ApiError::new(
                        Code::RequestTimeout,
                        format!(
                            "The request body was not received within {} seconds.",
                            limits.body_timeout.as_secs()
                        ),
                    ))
                }
            };
            if !bytes.0.is_empty() {
                if !is_form_content_type(&parts.headers) {
                    return Err(ApiError::new(
                        Code::ContentTypeInvalid,
                        "POST bodies must be sent with Content-Type: \
                         application/x-www-form-urlencoded, as Stripe's API takes them.",
                    ));
                }
                form.extend_from(&bytes.0)?;
            }
        }
        Ok(StripeForm {
            form,
            method: parts.method,
            uri: parts.uri,
        })
    }
}
