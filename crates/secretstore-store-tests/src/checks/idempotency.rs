//! Idempotency records: a key is claimed by one request at a time, a completed answer is kept
//! (and replayed exactly) for its time to live, a released claim lets a retry run, and keys of
//! different credentials never meet.

use std::sync::Arc;

use secretstore_core::{IdempotencyClaim, Store};
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
        .idempotency_complete(&k, answer.clone())
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
        .idempotency_complete(&k, answer.clone())
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
        .idempotency_complete(&k, first.clone())
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
        .idempotency_complete(&k, second.clone())
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
        .idempotency_complete(&mine, my_answer.clone())
        .await
        .expect("complete");
    assert_eq!(claim(&store, &yours, NOW).await, IdempotencyClaim::InFlight);
    let your_answer = kept_answer(3, "yours", NOW);
    store
        .idempotency_complete(&yours, your_answer.clone())
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
        .idempotency_complete(&k, answer.clone())
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
