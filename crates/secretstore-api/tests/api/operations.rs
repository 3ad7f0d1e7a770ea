//! The four operations answering as docs/api.md §1-2 and §5 say.

use axum::body::Body;
use base64::Engine as _;
use http::{Method, Request};

use crate::common::{app, Answer, TestApp, KEY, START};

const ACCOUNT: &str = "scope[type]=account";

#[tokio::test]
async fn set_answers_the_object_without_payload_unless_expanded() {
    let app = app().build().await;
    let a = app.set(&format!("name=k&payload=v&{ACCOUNT}")).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let id = a.json["id"].as_str().unwrap();
    assert!(id.starts_with("appsecret_") && id.len() == 40, "{id}");
    assert_eq!(a.json["object"], "apps.secret");
    assert_eq!(a.json["created"], START);
    assert!(a.json["expires_at"].is_null() && a.json.get("expires_at").is_some());
    assert_eq!(a.json["livemode"], false);
    assert_eq!(a.json["name"], "k");
    assert_eq!(a.json["scope"], serde_json::json!({"type": "account"}));
    assert!(a.json.get("payload").is_none());
    assert!(a.json.get("deleted").is_none());

    let found = app.find(&format!("name=k&{ACCOUNT}")).await;
    assert_eq!(found.json, a.json);
    let found = app
        .find(&format!("name=k&{ACCOUNT}&expand[]=payload"))
        .await;
    assert_eq!(found.json["payload"], "v");
    let set_expanded = app
        .set(&format!("name=k2&payload=v2&{ACCOUNT}&expand[0]=payload"))
        .await;
    assert_eq!(set_expanded.json["payload"], "v2");
}

#[tokio::test]
async fn replace_keeps_id_created_and_place_and_clears_expiry_when_omitted() {
    let app = app().build().await;
    let first = app
        .set(&format!(
            "name=a&payload=1&{ACCOUNT}&expires_at={}",
            START + 100
        ))
        .await;
    app.set(&format!("name=b&payload=2&{ACCOUNT}")).await;
    app.clock.advance(5);
    let replaced = app
        .set(&format!("name=a&payload=3&{ACCOUNT}&expand[]=payload"))
        .await;
    assert_eq!(replaced.json["id"], first.json["id"]);
    assert_eq!(replaced.json["created"], START);
    assert!(replaced.json["expires_at"].is_null());
    assert_eq!(replaced.json["payload"], "3");
    let list = app.list(ACCOUNT).await;
    let names: Vec<_> = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["b", "a"], "a replace keeps its place");
}

#[tokio::test]
async fn delete_answers_the_object_with_deleted_true() {
    let app = app().build().await;
    let set = app.set(&format!("name=k&payload=v&{ACCOUNT}")).await;
    let deleted = app
        .delete(&format!("name=k&{ACCOUNT}&expand[]=payload"))
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json["id"], set.json["id"]);
    assert_eq!(deleted.json["deleted"], true);
    assert_eq!(deleted.json["payload"], "v");
    let again = app.delete(&format!("name=k&{ACCOUNT}")).await;
    again.assert_error(404, "invalid_request_error", Some("resource_missing"));
    assert_eq!(again.message(), "No such secret: 'k'");
    assert_eq!(again.param(), "name");
}

#[tokio::test]
async fn scopes_modes_accounts_and_apps_are_separate() {
    let app = app().build().await;
    let user = "scope[type]=user&scope[user]=usr_1";
    app.set(&format!("name=k&payload=account&{ACCOUNT}")).await;
    app.set(&format!("name=k&payload=user1&{user}")).await;
    let find = |key: &'static str,
                headers: &'static [(&'static str, &'static str)],
                scope: &'static str| {
        let app = &app;
        async move {
            app.call_as(
                key,
                headers,
                Method::GET,
                "/v1/apps/secrets/find",
                &format!("name=k&{scope}&expand[]=payload"),
            )
            .await
        }
    };
    assert_eq!(find(KEY, &[], ACCOUNT).await.json["payload"], "account");
    assert_eq!(
        find(KEY, &[], "scope[type]=user&scope[user]=usr_1")
            .await
            .json["payload"],
        "user1"
    );
    assert_eq!(
        find(KEY, &[], "scope[type]=user&scope[user]=usr_2")
            .await
            .status,
        404
    );
    assert_eq!(
        find("sk_live_app1", &[], ACCOUNT).await.status,
        404,
        "live does not see test"
    );
    assert_eq!(
        find("sk_test_app2", &[], ACCOUNT).await.status,
        404,
        "another app sees nothing"
    );
    assert_eq!(
        find(KEY, &[("stripe-account", "acct_1")], ACCOUNT)
            .await
            .status,
        404
    );
    assert_eq!(
        find("rk_test_app1", &[], ACCOUNT).await.json["payload"],
        "account",
        "rk_ of the same app"
    );

    let live = app
        .call_as(
            "sk_live_app1",
            &[],
            Method::POST,
            "/v1/apps/secrets",
            &format!("name=k&payload=live&{ACCOUNT}"),
        )
        .await;
    assert_eq!(live.json["livemode"], true);
    let user_secret = app.find(&format!("name=k&{user}")).await;
    assert_eq!(
        user_secret.json["scope"],
        serde_json::json!({"type": "user", "user": "usr_1"})
    );
}

#[tokio::test]
async fn list_is_newest_first_in_creation_order_and_pages_both_ways() {
    let app = app().max_per_scope(100).build().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        // All in the same second: order must still be exact.
        ids.push(
            app.set(&format!("name=s{i}&payload=p{i}&{ACCOUNT}"))
                .await
                .json["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app.list(&format!("{ACCOUNT}&limit=10{cursor}")).await;
        assert_eq!(page.json["object"], "list");
        assert_eq!(page.json["url"], "/v1/apps/secrets");
        let data = page.json["data"].as_array().unwrap();
        seen.extend(data.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        if !page.json["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = format!("&starting_after={}", seen.last().unwrap());
    }
    assert_eq!(seen, ids);

    let before = app
        .list(&format!("{ACCOUNT}&limit=3&ending_before={}", ids[10]))
        .await;
    let got: Vec<_> = before.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, &ids[7..10]);
    assert_eq!(before.json["has_more"], true);
    let first = app
        .list(&format!("{ACCOUNT}&limit=5&ending_before={}", ids[3]))
        .await;
    assert_eq!(first.json["data"].as_array().unwrap().len(), 3);
    assert_eq!(first.json["has_more"], false);

    let expanded = app
        .list(&format!("{ACCOUNT}&limit=1&expand[]=data.payload"))
        .await;
    assert_eq!(expanded.json["data"][0]["payload"], "p24");
    let plain = app.list(&format!("{ACCOUNT}&limit=1")).await;
    assert!(plain.json["data"][0].get("payload").is_none());
}

#[tokio::test]
async fn scope_maximum_holds_and_replacing_does_not_count() {
    let app = app().max_per_scope(3).build().await;
    for i in 0..3 {
        assert_eq!(
            app.set(&format!("name=n{i}&payload=p&{ACCOUNT}"))
                .await
                .status,
            200
        );
    }
    let full = app.set(&format!("name=n3&payload=p&{ACCOUNT}")).await;
    full.assert_error(400, "invalid_request_error", Some("scope_full"));
    assert_eq!(
        app.set(&format!("name=n0&payload=again&{ACCOUNT}"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.set("name=n3&payload=p&scope[type]=user&scope[user]=usr_1")
            .await
            .status,
        200
    );
    app.delete(&format!("name=n1&{ACCOUNT}")).await;
    assert_eq!(
        app.set(&format!("name=n3&payload=p&{ACCOUNT}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn scope_maximum_holds_under_32_concurrent_sets() {
    let app = std::sync::Arc::new(app().build().await);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.set(&format!("name=c{i}&payload=p&{ACCOUNT}")).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status.as_u16() {
            200 => ok += 1,
            _ => answer.assert_error(400, "invalid_request_error", Some("scope_full")),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(
        app.list(&format!("{ACCOUNT}&limit=100")).await.json["data"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

#[tokio::test]
async fn query_parameters_merge_into_a_post_body() {
    let app = app().build().await;
    let request = Request::builder()
        .method("POST")
        .uri("/v1/apps/secrets?name=q&scope%5Btype%5D=account")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("payload=from-body"))
        .unwrap();
    assert_eq!(app.send(request).await.status, 200);
    assert_eq!(
        app.find(&format!("name=q&{ACCOUNT}&expand[]=payload"))
            .await
            .json["payload"],
        "from-body"
    );
    let request = Request::builder()
        .method("POST")
        .uri("/v1/apps/secrets/delete?name=q&scope[type]=account")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(request).await.json["deleted"], true);
}

#[tokio::test]
async fn basic_auth_with_the_key_as_user_name() {
    let app = app().build().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    let request = Request::builder()
        .method("POST")
        .uri("/v1/apps/secrets")
        .header("authorization", format!("Basic {basic}"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Body::from("name=b&payload=p&scope[type]=account"))
        .unwrap();
    assert_eq!(app.send(request).await.status, 200);
    assert_eq!(
        app.find(&format!("name=b&{ACCOUNT}")).await.status,
        200,
        "same key, same app"
    );
}

#[tokio::test]
async fn every_answer_has_request_id_and_no_store_and_echoes_stripe_version() {
    let app = app().build().await;
    let ok = app
        .call_as(
            KEY,
            &[
                ("stripe-version", "2023-08-16"),
                ("stripe-context", "ctx_1"),
            ],
            Method::GET,
            "/v1/apps/secrets",
            ACCOUNT,
        )
        .await;
    let err = app.find("").await;
    let unknown = app.call(Method::GET, "/v1/nothing", "").await;
    let mut ids = std::collections::HashSet::new();
    for answer in [&ok, &err, &unknown] {
        let id = answer.headers["request-id"].to_str().unwrap().to_owned();
        assert!(id.starts_with("req_"), "{id}");
        assert!(ids.insert(id));
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    assert_eq!(ok.headers["stripe-version"], "2023-08-16");
}

async fn list_with_version(app: &TestApp, version: &str) -> Answer {
    let headers = [("stripe-version", version)];
    app.call_as(KEY, &headers, Method::GET, "/v1/apps/secrets", ACCOUNT)
        .await
}

#[tokio::test]
async fn a_stripe_version_that_is_not_a_version_is_refused_as_stripe_does() {
    let app = app().build().await;
    for version in ["2024-06-20", "2025-03-31.basil", "2026-10-28.endive"] {
        let answer = list_with_version(&app, version).await;
        assert_eq!(answer.status, 200, "{version}: {}", answer.json);
        assert_eq!(answer.headers["stripe-version"], version);
    }
    for version in [
        "garbage",
        "2024-6-20",
        "2024-13-01",
        "2025-03-31.Basil",
        "2025-03-31.",
    ] {
        let answer = list_with_version(&app, version).await;
        answer.assert_error(400, "invalid_request_error", None);
        assert!(
            answer.json["error"].get("code").is_none(),
            "{}",
            answer.json
        );
        assert_eq!(
            answer.message(),
            format!(
                "Invalid Stripe API version: {version}. A version is a date, as in 2024-06-20, \
                 optionally followed by a release name, as in 2025-03-31.basil; or leave \
                 Stripe-Version out."
            )
        );
        assert!(answer.headers.get("stripe-version").is_none(), "{version}");
        assert!(answer.headers["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_"));
    }
    // Refused before anything runs: a set with a bad version stores nothing.
    let set = set_with(
        &app,
        &[("stripe-version", "garbage")],
        "name=v&payload=p&scope[type]=account",
    )
    .await;
    assert_eq!(set.status, 400);
    assert_eq!(app.find(&format!("name=v&{ACCOUNT}")).await.status, 404);
}

async fn set_with(app: &TestApp, headers: &[(&str, &str)], params: &str) -> Answer {
    app.call_as(KEY, headers, Method::POST, "/v1/apps/secrets", params)
        .await
}

#[tokio::test]
async fn answers_echo_the_stripe_headers_the_sdks_read() {
    let app = app().build().await;
    let both = [
        ("idempotency-key", "echo-1"),
        ("stripe-account", "acct_echo"),
    ];
    let ok = set_with(&app, &both, "name=n&payload=p&scope[type]=account").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["idempotency-key"], "echo-1");
    assert_eq!(ok.headers["stripe-account"], "acct_echo");
    // Refusals echo them too, whether or not the request ran.
    let both = [
        ("idempotency-key", "echo-2"),
        ("stripe-account", "acct_echo"),
    ];
    let refused = set_with(&app, &both, "name=n&scope[type]=account").await;
    refused.assert_error(400, "invalid_request_error", Some("parameter_missing"));
    assert_eq!(refused.headers["idempotency-key"], "echo-2");
    assert_eq!(refused.headers["stripe-account"], "acct_echo");
    // Nothing sent, nothing echoed; a GET's Idempotency-Key means nothing and is not echoed; a
    // key the protocol refuses is not echoed either.
    let plain = set_with(&app, &[], "name=m&payload=p&scope[type]=account").await;
    assert!(plain.headers.get("idempotency-key").is_none());
    assert!(plain.headers.get("stripe-account").is_none());
    let get = app
        .call_as(
            KEY,
            &[("idempotency-key", "echo-3")],
            Method::GET,
            "/v1/apps/secrets",
            ACCOUNT,
        )
        .await;
    assert_eq!(get.status, 200);
    assert!(get.headers.get("idempotency-key").is_none());
    let long = "k".repeat(256);
    let invalid = set_with(
        &app,
        &[("idempotency-key", &long)],
        "name=n&payload=p&scope[type]=account",
    )
    .await;
    invalid.assert_error(
        400,
        "invalid_request_error",
        Some("idempotency_key_invalid"),
    );
    assert!(invalid.headers.get("idempotency-key").is_none());
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app().build().await;
    assert_eq!(
        app.call(Method::GET, "/healthz", "").await.json["status"],
        "ok"
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", "").await.json["status"],
        "ready"
    );
}
