//! The database goes away under load: two servers share a scratch PostgreSQL database while
//! clients keep writing; PostgreSQL is stopped in the middle (`pg_ctlcluster ... stop -m fast`,
//! what a restart or a failover does to the servers' connections) and started again. While it
//! is down both servers answer every request 503 `api_error` with `Stripe-Should-Retry: true`
//! and `/readyz` says not ready; once it is back they serve again by themselves, without a
//! restart; and every write they acknowledged, before or after, is there.
//!
//! It stops the machine's PostgreSQL server, which every PostgreSQL test uses: it is a test
//! binary of its own, so that no other test runs while it does (cargo runs test binaries one
//! after another). It needs root and `pg_ctlcluster` (CI has both); set
//! SECRETSTORE_SKIP_ROOT_TESTS=1 to skip it elsewhere.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretstore_testkit::binary::Site;
use secretstore_testkit::postgres::{available, ScratchDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_secretstore");
const KEY: &str = "sk_test_failover";

/// `pg_ctlcluster VERSION main ACTION` for the machine's one cluster.
fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql: a Debian PostgreSQL cluster")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version under /etc/postgresql");
    let mut command = Command::new("pg_ctlcluster");
    command
        .arg("--skip-systemctl-redirect")
        .arg(&version)
        .arg("main")
        .arg(action);
    if action == "stop" {
        command.args(["-m", "fast"]);
    }
    let status = command.status().expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {version} main {action}");
}

/// Starts PostgreSQL again if the test ends early, so later tests find it running.
struct RestartOnDrop(bool);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.0 {
            cluster("start");
        }
    }
}

/// What the writers saw, in order: the names acknowledged with their payloads, and every
/// status that was not 200.
#[derive(Default)]
struct Seen {
    acknowledged: BTreeMap<String, String>,
    refusals: Vec<(u16, String, Option<String>)>,
    sent: u64,
}

async fn writer(n: usize, url: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let name = format!("w{n}-{i}");
        let payload = format!("payload of {name}");
        let answer = http
            .post(format!("{url}/v1/apps/secrets"))
            .bearer_auth(KEY)
            .form(&[
                ("name", name.as_str()),
                ("payload", payload.as_str()),
                ("scope[type]", "user"),
                ("scope[user]", &format!("usr_{n}_{}", i / 5)),
            ])
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 200 => {
                let mut seen = seen.lock().unwrap();
                seen.sent += 1;
                seen.acknowledged.insert(name, payload);
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retry = response
                    .headers()
                    .get("stripe-should-retry")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let kind = body["error"]["type"].as_str().unwrap_or("").to_owned();
                {
                    let mut seen = seen.lock().unwrap();
                    seen.sent += 1;
                    seen.refusals.push((status, kind, retry));
                }
                // A client backs off before it retries.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a request failed without an answer: {e}"),
        }
    }
}

async fn ready(url: &str) -> u16 {
    reqwest::get(format!("{url}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_restarted_under_load_loses_no_acknowledged_write() {
    if std::env::var_os("SECRETSTORE_SKIP_ROOT_TESTS").is_some() {
        eprintln!("SECRETSTORE_SKIP_ROOT_TESTS is set: skipping a test that stops PostgreSQL");
        return;
    }
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::new(BIN);
    let extra = [
        "--database-url",
        database.url(),
        "--database-connect-timeout",
        "1",
        "--max-secrets-per-scope",
        "100",
    ];
    let servers = site.start_together(2, &extra);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn(writer(
                n,
                servers[n % 2].url.clone(),
                Arc::clone(&seen),
                Arc::clone(&stop),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_stop = seen.lock().unwrap().acknowledged.len();
    assert!(before_stop > 0, "the load is running before the stop");
    let mut guard = RestartOnDrop(true);
    cluster("stop");
    // While it is down: not ready, and requests refused with 503 that SDKs retry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for server in &servers {
        assert_eq!(
            ready(&server.url).await,
            503,
            "/readyz while the database is down"
        );
    }
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/v1/apps/secrets/find", servers[1].url))
        .bearer_auth(KEY)
        .query(&[
            ("name", "w0-1"),
            ("scope[type]", "user"),
            ("scope[user]", "usr_0_0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    let during = seen.lock().unwrap().acknowledged.len();

    cluster("start");
    guard.0 = false;
    // Back by themselves: ready again within 30 s, without a restart.
    let back = Instant::now();
    for server in &servers {
        while ready(&server.url).await != 200 {
            assert!(
                back.elapsed() < Duration::from_secs(30),
                "not ready 30 s after the start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    // Every refusal was the retryable kind, and there were some: the stop was felt.
    assert!(
        !seen.refusals.is_empty(),
        "no request was refused while the database was down"
    );
    for (status, kind, retry) in &seen.refusals {
        assert_eq!(
            (*status, kind.as_str(), retry.as_deref()),
            (503, "api_error", Some("true"))
        );
    }
    assert!(
        seen.acknowledged.len() > during,
        "writes are acknowledged again after the database is back"
    );

    // Every acknowledged write is there, read through either server.
    let http = reqwest::Client::new();
    for (i, (name, payload)) in seen.acknowledged.iter().enumerate() {
        let (n, rest) = name[1..].split_once('-').unwrap();
        let index: u64 = rest.parse().unwrap();
        let response = http
            .get(format!("{}/v1/apps/secrets/find", servers[i % 2].url))
            .bearer_auth(KEY)
            .query(&[
                ("name", name.as_str()),
                ("scope[type]", "user"),
                ("scope[user]", &format!("usr_{n}_{}", index / 5)),
                ("expand[]", "payload"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "acknowledged {name} is missing");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["payload"].as_str(), Some(payload.as_str()));
    }
    eprintln!(
        "{} requests, {} acknowledged ({before_stop} before the stop), {} refused with 503 \
         while it was down, ready again {:?} after the start",
        seen.sent,
        seen.acknowledged.len(),
        seen.refusals.len(),
        recovered_in
    );
}
