//! Several servers on one PostgreSQL database, as an operator runs them behind a load
//! balancer: they start together on an empty database, act as one store (a write through one
//! is read through the others at once, the scope maximum holds across them), and a revocation
//! through one is refused by every other within the contract's 2 seconds. Each test has a
//! scratch database of its own (`secretstore_testkit::postgres`). The SDK's view of the same
//! (stripe-python against three servers) is in tests/sdk/python/test_python_postgres.py; a
//! database restart under load is in tests/postgres_failover.rs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{client, find, set, BIN};
use crate::tenancy::Admin;
use secretstore_testkit::binary::Site;
use secretstore_testkit::postgres::{available, ScratchDatabase};

/// Rows of one query on the scratch database.
async fn query(database: &ScratchDatabase, sql: &str) -> Vec<tokio_postgres::Row> {
    let (db, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let rows = db.query(sql, &[]).await.unwrap();
    drop(db);
    let _ = driver.await;
    rows
}

#[tokio::test]
async fn five_servers_start_together_on_an_empty_database_and_act_as_one_store() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::new(BIN);
    let servers = site.start_together(5, &["--database-url", database.url()]);
    // The migrations ran exactly once, whoever ran them.
    let applied = query(
        &database,
        "SELECT version FROM secretstore_migrations ORDER BY 1",
    )
    .await;
    let versions: Vec<i32> = applied.iter().map(|r| r.get(0)).collect();
    let expected: Vec<i32> = (1..=secretstore_postgres::SCHEMA_VERSION).collect();
    assert_eq!(versions, expected);
    let unique = query(
        &database,
        "SELECT conname::text FROM pg_constraint
         WHERE conrelid = 'secrets'::regclass AND contype = 'u'",
    )
    .await;
    let unique: Vec<String> = unique.iter().map(|r| r.get(0)).collect();
    assert_eq!(unique, ["secrets_address_key"], "only an address is unique");
    for server in &servers {
        assert!(
            !server.log_text().contains("ERROR"),
            "{}",
            server.log_text()
        );
    }

    // A write through each is read through every other at once.
    let http = client();
    let key = "sk_test_five";
    for (n, writer) in servers.iter().enumerate() {
        let name = format!("from-{n}");
        let (status, _) = set(
            &http,
            &writer.url,
            key,
            &[
                ("name", name.as_str()),
                ("payload", name.as_str()),
                ("scope[type]", "account"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        for reader in &servers {
            let (status, found) = find(
                &http,
                &reader.url,
                key,
                &[
                    ("name", name.as_str()),
                    ("scope[type]", "account"),
                    ("expand[]", "payload"),
                ],
            )
            .await
            .unwrap();
            assert_eq!(
                (status, found["payload"].as_str()),
                (200, Some(name.as_str()))
            );
        }
    }

    // Forty creates of distinct names into one user scope, spread over the five servers at
    // once: exactly the maximum (10) are stored, the rest refused, never an 11th.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (http, url) = (http.clone(), servers[n % 5].url.clone());
        tasks.spawn(async move {
            let name = format!("race-{n}");
            set(
                &http,
                &url,
                key,
                &[
                    ("name", name.as_str()),
                    ("payload", "x"),
                    ("scope[type]", "user"),
                    ("scope[user]", "usr_race"),
                ],
            )
            .await
            .unwrap()
        });
    }
    let (mut stored, mut full) = (0, 0);
    while let Some(answer) = tasks.join_next().await {
        let (status, body) = answer.unwrap();
        match status {
            200 => stored += 1,
            400 => {
                assert_eq!(body["error"]["code"], "scope_full", "{body}");
                full += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((stored, full), (10, 30));
    let rows = query(
        &database,
        "SELECT count(*) FROM secrets WHERE scope_user = 'usr_race'",
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 10);
    // Never two rows of one scope and name (the table's constraint, checked as stored).
    let rows = query(
        &database,
        "SELECT count(*) FROM (SELECT 1 FROM secrets GROUP BY app, account, livemode, \
         scope_type, scope_user, name HAVING count(*) > 1) AS twice",
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}

/// Polls `url` with `key` until it is refused with 401, and says how long that took.
async fn refused_within(url: &str, key: &str, account: Option<&str>, limit: Duration) -> Duration {
    let http = client();
    let began = Instant::now();
    loop {
        let mut request = http
            .get(format!("{url}/v1/apps/secrets"))
            .bearer_auth(key)
            .query(&[("scope[type]", "account")]);
        if let Some(account) = account {
            request = request.header("Stripe-Account", account);
        }
        let status = request.send().await.unwrap().status().as_u16();
        if status == 401 {
            return began.elapsed();
        }
        assert_eq!(status, 200, "before the revocation is seen");
        assert!(
            began.elapsed() < limit,
            "still accepted {:?} after the revocation",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_or_ended_session_is_refused_by_every_server_within_two_seconds() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::production(BIN);
    let servers = site.start_together(3, &["--database-url", database.url()]);
    let admin = Admin::of(&site, &servers[0]);
    admin
        .tenants("app.pg", "acct_owner", &["acct_cust"], &["usr_u"])
        .await;
    let key = admin.key("app.pg", "test", "secret", &[]).await;
    let key_id = {
        let (_, keys) = admin.call("GET", "/v1/apps/app.pg/keys", None).await;
        keys["data"][0]["id"].as_str().unwrap().to_owned()
    };
    let session = admin.session("app.pg", "acct_cust", "usr_u", "test").await;
    let session_key = session["secret"].as_str().unwrap().to_owned();

    // Every server has the credentials in its cache (each has answered them).
    for server in &servers {
        let http = client();
        for (credential, account) in [(&key, Some("acct_cust")), (&session_key, None)] {
            let mut request = http
                .get(format!("{}/v1/apps/secrets", server.url))
                .bearer_auth(credential)
                .query(&[("scope[type]", "account")]);
            if let Some(account) = account {
                request = request.header("Stripe-Account", account);
            }
            assert_eq!(request.send().await.unwrap().status(), 200);
        }
    }

    // Revoked through the first server's admin API: refused through the other two within 2 s.
    admin
        .ok("POST", &format!("/v1/keys/{key_id}/revoke"), json!({}))
        .await;
    for server in &servers[1..] {
        let took =
            refused_within(&server.url, &key, Some("acct_cust"), Duration::from_secs(2)).await;
        eprintln!("revoked key refused by {} after {took:?}", server.url);
    }
    // An ended session, likewise.
    admin
        .ok(
            "DELETE",
            &format!("/v1/user_sessions/{}", session["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    for server in &servers[1..] {
        let took = refused_within(&server.url, &session_key, None, Duration::from_secs(2)).await;
        eprintln!("ended session refused by {} after {took:?}", server.url);
    }
}

#[tokio::test]
async fn a_removal_killed_midway_is_all_or_nothing_on_postgres() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let extra = ["--database-url", database.url()];
    let mut site = Site::production(BIN);
    let mut server = site.start(&extra);
    let admin = Admin::of(&site, &server);
    admin.tenants("app.big", "acct_big", &[], &[]).await;
    // Many secrets, written straight into the database (the removal never opens a payload, so
    // any bytes will do), so that the removal takes a while.
    let total: i64 = 1_000_000;
    query(
        &database,
        &format!(
            "INSERT INTO secrets (id, app, account, livemode, scope_type, scope_user, name, \
             created, expires_at, sealed, address) SELECT 'appsecret_' || lpad(n::text, 30, '0'), \
             'app.big', 'acct_big', false, 'account', '', 's' || n, 1, NULL, '\\x00'::bytea, \
             decode(md5('a' || n) || md5('b' || n), 'hex') FROM generate_series(1, {total}) AS n"
        ),
    )
    .await;
    let removal = tokio::spawn({
        let (http, url) = (client(), server.admin_url.clone().unwrap());
        let token = site.admin_token.clone().unwrap();
        async move {
            http.delete(format!("{url}/v1/accounts/acct_big?confirm=true"))
                .bearer_auth(token)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill9();
    let answered = removal.await.unwrap().is_ok();
    // The database ends the dead server's transaction when it finds the connection gone; until
    // then its rows are still locked, and afterwards either all of it happened or none.
    let server = site.start(&extra);
    let admin = Admin::of(&site, &server);
    let (status, account) = admin.call("GET", "/v1/accounts/acct_big", None).await;
    let left: i64 = query(
        &database,
        "SELECT count(*) FROM secrets WHERE account = 'acct_big'",
    )
    .await[0]
        .get(0);
    let apps: i64 =
        query(&database, "SELECT count(*) FROM apps WHERE id = 'app.big'").await[0].get(0);
    match status {
        200 => assert_eq!((left, apps), (total, 1), "{account}"),
        404 => assert_eq!((left, apps), (0, 0)),
        other => panic!("unexpected {other}: {account}"),
    }
    eprintln!(
        "removal answered before the kill: {answered}; after restart the account is {}",
        if status == 200 { "whole" } else { "gone" }
    );
}

/// Runs `secretstore serve` to its exit; (succeeded, everything it printed).
fn run_to_exit(mut command: std::process::Command) -> (bool, String) {
    let output = command.stdin(std::process::Stdio::null()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn database_settings_that_cannot_work_stop_the_start_with_one_sentence() {
    let site = Site::new(BIN);
    // Nothing listens on port 9: the database is named, the password never shown.
    let unreachable = "postgres://secretstore:hunter2-pw@127.0.0.1:9/secrets";
    let (ok, text) = run_to_exit(site.command(&["--database-url", unreachable]));
    assert!(!ok);
    assert!(
        text.contains("cannot open the database 127.0.0.1:9/secrets (--database-url)")
            && text.contains("Connection refused"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the password was printed: {text}"
    );
    assert_eq!(
        text.matches("Connection refused").count(),
        1,
        "said twice: {text}"
    );

    let (ok, text) =
        run_to_exit(site.command(&["--database-url", "postgres://u:hunter2-pw@h/d?nonsense=1"]));
    assert!(!ok);
    assert!(text.contains("the database URL is not valid"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password was printed: {text}"
    );

    let (ok, text) =
        run_to_exit(site.command(&["--database-url", "postgres://u@127.0.0.1/d?sslmode=require"]));
    assert!(!ok);
    assert!(text.contains("sslmode=require"), "{text}");

    // Servers sharing a database share a root key: dev mode does not generate one there.
    let mut command = site.command(&["--database-url", unreachable]);
    command.env_remove("SECRETSTORE_ROOT_KEY");
    let (ok, text) = run_to_exit(command);
    assert!(!ok);
    assert!(
        text.contains("the root key must come from --root-key-file"),
        "{text}"
    );
    assert!(
        !site.data().join("root.key").exists(),
        "a root key was generated"
    );
}
