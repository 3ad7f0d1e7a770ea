//! Idempotency records: a key is claimed by one request at a time, a completed answer is kept
//! (and replayed exactly) for its time to live, a released claim lets a retry run, keys of
//! different credentials never meet, and what one owner keeps is bounded by its quota, to the
//! byte, however many complete at once.

use std::sync::Arc;

use secretstore_core::{Completed, IdempotencyClaim, Store};
use tokio::task::JoinSet;

use crate::fixtures::*;

async fn claim(
    store: &Arc<dyn Store>,
    key: &secretstore_core::IdempotencyKey,
    now: i64,
) -> IdempotencyClaim {
    match store.idempotency_claim(key, at(now)).await {
        Ok(claim) => claim,
        Err(e) => panic!("claim failed: {e:?}"),
    }
}

/// Claimed, then InFlight while it runs, then Kept (the exact answer) once completed, and Kept
/// again on every later claim (a kept answer does not leave the key claimed).
pub async fn idempotency_claim_complete_replay(store: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_abc", "req-1");
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::Claimed);
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::InFlight);
    assert_eq!(claim(&store, &k, NOW + 1).await, IdempotencyClaim::InFlight);
    let answer = kept_answer(4, "{\"error\":{}}", NOW + 1);
    store
        .idempotency_complete(&k, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    for at in [NOW + 1, NOW + 2, NOW + 3] {
        assert_eq!(
            claim(&store, &k, at).await,
            IdempotencyClaim::Kept(answer.clone())
        );
    }
    // Another key is unaffected.
    let other = idempotency_key("sk_test_abc", "req-2");
    assert_eq!(claim(&store, &other, NOW).await, IdempotencyClaim::Claimed);
    store.idempotency_release(&other).await.expect("release");
}

/// A released claim lets the next request with the key claim it; releasing twice is harmless.
pub async fn idempotency_release_lets_a_retry_claim(store: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_abc", "retry");
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::Claimed);
    store.idempotency_release(&k).await.expect("release");
    assert_eq!(
        claim(&store, &k, NOW).await,
        IdempotencyClaim::Claimed,
        "a retry runs"
    );
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::InFlight);
    store.idempotency_release(&k).await.expect("release");
    store.idempotency_release(&k).await.expect("second release");
    let answer = kept_answer(2, "{}", NOW);
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::Claimed);
    store
        .idempotency_complete(&k, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::Kept(answer));
}

/// A kept answer is replayed while it was created after `kept_after`; from then on the key can
/// be claimed again, and completing it keeps the new answer.
pub async fn idempotency_answers_expire_after_their_ttl(store: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_abc", "ttl");
    assert_eq!(claim(&store, &k, NOW).await, IdempotencyClaim::Claimed);
    let first = kept_answer(2, "first", NOW);
    store
        .idempotency_complete(&k, first.clone(), NO_QUOTA)
        .await
        .expect("complete");
    let last_second = NOW + KEPT_FOR - 1;
    assert_eq!(
        claim(&store, &k, last_second).await,
        IdempotencyClaim::Kept(first)
    );
    let expiry = NOW + KEPT_FOR;
    assert_eq!(
        claim(&store, &k, expiry).await,
        IdempotencyClaim::Claimed,
        "past its TTL"
    );
    assert_eq!(claim(&store, &k, expiry).await, IdempotencyClaim::InFlight);
    let second = kept_answer(3, "second", expiry);
    store
        .idempotency_complete(&k, second.clone(), NO_QUOTA)
        .await
        .expect("complete again");
    assert_eq!(
        claim(&store, &k, expiry + 1).await,
        IdempotencyClaim::Kept(second)
    );
}

/// The same key under two credentials: two independent records.
pub async fn idempotency_keys_are_per_credential(store: Arc<dyn Store>) {
    let mine = idempotency_key("sk_test_mine", "shared-key");
    let yours = idempotency_key("sk_test_yours", "shared-key");
    assert_eq!(claim(&store, &mine, NOW).await, IdempotencyClaim::Claimed);
    assert_eq!(
        claim(&store, &yours, NOW).await,
        IdempotencyClaim::Claimed,
        "not in flight for another credential"
    );
    let my_answer = kept_answer(2, "mine", NOW);
    store
        .idempotency_complete(&mine, my_answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    assert_eq!(claim(&store, &yours, NOW).await, IdempotencyClaim::InFlight);
    let your_answer = kept_answer(3, "yours", NOW);
    store
        .idempotency_complete(&yours, your_answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    assert_eq!(
        claim(&store, &mine, NOW).await,
        IdempotencyClaim::Kept(my_answer)
    );
    assert_eq!(
        claim(&store, &yours, NOW).await,
        IdempotencyClaim::Kept(your_answer)
    );
}

/// Many simultaneous claims of one key: exactly one wins; the rest see it in flight, and after
/// completion everyone sees the kept answer.
pub async fn idempotency_concurrent_claims_have_one_winner(store: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_race", "same");
    let mut tasks = JoinSet::new();
    for _ in 0..24 {
        let store = Arc::clone(&store);
        let k = k.clone();
        tasks.spawn(async move { store.idempotency_claim(&k, at(NOW)).await });
    }
    let (mut claimed, mut in_flight) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("claim") {
            IdempotencyClaim::Claimed => claimed += 1,
            IdempotencyClaim::InFlight => in_flight += 1,
            IdempotencyClaim::Kept(answer) => panic!("nothing was kept yet: {answer:?}"),
        }
    }
    assert_eq!((claimed, in_flight), (1, 23));
    let answer = kept_answer(2, "done", NOW);
    store
        .idempotency_complete(&k, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let k = k.clone();
        tasks.spawn(async move { store.idempotency_claim(&k, at(NOW + 1)).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(
            joined.expect("task").expect("claim"),
            IdempotencyClaim::Kept(answer.clone())
        );
    }
}

/// The answers of one owner (`IdempotencyKey::credential`) in a quota check: same size, each
/// costing `QUOTA_ANSWER_BYTES` (`KeptAnswer::bytes`: blob, key and two digests).
fn quota_key(owner: &str, n: usize) -> secretstore_core::IdempotencyKey {
    idempotency_key(owner, &format!("k{n:03}"))
}
const QUOTA_BODY: usize = 100;
pub(crate) const QUOTA_ANSWER_BYTES: u64 = QUOTA_BODY as u64 + 4 + 64;
fn quota_answer(n: usize, created: i64) -> secretstore_core::KeptAnswer {
    kept_answer(n as u8, &"x".repeat(QUOTA_BODY), created)
}

/// An owner keeps answers up to its quota, to the byte (`KeptAnswer::bytes`): past it nothing
/// is kept and the claim is released, so a retry claims the key; the answers kept are replayed
/// as ever, and another owner's are counted apart.
pub async fn idempotency_quota_bounds_what_one_owner_keeps(store: Arc<dyn Store>) {
    let owner = "sk_test_quota";
    assert_eq!(
        quota_answer(0, NOW).bytes(&quota_key(owner, 0)),
        QUOTA_ANSWER_BYTES
    );
    let quota = 3 * QUOTA_ANSWER_BYTES;
    for n in 0..3 {
        let completed =
            claim_and_complete(&store, &quota_key(owner, n), quota_answer(n, NOW), quota).await;
        assert_eq!(completed, Completed::Kept, "answer {n} fits");
    }
    let over = quota_key(owner, 3);
    assert_eq!(
        claim_and_complete(&store, &over, quota_answer(3, NOW), quota).await,
        Completed::OverQuota
    );
    assert_eq!(
        claim(&store, &over, NOW).await,
        IdempotencyClaim::Claimed,
        "nothing was kept, and the claim was released"
    );
    store.idempotency_release(&over).await.expect("release");
    // To the byte: one byte short, then exactly enough.
    let small = kept_answer(9, "y", NOW);
    let small_key = quota_key(owner, 4);
    let small_bytes = small.bytes(&small_key);
    assert_eq!(
        claim_and_complete(&store, &small_key, small.clone(), quota + small_bytes - 1).await,
        Completed::OverQuota
    );
    assert_eq!(
        claim_and_complete(&store, &small_key, small.clone(), quota + small_bytes).await,
        Completed::Kept
    );
    assert_eq!(
        claim(&store, &quota_key(owner, 0), NOW + 1).await,
        IdempotencyClaim::Kept(quota_answer(0, NOW))
    );
    assert_eq!(
        claim(&store, &small_key, NOW + 1).await,
        IdempotencyClaim::Kept(small)
    );
    let other_owner = quota_key("sk_test_quota_other", 0);
    assert_eq!(
        claim_and_complete(&store, &other_owner, quota_answer(0, NOW), quota).await,
        Completed::Kept,
        "another owner has a quota of its own"
    );
}

/// A stale answer still counts until `idempotency_purge` deletes it, except against the answer
/// of its own key that replaces it (which counts instead of it, not beside it); the purge gives
/// its bytes back.
pub async fn idempotency_quota_counts_stored_answers_until_purged(store: Arc<dyn Store>) {
    let owner = "sk_test_quota_purge";
    let quota = 2 * QUOTA_ANSWER_BYTES;
    for n in 0..2 {
        let completed =
            claim_and_complete(&store, &quota_key(owner, n), quota_answer(n, NOW), quota).await;
        assert_eq!(completed, Completed::Kept);
    }
    let later = NOW + KEPT_FOR;
    assert_eq!(
        claim_and_complete(&store, &quota_key(owner, 2), quota_answer(2, later), quota).await,
        Completed::OverQuota,
        "stale answers count until they are purged"
    );
    let renewed = quota_answer(5, later);
    assert_eq!(
        claim_and_complete(&store, &quota_key(owner, 0), renewed.clone(), quota).await,
        Completed::Kept,
        "an answer replacing a stale one of its key counts once"
    );
    assert_eq!(store.idempotency_purge(NOW).await.expect("purge"), 1);
    assert_eq!(
        claim_and_complete(&store, &quota_key(owner, 2), quota_answer(2, later), quota).await,
        Completed::Kept,
        "the purge gave the stale answer's bytes back"
    );
    assert_eq!(
        claim(&store, &quota_key(owner, 0), later + 1).await,
        IdempotencyClaim::Kept(renewed)
    );
}

/// Completes `keys` of one owner at once through the stores given in turn, each under `quota`;
/// answers how many were kept.
pub(crate) async fn complete_at_once(stores: &[Arc<dyn Store>], keys: usize, quota: u64) -> usize {
    let mut tasks = JoinSet::new();
    for n in 0..keys {
        let store = Arc::clone(&stores[n % stores.len()]);
        tasks.spawn(async move {
            claim_and_complete(
                &store,
                &quota_key("sk_test_quota_race", n),
                quota_answer(n, NOW),
                quota,
            )
            .await
        });
    }
    let mut kept = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task") == Completed::Kept {
            kept += 1;
        }
    }
    kept
}

/// Concurrent completes of one owner never keep more than its quota, nor fewer than fit.
pub async fn idempotency_quota_holds_under_concurrent_completes(store: Arc<dyn Store>) {
    let kept = complete_at_once(&[store], 24, 5 * QUOTA_ANSWER_BYTES).await;
    assert_eq!(kept, 5);
}
