//! The admin API: what a platform provisions (accounts, apps, installations, users, API keys and
//! user sessions), as JSON over its own listener, never the public one (docs/api.md §9, and
//! `docs/admin-openapi.json`, which `GET /openapi.json` serves). Every
//! request carries `Authorization: Bearer <admin token>`; the server keeps only the token's
//! SHA-256 and compares in constant time. Handlers are grouped by resource, one file each, as
//! crates.io groups its controllers; they share the token check (`AdminCaller`), the JSON body
//! reader (`JsonBody`), listing parameters (`page`) and the error table of `crate::error`.
//! `GET /metrics` (Prometheus's text format, `crate::metrics`) is served here too, behind the
//! same token, and so is `GET /v1/backup`, a copy of the whole store (`backup`).

mod accounts;
mod audit;
pub use audit::parse_time;
mod apps;
mod backup;
mod installations;
mod keys;
mod render;
mod root_keys;
mod sessions;
mod users;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use secretstore_core::metrics::AuthFailure;
use secretstore_core::{
    AccountId, AppId, AuditSlot, Clock, Directory, DirectoryPage, Lifecycle, Listed, Removed,
    StoreError,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::{ApiError, Code};
use crate::form::Form;
use crate::params::{optional, parse_integer, Params};
use crate::HttpLimits;

/// The admin API's OpenAPI 3 document, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/admin-openapi.json");

/// Shortest admin token accepted.
pub const MIN_TOKEN_CHARS: usize = 32;

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub directory: Arc<dyn Directory>,
    /// SHA-256 of the admin token.
    pub token_hash: [u8; 32],
    pub clock: Arc<dyn Clock>,
    pub limits: HttpLimits,
    /// Writes every admin request's audit record, and serves the audit routes; `None` when
    /// auditing is off.
    pub auditor: Option<Arc<crate::audit::Auditor>>,
    /// What `GET /metrics` renders.
    pub metrics: crate::metrics::Exposition,
    /// The key hierarchy, for `/v1/root_keys` and `/v1/namespace_keys`.
    pub keys: Arc<secretstore_core::KeyManager>,
    /// Re-seals a namespace's secrets when its key is rotated.
    pub service: secretstore_core::SecretService,
    /// The backend as a whole, whose snapshot `GET /v1/backup` streams.
    pub storage: Arc<dyn Lifecycle>,
}

impl AdminState {
    /// Runs a removal (`remove`) so that the keys it destroys (crypto-shredding) are gone
    /// from this server too: no write that took one of them before is stored after it, and
    /// none is used after it (`KeyManager::removing`, `forget`).
    async fn shredding<F>(&self, remove: F) -> Result<Option<Removed>, ApiError>
    where
        F: std::future::Future<Output = Result<Option<Removed>, StoreError>>,
    {
        let _removing = self.keys.removing().await;
        let removed = remove.await?;
        if removed.is_some() {
            self.keys.forget();
        }
        Ok(removed)
    }
}

/// The SHA-256 an admin token is kept as.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The admin routes, each path with its methods and handlers, written once: the router, the
/// answer to an unknown route and the test that holds the OpenAPI document to the routes all
/// come from it.
macro_rules! admin_routes {
    ($($path:literal => $($method:ident($handler:path)),+;)*) => {
        /// Every admin route, as (method, path).
        pub const ROUTES: &[(&str, &str)] = &[
            $($((admin_method!($method), $path),)+)*
        ];

        fn routes() -> Router<AdminState> {
            Router::new()
                $(.route($path, axum::routing::MethodRouter::new()$(.$method($handler))+))*
        }
    };
}

macro_rules! admin_method {
    (get) => {
        "GET"
    };
    (post) => {
        "POST"
    };
    (delete) => {
        "DELETE"
    };
}

admin_routes! {
    "/v1/accounts" => post(accounts::create), get(accounts::list);
    "/v1/accounts/{id}" => get(accounts::retrieve), delete(accounts::remove);
    "/v1/apps" => post(apps::create), get(apps::list);
    "/v1/apps/{id}" => get(apps::retrieve), delete(apps::remove);
    "/v1/installations" => post(installations::create), get(installations::list);
    "/v1/installations/{id}" => get(installations::retrieve), delete(installations::remove);
    "/v1/accounts/{account}/users" => post(users::create), get(users::list);
    "/v1/accounts/{account}/users/{id}" => get(users::retrieve), delete(users::remove);
    "/v1/apps/{app}/keys" => post(keys::create), get(keys::list);
    "/v1/keys/{id}" => get(keys::retrieve);
    "/v1/keys/{id}/roll" => post(keys::roll);
    "/v1/keys/{id}/revoke" => post(keys::revoke);
    "/v1/user_sessions" => post(sessions::create);
    "/v1/user_sessions/{id}" => get(sessions::retrieve), delete(sessions::remove);
    "/v1/audit/records" => get(audit::records);
    "/v1/audit/verify" => get(audit::verify);
    "/v1/audit/prune" => post(audit::prune);
    "/v1/root_keys" => get(root_keys::status);
    "/v1/root_keys/rotate" => post(root_keys::rotate);
    "/v1/namespace_keys/rotate" => post(root_keys::rotate_namespace);
    "/v1/backup" => get(backup::download);
    "/openapi.json" => get(openapi);
    "/metrics" => get(crate::metrics::scrape);
}

/// The route of `ROUTES` a request reaches (`/v1/accounts/{id}`), for the audit log.
pub fn route_of(method: &http::Method, path: &str) -> Option<&'static str> {
    let matches = |route: &str| {
        let (mut given, mut wanted) = (path.split('/'), route.split('/'));
        loop {
            match (given.next(), wanted.next()) {
                (None, None) => return true,
                (Some(part), Some(want)) if want.starts_with('{') => {
                    if part.is_empty() {
                        return false;
                    }
                }
                (Some(part), Some(want)) if part == want => {}
                _ => return false,
            }
        }
    };
    ROUTES
        .iter()
        .find(|(m, route)| *m == method.as_str() && matches(route))
        .map(|(_, route)| *route)
}

/// The admin listener's router.
pub fn router(state: AdminState) -> Router {
    let limits = state.limits;
    let auditor = state.auditor.clone();
    routes()
        .fallback(unrecognized)
        .method_not_allowed_fallback(unrecognized)
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::panicked,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::middleware::Edge {
                limits,
                stripe: false,
                auditor,
            },
            crate::middleware::stamp,
        ))
}

async fn unrecognized(request: Request) -> Response {
    let routes = ROUTES
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::unrecognized_url(request.method().as_str(), request.uri().path(), &routes)
        .into_response()
}

/// The document describes the API; reading it needs no token (it holds no secret).
async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// A request that presented the admin token.
#[derive(Debug, Clone, Copy)]
pub struct AdminCaller;

impl FromRequestParts<AdminState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty());
        let Some(token) = given else {
            secretstore_core::metrics::auth_failure(AuthFailure::AdminToken);
            return Err(ApiError::new(
                Code::Unauthenticated,
                "You did not provide the admin token. Send it as 'Authorization: Bearer \
                 <admin token>'.",
            ));
        };
        let slot = parts.extensions.get::<Arc<AuditSlot>>();
        if let Some(slot) = slot {
            slot.note(|event| event.credential_kind = Some("admin_token".into()));
        }
        if bool::from(token_hash(token).ct_eq(&state.token_hash)) {
            if let Some(slot) = slot {
                slot.note(|event| event.credential = Some("admin".to_owned()));
            }
            Ok(AdminCaller)
        } else {
            tracing::warn!("admin request with a wrong token refused");
            secretstore_core::metrics::auth_failure(AuthFailure::AdminToken);
            Err(ApiError::new(
                Code::AdminTokenInvalid,
                "The admin token provided is not this server's admin token.",
            ))
        }
    }
}

/// A JSON object body, taken field by field: whatever is left is `parameter_unknown`.
#[derive(Debug)]
pub struct JsonBody(Map<String, Value>);

impl FromRequest<AdminState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AdminState) -> Result<Self, ApiError> {
        let json_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let max = state.limits.max_body_bytes;
        let read = axum::body::to_bytes(request.into_body(), max);
        let bytes = match tokio::time::timeout(state.limits.body_timeout, read).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    Code::RequestTooLarge,
                    format!("The request body is larger than this server's limit of {max} bytes, or could not be read."),
                ))
            }
            Err(_) => {
                return Err(ApiError::new(
                    Code::RequestTimeout,
                    "The request body was not received in time.",
                ))
            }
        };
        if bytes.is_empty() {
            return Ok(JsonBody(Map::new()));
        }
        if !json_type {
            return Err(ApiError::new(
                Code::ContentTypeInvalid,
                "Admin API bodies are JSON: send Content-Type: application/json.",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => Err(ApiError::new(
                Code::BodyInvalid,
                "The request body must be a JSON object.",
            )),
            Err(err) => Err(ApiError::new(
                Code::BodyInvalid,
                format!(
                    "The request body is not valid JSON (line {}, column {}).",
                    err.line(),
                    err.column()
                ),
            )),
        }
    }
}

impl JsonBody {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name).filter(|v| !v.is_null())
    }

    /// A field of any JSON type, for a handler that accepts several.
    pub fn take_value(&mut self, name: &str) -> Option<Value> {
        self.take(name)
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("Invalid {name}: expected a string."),
            )),
        }
    }

    pub fn required(&mut self, name: &str) -> Result<String, ApiError> {
        self.string(name)?.ok_or_else(|| ApiError::missing(name))
    }

    pub fn integer(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::not_integer(name, &n.to_string())),
            Some(other) => Err(ApiError::not_integer(name, &other.to_string())),
        }
    }

    pub fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(ApiError::invalid(
                        name,
                        format!("Invalid {name}: expected an array of strings."),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("Invalid {name}: expected an array of strings."),
            )),
        }
    }

    /// Refuses the first field nobody took.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::unknown(name)),
        }
    }
}

/// The query string of a request, as parameters (listing options, `confirm`).
#[derive(Debug)]
pub struct Query(Params);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let form = Form::parse(parts.uri.query().unwrap_or("").as_bytes())?;
        Ok(Query(Params::new(form.root)))
    }
}

impl Query {
    pub fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        // Listing options and ids, not secrets: a plain copy.
        Ok(optional(self.0.text(name)?).map(|text| text.as_str().to_owned()))
    }

    /// An integer parameter: `None` when absent; present, even empty, it must be an integer
    /// (the admin API's document types it so, and `name=` has lost the number it meant).
    pub fn integer(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        self.0
            .text(name)?
            .map(|text| parse_integer(&text, name))
            .transpose()
    }

    /// `limit` (1 to 100, default 10) and `starting_after`. An empty `limit` is refused rather
    /// than read as the default: the admin API's document types it as an integer, and a script
    /// that sends `limit=` has lost the number it meant to send.
    pub fn page(&mut self) -> Result<DirectoryPage, ApiError> {
        let limit = match self.0.text("limit")? {
            None => 10,
            Some(text) => {
                let n = parse_integer(&text, "limit")?;
                if !(1..=100).contains(&n) {
                    return Err(ApiError::out_of_range(
                        "limit",
                        "Invalid limit: must be between 1 and 100.".to_owned(),
                    ));
                }
                n as u32
            }
        };
        Ok(DirectoryPage {
            limit,
            starting_after: self.text("starting_after")?,
        })
    }

    /// A removal must say `confirm=true`.
    pub fn confirmed(&mut self) -> Result<(), ApiError> {
        self.confirmed_as(
            "Removing this object also removes what it owns (see the answer's removed counts). \
             Repeat the request with ?confirm=true to do it.",
        )
    }

    /// What cannot be undone must say `confirm=true`; `why` says what it would do.
    pub fn confirmed_as(&mut self, why: &str) -> Result<(), ApiError> {
        match self.text("confirm")?.as_deref() {
            Some("true") => Ok(()),
            _ => Err(ApiError::new(Code::ConfirmationRequired, why).with_param("confirm")),
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        self.0.finish()
    }
}

/// A 200 JSON answer.
fn json(value: Value) -> Response {
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

/// A list answer: `{"object":"list","url":...,"has_more":...,"data":[...]}`.
fn listing<T>(url: String, listed: Listed<T>, render: impl Fn(&T) -> Value) -> Response {
    json(serde_json::json!({
        "object": "list",
        "url": url,
        "has_more": listed.has_more,
        "data": listed.items.iter().map(render).collect::<Vec<_>>(),
    }))
}

/// Not found: 404 `resource_missing` naming the object.
fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        Code::ResourceMissing,
        format!("No such {what}: '{}'", crate::error::shorten(id)),
    )
    .with_param("id")
}

/// An id taken from the path. Text that cannot be such an id names nothing, so it is not found,
/// exactly as an unknown id is.
fn path_id<T, E>(
    text: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(text).map_err(|_| not_found(what, text))
}

/// An app id given in a body or query parameter: a malformed one is the caller's mistake (400).
fn app_param(text: &str, param: &str) -> Result<AppId, ApiError> {
    AppId::parse(text)
        .map_err(|_| ApiError::invalid(param, format!("Invalid {param}: not an app id.")))
}

/// An account id given in a body or query parameter, as `app_param`.
fn account_param(text: &str, param: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text)
        .map_err(|_| ApiError::invalid(param, format!("Invalid {param}: not an account id.")))
}

/// An object looked up (or just removed), rendered; none is the 404 that names it.
fn found<T>(
    found: Option<T>,
    what: &str,
    id: &str,
    render: impl FnOnce(&T) -> Value,
) -> Result<Response, ApiError> {
    found
        .map(|object| json(render(&object)))
        .ok_or_else(|| not_found(what, id))
}

/// What the `AdminState` of a handler is, for brevity.
type Admin = State<AdminState>;

/// The path parameters of a route, as text; a malformed one is answered in the error shape.
#[derive(Debug)]
pub struct PathParams(Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(values) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| {
                    ApiError::invalid("id", "The path is not valid UTF-8 once decoded.".into())
                })?;
        Ok(PathParams(values.into_iter().map(|(_, v)| v).collect()))
    }
}

impl PathParams {
    /// The last parameter (the object's id).
    pub fn id(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }

    /// The first parameter (the owner in `/v1/accounts/{account}/users/{id}`).
    pub fn parent(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

/// Unix seconds, from the admin state's clock.
fn now(state: &AdminState) -> i64 {
    state.clock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter(|m| ["get", "post", "delete", "put", "patch"].contains(&m.as_str()))
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(
            documented, routed,
            "docs/admin-openapi.json and the admin routes differ"
        );
    }

    fn page(query: &str) -> Result<DirectoryPage, ApiError> {
        let form = Form::parse(query.as_bytes()).expect("a well-formed query");
        Query(Params::new(form.root)).page()
    }

    #[test]
    fn a_page_takes_a_limit_from_1_to_100_and_refuses_an_empty_one() {
        assert_eq!(page("").expect("no limit").limit, 10);
        assert_eq!(page("limit=100").expect("100").limit, 100);
        let first = page("starting_after=").expect("an empty cursor is the first page");
        assert_eq!(first.starting_after, None);
        for refused in ["limit=", "limit=0", "limit=101", "limit=ten"] {
            let error = page(refused).expect_err(refused);
            assert_eq!(error.param.as_deref(), Some("limit"), "{refused}");
        }
    }

    /// Schemathesis found `GET /v1/audit/records?starting_after=` answered as if the cursor
    /// were absent, while the document types it as an integer.
    #[test]
    fn an_integer_parameter_is_absent_or_an_integer_never_empty() {
        let integer = |query: &str| {
            let form = Form::parse(query.as_bytes()).expect("a well-formed query");
            Query(Params::new(form.root)).integer("starting_after")
        };
        assert_eq!(integer("").expect("absent"), None);
        assert_eq!(integer("starting_after=42").expect("42"), Some(42));
        for refused in ["starting_after=", "starting_after=x", "starting_after=1.5"] {
            let error = integer(refused).expect_err(refused);
            assert_eq!(error.param.as_deref(), Some("starting_after"), "{refused}");
        }
    }
}
