//! `purge_expired`: removes exactly the secrets expired at `now` (however many, across every
//! tenant) and the idempotency records past their time to live, and counts only the secrets.

use std::sync::Arc;

use secretstore_core::limits::IDEMPOTENCY_TTL_SECS;
use secretstore_core::{IdempotencyClaim, Mode, Scope, Store};
use tokio::task::JoinSet;

use crate::fixtures::*;

/// Removes what is expired at `now` and nothing else. That a row was removed, not just hidden,
/// shows in a `get` at an earlier `now`.
pub async fn purge_removes_exactly_the_expired_secrets(store: Arc<dyn Store>) {
    let ns = home();
    let elsewhere = namespace("app_other", "acct_9", Mode::Live);
    let soon = key(&ns, &Scope::Account, "soon");
    let later = key(&ns, &user("usr_p"), "later");
    let never = key(&ns, &Scope::Account, "never");
    let soon_elsewhere = key(&elsewhere, &Scope::Account, "soon");
    put_ok(&store, &soon, NOW, Some(NOW + 5), ROOMY, "s").await;
    put_ok(&store, &later, NOW, Some(NOW + 10), ROOMY, "l").await;
    put_ok(&store, &never, NOW, None, ROOMY, "n").await;
    put_ok(&store, &soon_elsewhere, NOW, Some(NOW + 5), ROOMY, "s").await;

    assert_eq!(
        store.purge_expired(NOW + 4).await.expect("purge"),
        0,
        "nothing expired yet"
    );
    assert!(get_ok(&store, &soon, NOW).await.is_some());

    assert_eq!(
        store.purge_expired(NOW + 5).await.expect("purge"),
        2,
        "expired at their second"
    );
    assert_eq!(
        get_ok(&store, &soon, NOW).await,
        None,
        "removed, not just hidden"
    );
    assert_eq!(get_ok(&store, &soon_elsewhere, NOW).await, None);
    assert!(
        get_ok(&store, &later, NOW).await.is_some(),
        "not expired yet: kept"
    );
    assert!(get_ok(&store, &never, NOW).await.is_some());

    assert_eq!(
        store.purge_expired(NOW + 5).await.expect("purge"),
        0,
        "idempotent"
    );
    assert_eq!(
        store.purge_expired(NOW + 1_000_000).await.expect("purge"),
        1
    );
    assert_eq!(get_ok(&store, &later, NOW).await, None);
    assert!(
        get_ok(&store, &never, NOW).await.is_some(),
        "no expiry: never purged"
    );
}

/// More expired secrets than any sensible purge batch: all go, and the count is exact.
pub async fn purge_removes_many_expired_secrets(store: Arc<dyn Store>) {
    let ns = home();
    let total: u64 = 1_100;
    let mut tasks = JoinSet::new();
    for n in 0..total {
        let store = Arc::clone(&store);
        let k = key(&ns, &user(&format!("usr_{}", n % 40)), &format!("bulk-{n}"));
        tasks.spawn(async move {
            store
                .put(put_request(&k, NOW, Some(NOW + 20), ROOMY, "b"))
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("bulk put");
    }
    let survivor = key(&ns, &user("usr_0"), "survivor");
    put_ok(&store, &survivor, NOW, Some(NOW + 21), ROOMY, "s").await;

    assert_eq!(store.purge_expired(NOW + 20).await.expect("purge"), total);
    for n in [0, 39] {
        let listed = list_ok(&store, &ns, &user(&format!("usr_{n}")), 100, None, NOW).await;
        let expected = usize::from(n == 0);
        assert_eq!(listed.items.len(), expected, "usr_{n} after the purge");
    }
    assert!(get_ok(&store, &survivor, NOW).await.is_some());
}

/// Idempotency records go once `created + TTL <= now`, and are not counted as secrets.
pub async fn purge_removes_stale_idempotency_records(store: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_purge", "key-1");
    assert_eq!(
        store.idempotency_claim(&k, NOW).await.expect("claim"),
        IdempotencyClaim::Claimed
    );
    let answer = kept_answer(200, "{}", NOW);
    store
        .idempotency_complete(&k, answer.clone(), NOW)
        .await
        .expect("complete");

    assert_eq!(
        store
            .purge_expired(NOW + IDEMPOTENCY_TTL_SECS - 1)
            .await
            .expect("purge"),
        0,
        "idempotency records are not counted as secrets"
    );
    assert_eq!(
        store.idempotency_claim(&k, NOW).await.expect("claim"),
        IdempotencyClaim::Kept(answer),
        "a record younger than its TTL survives the purge"
    );
    assert_eq!(
        store
            .purge_expired(NOW + IDEMPOTENCY_TTL_SECS)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        store.idempotency_claim(&k, NOW).await.expect("claim"),
        IdempotencyClaim::Claimed,
        "the record is gone: even at its old now the key can be claimed"
    );
    store.idempotency_release(&k).await.expect("release");
}
