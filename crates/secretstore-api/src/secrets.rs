//! The four Secret Store operations over HTTP. One pipeline serves them all, in Stripe's order:
//! authenticate, check permission, read and decode parameters (query merged with the body on a
//! POST), validate, then run, under the request's `Idempotency-Key` when a POST carries one.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use secretstore_core::limits::MAX_IDEMPOTENCY_KEY_LEN;
use secretstore_core::{IdempotencyClaim, IdempotencyKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::auth::{api_key_from_headers, AuthError, Principal};
use crate::error::{ApiError, ErrorType};
use crate::form::Form;
use crate::middleware::RequestId;
use crate::params::{self, Operation, Parsed};
use crate::{render, AppState};

/// A successful answer: status and JSON body (which may hold a payload, so it is wiped once
/// copied into the response).
struct Answer {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
}

pub async fn set(State(state): State<AppState>, request: Request) -> Response {
    run(state, Operation::Set, request).await
}

pub async fn find(State(state): State<AppState>, request: Request) -> Response {
    run(state, Operation::Find, request).await
}

pub async fn delete(State(state): State<AppState>, request: Request) -> Response {
    run(state, Operation::Delete, request).await
}

pub async fn list(State(state): State<AppState>, request: Request) -> Response {
    run(state, Operation::List, request).await
}

async fn run(state: AppState, operation: Operation, request: Request) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    match pipeline(&state, operation, request, &request_id).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn auth_error(err: AuthError) -> ApiError {
    let unauthorized = |message: String| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::InvalidRequestError,
            None,
            message,
        )
    };
    let forbidden = |code: &'static str, message: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorType::InvalidRequestError,
            Some(code),
            message,
        )
    };
    match err {
        AuthError::Missing => unauthorized(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'), or HTTP Basic auth with the key as the user name."
                .to_owned(),
        ),
        AuthError::InvalidKey { masked } => unauthorized(format!(
            "Invalid API Key provided: {masked}. A key starts with sk_test_, sk_live_, rk_test_ \
             or rk_live_, followed by letters, digits and underscores."
        )),
        AuthError::AccountInvalid => forbidden(
            "account_invalid",
            "The Stripe-Account header must name an account, as in acct_1032D82eZvKYlo2C."
                .to_owned(),
        ),
        AuthError::AccountDenied { masked, account } => forbidden(
            "account_access_denied",
            format!(
                "The provided key '{masked}' does not have access to account '{account}' (or \
                 that account does not exist)."
            ),
        ),
        AuthError::PermissionDenied { masked, permission } => forbidden(
            "permission_denied",
            format!(
                "The provided key '{masked}' does not have the {permission} permission this \
                 request needs."
            ),
        ),
    }
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

async fn read_form(
    state: &AppState,
    request: Request,
) -> Result<(http::request::Parts, Form), ApiError> {
    let (parts, body) = request.into_parts();
    let mut form = Form::default();
    if let Some(query) = parts.uri.query() {
        form.extend_from(query.as_bytes())
            .map_err(|e| ApiError::from_form(&e))?;
    }
    if parts.method == Method::POST {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequestError,
                Some("request_too_large"),
                format!(
                    "The request body is larger than this server's limit of {} bytes.",
                    state.config.max_body_bytes
                ),
            )
        };
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.config.max_body_bytes as u64) {
            return Err(too_large());
        }
        let read = axum::body::to_bytes(body, state.config.max_body_bytes);
        let bytes = match tokio::time::timeout(state.config.body_timeout, read).await {
            Ok(Ok(bytes)) => Zeroizing::new(bytes.to_vec()),
            Ok(Err(err)) => {
                let inner = err.into_inner();
                if inner
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Err(too_large());
                }
                return Err(ApiError::invalid(
                    "body_invalid",
                    "The request body could not be read: its chunked encoding is malformed or \
                     the connection closed before it ended."
                        .to_owned(),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorType::InvalidRequestError,
                    Some("request_timeout"),
                    format!(
                        "The request body was not received within {} seconds.",
                        state.config.body_timeout.as_secs()
                    ),
                ))
            }
        };
        if !bytes.is_empty() {
            if !is_form_content_type(&parts.headers) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorType::InvalidRequestError,
                    Some("content_type_invalid"),
                    "POST bodies must be sent with Content-Type: \
                     application/x-www-form-urlencoded, as Stripe's API takes them."
                        .to_owned(),
                ));
            }
            form.extend_from(&bytes)
                .map_err(|e| ApiError::from_form(&e))?;
        }
    }
    Ok((parts, form))
}

async fn pipeline(
    state: &AppState,
    operation: Operation,
    request: Request,
    request_id: &str,
) -> Result<Response, ApiError> {
    let key = api_key_from_headers(request.headers()).map_err(auth_error)?;
    let account = match request.headers().get("stripe-account") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| auth_error(AuthError::AccountInvalid))?
                .trim()
                .to_owned(),
        ),
    };
    let principal = state
        .auth
        .authenticate(&key, account.as_deref())
        .map_err(auth_error)?;
    if let Some(limit) = &state.rate_limit {
        limit.check(&principal.credential)?;
    }
    let allowed = if operation.writes() {
        principal.can_write
    } else {
        principal.can_read
    };
    if !allowed {
        let permission = if operation.writes() {
            "secret_write"
        } else {
            "secret_read"
        };
        return Err(auth_error(AuthError::PermissionDenied {
            masked: key.masked(),
            permission,
        }));
    }

    let idempotency_key = match request.headers().get("idempotency-key") {
        Some(value) if request.method() == Method::POST => Some(parse_idempotency_key(value)?),
        _ => None,
    };
    let (parts, form) = read_form(state, request).await?;
    let fingerprint = idempotency_key
        .as_ref()
        .map(|_| fingerprint(&parts.method, parts.uri.path(), account.as_deref(), &form));
    let parsed = params::parse(operation, form.root, &principal.namespace)?;

    let Some(idempotency_key) = idempotency_key else {
        let answer = execute(state, parsed, request_id).await?;
        return Ok(respond(answer, false));
    };
    let fingerprint = fingerprint.unwrap_or_default();
    idempotent(
        state,
        &principal,
        idempotency_key,
        fingerprint,
        parsed,
        request_id,
    )
    .await
}

fn parse_idempotency_key(value: &HeaderValue) -> Result<String, ApiError> {
    let invalid = |message: &str| {
        ApiError::invalid("idempotency_key_invalid", message.to_owned())
            .with_param("Idempotency-Key")
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("The Idempotency-Key header must be printable ASCII."))?;
    if text.is_empty() {
        return Err(invalid("The Idempotency-Key header must not be empty."));
    }
    if text.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(invalid(
            "The Idempotency-Key header may be at most 255 characters long.",
        ));
    }
    Ok(text.to_owned())
}

/// What makes two requests "the same" for an idempotency key: method, path, the account acted
/// on and every parameter, in a canonical order (the SDKs may order them differently on retry).
fn fingerprint(method: &Method, path: &str, account: Option<&str>, form: &Form) -> [u8; 32] {
    let mut pairs: Vec<&(String, String)> = form.pairs.iter().collect();
    pairs.sort();
    let mut hash = Sha256::new();
    for part in [method.as_str(), path, account.unwrap_or("")] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    for (key, value) in pairs {
        hash.update((key.len() as u64).to_be_bytes());
        hash.update(key.as_bytes());
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_bytes());
    }
    hash.finalize().into()
}

async fn idempotent(
    state: &AppState,
    principal: &Principal,
    key: String,
    fingerprint: [u8; 32],
    parsed: Parsed,
    request_id: &str,
) -> Result<Response, ApiError> {
    let ikey = IdempotencyKey::new(&principal.credential, &key);
    match state
        .service
        .idempotency_claim(&ikey)
        .await
        .map_err(|e| core_error(e, request_id))?
    {
        IdempotencyClaim::InFlight => {
            let mut err = ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::IdempotencyError,
                Some("idempotency_key_in_use"),
                format!(
                    "There is currently another in-progress request using this idempotency key \
                     ('{key}'). Retry after it completes."
                ),
            );
            err.should_retry = Some(true);
            Err(err)
        }
        IdempotencyClaim::Kept(answer) => {
            if answer.fingerprint != fingerprint {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorType::IdempotencyError,
                    Some("idempotency_key_reused"),
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters \
                         they were first used with. Try using a key other than '{key}' if you \
                         meant to execute a different request."
                    ),
                ));
            }
            let body = state
                .service
                .open_kept_answer(&ikey, &answer)
                .map_err(|e| core_error(e, request_id))?;
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            Ok(respond(Answer { status, body }, true))
        }
        IdempotencyClaim::Claimed => {
            // The work runs in its own task: if the client goes away mid-request, the write and
            // the keeping of its answer still finish, and the claim is never left dangling.
            let state = state.clone();
            let request_id = request_id.to_owned();
            let task = tokio::spawn(async move {
                let result = execute(&state, parsed, &request_id).await;
                let (status, body) = match &result {
                    Ok(answer) => (answer.status, answer.body.clone()),
                    Err(err) => (err.status, Zeroizing::new(err.to_json())),
                };
                let kept = if status.is_server_error() {
                    // 5xx are not kept, so a retry with the same key can succeed.
                    state.service.idempotency_release(&ikey).await
                } else {
                    state
                        .service
                        .idempotency_complete(&ikey, fingerprint, status.as_u16(), &body)
                        .await
                };
                if let Err(err) = kept {
                    tracing::error!(request_id = %request_id, error = %err, "keeping the idempotent answer failed");
                    let _ = state.service.idempotency_release(&ikey).await;
                }
                result
            });
            match task.await {
                Ok(result) => result.map(|answer| respond(answer, false)),
                Err(_) => Err(ApiError::internal()),
            }
        }
    }
}

fn core_error(err: secretstore_core::CoreError, request_id: &str) -> ApiError {
    let (answer, detail) = ApiError::from_core(err);
    if let Some(detail) = detail {
        tracing::error!(request_id = %request_id, error = %detail, "request failed");
    }
    answer
}

async fn execute(state: &AppState, parsed: Parsed, request_id: &str) -> Result<Answer, ApiError> {
    let service = &state.service;
    let body = match parsed {
        Parsed::Set { request, reveal } => {
            let secret = service
                .set(request, reveal)
                .await
                .map_err(|e| core_error(e, request_id))?;
            render::secret(&secret, false)
        }
        Parsed::Find { key, reveal } => {
            let secret = service
                .find(&key, reveal)
                .await
                .map_err(|e| core_error(e, request_id))?;
            render::secret(&secret, false)
        }
        Parsed::Delete { key, reveal } => {
            let secret = service
                .delete(&key, reveal)
                .await
                .map_err(|e| core_error(e, request_id))?;
            render::secret(&secret, true)
        }
        Parsed::List { request, reveal } => {
            let page = service
                .list(request, reveal)
                .await
                .map_err(|e| core_error(e, request_id))?;
            render::list(&page)
        }
    };
    Ok(Answer {
        status: StatusCode::OK,
        body: Zeroizing::new(body),
    })
}

fn respond(answer: Answer, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(answer.body.to_vec()));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
