//! The test app: builds the router over a fresh store and drives it with requests as an SDK
//! would send them.

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use secretstore_api::{router, ApiConfig, AppState, DevAuthenticator};
use secretstore_core::{Limits, ManualClock, SecretService, Store};
use secretstore_crypto::{Envelope, RootKey};
use secretstore_sqlite::{SqliteOptions, SqliteStore};
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "sk_test_app1";
pub const START: i64 = 1_700_000_000;

pub struct TestApp {
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub service: SecretService,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn param(&self) -> &str {
        self.json["error"]["param"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }

    pub fn error_type(&self) -> &str {
        self.json["error"]["type"].as_str().unwrap_or("")
    }

    /// Asserts an error answer of the contract's shape, with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, kind: &str, code: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.error_type(), kind, "{}", self.json);
        if let Some(code) = code {
            assert_eq!(self.code(), code, "{}", self.json);
        }
        let message = self.message();
        assert!(!message.is_empty(), "{}", self.json);
        // One sentence end, not "rk_live_....": an ellipsis ("...") only where a value was cut.
        assert!(
            !message.ends_with("....") && (!message.ends_with("..") || message.ends_with("...")),
            "doubled period: {message}"
        );
    }
}

pub struct Builder {
    /// The data directory, made by `wrap_store` (the store in it needs it) or by `build`.
    dir: Option<tempfile::TempDir>,
    limits: Limits,
    config: ApiConfig,
    store: Option<Arc<dyn Store>>,
    rate_limit: Option<secretstore_api::RateLimit>,
}

impl Builder {
    pub fn max_per_scope(mut self, max: u32) -> Self {
        self.limits.max_secrets_per_scope = max;
        self
    }

    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit =
            std::num::NonZeroU32::new(per_second).map(secretstore_api::RateLimit::per_second);
        self
    }

    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.config.max_body_bytes = max;
        self
    }

    /// Wraps the store the app would use (to slow it down or watch it).
    pub fn wrap_store(mut self, wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("data"), SqliteOptions::default()).unwrap(),
        );
        // The app keeps the directory, so it lives exactly as long as the store in it.
        self.dir = Some(dir);
        self.store = Some(wrap(inner));
        self
    }

    pub async fn build(self) -> TestApp {
        let dir = match self.dir {
            Some(dir) => dir,
            None => tempfile::tempdir().unwrap(),
        };
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(
                SqliteStore::open(&dir.path().join("data"), SqliteOptions::default()).unwrap(),
            ),
        };
        let clock = Arc::new(ManualClock::new(START));
        let envelope = Arc::new(Envelope::new(&RootKey::generate().unwrap()));
        let service = SecretService::new(Arc::clone(&store), envelope, clock.clone(), self.limits);
        service.verify_root_key().await.unwrap();
        let state = AppState {
            service: service.clone(),
            auth: Arc::new(DevAuthenticator),
            config: self.config,
            rate_limit: self.rate_limit,
        };
        TestApp {
            router: router(state),
            clock,
            service,
            store,
            dir,
        }
    }
}

pub fn app() -> Builder {
    Builder {
        dir: None,
        limits: Limits::default(),
        config: ApiConfig::default(),
        store: None,
        rate_limit: None,
    }
}

impl TestApp {
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Sends a request with full control over headers.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "answer is not JSON: {status} {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Answer {
            status,
            headers,
            json,
        }
    }

    /// A request as the SDKs send it: Bearer key, form body on POST, query on GET.
    pub async fn call(&self, method: Method, path: &str, params: &str) -> Answer {
        self.call_as(KEY, &[], method, path, params).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        headers: &[(&str, &str)],
        method: Method,
        path: &str,
        params: &str,
    ) -> Answer {
        let mut builder = Request::builder().header("authorization", format!("Bearer {key}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = if method == Method::GET {
            let uri = if params.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{params}")
            };
            builder.method(method).uri(uri).body(Body::empty()).unwrap()
        } else {
            builder
                .method(method)
                .uri(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(params.to_owned()))
                .unwrap()
        };
        self.send(request).await
    }

    pub async fn set(&self, params: &str) -> Answer {
        self.call(Method::POST, "/v1/apps/secrets", params).await
    }

    pub async fn find(&self, params: &str) -> Answer {
        self.call(Method::GET, "/v1/apps/secrets/find", params)
            .await
    }

    pub async fn delete(&self, params: &str) -> Answer {
        self.call(Method::POST, "/v1/apps/secrets/delete", params)
            .await
    }

    pub async fn list(&self, params: &str) -> Answer {
        self.call(Method::GET, "/v1/apps/secrets", params).await
    }
}

/// Percent-encodes a value for a form body.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Every file under a directory, as bytes (for "is the plaintext anywhere on disk" checks).
pub fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}
