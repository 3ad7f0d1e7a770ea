//! Every error answer: one table of codes (`error_codes!`, after meilisearch's
//! `make_error_codes!`) binds each code to its HTTP status, Stripe error type and whether the
//! answer says `Stripe-Should-Retry`, and `ApiError` renders Stripe's JSON,
//! `{"error":{"type":...,"code":...,"message":...,"param":...}}`. Errors of the other layers
//! become `ApiError`s through the `From` conversions at the end of this file, so a handler only
//! writes `?`. An unexpected failure carries its cause inside the error; the request middleware
//! logs it once with the request id, and the client gets a generic sentence.
//!
//! `docs/errors.md` documents the table; a test holds the two equal.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secretstore_core::{
    CoreError, CursorKind, Denied, InvalidExpiry, InvalidValue, KeyError, RequestId, StoreError,
};
use serde::Serialize;

use crate::auth::AuthError;
use crate::form::FormError;

/// Stripe's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    IdempotencyError,
    ApiError,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::IdempotencyError => "idempotency_error",
            ErrorType::ApiError => "api_error",
        }
    }
}

macro_rules! error_codes {
    ($($variant:ident => $status:ident, $kind:ident, $code:expr, retry $retry:expr;)*) => {
        /// Every kind of error answer this server gives. The wire code is `None` where Stripe's
        /// answer carries none (401, an unknown route, 500).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            pub fn kind(self) -> ErrorType {
                match self {
                    $(Code::$variant => ErrorType::$kind,)*
                }
            }

            /// The `code` field on the wire.
            pub fn wire(self) -> Option<&'static str> {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// The `Stripe-Should-Retry` header, where the answer carries one.
            pub fn should_retry(self) -> Option<bool> {
                match self {
                    $(Code::$variant => $retry,)*
                }
            }
        }
    };
}

// An exhaustive list of the error answers of this server (docs/errors.md documents it).
error_codes! {
    ParameterMissing => BAD_REQUEST, InvalidRequestError, Some("parameter_missing"), retry None;
    ParameterUnknown => BAD_REQUEST, InvalidRequestError, Some("parameter_unknown"), retry None;
    StringEmpty => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_string_empty"), retry None;
    StringTooLong => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_string_too_long"), retry None;
    NotInteger => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_integer"), retry None;
    OutOfRange => BAD_REQUEST, InvalidRequestError, Some("parameter_out_of_range"), retry None;
    InvalidEnum => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_enum"), retry None;
    InvalidExpand => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_expand"), retry None;
    ParameterInvalid => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid"), retry None;
    BodyInvalid => BAD_REQUEST, InvalidRequestError, Some("body_invalid"), retry None;
    RequestMalformed => BAD_REQUEST, InvalidRequestError, Some("request_malformed"), retry None;
    InvalidEncoding => BAD_REQUEST, InvalidRequestError, Some("parameter_invalid_encoding"), retry None;
    ParametersExclusive => BAD_REQUEST, InvalidRequestError, Some("parameters_exclusive"), retry None;
    ScopeFull => BAD_REQUEST, InvalidRequestError, Some("scope_full"), retry None;
    IdempotencyKeyInvalid => BAD_REQUEST, InvalidRequestError, Some("idempotency_key_invalid"), retry None;
    // Stripe's own answer to a malformed Stripe-Version carries no code.
    ApiVersionInvalid => BAD_REQUEST, InvalidRequestError, None, retry None;
    IdempotencyKeyReused => BAD_REQUEST, IdempotencyError, Some("idempotency_key_reused"), retry None;
    AlreadyExists => BAD_REQUEST, InvalidRequestError, Some("resource_already_exists"), retry None;
    ReferenceMissing => BAD_REQUEST, InvalidRequestError, Some("reference_missing"), retry None;
    ConfirmationRequired => BAD_REQUEST, InvalidRequestError, Some("confirmation_required"), retry None;
    Unauthenticated => UNAUTHORIZED, InvalidRequestError, None, retry None;
    AccountInvalid => FORBIDDEN, InvalidRequestError, Some("account_invalid"), retry None;
    AccountAccessDenied => FORBIDDEN, InvalidRequestError, Some("account_access_denied"), retry None;
    AdminTokenInvalid => FORBIDDEN, InvalidRequestError, Some("admin_token_invalid"), retry None;
    PermissionDenied => FORBIDDEN, InvalidRequestError, Some("permission_denied"), retry None;
    ScopeAccessDenied => FORBIDDEN, InvalidRequestError, Some("scope_access_denied"), retry None;
    ResourceMissing => NOT_FOUND, InvalidRequestError, Some("resource_missing"), retry None;
    UnrecognizedUrl => NOT_FOUND, InvalidRequestError, None, retry None;
    RequestTimeout => REQUEST_TIMEOUT, InvalidRequestError, Some("request_timeout"), retry None;
    IdempotencyKeyInUse => CONFLICT, IdempotencyError, Some("idempotency_key_in_use"), retry Some(true);
    RequestTooLarge => PAYLOAD_TOO_LARGE, InvalidRequestError, Some("request_too_large"), retry None;
    UriTooLong => URI_TOO_LONG, InvalidRequestError, Some("uri_too_long"), retry None;
    ContentTypeInvalid => UNSUPPORTED_MEDIA_TYPE, InvalidRequestError, Some("content_type_invalid"), retry None;
    RateLimit => TOO_MANY_REQUESTS, InvalidRequestError, Some("rate_limit"), retry Some(true);
    HeadersTooLarge => REQUEST_HEADER_FIELDS_TOO_LARGE, InvalidRequestError, Some("headers_too_large"), retry None;
    // A retry does not cure what this server reports as a 500 (a stored value that fails to
    // open, a bug), and nothing is kept for it under an Idempotency-Key, so a retry would run
    // the failing request again: the SDKs, which retry every 5xx unless told otherwise, are told.
    Internal => INTERNAL_SERVER_ERROR, ApiError, None, retry Some(false);
    TooManyConnections => SERVICE_UNAVAILABLE, ApiError, Some("too_many_connections"), retry Some(true);
    ServerBusy => SERVICE_UNAVAILABLE, ApiError, Some("server_busy"), retry Some(true);
    StorageUnavailable => SERVICE_UNAVAILABLE, ApiError, Some("storage_unavailable"), retry Some(true);
    AuditUnavailable => SERVICE_UNAVAILABLE, ApiError, Some("audit_unavailable"), retry Some(true);
}

/// An error answer, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub param: Option<String>,
    /// Sets `Retry-After` (seconds).
    pub retry_after: Option<HeaderValue>,
    /// What really went wrong, for the log only (never rendered): set on unexpected failures.
    pub cause: Option<String>,
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
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            cause: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Names the offending parameter. A client-chosen name is cut short, so an answer stays
    /// small (and within the spec's 5,000 characters) whatever was sent.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(shorten(&param.into()));
        self
    }

    /// Keeps what really went wrong for the log.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn missing(param: &str) -> Self {
        Self::new(
            Code::ParameterMissing,
            format!("Missing required param: {param}."),
        )
        .with_param(param)
    }

    pub fn unknown(param: &str) -> Self {
        Self::new(
            Code::ParameterUnknown,
            format!("Received unknown parameter: {}", shorten(param)),
        )
        .with_param(param)
    }

    pub fn empty_string(param: &str) -> Self {
        Self::new(
            Code::StringEmpty,
            format!(
                "You passed an empty string for '{param}'. We assume empty values are an attempt \
                 to unset a parameter; however '{param}' cannot be unset. You should remove \
                 '{param}' from your request or supply a non-empty value."
            ),
        )
        .with_param(param)
    }

    pub fn not_integer(param: &str, value: &str) -> Self {
        Self::new(
            Code::NotInteger,
            format!("Invalid integer: {}", shorten(value)),
        )
        .with_param(param)
    }

    pub fn out_of_range(param: &str, message: String) -> Self {
        Self::new(Code::OutOfRange, message).with_param(param)
    }

    /// A parameter of the wrong shape (a string where an object belongs, and the like).
    pub fn invalid(param: &str, message: String) -> Self {
        Self::new(Code::ParameterInvalid, message).with_param(param)
    }

    /// A string, id or other value that is not what the parameter takes.
    pub fn invalid_value(param: &str, problem: InvalidValue) -> Self {
        match problem {
            InvalidValue::Empty => Self::empty_string(param),
            InvalidValue::TooLong { max } => Self::new(
                Code::StringTooLong,
                format!("Invalid {param}: must be at most {max} characters long."),
            )
            .with_param(param),
            InvalidValue::Malformed => Self::invalid(
                param,
                format!("Invalid {param}: the value is not well formed."),
            ),
        }
    }

    pub fn not_found(param: &str, id: &str) -> Self {
        Self::new(
            Code::ResourceMissing,
            format!("No such secret: '{}'", shorten(id)),
        )
        .with_param(param)
    }

    /// Stripe's answer to a path or method it does not serve; `routes` lists what it does.
    pub fn unrecognized_url(method: &str, path: &str, routes: &str) -> Self {
        Self::new(
            Code::UnrecognizedUrl,
            format!(
                "Unrecognized request URL ({method}: {}). This server answers {routes}.",
                shorten(path)
            ),
        )
    }

    /// Stripe's answer to a `Stripe-Version` that is not a version; `given` is the header's
    /// text, when it is printable.
    pub fn api_version_invalid(given: Option<&str>) -> Self {
        let shown = given.map_or_else(|| "(not printable ASCII)".to_owned(), shorten);
        Self::new(
            Code::ApiVersionInvalid,
            format!(
                "Invalid Stripe API version: {shown}. A version is a date, as in 2024-06-20, \
                 optionally followed by a release name, as in 2025-03-31.basil; or leave \
                 Stripe-Version out."
            ),
        )
    }

    /// An unexpected failure: the cause is for the log, the client gets a sentence.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::Internal,
            "An unexpected error occurred on the server. It has been logged with this request's \
             Request-Id; retrying will not help if it keeps happening.",
        )
        .with_cause(cause)
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::StorageUnavailable,
            "The secret store cannot accept this request right now (its storage is unavailable); \
             nothing stored was affected. Retry later.",
        )
        .with_cause(cause)
    }

    /// The request's audit record could not be written, so it did not happen (docs/audit.md).
    pub fn audit_unavailable(cause: impl std::fmt::Display) -> Self {
        Self::new(
            Code::AuditUnavailable,
            "The secret store cannot record this request in its audit log right now, so it did \
             not carry it out. Retry later.",
        )
        .with_cause(cause)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                kind: self.code.kind(),
                code: self.code.wire(),
                message: &self.message,
                param: self.param.as_deref(),
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":{"type":"api_error"}}"#.to_vec())
    }

    /// The whole HTTP/1.1 answer as bytes, closing the connection: for refusals written where
    /// there is no HTTP machinery to use (the connection limit, before any request is read;
    /// hyper's own refusals of requests it cannot parse).
    pub fn to_http_bytes(&self, request_id: RequestId) -> Vec<u8> {
        let body = self.to_json();
        let status = self.status();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
             request-id: {request_id}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        if let Some(retry) = self.code.should_retry() {
            head.push_str(&format!("stripe-should-retry: {retry}\r\n"));
        }
        if let Some(after) = self.retry_after.as_ref().and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("retry-after: {after}\r\n"));
        }
        head.push_str(&format!(
            "connection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
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
            self.status(),
            [(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.to_json(),
        )
            .into_response();
        if let Some(retry) = self.code.should_retry() {
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
        // For the request middleware: it logs the code and, once, the cause.
        response.extensions_mut().insert(self);
        response
    }
}

impl From<FormError> for ApiError {
    fn from(err: FormError) -> Self {
        let code = match err {
            FormError::NotUtf8 => Code::InvalidEncoding,
            FormError::TooManyPairs
            | FormError::TooDeep { .. }
            | FormError::TooManyItems { .. }
            | FormError::Conflict { .. }
            | FormError::EmptyName => Code::ParameterInvalid,
        };
        let out = Self::new(code, err.message());
        match err.param() {
            Some(p) => out.with_param(p),
            None => out,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        crate::metrics::auth_failed(&err);
        match err {
            AuthError::Missing => Self::new(
                Code::Unauthenticated,
                "You did not provide an API key. You need to provide your API key in the \
                 Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
                 YOUR_SECRET_KEY'), or HTTP Basic auth with the key as the user name.",
            ),
            AuthError::InvalidKey { masked } => Self::new(
                Code::Unauthenticated,
                format!(
                    "Invalid API Key provided: {masked}. A key starts with sk_test_, sk_live_, \
                     rk_test_ or rk_live_, followed by letters, digits and underscores."
                ),
            ),
            AuthError::Unknown { masked } => Self::new(
                Code::Unauthenticated,
                format!("Invalid API Key provided: {masked}."),
            ),
            AuthError::Ended { masked } => Self::new(
                Code::Unauthenticated,
                format!(
                    "The API key {masked} has been revoked or has expired (a rolled key works \
                     only for its grace period; a user session only for its lifetime)."
                ),
            ),
            AuthError::AccountDenied { masked, account } => Self::new(
                Code::AccountAccessDenied,
                format!(
                    "The provided key '{masked}' does not have access to account '{}' (or that \
                     account does not exist).",
                    shorten(&account)
                ),
            ),
            AuthError::Storage(err) => err.into(),
            AuthError::AccountInvalid => Self::new(
                Code::AccountInvalid,
                "The Stripe-Account header must name an account, as in acct_1032D82eZvKYlo2C.",
            ),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Permission { shown, permission } => Self::new(
                Code::PermissionDenied,
                format!(
                    "The provided key '{shown}' does not have the {} permission this request \
                     needs.",
                    permission.as_str()
                ),
            ),
            Denied::Scope { shown } => Self::new(
                Code::ScopeAccessDenied,
                format!(
                    "The provided key '{shown}' is a user session: it may use only the account \
                     scope and its own user's scope."
                ),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        secretstore_core::metrics::storage_error(&err);
        match err {
            StoreError::ScopeFull { max } => Self::new(
                Code::ScopeFull,
                format!(
                    "This scope already holds the maximum of {max} secrets. Delete one, or \
                     replace an existing secret by setting its name."
                ),
            )
            .with_param("name"),
            StoreError::CursorNotFound { kind, id } => {
                let param = match kind {
                    CursorKind::StartingAfter => "starting_after",
                    CursorKind::EndingBefore => "ending_before",
                };
                Self::not_found(param, &id)
            }
            StoreError::AlreadyExists(what) => Self::new(
                Code::AlreadyExists,
                format!("The {what} exists already; choose another id, or leave the id out."),
            ),
            StoreError::Missing(what) => Self::new(
                Code::ReferenceMissing,
                format!("The {what} does not exist; create it first."),
            ),
            StoreError::Unavailable(why) => Self::unavailable(why),
            // Like an audit route on a server without an audit log: there is nothing here to
            // answer with, and the sentence says where to look instead.
            StoreError::Unsupported(why) => Self::new(Code::ResourceMissing, why),
            other @ (StoreError::Seal(_) | StoreError::Internal(_)) => Self::internal(other),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::NotFound { name } => Self::not_found("name", name.as_str()),
            CoreError::InvalidExpiry(InvalidExpiry::NotInFuture) => Self::out_of_range(
                "expires_at",
                "Invalid expires_at: must be a Unix timestamp in the future.".to_owned(),
            ),
            CoreError::InvalidExpiry(InvalidExpiry::TooFar) => Self::out_of_range(
                "expires_at",
                "Invalid expires_at: must be at most 100 years in the future.".to_owned(),
            ),
            CoreError::Store(err) => err.into(),
            other @ CoreError::Unsealable { .. } => {
                secretstore_core::metrics::payload_unsealable();
                Self::internal(other)
            }
            CoreError::Key(KeyError::Store(err)) => err.into(),
            other @ CoreError::Key(_) => Self::internal(other),
        }
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
        let internal = ApiError::internal("disk on fire");
        let json: serde_json::Value = serde_json::from_slice(&internal.to_json()).unwrap();
        assert_eq!(json["error"]["type"], "api_error");
        assert!(json["error"].get("param").is_none());
        assert!(!String::from_utf8_lossy(&internal.to_json()).contains("fire"));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let err = ApiError::not_found("name", &"x".repeat(5000));
        assert!(err.message.len() < 300);
    }

    /// `(status, type, code or "—", its Stripe-Should-Retry)` of every row of the table in
    /// docs/errors.md.
    fn documented_rows() -> Vec<(u16, String, String, Option<bool>)> {
        const DOC: &str = include_str!("../../../docs/errors.md");
        DOC.lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect();
                let status = cells.first()?.parse::<u16>().ok()?;
                Some((
                    status,
                    cells.get(1)?.to_string(),
                    cells.get(2)?.trim_matches('`').to_string(),
                    retry_of(cells.get(3)?),
                ))
            })
            .collect()
    }

    /// The `Stripe-Should-Retry` a row's "when" cell says the answer carries.
    fn retry_of(when: &str) -> Option<bool> {
        let says = |value: bool| when.contains(&format!("`Stripe-Should-Retry: {value}`"));
        match (says(true), says(false)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }

    #[test]
    fn docs_errors_md_documents_exactly_the_table() {
        let mut documented = documented_rows();
        let mut table: Vec<(u16, String, String, Option<bool>)> = Code::ALL
            .iter()
            .map(|code| {
                (
                    code.status().as_u16(),
                    code.kind().as_str().to_owned(),
                    code.wire().unwrap_or("—").to_owned(),
                    code.should_retry(),
                )
            })
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(
            documented, table,
            "docs/errors.md and error_codes! disagree (status, type, code, Stripe-Should-Retry)"
        );
    }

    #[test]
    fn every_server_failure_says_whether_to_retry() {
        // The SDKs retry a 5xx that says nothing; each one decides instead.
        for code in Code::ALL {
            if code.status().is_server_error() {
                assert!(code.should_retry().is_some(), "{code:?}");
            }
        }
    }

    #[test]
    fn wire_codes_are_unique() {
        let mut codes: Vec<_> = Code::ALL.iter().filter_map(|c| c.wire()).collect();
        let all = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all);
    }

    #[test]
    fn canned_answers_declare_their_exact_length() {
        let mut err = ApiError::new(Code::TooManyConnections, "Too many.");
        err.retry_after = Some(HeaderValue::from_static("1"));
        let bytes = err.to_http_bytes(crate::middleware::new_request_id());
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("stripe-should-retry: true"), "{head}");
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(head.contains("\r\nrequest-id: req_"), "{head}");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
