//! Prometheus metrics through the real binary in production mode: `GET /metrics` on the admin
//! listener answers only with the admin token, and each event a metric counts, made to happen
//! over HTTP (a set, a find, a 404, an unknown route, an idempotent replay, rate-limit
//! refusals, refused credentials, a damaged row answered 500, an expired secret swept,
//! concurrent sets sharing a group commit), moves its metric between two scrapes, by exactly
//! as much where nothing else can move it. On PostgreSQL, the pool's gauges and the count of
//! stored secrets come from the database, and an audit record the database refuses (a trigger,
//! as in the audit tests) is counted.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::audit::{provisioned, Shell, APP, REFUSE_AUDIT_RECORDS};
use crate::server::{client, find, set, Server, BIN};
use crate::tenancy::Admin;
use secretstore_testkit::binary::Site;
use secretstore_testkit::postgres::{available, ScratchDatabase};

/// One exposition of `GET /metrics`.
struct Scrape(String);

impl Scrape {
    /// The value of one series, written as the exposition writes it (`name{label="v",...}`);
    /// 0 for a series not rendered yet (a counter that never moved may not be).
    fn value(&self, series: &str) -> f64 {
        self.find(series).unwrap_or(0.0)
    }

    fn find(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().unwrap())
    }

    /// How much `series` moved from `before` to this scrape.
    fn moved(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value(series)
    }
}

fn requests(operation: &str, status: u16) -> String {
    format!(r#"secretstore_http_requests_total{{operation="{operation}",status="{status}"}}"#)
}

fn auth_failures(reason: &str) -> String {
    format!(r#"secretstore_auth_failures_total{{reason="{reason}"}}"#)
}

const FIND: &str = "secrets.find";
const SET: &str = "secrets.set";
const LIST: &str = "secrets.list";
const SCRAPE: &str = "admin GET /metrics";
const AUDIT_FAILURES: &str = "secretstore_audit_write_failures_total";
const STORED: &str = "secretstore_secrets_stored";
const PURGED: &str = "secretstore_expired_secrets_purged_total";
const BATCHES: &str = "secretstore_group_commit_batch_size_count";
const BATCHED_WRITES: &str = "secretstore_group_commit_batch_size_sum";
const SINGLE_BATCHES: &str = r#"secretstore_group_commit_batch_size_bucket{le="1"}"#;

/// Scrapes the server's metrics with the admin token, checking the answer's type.
async fn scrape(site: &Site, server: &Server) -> Scrape {
    let response = client()
        .get(format!("{}/metrics", admin_url(server)))
        .bearer_auth(site.admin_token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    Scrape(response.text().await.unwrap())
}

fn admin_url(server: &Server) -> &str {
    server.admin_url.as_deref().unwrap()
}

/// Sets `name` in the account scope; answers the status.
async fn set_named(url: &str, key: &str, name: &str, extra: &[(&str, &str)]) -> u16 {
    let mut form = vec![("name", name), ("payload", "p"), ("scope[type]", "account")];
    form.extend_from_slice(extra);
    let (status, body) = set(&client(), url, key, &form).await.unwrap();
    assert!(status == 200, "set {name}: {status} {body}");
    status
}

async fn find_named(url: &str, key: &str, name: &str) -> u16 {
    find(
        &client(),
        url,
        key,
        &[("name", name), ("scope[type]", "account")],
    )
    .await
    .unwrap()
    .0
}

/// A set with an `Idempotency-Key`; answers whether it was a replay.
async fn idempotent_set(url: &str, key: &str, idempotency_key: &str) -> bool {
    let response = client()
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .form(&[
            ("name", "idem"),
            ("payload", "p"),
            ("scope[type]", "account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.headers().get("idempotent-replayed").is_some()
}

#[tokio::test]
async fn each_event_moves_its_metric() {
    let flags = [
        "--rate-limit",
        "50",
        "--sweep-interval",
        "1",
        "--max-secrets-per-scope",
        "10000",
    ];
    let mut site = Site::production(BIN);
    let (mut server, key) = provisioned(&mut site, &flags).await;

    // A damaged row, made while the server is stopped: its find is a storage failure (500).
    set_named(&server.url, &key, "damaged", &[]).await;
    server.terminate();
    Shell::Sqlite(&site.db()).run("UPDATE secrets SET id = 'not-an-id' WHERE name = 'damaged'");
    let server = site.start(&flags);
    let admin = Admin::of(&site, &server);
    let url = server.url.clone();
    let limited = admin.key(APP, "test", "secret", &[]).await;
    let writer = admin.key(APP, "test", "secret", &[]).await;

    // Only with the admin token.
    let metrics = format!("{}/metrics", admin_url(&server));
    let before = scrape(&site, &server).await;
    let anonymous = client().get(&metrics).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = client()
        .get(&metrics)
        .bearer_auth("x".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    assert!(!wrong.text().await.unwrap().contains("secretstore_"));
    assert_eq!(before.find(AUDIT_FAILURES), Some(0.0), "{}", before.0);
    assert_eq!(before.find(STORED), Some(1.0), "the damaged row");

    set_named(&url, &key, "plain", &[]).await;
    assert_eq!(find_named(&url, &key, "plain").await, 200);
    assert_eq!(find_named(&url, &key, "missing").await, 404);
    assert_eq!(find_named(&url, &key, "damaged").await, 500);
    let unknown = client()
        .get(format!("{url}/v1/no/such/route"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    assert!(!idempotent_set(&url, &key, "metrics-idem-1").await);
    assert!(idempotent_set(&url, &key, "metrics-idem-1").await);
    let unknown_key = format!("sk_test_{}", "x".repeat(48));
    assert_eq!(find_named(&url, &unknown_key, "plain").await, 401);
    assert_eq!(find_named(&url, "not-a-key", "plain").await, 401);

    // 50 a second with bursts of 100: 200 lists at once overflow the bucket.
    let http = client();
    let lists = (0..200).map(|_| {
        http.get(format!("{url}/v1/apps/secrets"))
            .bearer_auth(&limited)
            // Not the account scope, whose damaged row would answer 500.
            .query(&[("scope[type]", "user"), ("scope[user]", "usr_lister")])
            .send()
    });
    let statuses: Vec<u16> = join_all(lists)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let refused = statuses.iter().filter(|&&s| s == 429).count() as f64;
    let listed = statuses.iter().filter(|&&s| s == 200).count() as f64;
    assert!(refused >= 1.0, "none of 200 refused");
    assert_eq!(refused + listed, 200.0, "{statuses:?}");

    let expires_at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2)
    .to_string();
    set_named(
        &url,
        &key,
        "expiring",
        &[("expires_at", expires_at.as_str())],
    )
    .await;

    let after = scrape(&site, &server).await;
    let exactly = |series: &str, by: f64| {
        assert_eq!(after.moved(&before, series), by, "{series}\n{}", after.0);
    };
    exactly(&requests(FIND, 200), 1.0);
    exactly(&requests(FIND, 404), 1.0);
    exactly(&requests(FIND, 500), 1.0);
    exactly(&requests(FIND, 401), 2.0);
    exactly(&requests(SET, 200), 4.0);
    exactly(&requests(LIST, 200), listed);
    exactly(&requests(LIST, 429), refused);
    exactly(&requests("unknown", 404), 1.0);
    exactly(&requests(SCRAPE, 200), 1.0);
    exactly(&requests(SCRAPE, 401), 1.0);
    exactly(&requests(SCRAPE, 403), 1.0);
    let took = |part: &str| {
        format!(r#"secretstore_http_request_duration_seconds_{part}{{operation="{FIND}"}}"#)
    };
    exactly(&took("count"), 5.0);
    assert!(after.moved(&before, &took("sum")) > 0.0);
    exactly("secretstore_idempotent_replays_total", 1.0);
    exactly("secretstore_rate_limited_total", refused);
    exactly(&auth_failures("unknown"), 1.0);
    exactly(&auth_failures("malformed"), 1.0);
    exactly(&auth_failures("admin_token"), 2.0);
    exactly(r#"secretstore_storage_errors_total{kind="internal"}"#, 1.0);
    // plain, idem (once: the replay stored nothing) and expiring.
    exactly(STORED, 3.0);
    exactly(AUDIT_FAILURES, 0.0);
    assert!(after.moved(&before, BATCHES) >= 1.0);
    assert!(after.moved(&before, BATCHED_WRITES) >= 3.0);
    assert_eq!(
        after.find("secretstore_pg_pool_max"),
        None,
        "no pool on SQLite"
    );

    // The sweep (every second) deletes the expired secret.
    let deadline = Instant::now() + Duration::from_secs(20);
    let swept = loop {
        let now = scrape(&site, &server).await;
        if now.moved(&before, PURGED) >= 1.0 {
            break now;
        }
        assert!(Instant::now() < deadline, "not swept: {}", now.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(swept.moved(&before, PURGED), 1.0);
    assert_eq!(swept.moved(&before, STORED), 2.0);

    // Concurrent sets share transactions: some batch holds more than one write. Whether one
    // does is up to the scheduler, so a few rounds are allowed to show it.
    let mut shared = false;
    for round in 0..5 {
        let start = scrape(&site, &server).await;
        let sets = (0..32).map(|n| {
            let (url, writer) = (url.clone(), writer.clone());
            async move { set_named(&url, &writer, &format!("batch-{round}-{n}"), &[]).await }
        });
        join_all(sets).await;
        let end = scrape(&site, &server).await;
        let batches = end.moved(&start, BATCHES);
        assert!(batches >= 1.0);
        assert!(end.moved(&start, BATCHED_WRITES) >= 32.0, "{}", end.0);
        if end.moved(&start, SINGLE_BATCHES) < batches {
            shared = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(shared, "no group commit held two writes in five rounds");
}

#[tokio::test]
async fn on_postgresql_the_pool_and_the_stored_secrets_come_from_the_database() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::production(BIN);
    let (server, key) = provisioned(
        &mut site,
        &[
            "--database-url",
            database.url(),
            "--database-pool-size",
            "7",
        ],
    )
    .await;
    let before = scrape(&site, &server).await;
    assert_eq!(
        before.find("secretstore_pg_pool_max"),
        Some(7.0),
        "{}",
        before.0
    );
    assert_eq!(before.find(STORED), Some(0.0));
    for name in ["one", "two", "three"] {
        set_named(&server.url, &key, name, &[]).await;
    }
    let after = scrape(&site, &server).await;
    assert_eq!(after.find(STORED), Some(3.0));
    let idle = r#"secretstore_pg_pool_connections{state="idle"}"#;
    let in_use = r#"secretstore_pg_pool_connections{state="in_use"}"#;
    let open = after.value(idle) + after.value(in_use);
    assert!(after.find(idle).is_some() && after.find(in_use).is_some());
    assert!(
        (1.0..=7.0).contains(&open),
        "{open} connections: {}",
        after.0
    );
    // No group commit on PostgreSQL.
    assert_eq!(after.value(BATCHES), 0.0);

    // A read whose audit record the database refuses is not answered, and the failure counts.
    // (Scrapes are audited too: none while the trigger is there.)
    let shell = Shell::Postgres(database.url());
    shell.run(REFUSE_AUDIT_RECORDS);
    let (status, body) = find(
        &client(),
        &server.url,
        &key,
        &[("name", "one"), ("scope[type]", "account")],
    )
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    shell.run("DROP TRIGGER refuse_audit ON audit;");
    let refused = scrape(&site, &server).await;
    assert_eq!(refused.moved(&after, AUDIT_FAILURES), 1.0, "{}", refused.0);
    assert_eq!(refused.moved(&after, &requests(FIND, 503)), 1.0);
}
