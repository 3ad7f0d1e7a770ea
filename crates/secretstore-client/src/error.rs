//! What a call can fail with. The server's answer to a refused request is Stripe's error JSON
//! (`{"error":{"type":...,"code":...,"message":...,"param":...}}`), turned here into a typed
//! [`ApiError`] that programs can branch on by its stable `code`; everything that kept an answer
//! from arriving (the network, a timeout, an answer that is not the expected JSON, an argument
//! that cannot be sent) has its own variant. No variant ever holds the API key or a payload.

use std::fmt;
use std::time::Duration;

/// Everything a [`Client`](crate::Client) call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request with Stripe's error JSON (after any retries).
    #[error("{0}")]
    Api(Box<ApiError>),

    /// The server could not be reached, or the connection broke before the answer was read.
    #[error("could not reach {url}: {message}")]
    Network {
        /// The base URL the client talks to (never a query string).
        url: String,
        /// The transport's explanation, causes included.
        message: String,
    },

    /// No complete answer arrived within the client's timeout.
    #[error("no answer from {url} within {after:?}")]
    Timeout {
        /// The base URL the client talks to.
        url: String,
        /// The per-attempt timeout that ran out.
        after: Duration,
    },

    /// A 2xx answer whose body is not the object the operation returns. Its content is not
    /// echoed (it may hold a payload); only where the JSON went wrong.
    #[error("the answer (HTTP {status}) is not the JSON this operation returns: {message}")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// Where decoding failed (line and column), never the text itself.
        message: String,
    },

    /// Something given to the client cannot be sent at all (an empty API key, a base URL that
    /// does not parse, a header value with control characters).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The server's error, if the server answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(err) => Some(err),
            _ => None,
        }
    }

    /// The server's stable error code (`resource_missing`, `parameter_missing`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|err| err.code.as_deref())
    }

    /// The HTTP status of the server's error answer, if the server answered.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|err| err.status)
    }

    /// True when the secret (or a list cursor) does not exist: 404 `resource_missing`.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// True for network failures and timeouts: the request may or may not have run.
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Network { .. } | Error::Timeout { .. })
    }
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Self {
        Error::Api(Box::new(err))
    }
}

/// Stripe's error `type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    /// The request was wrong: a parameter, the key, a missing secret.
    InvalidRequestError,
    /// An `Idempotency-Key` was reused with other parameters, or is still in use.
    IdempotencyError,
    /// The server failed; the request may be retried.
    ApiError,
    /// Stripe's type for declined cards; never sent for secrets, kept for completeness.
    CardError,
    /// A type this client does not know, kept verbatim.
    Other(String),
}

impl ErrorType {
    /// Parses Stripe's wire form (`invalid_request_error`, ...).
    pub fn parse(value: &str) -> Self {
        match value {
            "invalid_request_error" => ErrorType::InvalidRequestError,
            "idempotency_error" => ErrorType::IdempotencyError,
            "api_error" => ErrorType::ApiError,
            "card_error" => ErrorType::CardError,
            other => ErrorType::Other(other.to_owned()),
        }
    }

    /// Stripe's wire form.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::IdempotencyError => "idempotency_error",
            ErrorType::ApiError => "api_error",
            ErrorType::CardError => "card_error",
            ErrorType::Other(other) => other,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal from the server, as Stripe's error JSON describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status (400, 401, 403, 404, 409, 429, 5xx, ...).
    pub status: u16,
    /// Stripe's error `type`.
    pub kind: ErrorType,
    /// The stable machine-readable code (`resource_missing`, `parameter_unknown`, ...). Some
    /// errors (a bad API key, an unknown URL) have none.
    pub code: Option<String>,
    /// A sentence meant for a person.
    pub message: String,
    /// The offending parameter in its wire form (`scope[user]`), when there is one.
    pub param: Option<String>,
    /// The answer's `Request-Id`, which the server's log is keyed by.
    pub request_id: Option<String>,
}

impl ApiError {
    /// 404 `resource_missing`: no live secret with that name in that scope, or a cursor that
    /// names no secret of the scope.
    pub fn is_not_found(&self) -> bool {
        self.status == 404 && self.code.as_deref() == Some("resource_missing")
    }

    /// 401: no key, or one the server does not accept.
    pub fn is_authentication(&self) -> bool {
        self.status == 401
    }

    /// 403: the key may not do this, or may not act for the `Stripe-Account` it named.
    pub fn is_permission(&self) -> bool {
        self.status == 403
    }

    /// 429: too many requests.
    pub fn is_rate_limited(&self) -> bool {
        self.status == 429
    }

    /// 400 or 409 `idempotency_error`.
    pub fn is_idempotency(&self) -> bool {
        self.kind == ErrorType::IdempotencyError
    }

    /// Builds the error from a non-2xx answer. A body that is not Stripe's error JSON (a proxy's
    /// HTML page, say) still gives an error that says what arrived, without echoing it.
    pub(crate) fn from_answer(status: u16, request_id: Option<String>, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(rename = "type")]
            kind: Option<String>,
            code: Option<String>,
            message: Option<String>,
            param: Option<String>,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => ApiError {
                status,
                kind: ErrorType::parse(error.kind.as_deref().unwrap_or("api_error")),
                code: error.code.filter(|code| !code.is_empty()),
                message: error
                    .message
                    .unwrap_or_else(|| format!("The server answered HTTP {status}.")),
                param: error.param.filter(|param| !param.is_empty()),
                request_id,
            },
            Err(_) => ApiError {
                status,
                kind: if status >= 500 {
                    ErrorType::ApiError
                } else {
                    ErrorType::InvalidRequestError
                },
                code: None,
                message: format!(
                    "The server answered HTTP {status} without Stripe's error JSON; is the base \
                     URL right?"
                ),
                param: None,
                request_id,
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}, {}", self.message, self.status, self.kind)?;
        if let Some(code) = &self.code {
            write!(f, ", code {code}")?;
        }
        if let Some(param) = &self.param {
            write!(f, ", param {param}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, ", request {id}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stripe_error_json() {
        let body = br#"{"error":{"type":"invalid_request_error","code":"resource_missing",
            "message":"No such secret: 'x'","param":"name"}}"#;
        let err = ApiError::from_answer(404, Some("req_1".into()), body);
        assert!(err.is_not_found());
        assert_eq!(err.kind, ErrorType::InvalidRequestError);
        assert_eq!(err.param.as_deref(), Some("name"));
        assert_eq!(
            err.to_string(),
            "No such secret: 'x' (HTTP 404, invalid_request_error, code resource_missing, \
             param name, request req_1)"
        );
    }

    #[test]
    fn a_body_that_is_not_error_json_still_gives_an_error() {
        let err = ApiError::from_answer(502, None, b"<html>bad gateway</html>");
        assert_eq!(err.kind, ErrorType::ApiError);
        assert!(!err.message.contains("html"));
    }

    #[test]
    fn unknown_types_are_kept() {
        assert_eq!(
            ErrorType::parse("brand_new_error"),
            ErrorType::Other("brand_new_error".into())
        );
        assert_eq!(
            ErrorType::parse("idempotency_error").as_str(),
            "idempotency_error"
        );
    }
}
