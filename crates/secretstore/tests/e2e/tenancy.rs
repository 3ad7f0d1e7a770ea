//! Production mode through the real binary: provisioning over the admin API, and every
//! cross-tenant attempt refused the same way whether or not its target exists, changing
//! nothing (docs/api.md §6 and §10's table); revocation, rolls and ended sessions taking effect
//! on the next request; a removal that a kill cannot leave half done; and a removal's
//! crypto-shredding, seen from outside: its rows put back from an older copy do not open.

use std::time::Duration;

use serde_json::{json, Value};

use crate::server::{client, Server, BIN};
use secretstore_testkit::binary::Site;

/// The admin API of a running production server.
pub struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    pub fn of(site: &Site, server: &Server) -> Self {
        Self {
            http: client(),
            url: server
                .admin_url
                .clone()
                .expect("a production server has an admin URL"),
            token: site
                .admin_token
                .clone()
                .expect("a production site has a token"),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A call that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method, path, Some(body)).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    /// An app of `owner` (made first) installed on each of `installed` (made first), and the
    /// users of the first of them: the usual tenants of a test.
    pub async fn tenants(&self, app: &str, owner: &str, installed: &[&str], users: &[&str]) {
        for account in std::iter::once(&owner).chain(installed) {
            self.ok("POST", "/v1/accounts", json!({"id": account}))
                .await;
        }
        self.ok(
            "POST",
            "/v1/apps",
            json!({"id": app, "name": app, "account": owner}),
        )
        .await;
        for account in installed {
            self.ok(
                "POST",
                "/v1/installations",
                json!({"app": app, "account": account}),
            )
            .await;
        }
        if let Some(first) = installed.first() {
            for user in users {
                self.ok(
                    "POST",
                    &format!("/v1/accounts/{first}/users"),
                    json!({"id": user}),
                )
                .await;
            }
        }
    }

    pub async fn key(&self, app: &str, mode: &str, kind: &str, permissions: &[&str]) -> String {
        let mut body = json!({"mode": mode, "type": kind});
        if !permissions.is_empty() {
            body["permissions"] = json!(permissions);
        }
        let key = self.ok("POST", &format!("/v1/apps/{app}/keys"), body).await;
        key["secret"].as_str().unwrap().to_owned()
    }

    pub async fn session(&self, app: &str, account: &str, user: &str, mode: &str) -> Value {
        self.ok(
            "POST",
            "/v1/user_sessions",
            json!({"app": app, "account": account, "user": user, "mode": mode}),
        )
        .await
    }
}

/// A request to the public API.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: &'static str,
    params: Vec<(String, String)>,
}

fn call(method: &'static str, path: &'static str, params: &[(&str, &str)]) -> Call {
    Call {
        method,
        path,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn send(url: &str, key: &str, account: Option<&str>, call: &Call) -> (u16, Value) {
    let http = client();
    let target = format!("{url}{}", call.path);
    let mut request = if call.method == "GET" {
        http.get(target).query(&call.params)
    } else {
        http.post(target).form(&call.params)
    };
    request = request.bearer_auth(key);
    if let Some(account) = account {
        request = request.header("Stripe-Account", account);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Everything of `app`'s secrets on `account` in test mode (both user scopes and the account
/// scope), as the app's own key sees them: ids and payloads.
async fn snapshot(url: &str, key: &str, account: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for scope in [
        vec![("scope[type]", "account")],
        vec![("scope[type]", "user"), ("scope[user]", "usr_alice")],
        vec![("scope[type]", "user"), ("scope[user]", "usr_bob")],
    ] {
        let mut params = scope.clone();
        params.push(("expand[]", "data.payload"));
        params.push(("limit", "100"));
        let (status, page) = send(
            url,
            key,
            Some(account),
            &call("GET", "/v1/apps/secrets", &params),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        all.push(page["data"].clone());
    }
    all
}

/// A production server with two platforms' apps, customers, users, keys and sessions.
struct World {
    _site: Site,
    server: Server,
    admin: Admin,
    keys: std::collections::HashMap<&'static str, String>,
}

async fn world() -> World {
    let mut site = Site::production(BIN);
    let server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    for (id, name) in [
        ("acct_owner_a", "Owner A"),
        ("acct_owner_b", "Owner B"),
        ("acct_cust", "Customer"),
        ("acct_other", "Other"),
    ] {
        admin
            .ok("POST", "/v1/accounts", json!({"id": id, "name": name}))
            .await;
    }
    admin
        .ok(
            "POST",
            "/v1/apps",
            json!({"id": "app.a", "name": "A", "account": "acct_owner_a"}),
        )
        .await;
    admin
        .ok(
            "POST",
            "/v1/apps",
            json!({"id": "app.b", "name": "B", "account": "acct_owner_b"}),
        )
        .await;
    admin
        .ok(
            "POST",
            "/v1/installations",
            json!({"app": "app.a", "account": "acct_cust"}),
        )
        .await;
    for user in ["usr_alice", "usr_bob"] {
        admin
            .ok("POST", "/v1/accounts/acct_cust/users", json!({"id": user}))
            .await;
    }
    admin
        .ok(
            "POST",
            "/v1/accounts/acct_other/users",
            json!({"id": "usr_carol"}),
        )
        .await;
    let mut keys = std::collections::HashMap::new();
    keys.insert("a_test", admin.key("app.a", "test", "secret", &[]).await);
    keys.insert("a_live", admin.key("app.a", "live", "secret", &[]).await);
    keys.insert(
        "a_read",
        admin
            .key("app.a", "test", "restricted", &["secret_read"])
            .await,
    );
    keys.insert(
        "a_write",
        admin
            .key("app.a", "test", "restricted", &["secret_write"])
            .await,
    );
    keys.insert("b_test", admin.key("app.b", "test", "secret", &[]).await);
    // A revoked key, a key rolled without grace, and an ended session.
    let revoked = admin
        .ok(
            "POST",
            "/v1/apps/app.a/keys",
            json!({"mode": "test", "type": "secret"}),
        )
        .await;
    admin
        .ok(
            "POST",
            &format!("/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    keys.insert("revoked", revoked["secret"].as_str().unwrap().to_owned());
    let rolled = admin
        .ok(
            "POST",
            "/v1/apps/app.a/keys",
            json!({"mode": "test", "type": "secret"}),
        )
        .await;
    admin
        .ok(
            "POST",
            &format!("/v1/keys/{}/roll", rolled["id"].as_str().unwrap()),
            json!({"grace_period_secs": 0}),
        )
        .await;
    keys.insert("rolled", rolled["secret"].as_str().unwrap().to_owned());
    let alice = admin
        .session("app.a", "acct_cust", "usr_alice", "test")
        .await;
    keys.insert("alice", alice["secret"].as_str().unwrap().to_owned());
    let ended = admin.session("app.a", "acct_cust", "usr_bob", "test").await;
    admin
        .ok(
            "DELETE",
            &format!("/v1/user_sessions/{}", ended["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    keys.insert("ended", ended["secret"].as_str().unwrap().to_owned());
    // The secrets the attempts aim at: app.a on acct_cust, in test mode, every scope.
    for (name, scope) in [
        ("shared", vec![("scope[type]", "account")]),
        (
            "alice-token",
            vec![("scope[type]", "user"), ("scope[user]", "usr_alice")],
        ),
        (
            "bob-token",
            vec![("scope[type]", "user"), ("scope[user]", "usr_bob")],
        ),
    ] {
        let mut params = vec![("name", name), ("payload", "payload-of-app-a")];
        params.extend(scope);
        let (status, answer) = send(
            &server.url,
            &keys["a_test"],
            Some("acct_cust"),
            &call("POST", "/v1/apps/secrets", &params),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    World {
        _site: site,
        server,
        admin,
        keys,
    }
}

/// The name of a secret that exists nowhere.
const GHOST: &str = "no-such-secret-q7";

/// The answer without what differs between any two requests (the request id) or between the
/// two targets (their names).
fn comparable(answer: &Value, names: &[&str]) -> String {
    let mut text = answer.to_string();
    for name in names {
        text = text.replace(name, "NAME");
    }
    text
}

#[tokio::test]
async fn thirty_cross_tenant_attempts_are_refused_alike_whether_or_not_the_target_exists() {
    let w = world().await;
    let url = &w.server.url;
    let before = snapshot(url, &w.keys["a_test"], "acct_cust").await;
    let forged = |prefix: &str| format!("{prefix}{}", "Zq7".repeat(16));
    let admin_token = w._site.admin_token.clone().unwrap();
    let key = |name: &str| w.keys[name].clone();

    // (what, key, Stripe-Account, method, path, params with NAME, expected status, code)
    type Attempt = (
        &'static str,
        String,
        Option<&'static str>,
        Call,
        u16,
        Option<&'static str>,
    );
    let find = |scope: &[(&'static str, &'static str)]| {
        let mut p = vec![("name", "NAME"), ("expand[]", "payload")];
        p.extend_from_slice(scope);
        call("GET", "/v1/apps/secrets/find", &p)
    };
    let account: &[(&str, &str)] = &[("scope[type]", "account")];
    let alice: &[(&str, &str)] = &[("scope[type]", "user"), ("scope[user]", "usr_alice")];
    let bob: &[(&str, &str)] = &[("scope[type]", "user"), ("scope[user]", "usr_bob")];
    let set = |scope: &[(&'static str, &'static str)]| {
        let mut p = vec![("name", "NAME"), ("payload", "overwritten")];
        p.extend_from_slice(scope);
        call("POST", "/v1/apps/secrets", &p)
    };
    let delete = |scope: &[(&'static str, &'static str)]| {
        let mut p = vec![("name", "NAME")];
        p.extend_from_slice(scope);
        call("POST", "/v1/apps/secrets/delete", &p)
    };
    let attempts: Vec<Attempt> = vec![
        (
            "another app, no Stripe-Account",
            key("b_test"),
            None,
            find(account),
            404,
            Some("resource_missing"),
        ),
        (
            "another app on the customer",
            key("b_test"),
            Some("acct_cust"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "another app deletes on the customer",
            key("b_test"),
            Some("acct_cust"),
            delete(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "another app overwrites on the customer",
            key("b_test"),
            Some("acct_cust"),
            set(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "another app reads a user scope",
            key("b_test"),
            Some("acct_cust"),
            find(alice),
            403,
            Some("account_access_denied"),
        ),
        (
            "an account that did not install the app",
            key("a_test"),
            Some("acct_other"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "an account that does not exist",
            key("a_test"),
            Some("acct_ghost"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "another app's owner",
            key("a_test"),
            Some("acct_owner_b"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "not an account id",
            key("a_test"),
            Some("usr_alice"),
            find(account),
            403,
            Some("account_invalid"),
        ),
        (
            "the app's own owner holds none of it",
            key("a_test"),
            None,
            find(account),
            404,
            Some("resource_missing"),
        ),
        (
            "the other mode",
            key("a_live"),
            Some("acct_cust"),
            find(account),
            404,
            Some("resource_missing"),
        ),
        (
            "the other mode deletes",
            key("a_live"),
            Some("acct_cust"),
            delete(alice),
            404,
            Some("resource_missing"),
        ),
        (
            "the other mode, uninstalled account",
            key("a_live"),
            Some("acct_other"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "a revoked key",
            key("revoked"),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
        (
            "a revoked key writes",
            key("revoked"),
            Some("acct_cust"),
            set(account),
            401,
            None,
        ),
        (
            "a key rolled, past its grace",
            key("rolled"),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
        ("an ended session", key("ended"), None, find(bob), 401, None),
        (
            "a session reads another user's scope",
            key("alice"),
            None,
            find(bob),
            403,
            Some("scope_access_denied"),
        ),
        (
            "a session deletes another user's scope",
            key("alice"),
            None,
            delete(bob),
            403,
            Some("scope_access_denied"),
        ),
        (
            "a session writes another user's scope",
            key("alice"),
            None,
            set(bob),
            403,
            Some("scope_access_denied"),
        ),
        (
            "a session names another account",
            key("alice"),
            Some("acct_other"),
            find(account),
            403,
            Some("account_access_denied"),
        ),
        (
            "a session names the app's owner",
            key("alice"),
            Some("acct_owner_a"),
            find(alice),
            403,
            Some("account_access_denied"),
        ),
        (
            "a read-only key sets",
            key("a_read"),
            Some("acct_cust"),
            set(account),
            403,
            Some("permission_denied"),
        ),
        (
            "a read-only key deletes",
            key("a_read"),
            Some("acct_cust"),
            delete(alice),
            403,
            Some("permission_denied"),
        ),
        (
            "a write-only key finds",
            key("a_write"),
            Some("acct_cust"),
            find(account),
            403,
            Some("permission_denied"),
        ),
        (
            "a write-only key lists",
            key("a_write"),
            Some("acct_cust"),
            call("GET", "/v1/apps/secrets", account),
            403,
            Some("permission_denied"),
        ),
        (
            "the admin token as an API key",
            admin_token.clone(),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
        (
            "a forged secret key",
            forged("sk_test_"),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
        (
            "a forged restricted key",
            forged("rk_test_"),
            Some("acct_cust"),
            delete(account),
            401,
            None,
        ),
        (
            "a forged session",
            forged("ek_test_"),
            None,
            find(alice),
            401,
            None,
        ),
        (
            "a dev-mode key naming the app",
            "sk_test_app_a".to_owned(),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
        (
            "a key's body under a session's prefix",
            key("a_test").replacen("sk_", "ek_", 1),
            None,
            find(account),
            401,
            None,
        ),
        (
            "a live forged key",
            forged("sk_live_"),
            Some("acct_cust"),
            find(account),
            401,
            None,
        ),
    ];
    assert!(attempts.len() >= 30);
    let targets = [
        ("shared", GHOST),
        ("alice-token", GHOST),
        ("bob-token", GHOST),
    ];
    for (what, credential, stripe_account, attempt, status, code) in &attempts {
        // The existing target named by the scope, and one that exists nowhere.
        let scope_user = attempt
            .params
            .iter()
            .find(|(k, _)| k == "scope[user]")
            .map(|(_, v)| v.as_str());
        let existing = match scope_user {
            None => targets[0].0,
            Some("usr_alice") => targets[1].0,
            Some(_) => targets[2].0,
        };
        let with_name = |name: &str| {
            let mut c = attempt.clone();
            for (_, v) in &mut c.params {
                if v == "NAME" {
                    *v = name.to_owned();
                }
            }
            c
        };
        let (got, answer) = send(url, credential, *stripe_account, &with_name(existing)).await;
        let (ghost_status, ghost) = send(url, credential, *stripe_account, &with_name(GHOST)).await;
        assert_eq!(got, *status, "{what}: {answer}");
        if let Some(code) = code {
            assert_eq!(answer["error"]["code"], *code, "{what}: {answer}");
        }
        assert_eq!(ghost_status, got, "{what}: {ghost} vs {answer}");
        assert_eq!(
            comparable(&ghost, &[GHOST]),
            comparable(&answer, &[existing]),
            "{what}: the answer depends on whether the target exists"
        );
        let text = answer.to_string();
        assert!(
            !text.contains("payload-of-app-a"),
            "{what} leaked a payload: {text}"
        );
    }
    // The admin listener refuses an API key, whatever the route.
    for path in [
        "/v1/accounts",
        "/v1/accounts/acct_cust",
        "/v1/accounts/acct_ghost",
    ] {
        let response = client()
            .get(format!("{}{path}", w.admin.url))
            .bearer_auth(key("a_test"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
    }
    assert_eq!(
        snapshot(url, &w.keys["a_test"], "acct_cust").await,
        before,
        "something changed"
    );
}

#[tokio::test]
async fn revocation_rolls_and_ended_sessions_take_effect_on_the_next_request() {
    let w = world().await;
    let url = &w.server.url;
    let read = call("GET", "/v1/apps/secrets", &[("scope[type]", "account")]);
    let created = w
        .admin
        .ok(
            "POST",
            "/v1/apps/app.a/keys",
            json!({"mode": "test", "type": "secret"}),
        )
        .await;
    let secret = created["secret"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(send(url, secret, Some("acct_cust"), &read).await.0, 200);
    // Rolled with a grace period: both keys work; the new one keeps working.
    let new = w
        .admin
        .ok(
            "POST",
            &format!("/v1/keys/{id}/roll"),
            json!({"grace_period_secs": 600}),
        )
        .await;
    let new_secret = new["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(send(url, secret, Some("acct_cust"), &read).await.0, 200);
    assert_eq!(send(url, new_secret, Some("acct_cust"), &read).await.0, 200);
    // Revoked: refused at once (the previous request may have been answered from a cache).
    w.admin
        .ok("POST", &format!("/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(send(url, secret, Some("acct_cust"), &read).await.0, 401);
    assert_eq!(send(url, new_secret, Some("acct_cust"), &read).await.0, 200);
    // A session works until it is ended, then not at all.
    let session = w
        .admin
        .session("app.a", "acct_cust", "usr_alice", "test")
        .await;
    let session_secret = session["secret"].as_str().unwrap();
    assert_eq!(send(url, session_secret, None, &read).await.0, 200);
    w.admin
        .ok(
            "DELETE",
            &format!("/v1/user_sessions/{}", session["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(send(url, session_secret, None, &read).await.0, 401);
    // Removing the installation ends what reached the account through it.
    let (status, listed) = w
        .admin
        .call("GET", "/v1/installations?app=app.a&account=acct_cust", None)
        .await;
    assert_eq!(status, 200);
    let inst = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, refused) = w
        .admin
        .call("DELETE", &format!("/v1/installations/{inst}"), None)
        .await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (400, json!("confirmation_required"))
    );
    let (status, removed) = w
        .admin
        .call(
            "DELETE",
            &format!("/v1/installations/{inst}?confirm=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removed"]["secrets"], 3, "{removed}");
    // Crypto-shredding: the namespace key of app.a on acct_cust went with its secrets.
    assert_eq!(removed["removed"]["keys"], 1, "{removed}");
    assert_eq!(send(url, new_secret, Some("acct_cust"), &read).await.0, 403);
}

#[tokio::test]
async fn a_removal_killed_midway_is_all_or_nothing() {
    let mut site = Site::production(BIN);
    let mut server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    admin
        .ok("POST", "/v1/accounts", json!({"id": "acct_big"}))
        .await;
    admin
        .ok(
            "POST",
            "/v1/apps",
            json!({"id": "app.big", "name": "Big", "account": "acct_big"}),
        )
        .await;
    // Many secrets, written straight into the database while the server is stopped (the
    // removal never opens a payload, so any bytes will do), so the removal takes a while.
    server.terminate();
    let total: u64 = 200_000;
    site.insert_bare_secrets("app.big", "acct_big", total, |n| {
        (None, format!("s{n}"), None)
    });
    let mut server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    // Remove the account (its app and every secret), and kill the server while it works.
    let removal = tokio::spawn({
        let (http, url, token) = (client(), admin.url.clone(), admin.token.clone());
        async move {
            http.delete(format!("{url}/v1/accounts/acct_big?confirm=true"))
                .bearer_auth(token)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.kill9();
    let answered = removal.await.unwrap().is_ok();
    let server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    let (status, account) = admin.call("GET", "/v1/accounts/acct_big", None).await;
    let count = crate::server::integrity_check(&site.db());
    assert_eq!(count, "ok");
    let conn = rusqlite::Connection::open(site.db()).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM secrets WHERE account = 'acct_big'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let apps: i64 = conn
        .query_row("SELECT COUNT(*) FROM apps WHERE id = 'app.big'", [], |r| {
            r.get(0)
        })
        .unwrap();
    match status {
        // Not removed: everything is still there.
        200 => assert_eq!((left, apps), (total as i64, 1), "{account}"),
        // Removed: nothing is.
        404 => assert_eq!((left, apps), (0, 0)),
        other => panic!("unexpected {other}: {account}"),
    }
    eprintln!(
        "removal answered before the kill: {answered}; after restart the account is {}",
        if status == 200 { "whole" } else { "gone" }
    );
}

#[tokio::test]
async fn dev_mode_opens_the_admin_listener_when_asked_and_still_takes_any_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut site = crate::server::site();
    let token = "dev-admin-token-long-enough-to-be-accepted-here";
    let token_file = site.dir.path().join("admin.token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = site.start(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    let admin_url = server.admin_url.clone().expect("the admin listener's line");
    assert_ne!(admin_url, server.url, "never the public listener");
    let admin = Admin {
        http: client(),
        url: admin_url.clone(),
        token: token.to_owned(),
    };
    let account = admin
        .ok(
            "POST",
            "/v1/accounts",
            json!({"id": "acct_devadmin", "name": "Dev"}),
        )
        .await;
    assert_eq!(account["id"], "acct_devadmin", "{account}");
    // The token is still required.
    let anonymous = client()
        .get(format!("{admin_url}/v1/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    // /v1 is dev mode as before: any well-formed key names its app, no provisioning needed.
    let set = call(
        "POST",
        "/v1/apps/secrets",
        &[
            ("name", "dev-token"),
            ("scope[type]", "account"),
            ("payload", "tok_dev"),
        ],
    );
    let (status, created) = send(&server.url, "sk_test_anyapp", None, &set).await;
    assert_eq!(status, 200, "{created}");
    let find = call(
        "GET",
        "/v1/apps/secrets/find",
        &[
            ("name", "dev-token"),
            ("scope[type]", "account"),
            ("expand[]", "payload"),
        ],
    );
    let (status, found) = send(&server.url, "sk_test_anyapp", None, &find).await;
    assert_eq!((status, found["payload"].clone()), (200, json!("tok_dev")));

    // Asking for the listener without a token is refused before anything starts.
    let mut command = site.command(&["--admin-listen", "127.0.0.1:0"]);
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("needs the admin token"), "{text}");
    assert!(text.contains("token-generate"), "{text}");
}

/// Crypto-shredding through the real binary (SECURITY.md): a copy of the database is taken,
/// an installation is removed, and the removed secrets' rows from the copy are put back into
/// the live database. With the real key hierarchy and root key, the server opens none of them:
/// reading one answers a clear JSON error, never the payload, even once the app is installed
/// there again; a new secret there, and every other tenant's, is served as before.
#[tokio::test]
async fn rows_of_a_removed_installation_put_back_from_an_older_copy_do_not_open() {
    let mut site = Site::production(BIN);
    let mut server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    admin
        .tenants(
            "app.shred",
            "acct_dev",
            &["acct_gone", "acct_kept"],
            &["usr_ann"],
        )
        .await;
    let key = admin.key("app.shred", "test", "secret", &[]).await;
    let account_scope = [("scope[type]", "account")];
    let user_scope = [("scope[type]", "user"), ("scope[user]", "usr_ann")];
    let set_in = |scope: &[(&str, &str)], name: &str, payload: &str| {
        let mut params = scope.to_vec();
        params.extend([("name", name), ("payload", payload)]);
        call("POST", "/v1/apps/secrets", &params)
    };
    let find_in = |scope: &[(&str, &str)], name: &str| {
        let mut params = scope.to_vec();
        params.extend([("name", name), ("expand[]", "payload")]);
        call("GET", "/v1/apps/secrets/find", &params)
    };
    let gone = [
        (&account_scope[..], "token", "shredded-account-payload"),
        (&user_scope[..], "oauth", "shredded-user-payload"),
    ];
    for (scope, name, payload) in gone {
        let (status, answer) = send(
            &server.url,
            &key,
            Some("acct_gone"),
            &set_in(scope, name, payload),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let kept = set_in(&account_scope, "token", "kept-payload");
    assert_eq!(
        send(&server.url, &key, Some("acct_kept"), &kept).await.0,
        200
    );

    // The copy: the database file of the stopped server, taken before the removal.
    server.terminate();
    let copy = site.dir.path().join("copy.db");
    std::fs::copy(site.db(), &copy).unwrap();
    let mut server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    let (status, listed) = admin
        .call(
            "GET",
            "/v1/installations?app=app.shred&account=acct_gone",
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let installation = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, removed) = admin
        .call(
            "DELETE",
            &format!("/v1/installations/{installation}?confirm=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removed"]["secrets"], 2, "{removed}");
    assert_eq!(removed["removed"]["keys"], 1, "{removed}");

    // The removed rows put back from the copy, and the app installed there again.
    server.terminate();
    let live = rusqlite::Connection::open(site.db()).unwrap();
    live.execute("ATTACH DATABASE ?1 AS copy", [copy.to_str().unwrap()])
        .unwrap();
    let restored = live
        .execute(
            "INSERT INTO secrets SELECT * FROM copy.secrets WHERE account = 'acct_gone'",
            [],
        )
        .unwrap();
    assert_eq!(restored, 2);
    drop(live);
    let server = site.start(&[]);
    let admin = Admin::of(&site, &server);
    admin
        .ok(
            "POST",
            "/v1/installations",
            json!({"app": "app.shred", "account": "acct_gone"}),
        )
        .await;
    for (scope, name, payload) in gone {
        let (status, answer) =
            send(&server.url, &key, Some("acct_gone"), &find_in(scope, name)).await;
        assert_eq!(status, 500, "{name}: {answer}");
        assert_eq!(answer["error"]["type"], "api_error", "{answer}");
        assert!(!answer.to_string().contains(payload), "{answer}");
    }
    let (status, answer) = send(
        &server.url,
        &key,
        Some("acct_kept"),
        &find_in(&account_scope, "token"),
    )
    .await;
    assert_eq!(
        (status, answer["payload"].clone()),
        (200, json!("kept-payload"))
    );
    // The namespace made again has a key of its own: new secrets there are served, and a
    // shredded row is replaced by a set of its name.
    for (scope, name, _) in gone {
        let fresh = format!("fresh-{name}");
        let (status, answer) = send(
            &server.url,
            &key,
            Some("acct_gone"),
            &set_in(scope, name, &fresh),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let (status, answer) =
            send(&server.url, &key, Some("acct_gone"), &find_in(scope, name)).await;
        assert_eq!((status, answer["payload"].clone()), (200, json!(fresh)));
    }
}
