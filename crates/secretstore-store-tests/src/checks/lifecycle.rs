//! The store itself: named metadata values, the readiness probe, and `close`, after which
//! every call is refused as `Unavailable` (never a hang, never a panic).

use std::sync::Arc;

use secretstore_core::{Scope, Store, StoreError};
use tokio::task::JoinSet;

use crate::fixtures::*;

/// Absent until put, then the latest value put; names are independent.
pub async fn meta_values_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.meta_get("root_key_check").await.expect("get"), None);
    store
        .meta_put("root_key_check", vec![1, 2, 3, 0, 255])
        .await
        .expect("put");
    assert_eq!(
        store.meta_get("root_key_check").await.expect("get"),
        Some(vec![1, 2, 3, 0, 255])
    );
    store
        .meta_put("root_key_check", vec![9; 4096])
        .await
        .expect("overwrite");
    assert_eq!(
        store.meta_get("root_key_check").await.expect("get"),
        Some(vec![9; 4096])
    );
    store
        .meta_put("other", Vec::new())
        .await
        .expect("put empty");
    assert_eq!(
        store.meta_get("other").await.expect("get"),
        Some(Vec::new())
    );
    assert_eq!(store.meta_get("unknown").await.expect("get"), None);
}

pub async fn check_ready_answers(store: Arc<dyn Store>) {
    store.check_ready().await.expect("a fresh store is ready");
    put_ok(
        &store,
        &address(&home(), &Scope::Account, "x"),
        NOW,
        None,
        ROOMY,
        "x",
    )
    .await;
    store.check_ready().await.expect("still ready");
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what} after close: expected Unavailable, got {other:?}"),
    }
}

/// Writes racing with `close` either complete or are refused as `Unavailable`; once `close`
/// returned, every call is refused as `Unavailable`.
pub async fn close_refuses_later_calls(store: Arc<dyn Store>) {
    let ns = home();
    let mut tasks = JoinSet::new();
    for n in 0..50 {
        let store = Arc::clone(&store);
        let k = address(&ns, &Scope::Account, &format!("racing-close-{n}"));
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, ROOMY, "r")).await });
    }
    tokio::task::yield_now().await;
    store.close().await.expect("close");
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) | Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("a put racing close failed otherwise: {e:?}"),
        }
    }
    let k = address(&ns, &Scope::Account, "after-close");
    assert_unavailable(
        "put",
        store.put(put_request(&k, NOW, None, ROOMY, "x")).await,
    );
    assert_unavailable("get", store.get(&k, NOW).await);
    assert_unavailable("delete", store.delete(&k, NOW).await);
    assert_unavailable(
        "list",
        store
            .list(&query(&ns, &Scope::Account, 10, None, NOW))
            .await,
    );
    assert_unavailable("purge", store.purge_expired(NOW).await);
    let ik = idempotency_key("sk_test_closed", "k");
    assert_unavailable("claim", store.idempotency_claim(&ik, at(NOW)).await);
    assert_unavailable("meta_get", store.meta_get("x").await);
    assert_unavailable("meta_put", store.meta_put("x", vec![1]).await);
    assert_unavailable("check_ready", store.check_ready().await);
    store.close().await.expect("closing twice is harmless");
}
