//! The one mapping from everything that can go wrong to Stripe's error JSON:
//! `{"error":{"type":...,"code":...,"message":...,"param":...}}`. Every non-2xx answer is built
//! here. Internal failures are logged with the request id and answered with a generic sentence;
//! their detail never reaches the client.
//!
//! The codes this server answers, beside Stripe's own (`parameter_missing`, `parameter_unknown`,
//! `parameter_invalid_string_empty`, `parameter_invalid_integer`, `parameters_exclusive`,
//! `resource_missing`, `idempotency_key_in_use`), are listed in `docs/errors.md`; they are stable.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secretstore_core::{CoreError, CursorKind, InvalidExpiry, InvalidValue};
use serde::Serialize;

use crate::form::FormError;

/// Stripe's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    IdempotencyError,
    ApiError,
}

/// An error answer, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    /// Sets `Stripe-Should-Retry`: true for failures a retry may cure (storage unavailable),
    /// false for ones it cannot.
    pub should_retry: Option<bool>,
    /// Sets `Retry-After` (seconds).
    pub retry_after: Option<HeaderValue>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: ErrorType,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: Option<&'static str>,
        message: String,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message,
            param: None,
            should_retry: None,
            retry_after: None,
        }
    }

    pub fn invalid(code: &'static str, message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            Some(code),
            message,
        )
    }

    /// Names the offending parameter. A client-chosen name is cut short, so an answer stays
    /// small (and within the spec's 5,000 characters) whatever was sent.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(shorten(&param.into()));
        self
    }

    pub fn missing(param: &str) -> Self {
        Self::invalid(
            "parameter_missing",
            format!("Missing required param: {param}."),
        )
        .with_param(param)
    }

    pub fn unknown(param: &str) -> Self {
        Self::invalid(
            "parameter_unknown",
            format!("Received unknown parameter: {}", shorten(param)),
        )
        .with_param(param)
    }

    pub fn empty_string(param: &str) -> Self {
        Self::invalid(
            "parameter_invalid_string_empty",
            format!(
                "You passed an empty string for '{param}'. We assume empty values are an attempt \
                 to unset a parameter; however '{param}' cannot be unset. You should remove \
                 '{param}' from your request or supply a non-empty value."
            ),
        )
        .with_param(param)
    }

    pub fn not_integer(param: &str, value: &str) -> Self {
        Self::invalid(
            "parameter_invalid_integer",
            format!("Invalid integer: {}", shorten(value)),
        )
        .with_param(param)
    }

    pub fn out_of_range(param: &str, message: String) -> Self {
        Self::invalid("parameter_out_of_range", message).with_param(param)
    }

    /// A string, id or other value that is not what the parameter takes.
    pub fn invalid_value(param: &str, problem: InvalidValue) -> Self {
        match problem {
            InvalidValue::Empty => Self::empty_string(param),
            InvalidValue::TooLong { max } => Self::invalid(
                "parameter_invalid_string_too_long",
                format!("Invalid {param}: must be at most {max} characters long."),
            )
            .with_param(param),
            InvalidValue::Malformed => Self::invalid(
                "parameter_invalid",
                format!("Invalid {param}: the value is not well formed."),
            )
            .with_param(param),
        }
    }

    pub fn not_found(param: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            Some("resource_missing"),
            format!("No such secret: '{}'", shorten(id)),
        )
        .with_param(param)
    }

    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            None,
            format!(
                "Unrecognized request URL ({method}: {}). This server answers POST and GET on \
                 /v1/apps/secrets, GET on /v1/apps/secrets/find and POST on \
                 /v1/apps/secrets/delete.",
                shorten(path)
            ),
        )
    }

    /// An unexpected failure: the detail is for the log (the caller logs it with the request id),
    /// the client gets a sentence.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ApiError,
            None,
            "An unexpected error occurred on the server. It has been logged with this request's \
             Request-Id; retrying will not help if it keeps happening."
                .to_owned(),
        )
    }

    pub fn unavailable() -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ApiError,
            Some("storage_unavailable"),
            "The secret store cannot accept this request right now (its storage is unavailable); \
             nothing stored was affected. Retry later."
                .to_owned(),
        );
        err.should_retry = Some(true);
        err
    }

    pub fn from_form(err: &FormError) -> Self {
        let code = match err {
            FormError::TooManyPairs
            | FormError::TooDeep { .. }
            | FormError::TooManyItems { .. } => "parameter_invalid",
            FormError::NotUtf8 => "parameter_invalid_encoding",
            FormError::Conflict { .. } | FormError::EmptyName => "parameter_invalid",
        };
        let out = Self::invalid(code, err.message());
        match err.param() {
            Some(p) => out.with_param(p),
            None => out,
        }
    }

    /// Maps a service error. Returns the answer and, for failures the client must not see the
    /// detail of, the detail to log.
    pub fn from_core(err: CoreError) -> (Self, Option<String>) {
        match err {
            CoreError::NotFound { name } => (Self::not_found("name", name.as_str()), None),
            CoreError::CursorNotFound { kind, id } => {
                let param = match kind {
                    CursorKind::StartingAfter => "starting_after",
                    CursorKind::EndingBefore => "ending_before",
                };
                (Self::not_found(param, &id), None)
            }
            CoreError::ScopeFull { max } => (
                Self::invalid(
                    "scope_full",
                    format!(
                        "This scope already holds the maximum of {max} secrets. Delete one, or \
                         replace an existing secret by setting its name."
                    ),
                )
                .with_param("name"),
                None,
            ),
            CoreError::InvalidExpiry(InvalidExpiry::NotInFuture) => (
                Self::out_of_range(
                    "expires_at",
                    "Invalid expires_at: must be a Unix timestamp in the future.".to_owned(),
                ),
                None,
            ),
            CoreError::InvalidExpiry(InvalidExpiry::TooFar) => (
                Self::out_of_range(
                    "expires_at",
                    "Invalid expires_at: must be at most 100 years in the future.".to_owned(),
                ),
                None,
            ),
            CoreError::Unavailable(why) => (Self::unavailable(), Some(why)),
            other @ (CoreError::Unsealable { .. }
            | CoreError::KeptAnswerUnsealable(_)
            | CoreError::WrongRootKey { .. }
            | CoreError::Crypto(_)
            | CoreError::Storage(_)) => (Self::internal(), Some(other.to_string())),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                kind: self.kind,
                code: self.code,
                message: &self.message,
                param: self.param.as_deref(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":{"type":"api_error"}}"#.to_vec())
    }
}

/// Values echoed in messages are cut short: a 5,000-character name makes a useless sentence.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 200;
    match value.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_owned(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.to_json(),
        )
            .into_response();
        if let Some(retry) = self.should_retry {
            response.headers_mut().insert(
                "stripe-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        if let Some(after) = &self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, after.clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_stripe_shape_without_null_fields() {
        let json: serde_json::Value =
            serde_json::from_slice(&ApiError::missing("scope[type]").to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "type": "invalid_request_error",
                "code": "parameter_missing",
                "message": "Missing required param: scope[type].",
                "param": "scope[type]"
            }})
        );
        let json: serde_json::Value =
            serde_json::from_slice(&ApiError::internal().to_json()).unwrap();
        assert_eq!(json["error"]["type"], "api_error");
        assert!(json["error"].get("param").is_none());
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let err = ApiError::not_found("name", &"x".repeat(5000));
        assert!(err.message.len() < 300);
    }
}
