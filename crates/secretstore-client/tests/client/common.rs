//! Starts the real server in-process, as `secretstore serve --dev` wires it, on a free port.

use std::sync::Arc;

use secretstore_api::{router, ApiConfig, AppState, DevAuthenticator};
use secretstore_client::Client;
use secretstore_core::{Limits, SecretService, SystemClock};
use secretstore_crypto::{Envelope, RootKey};
use secretstore_sqlite::{SqliteOptions, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const KEY: &str = "sk_test_clientapp";

/// A running server; it stops when dropped.
pub struct TestServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn server() -> TestServer {
    server_with_max(10).await
}

/// A server whose scopes hold up to `max` secrets (for pagination across many pages).
pub async fn server_with_max(max: u32) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("data"), SqliteOptions::default()).unwrap());
    let envelope = Arc::new(Envelope::new(&RootKey::generate().unwrap()));
    let service = SecretService::new(
        store,
        envelope,
        Arc::new(SystemClock),
        Limits {
            max_secrets_per_scope: max,
        },
    );
    service.verify_root_key().await.unwrap();
    let state = AppState {
        service,
        auth: Arc::new(DevAuthenticator),
        config: ApiConfig::default(),
        rate_limit: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(secretstore_api::serve(
        listener,
        router(state),
        secretstore_api::ServerLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer {
        url,
        stop: Some(stop),
        _dir: dir,
    }
}

impl TestServer {
    pub fn client(&self) -> Client {
        self.client_with(KEY)
    }

    pub fn client_with(&self, key: &str) -> Client {
        Client::builder(key).base_url(&self.url).build().unwrap()
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
