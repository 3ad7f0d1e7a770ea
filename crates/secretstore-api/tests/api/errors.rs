//! Every row of docs/api.md §4 this server can reach, answered in the contract's JSON.

use axum::body::Body;
use http::{Method, Request};

use crate::common::{app, enc, method, START};

const ACCOUNT: &str = "scope[type]=account";

#[tokio::test]
async fn parameter_errors() {
    let app = app().build().await;
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // method, path, params, code, param
        (
            "POST",
            "/v1/apps/secrets",
            "payload=p&scope[type]=account",
            "parameter_missing",
            "name",
        ),
        (
            "GET",
            "/v1/apps/secrets/find",
            "name=n",
            "parameter_missing",
            "scope",
        ),
        (
            "GET",
            "/v1/apps/secrets/find",
            "name=n&scope[type]=user",
            "parameter_missing",
            "scope[user]",
        ),
        (
            "GET",
            "/v1/apps/secrets",
            "scope[type]=account&foo=bar",
            "parameter_unknown",
            "foo",
        ),
        (
            "POST",
            "/v1/apps/secrets/delete",
            "name=n&scope[type]=account&payload=p",
            "parameter_unknown",
            "payload",
        ),
        (
            "POST",
            "/v1/apps/secrets",
            "name=&payload=p&scope[type]=account",
            "parameter_invalid_string_empty",
            "name",
        ),
        (
            "POST",
            "/v1/apps/secrets",
            "name=n&payload=p&scope[type]=account&expires_at=tomorrow",
            "parameter_invalid_integer",
            "expires_at",
        ),
        (
            "GET",
            "/v1/apps/secrets",
            "scope[type]=account&limit=1.5",
            "parameter_invalid_integer",
            "limit",
        ),
        (
            "GET",
            "/v1/apps/secrets",
            "scope[type]=account&limit=101",
            "parameter_out_of_range",
            "limit",
        ),
        (
            "GET",
            "/v1/apps/secrets",
            "scope[type]=account&limit=0",
            "parameter_out_of_range",
            "limit",
        ),
        (
            "GET",
            "/v1/apps/secrets/find",
            "name=n&scope[type]=org",
            "parameter_invalid_enum",
            "scope[type]",
        ),
        (
            "GET",
            "/v1/apps/secrets/find",
            "name=n&scope[type]=account&expand[]=everything",
            "parameter_invalid_expand",
            "expand",
        ),
        (
            "GET",
            "/v1/apps/secrets/find",
            "name=a&name=b&scope[type]=account",
            "parameter_invalid",
            "name",
        ),
    ];
    for (m, path, params, code, param) in cases {
        let answer = app.call(method(m), path, params).await;
        answer.assert_error(400, "invalid_request_error", Some(code));
        assert_eq!(
            answer.param(),
            *param,
            "{m} {path}?{params}: {}",
            answer.json
        );
    }
    let missing = app.set("payload=p&scope[type]=account").await;
    assert_eq!(missing.message(), "Missing required param: name.");
    let unknown = app.list("scope[type]=account&foo=bar").await;
    assert_eq!(unknown.message(), "Received unknown parameter: foo");
}

#[tokio::test]
async fn too_long_values_count_characters() {
    let app = app().build().await;
    let max = "😀".repeat(5000);
    let over = "😀".repeat(5001);
    // The largest valid set: a name and a payload of 5,000 four-byte characters, and the
    // longest user id that still lets a find carry both in its URL (docs/api.md §3).
    let user = "😀".repeat(450);
    let ok = app
        .set(&format!(
            "name={}&payload={}&scope[type]=user&scope[user]={}",
            enc(&max),
            enc(&max),
            enc(&user)
        ))
        .await;
    assert_eq!(
        ok.status, 200,
        "the largest valid request fits the default body limit: {}",
        ok.json
    );
    for (field, params) in [
        ("name", format!("name={}&payload=p&{ACCOUNT}", enc(&over))),
        (
            "payload",
            format!("name=n&payload={}&{ACCOUNT}", enc(&over)),
        ),
        (
            "scope[user]",
            format!(
                "name=n&payload=p&scope[type]=user&scope[user]={}",
                enc(&over)
            ),
        ),
    ] {
        let answer = app.set(&params).await;
        answer.assert_error(
            400,
            "invalid_request_error",
            Some("parameter_invalid_string_too_long"),
        );
        assert_eq!(answer.param(), field);
    }
    let cursor = app
        .list(&format!("{ACCOUNT}&starting_after={}", "a".repeat(5001)))
        .await;
    cursor.assert_error(
        400,
        "invalid_request_error",
        Some("parameter_invalid_string_too_long"),
    );
}

#[tokio::test]
async fn expiry_out_of_range() {
    let app = app().build().await;
    for at in [START - 1, START, START + 3_155_760_001] {
        let answer = app
            .set(&format!("name=n&payload=p&{ACCOUNT}&expires_at={at}"))
            .await;
        answer.assert_error(400, "invalid_request_error", Some("parameter_out_of_range"));
        assert_eq!(answer.param(), "expires_at");
    }
    let ok = app
        .set(&format!(
            "name=n&payload=p&{ACCOUNT}&expires_at={}",
            START + 3_155_760_000
        ))
        .await;
    assert_eq!(ok.json["expires_at"], START + 3_155_760_000);
}

#[tokio::test]
async fn cursors_exclusive_and_unknown() {
    let app = app().build().await;
    let id = app.set(&format!("name=n&payload=p&{ACCOUNT}")).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let both = app
        .list(&format!("{ACCOUNT}&starting_after={id}&ending_before={id}"))
        .await;
    both.assert_error(400, "invalid_request_error", Some("parameters_exclusive"));
    let other_scope = app
        .list(&format!(
            "scope[type]=user&scope[user]=u&starting_after={id}"
        ))
        .await;
    other_scope.assert_error(404, "invalid_request_error", Some("resource_missing"));
    assert_eq!(other_scope.param(), "starting_after");
    let other_app = app
        .call_as(
            "sk_test_other",
            &[],
            Method::GET,
            "/v1/apps/secrets",
            &format!("{ACCOUNT}&ending_before={id}"),
        )
        .await;
    other_app.assert_error(404, "invalid_request_error", Some("resource_missing"));
    assert_eq!(other_app.param(), "ending_before");
}

#[tokio::test]
async fn authentication_errors_mask_the_key() {
    let app = app().build().await;
    let none = app
        .send(
            Request::get("/v1/apps/secrets?scope[type]=account")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    none.assert_error(401, "invalid_request_error", None);
    let key = "sk_test_bad-key-with-dashes-1234";
    let bad = app
        .call_as(key, &[], Method::GET, "/v1/apps/secrets", ACCOUNT)
        .await;
    bad.assert_error(401, "invalid_request_error", None);
    assert!(
        bad.message().contains("sk_test_****1234"),
        "{}",
        bad.message()
    );
    assert!(!bad.message().contains("bad-key"), "{}", bad.message());
    for key in ["sk_test_", "pk_test_abc", "bogus"] {
        app.call_as(key, &[], Method::GET, "/v1/apps/secrets", ACCOUNT)
            .await
            .assert_error(401, "invalid_request_error", None);
    }
}

#[tokio::test]
async fn stripe_account_that_is_not_an_account_is_forbidden() {
    let app = app().build().await;
    let answer = app
        .call_as(
            "sk_test_app1",
            &[("stripe-account", "usr_123")],
            Method::GET,
            "/v1/apps/secrets",
            ACCOUNT,
        )
        .await;
    answer.assert_error(403, "invalid_request_error", Some("account_invalid"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_404() {
    let app = app().build().await;
    for (m, path) in [
        ("GET", "/v1/foo"),
        ("DELETE", "/v1/apps/secrets"),
        ("GET", "/v1/apps/secrets/delete"),
        ("POST", "/v1/apps/secrets/find"),
        ("PUT", "/"),
        ("GET", "/v1/apps/secrets/find/extra"),
    ] {
        let answer = app.call(method(m), path, "").await;
        answer.assert_error(404, "invalid_request_error", None);
        assert!(
            answer
                .message()
                .starts_with(&format!("Unrecognized request URL ({m}: {path}).")),
            "{}",
            answer.message()
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413_json() {
    let app = app().max_body_bytes(1000).build().await;
    let big = format!("name=n&payload={}&{ACCOUNT}", "x".repeat(2000));
    app.set(&big)
        .await
        .assert_error(413, "invalid_request_error", Some("request_too_large"));
    // Without a Content-Length (a stream), the limit still holds.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(big))]);
    let request = Request::post("/v1/apps/secrets")
        .header("authorization", "Bearer sk_test_app1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from_stream(stream))
        .unwrap();
    app.send(request)
        .await
        .assert_error(413, "invalid_request_error", Some("request_too_large"));
}

#[tokio::test]
async fn wrong_content_type_and_malformed_bodies_answer_json() {
    let app = app().build().await;
    let json_body = Request::post("/v1/apps/secrets")
        .header("authorization", "Bearer sk_test_app1")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"n"}"#))
        .unwrap();
    app.send(json_body).await.assert_error(
        415,
        "invalid_request_error",
        Some("content_type_invalid"),
    );
    let not_utf8 = Request::post("/v1/apps/secrets")
        .header("authorization", "Bearer sk_test_app1")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(&b"name=%FF&payload=p&scope[type]=account"[..]))
        .unwrap();
    app.send(not_utf8).await.assert_error(
        400,
        "invalid_request_error",
        Some("parameter_invalid_encoding"),
    );
    let deep = format!("name=n&payload=p&{ACCOUNT}&a{}=1", "[b]".repeat(10));
    app.set(&deep)
        .await
        .assert_error(400, "invalid_request_error", Some("parameter_invalid"));
    let many = format!(
        "name=n&payload=p&{ACCOUNT}{}",
        "&expand[]=payload".repeat(10_000)
    );
    let roomy = crate::common::app().max_body_bytes(1 << 20).build().await;
    let answer = roomy.set(&many).await;
    answer.assert_error(400, "invalid_request_error", Some("parameter_invalid"));
    assert_eq!(
        roomy.find(&format!("name=n&{ACCOUNT}")).await.status,
        404,
        "nothing was stored"
    );
}

#[tokio::test]
async fn moved_ciphertext_is_a_500_not_another_secret() {
    let app = app().build().await;
    app.set(&format!("name=victim&payload=victim-payload&{ACCOUNT}"))
        .await;
    app.set(&format!("name=attacker&payload=attacker-payload&{ACCOUNT}"))
        .await;
    let db = crate::common::database(&app);
    db.execute(
        "UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'victim') WHERE name = 'attacker'",
        [],
    ).unwrap();
    let answer = app
        .find(&format!("name=attacker&{ACCOUNT}&expand[]=payload"))
        .await;
    answer.assert_error(500, "api_error", None);
    // A retry would fail the same way: the SDKs are told not to (docs/errors.md).
    assert_eq!(answer.headers["stripe-should-retry"], "false");
    let text = answer.json.to_string();
    assert!(!text.contains("victim-payload") && !text.contains("attacker-payload"));
    // Without expand the metadata is still readable; the payload is never opened.
    assert_eq!(
        app.find(&format!("name=attacker&{ACCOUNT}")).await.status,
        200
    );
    assert_eq!(
        app.find(&format!("name=victim&{ACCOUNT}&expand[]=payload"))
            .await
            .json["payload"],
        "victim-payload"
    );
}

#[tokio::test]
async fn too_many_requests_from_one_key_is_429_with_retry_headers() {
    // 2 a second with bursts of 2: the first two pass; of the next 20, sent at once, the bucket
    // refills at most a token per 500 ms, so most are refused.
    let app = app().rate_limit(2).build().await;
    for _ in 0..2 {
        assert_eq!(app.list(ACCOUNT).await.status, 200);
    }
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(app.list(ACCOUNT).await);
    }
    let limited = answers
        .into_iter()
        .find(|a| a.status == 429)
        .expect("a 429");
    limited.assert_error(429, "invalid_request_error", Some("rate_limit"));
    assert_eq!(limited.headers["stripe-should-retry"], "true");
    assert_eq!(limited.headers["retry-after"], "1");
    // Another credential has its own budget.
    let other = app
        .call_as(
            "sk_test_other",
            &[],
            Method::GET,
            "/v1/apps/secrets",
            ACCOUNT,
        )
        .await;
    assert_eq!(other.status, 200);
}
