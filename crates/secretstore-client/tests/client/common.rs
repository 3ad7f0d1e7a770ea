//! The real server in-process on a free port (`secretstore_testkit::TestServer`, wired by
//! `secretstore_server` as `secretstore serve --dev` is), and clients of it.

use secretstore_client::Client;
use secretstore_testkit::TestServer;

pub const KEY: &str = "sk_test_clientapp";

/// A running server; it stops when dropped.
pub struct Server {
    pub url: String,
    _running: TestServer,
}

pub async fn server() -> Server {
    wrap(secretstore_testkit::server().await)
}

/// A server whose scopes hold up to `max` secrets (for pagination across many pages).
pub async fn server_with_max(max: u32) -> Server {
    wrap(secretstore_testkit::server_with(|c| c.limits.max_secrets_per_scope = max).await)
}

fn wrap(running: TestServer) -> Server {
    Server {
        url: running.url.clone(),
        _running: running,
    }
}

impl Server {
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
