//! `AuditStore`: the audit chain. Appends (alone, or with writes in a `commit`) form one chain
//! that verifies, however many run at once; a record committed with a write that fails is not
//! kept; search returns exactly what the filter matches, newest first; a prune leaves an anchor
//! from which the rest verifies, and never removes the head.

use std::sync::Arc;

use secretstore_core::audit::{AuditAnchor, Outcome, Verified, Verifier};
use secretstore_core::{
    AuditAppend, AuditChain, AuditEntry, AuditEvent, AuditFilter, Scope, Store, StoreError, Write,
    Written,
};
use secretstore_crypto::{DigestKey, RootKey};
use tokio::task::JoinSet;

use crate::fixtures::*;

fn chain() -> Arc<AuditChain> {
    Arc::new(AuditChain::new(DigestKey::new(
        &RootKey::generate().expect("a root key"),
    )))
}

/// The `i`th event of a check: its time grows with `i`, and its fields vary with it.
fn event(i: i64) -> AuditEvent {
    AuditEvent {
        time_ms: 1_700_000_000_000 + i * 1000,
        request_id: format!("req_{i:020}"),
        credential_kind: Some("secret_key".into()),
        credential: Some(format!("key_{}", i % 3)),
        app: Some(format!("app_{}", i % 2)),
        account: Some("acct_1".into()),
        mode: Some("test".into()),
        scope_type: Some("account".into()),
        user: (i % 4 == 0).then(|| "usr_1".to_owned()),
        operation: if i % 2 == 0 {
            "secrets.find"
        } else {
            "secrets.set"
        }
        .into(),
        secret_name: Some(format!("name-{}", i % 5)),
        client: Some("127.0.0.1".into()),
        status: if i % 3 == 0 { 404 } else { 200 },
        code: (i % 3 == 0).then(|| "resource_missing".to_owned()),
    }
}

fn append(chain: &Arc<AuditChain>, i: i64) -> AuditAppend {
    AuditAppend::new(Arc::new(event(i)), Arc::clone(chain))
}

/// The whole chain as stored, read in pages of 7 as `secretstore audit verify` reads it.
async fn scan_all(store: &Arc<dyn Store>) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    let mut after = store
        .audit_anchor()
        .await
        .expect("anchor")
        .map_or(0, |a| a.seq);
    loop {
        let page = store.audit_scan(after, 7).await.expect("scan");
        let Some(last) = page.last() else {
            return all;
        };
        after = last.seq;
        all.extend(page);
    }
}

fn verify(chain: &AuditChain, anchor: Option<&AuditAnchor>, entries: &[AuditEntry]) -> Verified {
    let mut verifier = Verifier::new(chain, anchor).expect("the anchor verifies");
    for entry in entries {
        verifier.check(entry).expect("the chain verifies");
    }
    verifier.finish()
}

/// Appends alone and with writes make one chain, in order, that verifies; each answer is the
/// record as stored.
pub async fn audit_appends_form_a_chain_that_verifies(store: Arc<dyn Store>) {
    let chain = chain();
    let ns = home();
    let mut answered = Vec::new();
    for i in 1..=20 {
        if i % 4 == 0 {
            let k = address(&ns, &Scope::Account, &format!("s{i}"));
            let written = store
                .commit(vec![
                    Write::PutSecret(put_request(&k, NOW, None, ROOMY, "v")),
                    Write::Audit(append(&chain, i)),
                ])
                .await
                .expect("commit");
            let [Written::PutSecret(_), Written::Audit(entry)] = written.as_slice() else {
                panic!("answers out of order: {written:?}");
            };
            answered.push(entry.clone());
        } else {
            answered.push(store.audit_append(append(&chain, i)).await.expect("append"));
        }
    }
    let stored = scan_all(&store).await;
    assert_eq!(stored, answered, "the records as stored are those answered");
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        stored
            .iter()
            .map(|e| (*e.event).clone())
            .collect::<Vec<_>>(),
        (1..=20).map(event).collect::<Vec<_>>(),
        "every field kept exactly"
    );
    let verified = verify(&chain, None, &stored);
    assert_eq!(verified.records, 20);
    assert_eq!(verified.head, (20, stored[19].hash));
}

/// A record committed with a write that fails is not kept, and the chain goes on without a gap.
pub async fn audit_records_of_failed_writes_are_not_kept(store: Arc<dyn Store>) {
    let chain = chain();
    let ns = home();
    let kept = address(&ns, &Scope::Account, "kept");
    put_ok(&store, &kept, NOW, None, 1, "kept").await;
    store.audit_append(append(&chain, 1)).await.expect("append");
    let over = address(&ns, &Scope::Account, "over");
    let full = store
        .commit(vec![
            Write::PutSecret(put_request(&over, NOW, None, 1, "over")),
            Write::Audit(append(&chain, 2)),
        ])
        .await;
    assert_scope_full(full, 1);
    let missing = address(&ns, &Scope::Account, "missing");
    let absent = store
        .commit(vec![
            Write::DeleteLive {
                address: missing,
                now: NOW,
            },
            Write::Audit(append(&chain, 3)),
        ])
        .await;
    assert!(matches!(absent, Err(StoreError::Missing(_))), "{absent:?}");
    let deleted = store
        .commit(vec![
            Write::DeleteLive {
                address: kept.clone(),
                now: NOW,
            },
            Write::Audit(append(&chain, 4)),
        ])
        .await
        .expect("a delete of a live secret");
    assert!(matches!(&deleted[0], Written::DeleteSecret(Some(s)) if s.address == kept));
    let stored = scan_all(&store).await;
    assert_eq!(
        stored
            .iter()
            .map(|e| (*e.event).clone())
            .collect::<Vec<_>>(),
        vec![event(1), event(4)]
    );
    assert_eq!(verify(&chain, None, &stored).records, 2);
}

/// Appends at once, alone and with writes, make one chain with no gap and no repeat.
pub async fn concurrent_audit_appends_make_one_chain(store: Arc<dyn Store>) {
    let chain = chain();
    let mut tasks = JoinSet::new();
    for i in 1..=64 {
        let (store, chain) = (Arc::clone(&store), Arc::clone(&chain));
        tasks.spawn(async move {
            if i % 2 == 0 {
                let k = address(&home(), &Scope::Account, &format!("c{i}"));
                store
                    .commit(vec![
                        Write::PutSecret(put_request(&k, NOW, None, ROOMY, "v")),
                        Write::Audit(append(&chain, i)),
                    ])
                    .await
                    .map(|_| ())
            } else {
                store.audit_append(append(&chain, i)).await.map(|_| ())
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("append");
    }
    let stored = scan_all(&store).await;
    assert_eq!(verify(&chain, None, &stored).records, 64);
    let mut events: Vec<String> = stored.iter().map(|e| e.event.request_id.clone()).collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), 64, "every record once");
}

/// Search: exactly the records the filter matches (`AuditFilter::matches`), newest first, at
/// most `limit`, paged with `before_seq`.
pub async fn audit_search_returns_what_the_filter_matches(store: Arc<dyn Store>) {
    let chain = chain();
    for i in 1..=40 {
        store.audit_append(append(&chain, i)).await.expect("append");
    }
    let all = scan_all(&store).await;
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            app: Some("app_1".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            since_ms: Some(event(10).time_ms),
            until_ms: Some(event(20).time_ms),
            ..AuditFilter::default()
        },
        AuditFilter {
            user: Some("usr_1".into()),
            operation: Some("secrets.find".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            secret_name: Some("name-3".into()),
            credential: Some("key_1".into()),
            account: Some("acct_1".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Failure),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Success),
            before_seq: Some(30),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Status(404)),
            ..AuditFilter::default()
        },
        AuditFilter {
            outcome: Some(Outcome::Code("resource_missing".into())),
            app: Some("nobody".into()),
            ..AuditFilter::default()
        },
    ];
    for limit in [100, 3] {
        for filter in &filters {
            let filter = AuditFilter {
                limit,
                ..filter.clone()
            };
            let expected: Vec<AuditEntry> = all
                .iter()
                .rev()
                .filter(|e| filter.matches(e.seq, &e.event))
                .take(limit as usize)
                .cloned()
                .collect();
            let found = store.audit_search(&filter).await.expect("search");
            assert_eq!(found, expected, "{filter:?}");
        }
    }
}

/// A prune removes the records before a time, never the head, and leaves an anchor from which
/// the rest verifies; appends after it continue the chain.
pub async fn audit_prune_leaves_an_anchor_the_rest_verifies_from(store: Arc<dyn Store>) {
    let chain = chain();
    assert_eq!(
        store
            .audit_prune(i64::MAX, 1, Arc::clone(&chain))
            .await
            .expect("prune of nothing"),
        0
    );
    for i in 1..=10 {
        store.audit_append(append(&chain, i)).await.expect("append");
    }
    let removed = store
        .audit_prune(event(5).time_ms, 42, Arc::clone(&chain))
        .await
        .expect("prune");
    assert_eq!(removed, 4);
    let anchor = store
        .audit_anchor()
        .await
        .expect("anchor")
        .expect("an anchor");
    assert_eq!((anchor.seq, anchor.pruned_at_ms), (4, 42));
    let rest = scan_all(&store).await;
    assert_eq!(rest.first().map(|e| e.seq), Some(5));
    assert_eq!(verify(&chain, Some(&anchor), &rest).records, 6);

    // Everything older than the far future: all but the head go.
    let removed = store
        .audit_prune(i64::MAX, 43, Arc::clone(&chain))
        .await
        .expect("prune");
    assert_eq!(removed, 5);
    for i in 11..=12 {
        store.audit_append(append(&chain, i)).await.expect("append");
    }
    let anchor = store
        .audit_anchor()
        .await
        .expect("anchor")
        .expect("an anchor");
    let rest = scan_all(&store).await;
    assert_eq!(
        rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(verify(&chain, Some(&anchor), &rest).head.0, 12);
}

/// Two servers appending to one database make one chain.
pub async fn two_handles_append_to_one_chain(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    let chain = chain();
    let mut tasks = JoinSet::new();
    for i in 1..=40 {
        let store = Arc::clone(if i % 2 == 0 { &one } else { &two });
        let chain = Arc::clone(&chain);
        tasks.spawn(async move { store.audit_append(append(&chain, i)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("append");
    }
    let stored = scan_all(&one).await;
    assert_eq!(verify(&chain, None, &stored).records, 40);
}
