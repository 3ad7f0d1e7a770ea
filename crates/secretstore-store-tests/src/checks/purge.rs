//! `purge_expired`: removes exactly the secrets expired at `now` (however many, across every
//! tenant); `idempotency_purge`: exactly the kept answers at or before its cut; `count_secrets`:
//! every row stored, expired or not, until it is purged.

use std::sync::Arc;

use secretstore_core::{ClaimTimes, IdempotencyClaim, Mode, Scope, Store};
use tokio::task::JoinSet;

use crate::fixtures::*;

/// Removes what is expired at `now` and nothing else. That a row was removed, not just hidden,
/// shows in a `get` at an earlier `now`.
pub async fn purge_removes_exactly_the_expired_secrets(store: Arc<dyn Store>) {
    let ns = home();
    let elsewhere = namespace("app_other", "acct_9", Mode::Live);
    let soon = address(&ns, &Scope::Account, "soon");
    let later = address(&ns, &user("usr_p"), "later");
    let never = address(&ns, &Scope::Account, "never");
    let soon_elsewhere = address(&elsewhere, &Scope::Account, "soon");
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
        let k = address(&ns, &user(&format!("usr_{}", n % 40)), &format!("bulk-{n}"));
        tasks.spawn(async move {
            store
                .put(put_request(&k, NOW, Some(NOW + 20), ROOMY, "b"))
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("bulk put");
    }
    let survivor = address(&ns, &user("usr_0"), "survivor");
    put_ok(&store, &survivor, NOW, Some(NOW + 21), ROOMY, "s").await;

    assert_eq!(store.purge_expired(NOW + 20).await.expect("purge"), total);
    for n in [0, 39] {
        let listed = list_ok(&store, &ns, &user(&format!("usr_{n}")), 100, None, NOW).await;
        let expected = usize::from(n == 0);
        assert_eq!(listed.items.len(), expected, "usr_{n} after the purge");
    }
    assert!(get_ok(&store, &survivor, NOW).await.is_some());
}

/// `idempotency_purge(kept_after)` deletes exactly the answers created at or before
/// `kept_after`, however many (a backend may work in steps); purging secrets leaves kept answers
/// alone, and their count is not the secrets'.
pub async fn purge_removes_stale_idempotency_records(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for n in 0..700 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let k = idempotency_key("sk_test_purge", &format!("old-{n}"));
            store.idempotency_claim(&k, at(NOW)).await.expect("claim");
            store
                .idempotency_complete(&k, kept_answer(1, "{}", NOW), NO_QUOTA)
                .await
                .expect("complete");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let young = idempotency_key("sk_test_purge", "young");
    store
        .idempotency_claim(&young, at(NOW))
        .await
        .expect("claim");
    let answer = kept_answer(2, "{}", NOW + 10);
    store
        .idempotency_complete(&young, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");

    assert_eq!(
        store.purge_expired(NOW + 1_000).await.expect("purge"),
        0,
        "kept answers are not secrets"
    );
    assert_eq!(store.idempotency_purge(NOW - 1).await.expect("purge"), 0);
    assert_eq!(store.idempotency_purge(NOW).await.expect("purge"), 700);
    // A window that would still hold the old answers finds none: they are gone.
    let generous = ClaimTimes {
        now: NOW + 10,
        kept_after: NOW - 1_000,
        held_after: NOW - 1_000,
    };
    let old = idempotency_key("sk_test_purge", "old-7");
    assert_eq!(
        store
            .idempotency_claim(&old, generous)
            .await
            .expect("claim"),
        IdempotencyClaim::Claimed
    );
    store.idempotency_release(&old).await.expect("release");
    assert_eq!(
        store
            .idempotency_claim(&young, generous)
            .await
            .expect("claim"),
        IdempotencyClaim::Kept(answer),
        "an answer younger than the cut survives"
    );
}

/// `count_secrets` counts every stored secret of every namespace and scope once: a replace adds
/// none, an expired secret counts until it is purged, and a delete or purge takes its rows off.
pub async fn count_secrets_counts_every_stored_secret(store: Arc<dyn Store>) {
    assert_eq!(stored(&store).await, 0, "an empty store");
    let ns = home();
    let elsewhere = namespace("app_other", "acct_9", Mode::Live);
    let kept = address(&ns, &Scope::Account, "kept");
    let expiring = address(&ns, &user("usr_c"), "expiring");
    let deleted = address(&elsewhere, &Scope::Account, "deleted");
    put_ok(&store, &kept, NOW, None, ROOMY, "k").await;
    put_ok(&store, &expiring, NOW, Some(NOW + 5), ROOMY, "e").await;
    put_ok(&store, &deleted, NOW, None, ROOMY, "d").await;
    assert_eq!(stored(&store).await, 3);
    put_ok(&store, &kept, NOW + 1, None, ROOMY, "k2").await;
    assert_eq!(stored(&store).await, 3, "a replace adds nothing");

    assert!(delete_ok(&store, &deleted, NOW + 1).await.is_some());
    assert_eq!(stored(&store).await, 2, "a delete takes its row");
    assert_eq!(get_ok(&store, &expiring, NOW + 5).await, None);
    assert_eq!(stored(&store).await, 2, "expired, but stored until purged");
    assert_eq!(store.purge_expired(NOW + 5).await.expect("purge"), 1);
    assert_eq!(stored(&store).await, 1, "purged");
}

async fn stored(store: &Arc<dyn Store>) -> u64 {
    store.count_secrets().await.expect("count_secrets")
}
