//! The test app: the production router, built by `secretstore_server::App` from a dev-mode
//! `Config` over a fresh data directory, on a manual clock, and driven in-process with requests
//! as an SDK would send them. `with_config` changes any setting; `wrap_writes` puts something
//! between the service and the secret store (to hold a request in flight, say).

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use secretstore_core::{AtomicWrites, ManualClock, SecretService};
use secretstore_crypto::RootKey;
use secretstore_server::{open_store, App, Config, RootKeySource, Storage};
use serde_json::Value;
use tower::ServiceExt;

/// The key requests are made with unless a test says otherwise (app `app1`, test mode).
pub const KEY: &str = "sk_test_app1";
/// Where the manual clock starts.
pub const START: i64 = 1_700_000_000;

#[derive(Debug)]
pub struct TestApp {
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub service: SecretService,
    pub storage: Storage,
    pub config: Config,
    dir: tempfile::TempDir,
}

/// An answer: status, headers and the JSON body (every answer of this server is JSON).
#[derive(Debug)]
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

type WrapWrites = Box<dyn FnOnce(Arc<dyn AtomicWrites>) -> Arc<dyn AtomicWrites>>;

pub struct TestAppBuilder {
    config: Config,
    dir: tempfile::TempDir,
    wrap_writes: Option<WrapWrites>,
}

impl std::fmt::Debug for TestAppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAppBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A test app with every setting at its default.
pub fn app() -> TestAppBuilder {
    let dir = tempfile::tempdir().unwrap();
    let key = RootKey::generate().unwrap();
    TestAppBuilder {
        config: Config::dev(dir.path().join("data"), RootKeySource::Key(key)),
        dir,
        wrap_writes: None,
    }
}

impl TestAppBuilder {
    /// Changes the configuration the app is built from.
    pub fn with_config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn max_per_scope(self, max: u32) -> Self {
        self.with_config(|c| c.limits.max_secrets_per_scope = max)
    }

    pub fn rate_limit(self, per_second: u32) -> Self {
        self.with_config(|c| c.rate_limit = std::num::NonZeroU32::new(per_second))
    }

    pub fn max_body_bytes(self, max: usize) -> Self {
        self.with_config(|c| c.http.max_body_bytes = max)
    }

    /// Wraps the transactions the service writes secrets with, each with its audit record
    /// (to slow them down or watch them).
    pub fn wrap_writes(
        mut self,
        wrap: impl FnOnce(Arc<dyn AtomicWrites>) -> Arc<dyn AtomicWrites> + 'static,
    ) -> Self {
        self.wrap_writes = Some(Box::new(wrap));
        self
    }

    pub async fn build(self) -> TestApp {
        let clock = Arc::new(ManualClock::new(START));
        let mut storage = Storage::of(open_store(&self.config.storage).await.unwrap());
        if let Some(wrap) = self.wrap_writes {
            storage.writes = wrap(storage.writes);
        }
        let app = App::builder(self.config)
            .clock(clock.clone())
            .storage(storage)
            .build()
            .await
            .unwrap();
        TestApp {
            router: app.router(),
            clock,
            service: app.state.service.clone(),
            storage: app.storage.clone(),
            config: app.config,
            dir: self.dir,
        }
    }
}

impl TestApp {
    /// The SQLite data directory of this app.
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

/// A method by name.
pub fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}
