//! `put`, `get` and `delete`: create versus replace, what a replace keeps, the seal closure's
//! id, expiry as absence, the per-scope maximum (also under concurrency), and seals that fail.

use std::sync::{Arc, Mutex, PoisonError};

use secretstore_core::{Scope, SecretId, Store, StoreError};
use tokio::task::JoinSet;

use crate::fixtures::*;

/// The ids seal closures were called with, in order.
#[derive(Debug, Clone, Default)]
struct IdLog(Arc<Mutex<Vec<SecretId>>>);

impl IdLog {
    fn push(&self, id: &SecretId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.clone());
    }

    fn take(&self) -> Vec<SecretId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A create answers the request's `new_id`, `created = now`, the given expiry and the sealed
/// bytes; `get` answers the same.
pub async fn put_creates_a_secret(store: Arc<dyn Store>) {
    let k = address(&home(), &Scope::Account, "api-key");
    let request = put_request(&k, NOW, Some(NOW + 3600), ROOMY, "v1");
    let new_id = request.new_id.clone();
    let stored = store.put(request).await.expect("put");
    assert_eq!(stored.id, new_id, "a create uses the request's new_id");
    assert_eq!(stored.address, k);
    assert_eq!(stored.created, NOW, "created is the request's now");
    assert_eq!(stored.expires_at, Some(NOW + 3600));
    assert_eq!(stored.sealed, sealed_bytes("v1", &new_id));
    assert_eq!(get_ok(&store, &k, NOW).await, Some(stored.clone()));
    assert_eq!(
        get_ok(&store, &address(&home(), &Scope::Account, "other"), NOW).await,
        None,
        "a name never put is absent"
    );
}

/// A replace keeps id, `created` and the place in lists; replaces sealed bytes and expiry.
pub async fn put_replaces_a_live_secret_in_place(store: Arc<dyn Store>) {
    let ns = home();
    let first = put_ok(
        &store,
        &address(&ns, &Scope::Account, "first"),
        NOW,
        None,
        ROOMY,
        "a",
    )
    .await;
    let second = put_ok(
        &store,
        &address(&ns, &Scope::Account, "second"),
        NOW + 1,
        None,
        ROOMY,
        "b",
    )
    .await;
    let third = put_ok(
        &store,
        &address(&ns, &Scope::Account, "third"),
        NOW + 2,
        None,
        ROOMY,
        "c",
    )
    .await;

    let k = address(&ns, &Scope::Account, "second");
    let request = put_request(&k, NOW + 50, Some(NOW + 500), ROOMY, "b2");
    let unused_id = request.new_id.clone();
    let replaced = store.put(request).await.expect("replace");
    assert_eq!(replaced.id, second.id, "a replace keeps the id");
    assert_ne!(replaced.id, unused_id, "a replace does not use new_id");
    assert_eq!(replaced.created, NOW + 1, "a replace keeps created");
    assert_eq!(
        replaced.expires_at,
        Some(NOW + 500),
        "a replace sets expires_at"
    );
    assert_eq!(replaced.sealed, sealed_bytes("b2", &second.id));
    assert_eq!(get_ok(&store, &k, NOW + 50).await, Some(replaced.clone()));
    assert_eq!(
        ids_in(&store, &ns, &Scope::Account, NOW + 50).await,
        vec![third.id, second.id, first.id],
        "a replace keeps its place in the list"
    );
}

/// The seal closure is called once, with `new_id` on a create and the existing id on a replace.
pub async fn seal_gets_the_new_id_on_create_and_the_existing_id_on_replace(store: Arc<dyn Store>) {
    let k = address(&home(), &user("usr_seal"), "token");
    let log = IdLog::default();
    let logged = |now: i64| {
        let log = log.clone();
        let mut request = put_request(&k, now, None, ROOMY, "x");
        request.seal = Box::new(move |id: &SecretId| {
            log.push(id);
            Ok(sealed_bytes("x", id))
        });
        request
    };
    let create = logged(NOW);
    let created_id = create.new_id.clone();
    store.put(create).await.expect("create");
    assert_eq!(
        log.take(),
        vec![created_id.clone()],
        "create seals for new_id"
    );
    store.put(logged(NOW + 1)).await.expect("replace");
    assert_eq!(
        log.take(),
        vec![created_id],
        "replace seals for the existing id"
    );
}

/// An omitted `expires_at` on a replace clears the expiry.
pub async fn replace_without_expiry_clears_it(store: Arc<dyn Store>) {
    let k = address(&home(), &Scope::Account, "expiring");
    put_ok(&store, &k, NOW, Some(NOW + 10), ROOMY, "a").await;
    let replaced = put_ok(&store, &k, NOW + 1, None, ROOMY, "b").await;
    assert_eq!(replaced.expires_at, None);
    let later = get_ok(&store, &k, NOW + 1_000_000)
        .await
        .expect("no longer expires");
    assert_eq!(later.expires_at, None);
    assert_eq!(later.sealed, sealed_bytes("b", &later.id));
}

/// Sealed bytes come back byte for byte (zeros, every byte value, tens of kilobytes), and names
/// are exact: case, Unicode and surrounding spaces all make different names.
pub async fn sealed_bytes_and_names_are_kept_exactly(store: Arc<dyn Store>) {
    let ns = home();
    let mut bytes: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
    bytes.extend_from_slice(&[0, 0, 0]);
    let k = address(&ns, &Scope::Account, "binary");
    store
        .put(put_bytes(&k, NOW, bytes.clone()))
        .await
        .expect("put");
    assert_eq!(get_ok(&store, &k, NOW).await.expect("found").sealed, bytes);

    let long_name = "😀".repeat(5000);
    let names = [
        "Name",
        "name",
        "NAME",
        " name",
        "name ",
        "naïve",
        "nai\u{308}ve",
        "ключ",
        &long_name,
    ];
    for (n, name) in names.iter().enumerate() {
        put_ok(
            &store,
            &address(&ns, &user("usr_names"), name),
            NOW,
            None,
            ROOMY,
            &n.to_string(),
        )
        .await;
    }
    for (n, name) in names.iter().enumerate() {
        let found = get_ok(&store, &address(&ns, &user("usr_names"), name), NOW)
            .await
            .unwrap_or_else(|| panic!("name #{n} not found"));
        assert_eq!(found.address.name.as_str(), *name);
        assert_eq!(
            found.sealed,
            sealed_bytes(&n.to_string(), &found.id),
            "name #{n}"
        );
    }
    let listed = list_ok(&store, &ns, &user("usr_names"), 100, None, NOW).await;
    assert_eq!(listed.items.len(), names.len());
}

/// At `expires_at` a secret is gone for `get`, `list` and `delete`; `delete` does not remove it
/// (it is still there for an earlier `now`).
pub async fn expired_secrets_are_invisible(store: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "short-lived");
    let stored = put_ok(&store, &k, NOW, Some(NOW + 10), ROOMY, "a").await;
    let keeper = put_ok(
        &store,
        &address(&ns, &Scope::Account, "keeper"),
        NOW,
        None,
        ROOMY,
        "b",
    )
    .await;

    assert_eq!(
        get_ok(&store, &k, NOW + 9).await,
        Some(stored.clone()),
        "live before"
    );
    assert_eq!(
        get_ok(&store, &k, NOW + 10).await,
        None,
        "gone at expires_at"
    );
    assert_eq!(get_ok(&store, &k, NOW + 11).await, None, "gone after");
    assert_eq!(
        ids_in(&store, &ns, &Scope::Account, NOW + 9).await,
        vec![keeper.id.clone(), stored.id.clone()]
    );
    assert_eq!(
        ids_in(&store, &ns, &Scope::Account, NOW + 10).await,
        vec![keeper.id.clone()],
        "list leaves expired secrets out"
    );
    assert_eq!(
        delete_ok(&store, &k, NOW + 10).await,
        None,
        "delete finds no expired secret"
    );
    assert_eq!(
        get_ok(&store, &k, NOW + 9).await,
        Some(stored),
        "delete at a later now must not have removed it"
    );
}

/// Only live secrets count toward the maximum.
pub async fn expired_secrets_do_not_count_toward_the_maximum(store: Arc<dyn Store>) {
    let ns = home();
    let scope = Scope::Account;
    put_ok(
        &store,
        &address(&ns, &scope, "a"),
        NOW,
        Some(NOW + 5),
        2,
        "a",
    )
    .await;
    put_ok(&store, &address(&ns, &scope, "b"), NOW, None, 2, "b").await;
    assert_scope_full(
        store
            .put(put_request(
                &address(&ns, &scope, "c"),
                NOW + 4,
                None,
                2,
                "c",
            ))
            .await,
        2,
    );
    put_ok(&store, &address(&ns, &scope, "c"), NOW + 5, None, 2, "c").await;
    assert_scope_full(
        store
            .put(put_request(
                &address(&ns, &scope, "d"),
                NOW + 5,
                None,
                2,
                "d",
            ))
            .await,
        2,
    );
}

/// A put over an expired secret creates: a new id (`new_id`), `created = now`, sealed for the
/// new id, placed as the newest; the old one is gone.
pub async fn put_over_an_expired_secret_creates_a_new_one(store: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "reborn");
    let old = put_ok(&store, &k, NOW, Some(NOW + 5), ROOMY, "old").await;
    let other = put_ok(
        &store,
        &address(&ns, &Scope::Account, "other"),
        NOW + 1,
        None,
        ROOMY,
        "o",
    )
    .await;

    let request = put_request(&k, NOW + 5, None, ROOMY, "new");
    let new_id = request.new_id.clone();
    let fresh = store.put(request).await.expect("put over expired");
    assert_eq!(
        fresh.id, new_id,
        "an expired secret is absent: the put creates"
    );
    assert_ne!(fresh.id, old.id);
    assert_eq!(fresh.created, NOW + 5);
    assert_eq!(fresh.expires_at, None);
    assert_eq!(fresh.sealed, sealed_bytes("new", &new_id));
    assert_eq!(
        ids_in(&store, &ns, &Scope::Account, NOW + 5).await,
        vec![fresh.id.clone(), other.id],
        "the new secret is the newest"
    );
    assert_eq!(
        get_ok(&store, &k, NOW).await.map(|s| s.id),
        Some(fresh.id),
        "the expired secret was removed, not kept beside the new one"
    );
}

/// A new name is refused at exactly the maximum, changing nothing; replacing an existing name
/// still works when full; a delete makes room.
pub async fn scope_full_at_exactly_the_maximum(store: Arc<dyn Store>) {
    let ns = home();
    let scope = user("usr_full");
    let max = 3;
    for n in 0..max {
        put_ok(
            &store,
            &address(&ns, &scope, &format!("s{n}")),
            NOW,
            None,
            max,
            "x",
        )
        .await;
    }
    let before = ids_in(&store, &ns, &scope, NOW).await;
    assert_scope_full(
        store
            .put(put_request(
                &address(&ns, &scope, "one-too-many"),
                NOW,
                None,
                max,
                "x",
            ))
            .await,
        max,
    );
    assert_eq!(
        get_ok(&store, &address(&ns, &scope, "one-too-many"), NOW).await,
        None
    );
    assert_eq!(
        ids_in(&store, &ns, &scope, NOW).await,
        before,
        "a refused put changes nothing"
    );

    let replaced = put_ok(&store, &address(&ns, &scope, "s1"), NOW + 1, None, max, "y").await;
    assert_eq!(
        replaced.sealed,
        sealed_bytes("y", &replaced.id),
        "replace works when full"
    );

    delete_ok(&store, &address(&ns, &scope, "s0"), NOW + 2)
        .await
        .expect("s0 deleted");
    put_ok(
        &store,
        &address(&ns, &scope, "after-delete"),
        NOW + 3,
        None,
        max,
        "z",
    )
    .await;
    assert_scope_full(
        store
            .put(put_request(
                &address(&ns, &scope, "again"),
                NOW + 3,
                None,
                max,
                "x",
            ))
            .await,
        max,
    );
}

/// 32 concurrent puts of distinct names into one scope with a maximum of 10: exactly 10 succeed.
pub async fn concurrent_puts_never_overshoot_the_maximum(store: Arc<dyn Store>) {
    let ns = home();
    let mut tasks = JoinSet::new();
    for n in 0..32 {
        let store = Arc::clone(&store);
        let k = address(&ns, &Scope::Account, &format!("racer-{n}"));
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, 10, "r")).await });
    }
    let (mut ok, mut full) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::ScopeFull { max: 10 }) => full += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, full), (10, 22), "exactly the maximum succeeds");
    assert_eq!(ids_in(&store, &ns, &Scope::Account, NOW).await.len(), 10);
}

/// Concurrent puts of one name: one creates, the rest replace it; one secret results.
pub async fn concurrent_puts_of_one_name_make_one_secret(store: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "contended");
    let mut tasks = JoinSet::new();
    for n in 0..16 {
        let store = Arc::clone(&store);
        let request = put_request(&k, NOW, None, 10, &format!("t{n}"));
        tasks.spawn(async move {
            let new_id = request.new_id.clone();
            (new_id, store.put(request).await)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (new_id, result) = joined.expect("task");
        results.push((new_id, result.expect("every put of one name succeeds")));
    }
    let id = results[0].1.id.clone();
    assert!(results.iter().all(|(_, s)| s.id == id), "one id for all");
    assert_eq!(
        results.iter().filter(|(new_id, s)| *new_id == s.id).count(),
        1,
        "exactly one put created the secret"
    );
    assert_eq!(ids_in(&store, &ns, &Scope::Account, NOW).await, vec![id]);
}

/// Delete answers the secret as it was and removes it; a second delete finds nothing.
pub async fn delete_returns_the_secret_as_it_was(store: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &user("usr_del"), "doomed");
    let stored = put_ok(&store, &k, NOW, Some(NOW + 100), ROOMY, "a").await;
    let kept = put_ok(
        &store,
        &address(&ns, &user("usr_del"), "kept"),
        NOW,
        None,
        ROOMY,
        "b",
    )
    .await;
    assert_eq!(delete_ok(&store, &k, NOW + 1).await, Some(stored));
    assert_eq!(get_ok(&store, &k, NOW + 1).await, None);
    assert_eq!(
        delete_ok(&store, &k, NOW + 1).await,
        None,
        "already deleted"
    );
    assert_eq!(
        ids_in(&store, &ns, &user("usr_del"), NOW + 1).await,
        vec![kept.id]
    );
    assert_eq!(
        delete_ok(&store, &address(&ns, &user("usr_del"), "never"), NOW).await,
        None
    );
}

/// A seal that fails stores nothing (and uses no room); on a replace the old value stays.
pub async fn failing_seal_stores_nothing(store: Arc<dyn Store>) {
    let ns = home();
    let k = address(&ns, &Scope::Account, "unsealable");
    match store.put(failing_put(&k, NOW, 1)).await {
        Err(StoreError::Seal(_)) => {}
        other => panic!("expected StoreError::Seal, got {other:?}"),
    }
    assert_eq!(get_ok(&store, &k, NOW).await, None);
    assert!(ids_in(&store, &ns, &Scope::Account, NOW).await.is_empty());
    // The failed create took no room: the one slot is still free.
    let stored = put_ok(
        &store,
        &address(&ns, &Scope::Account, "fits"),
        NOW,
        None,
        1,
        "a",
    )
    .await;
    match store
        .put(failing_put(
            &address(&ns, &Scope::Account, "fits"),
            NOW + 1,
            1,
        ))
        .await
    {
        Err(StoreError::Seal(_)) => {}
        other => panic!("expected StoreError::Seal on replace, got {other:?}"),
    }
    assert_eq!(
        get_ok(&store, &address(&ns, &Scope::Account, "fits"), NOW + 1).await,
        Some(stored),
        "a failed replace leaves the old value"
    );
}

/// Failing seals among concurrent puts (likely batched together) fail alone.
pub async fn failing_seals_do_not_disturb_concurrent_puts(store: Arc<dyn Store>) {
    let ns = home();
    let mut tasks = JoinSet::new();
    for n in 0..40 {
        let store = Arc::clone(&store);
        let k = address(&ns, &Scope::Account, &format!("mixed-{n}"));
        tasks.spawn(async move {
            let request = if n % 2 == 1 {
                failing_put(&k, NOW, ROOMY)
            } else {
                put_request(&k, NOW, None, ROOMY, "ok")
            };
            (n, store.put(request).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.expect("task");
        match (n % 2, result) {
            (0, Ok(_)) | (1, Err(StoreError::Seal(_))) => {}
            (_, other) => panic!("put #{n}: {other:?}"),
        }
    }
    let listed = list_ok(&store, &ns, &Scope::Account, 100, None, NOW).await;
    let mut names: Vec<String> = listed
        .items
        .iter()
        .map(|s| s.address.name.as_str().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..40).step_by(2).map(|n| format!("mixed-{n}")).collect();
    expected.sort();
    assert_eq!(
        names, expected,
        "exactly the puts whose seal worked are stored"
    );
}
