//! The rules that hold across processes (the `store` module's "Rules across processes"), with
//! two handles on one database standing for two servers. A backend that allows only one handle
//! per database (the embedded SQLite store locks its directory) skips these.

use std::sync::Arc;

use secretstore_core::{
    Account, AccountId, Completed, IdempotencyClaim, KeyOwner, Scope, Store, StoreError, StoredKey,
    User, UserId,
};
use secretstore_crypto::KeyId;
use tokio::task::JoinSet;

use crate::fixtures::*;

/// What one handle writes, the other reads at once: a create, a replace, a delete, a list.
/// Neither may answer from a cache the other's write made stale.
pub async fn two_handles_see_each_others_writes_at_once(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "shared");
    let created = put_ok(&one, &k, NOW, None, ROOMY, "v1").await;
    assert_eq!(get_ok(&two, &k, NOW).await, Some(created.clone()));
    // `one` has now read it too (a backend may cache what it read).
    assert!(get_ok(&one, &k, NOW).await.is_some());
    let replaced = put_ok(&two, &k, NOW + 1, None, ROOMY, "v2").await;
    assert_eq!(replaced.id, created.id);
    assert_eq!(
        get_ok(&one, &k, NOW + 1).await,
        Some(replaced.clone()),
        "stale read"
    );
    assert_eq!(
        ids_in(&one, &ns, &Scope::Account, NOW + 1).await,
        vec![created.id]
    );
    assert_eq!(delete_ok(&one, &k, NOW + 2).await, Some(replaced));
    assert_eq!(
        get_ok(&two, &k, NOW + 2).await,
        None,
        "a deleted secret answered"
    );
    assert!(ids_in(&two, &ns, &Scope::Account, NOW + 2).await.is_empty());
}

/// Concurrent creates of distinct names through both handles stop at exactly the maximum.
pub async fn two_handles_never_overshoot_the_maximum(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let ns = home();
    let scope = user("usr_race");
    let mut tasks = JoinSet::new();
    for n in 0..40 {
        let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
        let k = address(&ns, &scope, &format!("name-{n}"));
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, 10, "x")).await });
    }
    let (mut stored, mut full) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) => stored += 1,
            Err(StoreError::ScopeFull { max: 10 }) => full += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((stored, full), (10, 30));
    assert_eq!(ids_in(&one, &ns, &scope, NOW).await.len(), 10);
    assert_eq!(ids_in(&two, &ns, &scope, NOW).await.len(), 10);
}

/// Concurrent puts of one name through both handles make one secret, never two rows.
pub async fn two_handles_one_name_makes_one_secret(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "once");
    let mut tasks = JoinSet::new();
    for n in 0..20 {
        let store = Arc::clone(if n % 2 == 0 { &one } else { &two });
        let k = k.clone();
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, ROOMY, "x")).await });
    }
    let mut ids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        ids.push(joined.expect("task").expect("put").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one secret, one id: {ids:?}");
    assert_eq!(ids_in(&two, &ns, &Scope::Account, NOW).await, ids);
}

/// A claim through one handle is in flight through the other, and its kept answer is replayed
/// through the other.
pub async fn two_handles_share_idempotency_claims(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let k = idempotency_key("sk_test_shared", "k");
    assert_eq!(
        one.idempotency_claim(&k, at(NOW)).await.expect("claim"),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        two.idempotency_claim(&k, at(NOW)).await.expect("claim"),
        IdempotencyClaim::InFlight
    );
    let answer = kept_answer(7, "done", NOW);
    one.idempotency_complete(&k, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    assert_eq!(
        two.idempotency_claim(&k, at(NOW + 1)).await.expect("claim"),
        IdempotencyClaim::Kept(answer)
    );
}

/// A claim whose holder went away without releasing it (its process died) stays in flight
/// until its lease is over, then is free.
pub async fn a_claim_of_a_vanished_handle_frees_after_its_lease(
    one: Arc<dyn Store>,
    two: Arc<dyn Store>,
) {
    let k = idempotency_key("sk_test_lease", "k");
    assert_eq!(
        one.idempotency_claim(&k, at(NOW)).await.expect("claim"),
        IdempotencyClaim::Claimed
    );
    drop(one);
    assert_eq!(
        two.idempotency_claim(&k, at(NOW + LEASE - 1))
            .await
            .expect("claim"),
        IdempotencyClaim::InFlight,
        "still within its lease"
    );
    assert_eq!(
        two.idempotency_claim(&k, at(NOW + LEASE))
            .await
            .expect("claim"),
        IdempotencyClaim::Claimed,
        "the lease is over"
    );
    assert_eq!(
        two.idempotency_claim(&k, at(NOW + LEASE))
            .await
            .expect("claim"),
        IdempotencyClaim::InFlight,
        "and the new claim holds"
    );
    two.idempotency_release(&k).await.expect("release");
}

/// An owner's quota is one, whichever handles its answers are kept through: concurrent
/// completes through both keep exactly what fits, and an answer kept through one counts
/// against a complete through the other.
pub async fn two_handles_share_an_idempotency_quota(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let stores = [Arc::clone(&one), Arc::clone(&two)];
    let quota = 5 * super::idempotency::QUOTA_ANSWER_BYTES;
    assert_eq!(
        super::idempotency::complete_at_once(&stores, 20, quota).await,
        5
    );
    let k = idempotency_key("sk_test_quota_race", "one-more");
    assert_eq!(
        claim_and_complete(&two, &k, kept_answer(1, "y", NOW), quota).await,
        Completed::OverQuota
    );
}

/// Commits of one user's first key with a secret sealed under it, racing through both
/// handles: one commits, and every other fails whole, whichever handle it came through.
pub async fn two_handles_committing_one_new_key_keep_one(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    super::keys::commit_new_keys_at_once(&[one, two], "usr_two_handles", 16).await;
}

/// Adds of one owner's first key racing through both handles store one key, which both answer
/// from then on; a re-wrap through one makes a re-wrap through the other from the same read
/// fail.
pub async fn two_handles_adding_one_key_keep_one(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let owner = super::keys::home_owner();
    let stores = [Arc::clone(&one), Arc::clone(&two)];
    let winner = super::keys::add_at_once(&stores, 32).await;
    for store in &stores {
        assert_eq!(
            store.keys_of(&owner).await.expect("keys_of"),
            vec![winner.clone()]
        );
    }
    let to = (KeyId([0x22; 8]), b"through one".to_vec());
    assert!(one
        .rewrap_key(&winner, to.clone())
        .await
        .expect("rewrap_key"));
    assert!(!two
        .rewrap_key(&winner, (KeyId([0x33; 8]), b"through two".to_vec()))
        .await
        .expect("rewrap_key"));
    let rewrapped = StoredKey {
        root: to.0,
        wrapped: to.1,
        ..winner
    };
    assert_eq!(two.keys_of(&owner).await.expect("keys_of"), vec![rewrapped]);
}

/// A removal through one handle that destroys keys moves the other's destroyed-keys generation
/// on (at once, or for a backend that hears of it by notification, within seconds), so that
/// the other server stops sealing under keys that no longer exist.
pub async fn a_removal_through_one_handle_tells_the_other_keys_were_destroyed(
    one: Arc<dyn Store>,
    two: Arc<dyn Store>,
) {
    let account = AccountId::parse("acct_shred").expect("account id");
    let user = UserId::parse("usr_shred").expect("user id");
    one.create_account(Account {
        id: account.clone(),
        name: None,
        created: NOW,
    })
    .await
    .expect("account");
    one.create_user(User {
        id: user.clone(),
        account: account.clone(),
        email: None,
        created: NOW,
    })
    .await
    .expect("user");
    let owner = KeyOwner::User {
        account: account.clone(),
        user: user.clone(),
    };
    let key = StoredKey {
        owner: owner.clone(),
        version: 1,
        root: KeyId([0x44; 8]),
        wrapped: vec![0x55; 60],
        created: NOW,
    };
    two.add_key(key).await.expect("add_key");
    // A backend that hears of removals by notification moves the generation on when it starts
    // listening too (it may have missed one before); wait for that to settle.
    let before = match two.shared() {
        true => wait_for(|| two.destroyed_generation(), |g| g > 0)
            .await
            .expect("the listener never started"),
        false => two.destroyed_generation(),
    };
    let removed = one
        .remove_user(&account, &user)
        .await
        .expect("remove_user")
        .expect("existed");
    assert_eq!(removed.keys, 1);
    assert!(two.keys_of(&owner).await.expect("keys_of").is_empty());
    assert!(
        wait_for(|| two.destroyed_generation(), |g| g != before)
            .await
            .is_some(),
        "the other handle still believes no key was destroyed"
    );
}

/// Polls `read` for up to 5 s until `until` holds of it; `None` if it never did.
async fn wait_for(read: impl Fn() -> u64, until: impl Fn(u64) -> bool) -> Option<u64> {
    for _ in 0..500 {
        let value = read();
        if until(value) {
            return Some(value);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}
