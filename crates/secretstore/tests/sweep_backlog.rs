//! A backlog of 1,000,000 expired secrets (a server that was down for a while, a burst of
//! short-lived tokens) is swept from storage within the contract's minute, in small steps that
//! let writes through: sets made while it is swept keep a p99 of at most 50 ms.
//!
//! A test binary of its own, so that no other test competes for the machine while it measures.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretstore_testkit::binary::Site;

const BIN: &str = env!("CARGO_BIN_EXE_secretstore");
const BACKLOG: u64 = 1_000_000;

/// Whether any expired row is still stored (read-only, beside the running server: WAL lets
/// another process read).
fn expired_left(db: &std::path::Path) -> bool {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= 100)",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_expired_secrets_are_swept_within_a_minute_while_writes_stay_fast() {
    let mut site = Site::new(BIN);
    // The schema first, then the backlog straight into the file while no server runs: rows
    // that expired long ago (the sweep never opens a payload, so any bytes will do).
    site.start(&[]).terminate();
    site.insert_bare_secrets("backlog", "acct_backlog", BACKLOG, |n| {
        (
            Some(format!("usr_{}", n / 10)),
            format!("s{}", n % 10),
            Some(50),
        )
    });
    let began = Instant::now();
    let server = site.start(&["--sweep-interval", "1"]);

    // Writers: sets (creates, then replaces) in scopes of their own, timed one by one.
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (url, latencies, stop) = (
            server.url.clone(),
            Arc::clone(&latencies),
            Arc::clone(&stop),
        );
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let sent = Instant::now();
                let status = http
                    .post(format!("{url}/v1/apps/secrets"))
                    .bearer_auth("sk_test_writer")
                    .form(&[
                        ("name", format!("n{}", i % 10)),
                        ("payload", format!("payload {i}")),
                        ("scope[type]", "user".into()),
                        ("scope[user]", format!("usr_writer{w}")),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 200);
                latencies.lock().unwrap().push(sent.elapsed());
            }
        }));
    }
    let db = site.db();
    let swept_in = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = tokio::task::spawn_blocking({
            let db = db.clone();
            move || expired_left(&db)
        })
        .await
        .unwrap();
        if !left {
            break began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "expired secrets still stored a minute after the server started"
        );
    };
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let mut latencies = Arc::try_unwrap(latencies).unwrap().into_inner().unwrap();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let p50 = latencies[latencies.len() / 2];
    eprintln!(
        "{BACKLOG} expired secrets swept {swept_in:?} after the start; {} sets meanwhile, p50 \
         {p50:?}, p99 {p99:?}, slowest {:?}",
        latencies.len(),
        latencies.last().unwrap()
    );
    assert!(
        p99 <= Duration::from_millis(50),
        "writes slowed down by the sweep: p99 {p99:?}"
    );
    assert!(!server
        .log_text()
        .contains("sweeping expired secrets failed"));
}
