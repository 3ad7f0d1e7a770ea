//! The real server in-process on a free port, wired by `secretstore_server` exactly as
//! `secretstore serve --dev` is (mini-redis's tests start `server::run` the same way), for the
//! client's tests. It stops when dropped.

use secretstore_crypto::RootKey;
use secretstore_server::{App, Config, Listeners, RootKeySource, Shutdown};
use tokio::net::TcpListener;

/// A running server; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A dev-mode server with every setting at its default.
pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// A dev-mode server with settings changed by `change` (a larger scope maximum, say).
pub async fn server_with(change: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::dev(
        dir.path().join("data"),
        RootKeySource::Key(RootKey::generate().unwrap()),
    );
    change(&mut config);
    let app = App::builder(config).build().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let listeners = Listeners {
        public: listener,
        admin: None,
    };
    tokio::spawn(secretstore_server::run(app, listeners, shutdown.clone()));
    TestServer {
        url,
        shutdown,
        _dir: dir,
    }
}
