//! The real binary for these tests: `secretstore_testkit::binary` starts and stops it (the one
//! launcher every test and harness shares), and the HTTP calls an app backend would make.

use std::path::Path;
use std::time::Duration;

pub use secretstore_testkit::binary::{Server, Site};
pub use secretstore_testkit::{contains, files_under};

pub const BIN: &str = env!("CARGO_BIN_EXE_secretstore");

/// A fresh site (data directory and root key) for this crate's binary.
pub fn site() -> Site {
    Site::new(BIN)
}

/// An HTTP client as an app backend would use it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn set(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    form: &[(&str, &str)],
) -> reqwest::Result<(u16, serde_json::Value)> {
    let response = client
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(key)
        .form(form)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub async fn find(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &[(&str, &str)],
) -> reqwest::Result<(u16, serde_json::Value)> {
    let response = client
        .get(format!("{url}/v1/apps/secrets/find"))
        .bearer_auth(key)
        .query(query)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub fn integrity_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Sends SIGHUP to `server`, as an operator's reload does.
pub fn sighup(server: &Server) {
    let pid = server.pid().expect("server running");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to 10 s for `done`, polling.
pub fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not done within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
