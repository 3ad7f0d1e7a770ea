//! `AtomicWrites::commit`: several writes as one transaction. Later writes see earlier ones,
//! the answers come in order, and the first failure undoes everything the commit did.

use std::sync::Arc;

use secretstore_core::{Scope, Store, StoreError, Write, Written};

use crate::fixtures::*;

/// Puts and a delete in one commit: each write sees the ones before it.
pub async fn commit_applies_every_write_in_order(store: Arc<dyn Store>) {
    let ns = home();
    let a = address(&ns, &Scope::Account, "a");
    let b = address(&ns, &user("usr_1"), "b");
    let written = store
        .commit(vec![
            Write::PutSecret(put_request(&a, NOW, None, ROOMY, "a")),
            Write::PutSecret(put_request(&b, NOW, Some(NOW + 50), ROOMY, "b")),
            Write::DeleteSecret {
                address: a.clone(),
                now: NOW,
            },
        ])
        .await
        .expect("commit");
    let [Written::PutSecret(put_a), Written::PutSecret(put_b), Written::DeleteSecret(deleted)] =
        written.as_slice()
    else {
        panic!("answers out of order: {written:?}");
    };
    assert_eq!(put_a.address, a);
    assert_eq!(put_b.expires_at, Some(NOW + 50));
    assert_eq!(
        deleted.as_ref(),
        Some(put_a),
        "the delete saw the put before it"
    );
    assert_eq!(get_ok(&store, &a, NOW).await, None);
    assert_eq!(get_ok(&store, &b, NOW).await.as_ref(), Some(put_b));
    assert_eq!(
        store.commit(Vec::new()).await.expect("empty commit"),
        Vec::new()
    );
}

/// The first failing write fails the commit with its own error, and nothing the commit did
/// before it stays: not a put, not a delete.
pub async fn commit_is_all_or_nothing(store: Arc<dyn Store>) {
    let ns = home();
    let kept = address(&ns, &Scope::Account, "kept");
    let before = put_ok(&store, &kept, NOW, None, 2, "kept").await;
    let new = address(&ns, &Scope::Account, "new");
    let over = address(&ns, &Scope::Account, "over");
    let full = store
        .commit(vec![
            Write::DeleteSecret {
                address: kept.clone(),
                now: NOW,
            },
            Write::PutSecret(put_request(&new, NOW, None, 1, "new")),
            Write::PutSecret(put_request(&over, NOW, None, 1, "over")),
        ])
        .await;
    assert_scope_full(full, 1);
    assert_eq!(
        get_ok(&store, &kept, NOW).await,
        Some(before.clone()),
        "delete undone"
    );
    assert_eq!(get_ok(&store, &new, NOW).await, None, "put undone");

    let sealing = store
        .commit(vec![
            Write::PutSecret(put_request(&new, NOW, None, ROOMY, "new")),
            Write::PutSecret(failing_put(&over, NOW, ROOMY)),
        ])
        .await;
    assert!(matches!(sealing, Err(StoreError::Seal(_))), "{sealing:?}");
    assert_eq!(get_ok(&store, &new, NOW).await, None);
    assert_eq!(
        ids_in(&store, &ns, &Scope::Account, NOW).await,
        vec![before.id]
    );
}
