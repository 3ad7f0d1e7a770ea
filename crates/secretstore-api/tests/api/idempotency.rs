//! `Idempotency-Key` as docs/api.md §5 says: replayed with `Idempotent-Replayed: true` for the same
//! parameters, refused for other parameters, 409 while the first request still runs, per
//! credential and account, its owner stored as a keyed digest, and the kept answer sealed at
//! rest.

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use secretstore_core::{AtomicWrites, StoreError, Write, Written};
use tokio::sync::{Notify, Semaphore};

use crate::common::{app, contains, files_under, KEY};

const ACCOUNT: &str = "scope[type]=account";

async fn set_with_key(
    app: &crate::common::TestApp,
    key: &str,
    params: &str,
) -> crate::common::Answer {
    post_with_key(app, "/v1/apps/secrets", key, params).await
}

async fn delete_with_key(
    app: &crate::common::TestApp,
    key: &str,
    params: &str,
) -> crate::common::Answer {
    post_with_key(app, "/v1/apps/secrets/delete", key, params).await
}

async fn post_with_key(
    app: &crate::common::TestApp,
    path: &str,
    key: &str,
    params: &str,
) -> crate::common::Answer {
    app.call_as(KEY, &[("idempotency-key", key)], Method::POST, path, params)
        .await
}

#[tokio::test]
async fn same_key_same_parameters_replays_the_first_answer() {
    let app = app().build().await;
    let first = set_with_key(&app, "k1", &format!("name=n&payload=p&{ACCOUNT}")).await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // Change what a re-run would answer; the replay must still be the first answer.
    app.set(&format!(
        "name=n&payload=changed&{ACCOUNT}&expires_at={}",
        crate::common::START + 99
    ))
    .await;
    let replay = set_with_key(&app, "k1", "scope[type]=account&payload=p&name=n").await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json, first.json);
}

#[tokio::test]
async fn a_replay_names_the_request_it_replays() {
    let app = app().build().await;
    let params = format!("name=n&payload=p&{ACCOUNT}");
    let first = set_with_key(&app, "k1", &params).await;
    assert!(first.headers.get("original-request").is_none());
    let replay = set_with_key(&app, "k1", &params).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        replay.headers["original-request"], first.headers["request-id"],
        "Original-Request is the request id of the request that ran"
    );
    assert_ne!(replay.headers["request-id"], first.headers["request-id"]);
    // A kept error names its request too.
    let missing = format!("name=nope&{ACCOUNT}");
    let refused = delete_with_key(&app, "d1", &missing).await;
    assert_eq!(refused.status, 404);
    let again = delete_with_key(&app, "d1", &missing).await;
    assert_eq!(
        again.headers["original-request"],
        refused.headers["request-id"]
    );
}

#[tokio::test]
async fn same_key_other_parameters_is_an_idempotency_error() {
    let app = app().build().await;
    set_with_key(&app, "k1", &format!("name=n&payload=p&{ACCOUNT}")).await;
    let reuse = set_with_key(&app, "k1", &format!("name=n&payload=other&{ACCOUNT}")).await;
    reuse.assert_error(400, "idempotency_error", Some("idempotency_key_reused"));
    let other_path = delete_with_key(&app, "k1", &format!("name=n&{ACCOUNT}")).await;
    other_path.assert_error(400, "idempotency_error", None);
}

#[tokio::test]
async fn keys_are_per_account_as_stripe_scopes_them() {
    let app = app().build().await;
    let params = format!("name=n&payload=p&{ACCOUNT}");
    let call = |account: &'static str| {
        let params = params.clone();
        let app = &app;
        async move {
            app.call_as(
                KEY,
                &[("idempotency-key", "k1"), ("stripe-account", account)],
                Method::POST,
                "/v1/apps/secrets",
                &params,
            )
            .await
        }
    };
    let first = call("acct_1").await;
    assert_eq!(first.status, 200);
    // The same key and parameters for another account is another request: it runs there.
    let other = call("acct_9").await;
    assert_eq!(other.status, 200, "{}", other.json);
    assert!(other.headers.get("idempotent-replayed").is_none());
    assert_ne!(other.json["id"], first.json["id"]);
    // Each account's first answer is still the one replayed to it.
    for (account, answer) in [("acct_1", &first), ("acct_9", &other)] {
        let replay = call(account).await;
        assert_eq!(replay.headers["idempotent-replayed"], "true");
        assert_eq!(replay.json, answer.json);
    }
}

/// Two columns of every idempotency record of `app`, as `sql` selects them.
fn stored_pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    app: &crate::common::TestApp,
    sql: &str,
) -> Vec<(A, B)> {
    crate::common::database(app)
        .prepare(sql)
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The (owner, fingerprint) of every idempotency record of `app`.
fn stored_digests(app: &crate::common::TestApp) -> Vec<(Vec<u8>, Vec<u8>)> {
    stored_pairs(app, "SELECT credential, fingerprint FROM idempotency")
}

#[tokio::test]
async fn stored_owners_and_fingerprints_are_keyed_by_the_root_key() {
    use sha2::Digest as _;
    let params = format!("name=n&payload=guessable-pin-1234&{ACCOUNT}");
    let (one, other) = (app().build().await, app().build().await);
    set_with_key(&one, "k1", &params).await;
    set_with_key(&other, "k1", &params).await;
    let (one, other) = (stored_digests(&one), stored_digests(&other));
    assert_eq!((one.len(), other.len()), (1, 1));
    // The directory's look-up of a key is its SHA-256; a reader of the database could test
    // guessed keys against it, so what idempotency stores is not it.
    let plain = sha2::Sha256::digest(KEY.as_bytes()).to_vec();
    assert_ne!(one[0].0, plain);
    // The same request by the same key under two root keys: nothing stored is the same, so
    // nothing stored can be recomputed, and tested against guesses, without the root key.
    assert_ne!(one[0].0, other[0].0, "owner");
    assert_ne!(one[0].1, other[0].1, "fingerprint (it covers the payload)");
}

#[tokio::test]
async fn keys_are_per_credential_and_expire_after_a_day() {
    let app = app().build().await;
    let mine = set_with_key(&app, "shared", &format!("name=n&payload=p&{ACCOUNT}")).await;
    let theirs = app
        .call_as(
            "sk_test_other",
            &[("idempotency-key", "shared")],
            Method::POST,
            "/v1/apps/secrets",
            &format!("name=n&payload=x&{ACCOUNT}"),
        )
        .await;
    assert_eq!(theirs.status, 200);
    assert!(theirs.headers.get("idempotent-replayed").is_none());
    assert_ne!(theirs.json["id"], mine.json["id"]);

    app.clock.advance(24 * 3600);
    let later = set_with_key(&app, "shared", &format!("name=n&payload=new&{ACCOUNT}")).await;
    assert_eq!(later.status, 200);
    assert!(later.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn errors_the_operation_answered_are_kept_validation_errors_are_not() {
    let app = app().build().await;
    let missing = delete_with_key(&app, "d1", &format!("name=nope&{ACCOUNT}")).await;
    missing.assert_error(404, "invalid_request_error", Some("resource_missing"));
    app.set(&format!("name=nope&payload=p&{ACCOUNT}")).await;
    let replay = delete_with_key(&app, "d1", &format!("name=nope&{ACCOUNT}")).await;
    assert_eq!(replay.status, 404);
    assert_eq!(replay.headers["idempotent-replayed"], "true");

    let invalid = set_with_key(&app, "v1", "name=n&scope[type]=account").await;
    invalid.assert_error(400, "invalid_request_error", Some("parameter_missing"));
    let fixed = set_with_key(&app, "v1", &format!("name=n&payload=p&{ACCOUNT}")).await;
    assert_eq!(fixed.status, 200);
}

#[tokio::test]
async fn idempotency_key_longer_than_255_is_refused() {
    let app = app().build().await;
    let long = "k".repeat(256);
    set_with_key(&app, &long, &format!("name=n&payload=p&{ACCOUNT}"))
        .await
        .assert_error(
            400,
            "invalid_request_error",
            Some("idempotency_key_invalid"),
        );
    assert_eq!(
        set_with_key(
            &app,
            &"k".repeat(255),
            &format!("name=n&payload=p&{ACCOUNT}")
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn kept_answer_with_a_payload_is_sealed_at_rest() {
    let app = app().build().await;
    let payload = "kept-answer-plaintext-3f9a1c";
    let first = set_with_key(
        &app,
        "e1",
        &format!("name=n&payload={payload}&{ACCOUNT}&expand[]=payload"),
    )
    .await;
    assert_eq!(first.json["payload"], payload);
    let replay = set_with_key(
        &app,
        "e1",
        &format!("name=n&payload={payload}&{ACCOUNT}&expand[]=payload"),
    )
    .await;
    assert_eq!(replay.json["payload"], payload);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    app.storage.lifecycle.close().await.unwrap();
    for (path, bytes) in files_under(&app.data_dir()) {
        assert!(
            !contains(&bytes, payload.as_bytes()),
            "plaintext found in {}",
            path.display()
        );
    }
}

/// A secret store whose puts wait for a permit, so a test can hold a request in flight.
#[derive(Debug)]
struct GatedStore {
    inner: Arc<dyn AtomicWrites>,
    gate: Arc<Semaphore>,
    entered: Arc<Notify>,
}

#[async_trait]
impl AtomicWrites for GatedStore {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        self.entered.notify_one();
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| StoreError::Internal("closed".into()))?;
        self.inner.commit(writes).await
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_key_one_runs_the_other_gets_409() {
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Notify::new());
    let app = Arc::new(
        app()
            .wrap_writes({
                let gate = gate.clone();
                let entered = entered.clone();
                move |inner| {
                    Arc::new(GatedStore {
                        inner,
                        gate,
                        entered,
                    })
                }
            })
            .build()
            .await,
    );
    let params = format!("name=n&payload=p&{ACCOUNT}");
    let first = tokio::spawn({
        let app = app.clone();
        let params = params.clone();
        async move { set_with_key(&app, "race", &params).await }
    });
    // The first request holds the key once it is parked at the gate, inside its write.
    entered.notified().await;
    let second = set_with_key(&app, "race", &params).await;
    second.assert_error(409, "idempotency_error", Some("idempotency_key_in_use"));
    assert_eq!(second.headers["stripe-should-retry"], "true");
    gate.add_permits(10);
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let third = set_with_key(&app, "race", &params).await;
    assert_eq!(third.headers["idempotent-replayed"], "true");
    assert_eq!(third.json, first.json);
}

/// The sealed answer of every idempotency record of `app`, by key.
fn kept_sealed(app: &crate::common::TestApp) -> Vec<(String, Vec<u8>)> {
    stored_pairs(app, "SELECT key, sealed FROM idempotency ORDER BY key")
}

/// No kept answer holds a payload (docs/api.md §5), so none outlives its secret: a set's and a
/// delete's kept answers, payload expanded, are no larger than a payload of 5,000 characters
/// would allow if it were in them.
#[tokio::test]
async fn a_kept_answer_never_holds_a_payload() {
    let app = app().build().await;
    let payload = "p".repeat(5_000);
    let set = format!("name=n&payload={payload}&{ACCOUNT}&expand[]=payload");
    assert_eq!(
        set_with_key(&app, "s1", &set).await.json["payload"],
        payload
    );
    let delete = delete_with_key(&app, "d1", &format!("name=n&{ACCOUNT}&expand[]=payload")).await;
    assert_eq!(delete.json["payload"], payload);
    let kept = kept_sealed(&app);
    assert_eq!(kept.len(), 2);
    for (key, sealed) in kept {
        assert!(
            sealed.len() < 1_000,
            "the answer kept for {key} is {} bytes: it holds the payload",
            sealed.len()
        );
    }
}

/// A delete's answer holds the payload of a secret that is gone once the answer is kept: its
/// replay answers the secret as it was, deleted, with `"payload": null`.
#[tokio::test]
async fn a_replayed_delete_answers_no_payload_once_its_secret_is_gone() {
    let app = app().build().await;
    app.set(&format!("name=n&payload=gone-with-its-secret&{ACCOUNT}"))
        .await;
    let params = format!("name=n&{ACCOUNT}&expand[]=payload");
    let first = delete_with_key(&app, "d1", &params).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["payload"], "gone-with-its-secret");
    let replay = delete_with_key(&app, "d1", &params).await;
    assert_eq!(replay.status, 200, "{}", replay.json);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json["payload"], serde_json::Value::Null);
    let mut without_payload = first.json.clone();
    without_payload["payload"] = serde_json::Value::Null;
    assert_eq!(
        replay.json, without_payload,
        "everything else is the first answer"
    );
}

/// A set's replay answers the payload its own request carries (the fingerprint proves it is the
/// one first sent): the same answer as the first, whether the secret has since expired and been
/// swept, been replaced or been deleted, and without anything stored holding the payload.
#[tokio::test]
async fn a_replayed_set_answers_the_payload_its_own_request_carries() {
    let app = app().build().await;
    let params = format!(
        "name=n&payload=sent-by-the-client&{ACCOUNT}&expand[]=payload&expires_at={}",
        crate::common::START + 60
    );
    let first = set_with_key(&app, "s1", &params).await;
    assert_eq!(first.json["payload"], "sent-by-the-client");
    let replays_the_first = |replay: crate::common::Answer, when: &str| {
        assert_eq!(replay.status, 200, "{when}: {}", replay.json);
        assert_eq!(replay.headers["idempotent-replayed"], "true", "{when}");
        assert_eq!(replay.json, first.json, "{when}");
    };
    replays_the_first(set_with_key(&app, "s1", &params).await, "while it lives");
    app.clock.advance(60);
    assert!(app.service.purge_expired().await.unwrap() >= 1);
    replays_the_first(set_with_key(&app, "s1", &params).await, "expired and swept");
    app.set(&format!("name=n&payload=another&{ACCOUNT}")).await;
    replays_the_first(set_with_key(&app, "s1", &params).await, "replaced");
    assert_eq!(app.delete(&format!("name=n&{ACCOUNT}")).await.status, 200);
    replays_the_first(set_with_key(&app, "s1", &params).await, "deleted");
}

/// Everything stored beside a kept answer is authenticated with it (docs/api.md §5): a row
/// edited in the database fails to open (500, logged), never answering a forged status.
#[tokio::test]
async fn an_edited_kept_answer_fails_to_replay_instead_of_answering_a_forged_status() {
    let edits = [
        (
            "fingerprint",
            "UPDATE idempotency SET fingerprint = randomblob(32) WHERE key = 'k1'",
        ),
        (
            "created",
            "UPDATE idempotency SET created = created + 1 WHERE key = 'k1'",
        ),
        (
            "sealed, from another key's answer",
            "UPDATE idempotency SET sealed = (SELECT sealed FROM idempotency WHERE key = 'k2') \
             WHERE key = 'k1'",
        ),
    ];
    for (column, edit) in edits {
        let app = app().build().await;
        let params = format!("name=n&payload=p&{ACCOUNT}");
        assert_eq!(set_with_key(&app, "k1", &params).await.status, 200);
        let missing = delete_with_key(&app, "k2", &format!("name=nope&{ACCOUNT}")).await;
        assert_eq!(missing.status, 404);
        crate::common::database(&app).execute(edit, []).unwrap();
        let replay = set_with_key(&app, "k1", &params).await;
        replay.assert_error(500, "api_error", None);
        assert_eq!(replay.headers["stripe-should-retry"], "false", "{column}");
        assert!(
            replay.headers.get("idempotent-replayed").is_none(),
            "{column}"
        );
    }
}

/// The largest set there is, payload expanded: a name, payload and user id of 5,000
/// characters that JSON writes as 6-byte escapes, some 90 kB of answer.
fn largest_set() -> String {
    let big = crate::common::enc(&"\u{1}".repeat(5_000));
    format!("name={big}&payload={big}&scope[type]=user&scope[user]={big}&expand[]=payload")
}

/// Bytes the kept answers of `app` hold (`KeptAnswer::bytes`: sealed blob, key, two digests),
/// and how many there are.
fn kept_bytes(app: &crate::common::TestApp) -> (i64, i64) {
    crate::common::database(app)
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(sealed) + length(CAST(key AS BLOB)) + 64), 0) \
             FROM idempotency",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

/// Issue 13's flood: one credential sending the largest sets, payload expanded, each with a
/// fresh key. What it keeps stops at its quota; past it each request still runs (200), says
/// that its answer is not kept, and runs again on a retry; and another account of the same
/// credential, another owner, keeps its answers still.
#[tokio::test]
async fn one_credential_keeps_no_more_than_its_quota() {
    const QUOTA: u64 = 1024 * 1024;
    let app = app()
        .with_config(|c| c.idempotency_quota_bytes = std::num::NonZeroU64::new(QUOTA))
        .build()
        .await;
    let params = largest_set();
    let send = |key: String, account: &'static str| {
        let params = params.clone();
        let app = &app;
        async move {
            app.call_as(
                KEY,
                &[("idempotency-key", &key), ("stripe-account", account)],
                Method::POST,
                "/v1/apps/secrets",
                &params,
            )
            .await
        }
    };
    let requests = 40;
    let mut not_kept = Vec::new();
    for n in 0..requests {
        let answer = send(format!("fresh-{n}"), "acct_1").await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        if answer.headers.get("idempotent-kept").is_some() {
            assert_eq!(answer.headers["idempotent-kept"], "false");
            not_kept.push(n);
        }
    }
    let (rows, bytes) = kept_bytes(&app);
    eprintln!(
        "{requests} largest expanded sets with fresh keys, quota {QUOTA}: {rows} answers kept, \
         {bytes} bytes; {} not kept",
        not_kept.len()
    );
    assert!(bytes as u64 <= QUOTA, "{bytes} bytes kept");
    assert_eq!(rows as usize + not_kept.len(), requests);
    assert!(rows > 0 && !not_kept.is_empty(), "{rows} kept");
    // A kept answer replays; an answer not kept runs again.
    let replay = send("fresh-0".into(), "acct_1").await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let again = send(format!("fresh-{}", not_kept[0]), "acct_1").await;
    assert_eq!(again.status, 200);
    assert!(again.headers.get("idempotent-replayed").is_none());
    assert_eq!(again.headers["idempotent-kept"], "false");
    // The same credential on another account is another owner, with a quota of its own.
    let elsewhere = send("fresh-0".into(), "acct_2").await;
    assert_eq!(elsewhere.status, 200);
    assert!(elsewhere.headers.get("idempotent-kept").is_none());
}
