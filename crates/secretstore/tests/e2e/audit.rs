//! The audit log through the real binary (docs/audit.md): every request to /v1 and to the admin
//! API leaves one record with who, what, where from and the outcome, refusals before
//! authentication included, never a payload or a credential; `secretstore audit verify`, run
//! against the running server, names exactly the record that was edited, removed, inserted or
//! moved with the database's own shell (sqlite3, psql); `audit search` finds records by their
//! fields; `--audit-log` copies every record as a JSON line; a read whose record cannot be
//! written is not answered.

use std::process::Command;

use serde_json::{json, Value};

use crate::server::{client, contains, files_under, find, set, Server, BIN};
use crate::tenancy::Admin;
use secretstore_testkit::binary::Site;
use secretstore_testkit::postgres::{available, ScratchDatabase};

pub const APP: &str = "com.example.audited";
const OWNER: &str = "acct_owner";
const PAYLOAD: &str = "pw-9f3c1e2d-never-in-the-log";

/// `secretstore audit ARGS` against `server`; (exit code, standard output).
fn audit_cli(site: &Site, server: &Server, args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN)
        .arg("audit")
        .args(args)
        .arg("--admin-url")
        .arg(server.admin_url.as_deref().unwrap())
        .env(
            "SECRETSTORE_ADMIN_TOKEN",
            site.admin_token.as_deref().unwrap(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

/// Every record, oldest first, through `secretstore audit search --all --json`.
fn all_records(site: &Site, server: &Server) -> Vec<Value> {
    let (code, out) = audit_cli(
        site,
        server,
        &["search", "--all", "--json", "--limit", "1000"],
    );
    assert_eq!(code, 0, "{out}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let mut records = page["data"].as_array().unwrap().clone();
    records.reverse();
    records
}

/// A production server with an app, its key, and a user on the owner account.
pub async fn provisioned(site: &mut Site, extra: &[&str]) -> (Server, String) {
    let server = site.start(extra);
    let admin = Admin::of(site, &server);
    admin.tenants(APP, OWNER, &[], &[]).await;
    admin
        .ok(
            "POST",
            &format!("/v1/accounts/{OWNER}/users"),
            json!({"id": "usr_1"}),
        )
        .await;
    let key = admin.key(APP, "test", "secret", &[]).await;
    (server, key)
}

/// The record of the request with this `Request-Id`.
fn record_of<'a>(records: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one record of {request_id}: {records:#?}");
    found[0]
}

#[tokio::test]
async fn every_request_leaves_one_record_of_who_what_where_and_how_it_ended() {
    let mut site = Site::production(BIN);
    let log = site.dir.path().join("audit.jsonl");
    let (server, key) = provisioned(&mut site, &["--audit-log", log.to_str().unwrap()]).await;
    let http = client();
    let url = &server.url;
    let key_id = {
        let admin = Admin::of(&site, &server);
        let keys = admin
            .ok("GET", &format!("/v1/apps/{APP}/keys"), json!(null))
            .await;
        keys["data"][0]["id"].as_str().unwrap().to_owned()
    };
    let user_scope = [("scope[type]", "user"), ("scope[user]", "usr_1")];
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut call = |response: reqwest::Response, want: Value| {
        let id = response.headers()["request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        expected.push((id, want));
        response
    };

    let form = [("name", "db_password"), ("payload", PAYLOAD)];
    let response = http
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(&key)
        .form(&[&form[..], &user_scope[..]].concat())
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.set", "status": 200, "code": null,
        "credential": key_id, "credential_kind": "secret_key", "app": APP, "account": OWNER,
        "mode": "test", "scope_type": "user", "user": "usr_1", "secret_name": "db_password"}),
    );
    for (name, status, code) in [
        ("db_password", 200, Value::Null),
        ("nothing_here", 404, json!("resource_missing")),
    ] {
        let response = http
            .get(format!("{url}/v1/apps/secrets/find"))
            .bearer_auth(&key)
            .query(
                &[
                    &[("name", name), ("expand[]", "payload")][..],
                    &user_scope[..],
                ]
                .concat(),
            )
            .send()
            .await
            .unwrap();
        call(
            response,
            json!({"operation": "secrets.find", "status": status, "code": code,
            "credential": key_id, "scope_type": "user", "user": "usr_1", "secret_name": name}),
        );
    }
    let response = http
        .get(format!("{url}/v1/apps/secrets"))
        .bearer_auth(&key)
        .query(&[("scope[type]", "account")])
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.list", "status": 200, "scope_type": "account",
        "user": null, "secret_name": null, "app": APP}),
    );
    // Refusals before authentication: a wrong key, no key, a body too large, headers too large,
    // a route that does not exist.
    let response = http
        .get(format!("{url}/v1/apps/secrets/find"))
        .bearer_auth("sk_test_NotAKeyOfThisServerAtAll1234")
        .query(&[("name", "db_password"), ("scope[type]", "account")])
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.find", "status": 401, "code": null,
        "credential_kind": "secret_key", "credential": "sk_test_****1234", "app": null,
        "secret_name": null}),
    );
    let response = http
        .post(format!("{url}/v1/apps/secrets/delete"))
        .form(&[("name", "db_password")])
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.delete", "status": 401,
        "credential": null, "credential_kind": null}),
    );
    let response = http
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=big&payload={}", "x".repeat(300 * 1024)))
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.set", "status": 413,
        "code": "request_too_large"}),
    );
    let response = http
        .get(format!("{url}/v1/apps/secrets/find"))
        .bearer_auth(&key)
        .header("x-padding", "p".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.find", "status": 431,
        "code": "headers_too_large", "credential": null}),
    );
    let response = http
        .get(format!("{url}/v1/no/such/route"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "unknown", "status": 404, "code": null}),
    );
    let response = http
        .post(format!("{url}/v1/apps/secrets/delete"))
        .bearer_auth(&key)
        .form(&[&[("name", "db_password")][..], &user_scope[..]].concat())
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "secrets.delete", "status": 200,
        "secret_name": "db_password", "user": "usr_1"}),
    );
    // The admin API: a wrong token, and a call that works.
    let admin_url = server.admin_url.clone().unwrap();
    let response = http
        .get(format!("{admin_url}/v1/accounts/{OWNER}"))
        .bearer_auth("not-the-admin-token-not-the-admin-token")
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "admin GET /v1/accounts/{id}", "status": 403,
        "code": "admin_token_invalid", "credential_kind": "admin_token", "credential": null}),
    );
    let response = http
        .post(format!("{admin_url}/v1/accounts"))
        .bearer_auth(site.admin_token.as_deref().unwrap())
        .json(&json!({"id": "acct_later"}))
        .send()
        .await
        .unwrap();
    call(
        response,
        json!({"operation": "admin POST /v1/accounts", "status": 200,
        "credential_kind": "admin_token", "credential": "admin"}),
    );

    let records = all_records(&site, &server);
    for (request_id, want) in &expected {
        let record = record_of(&records, request_id);
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&record[field], value, "{field} of {request_id}: {record:#}");
        }
        assert_eq!(record["client"], "127.0.0.1", "{record:#}");
        assert!(
            record["time"].as_str().unwrap().ends_with('Z'),
            "{record:#}"
        );
    }
    // Provisioning before, and the search itself, are recorded too: one record per request,
    // in the order they were answered.
    assert!(records.len() > expected.len(), "{}", records.len());
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());

    // Never a payload or a credential, in the database, the JSON-lines copy or anything else
    // the server wrote.
    let (code, out) = audit_cli(&site, &server, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    drop(server);
    for secret in [PAYLOAD, key.as_str(), site.admin_token.as_deref().unwrap()] {
        let leaked = files_under(site.dir.path())
            .into_iter()
            .filter(|(_, bytes)| contains(bytes, secret.as_bytes()))
            .map(|(path, _)| path)
            .collect::<Vec<_>>();
        let allowed = site.dir.path().join("admin.token");
        assert!(
            leaked.iter().all(|file| *file == allowed),
            "{secret:.12}... found in {leaked:?}"
        );
    }
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // The copy holds every record the search saw, the same, in order (and the search's own).
    assert_eq!(&lines[..records.len()], &records[..]);
}

/// The database's shell, as an operator (or an attacker) would use it.
pub enum Shell<'a> {
    Sqlite(&'a std::path::Path),
    Postgres(&'a str),
}

impl Shell<'_> {
    pub fn run(&self, sql: &str) -> String {
        let output = match self {
            Shell::Sqlite(db) => Command::new("sqlite3")
                .args(["-bail", "-cmd", ".timeout 5000"])
                .arg(db)
                .arg(sql)
                .output(),
            Shell::Postgres(url) => Command::new("psql")
                .args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
                .output(),
        }
        .expect("the database shell runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A made-up hash, as a literal of the shell's dialect.
    fn forged_hash(&self) -> &'static str {
        match self {
            Shell::Sqlite(_) => {
                "x'0707070707070707070707070707070707070707070707070707070707070707'"
            }
            Shell::Postgres(_) => "decode(repeat('07', 32), 'hex')",
        }
    }
}

/// `audit verify` names `record` (exit 1, the record's number and what happened to it).
fn assert_named(site: &Site, server: &Server, record: i64, what: &str) {
    let (code, out) = audit_cli(site, server, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("broken at record {record}:")) && out.contains(what),
        "wanted record {record} {what}: {out}"
    );
}

fn assert_intact(site: &Site, server: &Server) {
    let (code, out) = audit_cli(site, server, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

/// Edits, removes, moves and inserts audit rows with the database shell while the server
/// runs; `audit verify` names exactly the row each time (and the chain is intact again once a
/// tamper is undone).
async fn tampering_is_named(site: &mut Site, shell: Shell<'_>, extra: &[&str]) {
    let (server, key) = provisioned(site, extra).await;
    let http = client();
    for i in 0..6 {
        let (status, _) = set(
            &http,
            &server.url,
            &key,
            &[
                ("name", &format!("s{i}")),
                ("payload", "p"),
                ("scope[type]", "account"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    assert_intact(site, &server);
    let k = 5;

    // Edited: the name of the secret read.
    let name = shell.run(&format!("SELECT secret_name FROM audit WHERE seq = {k}"));
    shell.run(&format!(
        "UPDATE audit SET secret_name = 'something_else' WHERE seq = {k}"
    ));
    assert_named(site, &server, k, "does not match its hash");
    let restore = if name.is_empty() {
        "NULL".to_owned()
    } else {
        format!("'{name}'")
    };
    shell.run(&format!(
        "UPDATE audit SET secret_name = {restore} WHERE seq = {k}"
    ));
    assert_intact(site, &server);

    // Removed.
    shell.run(&format!(
        "CREATE TABLE kept_aside AS SELECT * FROM audit WHERE seq = {k}; \
         DELETE FROM audit WHERE seq = {k};"
    ));
    assert_named(site, &server, k, "was removed");
    shell.run("INSERT INTO audit SELECT * FROM kept_aside; DROP TABLE kept_aside;");
    assert_intact(site, &server);

    // Moved: two records' places exchanged.
    let swap = format!(
        "UPDATE audit SET seq = -1 WHERE seq = {k}; \
         UPDATE audit SET seq = {k} WHERE seq = {next}; \
         UPDATE audit SET seq = {next} WHERE seq = -1;",
        next = k + 1
    );
    shell.run(&swap);
    assert_named(site, &server, k, &format!("written as record {}", k + 1));
    shell.run(&swap);
    assert_intact(site, &server);

    // Inserted: the rows from k on renumbered to make room, and a made-up record put there
    // (and, on PostgreSQL, the chain's head moved on by one to match). Last: this one is not
    // undone.
    let bump_head = match shell {
        Shell::Postgres(_) => "UPDATE audit_head SET seq = seq + 1;",
        Shell::Sqlite(_) => "",
    };
    shell.run(&format!(
        "UPDATE audit SET seq = seq + 1000000 WHERE seq >= {k}; \
         UPDATE audit SET seq = seq - 999999 WHERE seq >= 1000000; \
         INSERT INTO audit (seq, time_ms, request_id, credential_kind, credential, app, \
             account, mode, scope_type, user_id, operation, secret_name, client, status, code, \
             prev, hash) \
         SELECT {k}, time_ms, 'req_forgedforgedforged00', credential_kind, credential, app, \
             account, mode, scope_type, user_id, 'secrets.find', 'db_password', client, 200, \
             NULL, hash, {forged} FROM audit WHERE seq = {prev}; \
         {bump_head}",
        forged = shell.forged_hash(),
        prev = k - 1
    ));
    assert_named(site, &server, k, "inserted");
}

#[tokio::test]
async fn audit_verify_names_the_row_edited_removed_moved_or_inserted_with_sqlite3() {
    let mut site = Site::production(BIN);
    let db = site.db();
    tampering_is_named(&mut site, Shell::Sqlite(&db), &[]).await;
}

#[tokio::test]
async fn audit_verify_names_the_row_edited_removed_moved_or_inserted_with_psql() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::production(BIN);
    tampering_is_named(
        &mut site,
        Shell::Postgres(database.url()),
        &["--database-url", database.url()],
    )
    .await;
}

/// PostgreSQL refuses every new audit record from here on (a trigger), until
/// `DROP TRIGGER refuse_audit ON audit`.
pub const REFUSE_AUDIT_RECORDS: &str =
    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
     $$ BEGIN RAISE EXCEPTION 'the audit log refuses this record'; END $$; \
     CREATE TRIGGER refuse_audit BEFORE INSERT ON audit \
     FOR EACH ROW EXECUTE FUNCTION refuse_audit();";

/// With every new audit record refused by a trigger (`refuse`, undone by `allow`), a read is not
/// answered (503, no payload), a set stores nothing, and an admin change is not made; once
/// records are taken again, everything works and the chain is whole.
async fn a_refused_record_stops_its_request(
    site: &mut Site,
    shell: Shell<'_>,
    extra: &[&str],
    refuse: &str,
    allow: &str,
) {
    let (server, key) = provisioned(site, extra).await;
    let http = client();
    let account = [("scope[type]", "account")];
    let (status, _) = set(
        &http,
        &server.url,
        &key,
        &[&[("name", "kept"), ("payload", PAYLOAD)][..], &account[..]].concat(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    shell.run(refuse);
    let query = [
        ("name", "kept"),
        ("scope[type]", "account"),
        ("expand[]", "payload"),
    ];
    let (status, body) = find(&http, &server.url, &key, &query).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    assert!(!body.to_string().contains(PAYLOAD));
    let (status, body) = set(
        &http,
        &server.url,
        &key,
        &[&[("name", "refused"), ("payload", "p")][..], &account[..]].concat(),
    )
    .await
    .unwrap();
    assert!(status >= 500, "{status} {body}");
    let admin = Admin::of(site, &server);
    let (status, body) = admin
        .call(
            "POST",
            "/v1/accounts",
            Some(json!({"id": "acct_unrecorded"})),
        )
        .await;
    assert!(status >= 500, "{status} {body}");
    shell.run(allow);
    assert_eq!(
        shell.run("SELECT count(*) FROM secrets WHERE name = 'refused'"),
        "0",
        "a write whose record failed was kept"
    );
    let (status, _) = admin
        .call("GET", "/v1/accounts/acct_unrecorded", None)
        .await;
    assert_eq!(status, 404, "an admin change whose record failed was kept");
    let (status, body) = find(&http, &server.url, &key, &query).await.unwrap();
    assert_eq!((status, body["payload"].as_str()), (200, Some(PAYLOAD)));
    assert_intact(site, &server);
}

/// On PostgreSQL: a trigger refuses the audit rows.
#[tokio::test]
async fn a_request_whose_record_cannot_be_written_does_not_happen_on_postgres() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let mut site = Site::production(BIN);
    a_refused_record_stops_its_request(
        &mut site,
        Shell::Postgres(database.url()),
        &["--database-url", database.url()],
        REFUSE_AUDIT_RECORDS,
        "DROP TRIGGER refuse_audit ON audit;",
    )
    .await;
}

/// On SQLite: the trigger is added with the sqlite3 shell while the server runs.
#[tokio::test]
async fn a_request_whose_record_cannot_be_written_does_not_happen_on_sqlite() {
    let mut site = Site::production(BIN);
    let db = site.db();
    a_refused_record_stops_its_request(
        &mut site,
        Shell::Sqlite(&db),
        &[],
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit \
         BEGIN SELECT RAISE(ABORT, 'the audit log refuses this record'); END;",
        "DROP TRIGGER refuse_audit;",
    )
    .await;
}
