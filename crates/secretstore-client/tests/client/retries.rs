//! Retries against the scripted fake server: what is retried, how long the client waits, and
//! that every attempt of one logical call carries the same `Idempotency-Key`.

use std::time::Duration;

use secretstore_client::{Client, DeleteSecret, Error, FindSecret, Scope, SetSecret};

use crate::fake::{error, slow_ok, Fake};

/// A client with tiny backoffs, so tests measure the server's `Retry-After`, not the backoff.
fn client(fake: &Fake, retries: u32) -> Client {
    Client::builder("sk_test_retryapp")
        .base_url(&fake.url)
        .max_retries(retries)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn conflicts_and_unavailable_are_retried_with_one_idempotency_key() {
    let fake = Fake::start(vec![
        error(
            409,
            "idempotency_key_in_use",
            &[("stripe-should-retry", "true")],
        ),
        error(503, "storage_unavailable", &[]),
    ])
    .await;
    let secret = client(&fake, 2)
        .set(SetSecret::new(Scope::Account, "my-api-key", "s3cr3t"))
        .await
        .unwrap();
    assert_eq!(secret.name, "my-api-key");

    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 3);
    let key = attempts[0].idempotency_key.clone().unwrap();
    assert!(!key.is_empty());
    for attempt in &attempts {
        assert_eq!(attempt.idempotency_key.as_deref(), Some(key.as_str()));
        assert_eq!(attempt.method, "POST");
        assert_eq!(attempt.path, "/v1/apps/secrets");
        assert_eq!(
            attempt.body,
            "name=my-api-key&payload=s3cr3t&scope%5Btype%5D=account"
        );
        assert_eq!(
            attempt.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            attempt.authorization.as_deref(),
            Some("Bearer sk_test_retryapp")
        );
    }
}

#[tokio::test]
async fn each_logical_call_gets_its_own_key_unless_one_is_given() {
    let fake = Fake::start(vec![]).await;
    let client = client(&fake, 2);
    client
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap();
    client
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap();
    client
        .delete(DeleteSecret::new(Scope::Account, "a").idempotency_key("chosen-key"))
        .await
        .unwrap();
    let keys: Vec<Option<String>> = fake
        .attempts()
        .into_iter()
        .map(|a| a.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 3);
    assert_ne!(keys[0], keys[1]);
    assert_eq!(keys[2].as_deref(), Some("chosen-key"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = Fake::start(vec![error(429, "rate_limit", &[("retry-after", "1")])]).await;
    client(&fake, 2)
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap();
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 2);
    let waited = attempts[1].at.duration_since(attempts[0].at);
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert_eq!(attempts[0].idempotency_key, attempts[1].idempotency_key);
}

#[tokio::test]
async fn should_retry_false_is_not_retried() {
    let fake = Fake::start(vec![error(
        503,
        "storage_unavailable",
        &[("stripe-should-retry", "false")],
    )])
    .await;
    let err = client(&fake, 3)
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.code(), Some("storage_unavailable"));
    assert_eq!(err.api().unwrap().request_id.as_deref(), Some("req_fake"));
    assert_eq!(fake.attempts().len(), 1);
}

#[tokio::test]
async fn should_retry_true_retries_even_a_400() {
    let fake = Fake::start(vec![error(
        400,
        "whatever",
        &[("stripe-should-retry", "true")],
    )])
    .await;
    client(&fake, 1)
        .find(FindSecret::new(Scope::Account, "a"))
        .await
        .unwrap();
    assert_eq!(fake.attempts().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = Fake::start(vec![error(404, "resource_missing", &[])]).await;
    let err = client(&fake, 3)
        .find(FindSecret::new(Scope::Account, "a"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(fake.attempts().len(), 1);
}

#[tokio::test]
async fn retries_stop_at_max_retries() {
    let always = (0..10)
        .map(|_| error(503, "storage_unavailable", &[]))
        .collect();
    let fake = Fake::start(always).await;
    let err = client(&fake, 3)
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 4, "one attempt and three retries");
    assert!(attempts
        .iter()
        .all(|a| a.idempotency_key == attempts[0].idempotency_key));

    // With retries off, one attempt.
    let fake = Fake::start(vec![error(500, "boom", &[])]).await;
    let err = client(&fake, 0)
        .find(FindSecret::new(Scope::Account, "a"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(fake.attempts().len(), 1);
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_with_the_same_key() {
    let fake = Fake::start(vec![slow_ok(Duration::from_secs(5))]).await;
    let client = Client::builder("sk_test_retryapp")
        .base_url(&fake.url)
        .timeout(Duration::from_millis(300))
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    client
        .set(SetSecret::new(Scope::Account, "a", "x"))
        .await
        .unwrap();
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].idempotency_key, attempts[1].idempotency_key);
}

#[tokio::test]
async fn timeouts_end_as_a_typed_timeout() {
    let fake = Fake::start(vec![
        slow_ok(Duration::from_secs(5)),
        slow_ok(Duration::from_secs(5)),
    ])
    .await;
    let client = Client::builder("sk_test_retryapp")
        .base_url(&fake.url)
        .timeout(Duration::from_millis(200))
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    let err = client
        .find(FindSecret::new(Scope::Account, "a"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert_eq!(fake.attempts().len(), 2);
}

#[tokio::test]
async fn headers_and_query_are_sent_as_stripe_sdks_send_them() {
    let fake = Fake::start(vec![]).await;
    let client = Client::builder("sk_test_retryapp")
        .base_url(&fake.url)
        .stripe_account("acct_123")
        .stripe_version("2024-06-20")
        .build()
        .unwrap();
    client
        .find(FindSecret::new(Scope::user("usr_1"), "a b").expand_payload())
        .await
        .unwrap();
    let attempt = &fake.attempts()[0];
    assert_eq!(attempt.method, "GET");
    assert_eq!(attempt.path, "/v1/apps/secrets/find");
    assert_eq!(
        attempt.query,
        "name=a+b&scope%5Btype%5D=user&scope%5Buser%5D=usr_1&expand%5B0%5D=payload"
    );
    assert_eq!(
        attempt.idempotency_key, None,
        "GETs carry no idempotency key"
    );
    assert_eq!(attempt.stripe_account.as_deref(), Some("acct_123"));
    assert_eq!(attempt.stripe_version.as_deref(), Some("2024-06-20"));
}

#[tokio::test]
async fn an_answer_that_is_not_the_object_is_a_decode_error() {
    let fake = Fake::start(vec![crate::fake::Canned {
        status: 200,
        headers: Vec::new(),
        body: r#"{"id":"appsecret_1","payload":"s3cr3t","created":"soon"}"#.to_owned(),
        delay: Duration::ZERO,
    }])
    .await;
    let err = client(&fake, 0)
        .find(FindSecret::new(Scope::Account, "a"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"));
}
