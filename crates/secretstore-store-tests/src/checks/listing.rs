//! `list`: newest first in the exact order of creation (many secrets share one second), pages
//! walked with `starting_after` towards older secrets and with `ending_before` towards newer
//! ones, and `has_more` true exactly when live secrets lie beyond the page.

use std::sync::Arc;

use secretstore_core::{ListCursor, Namespace, Scope, SealedSecret, SecretId, Store};

use crate::fixtures::*;

/// Creates `count` (at most 101) secrets in one scope, all within the same second, named so
/// that neither name order nor id order matches creation order; returns their ids newest first.
async fn populate(
    store: &Arc<dyn Store>,
    ns: &Namespace,
    scope: &Scope,
    count: usize,
) -> Vec<SecretId> {
    let mut created = Vec::with_capacity(count);
    for n in 0..count {
        // 37 is invertible modulo 101, so names are distinct for up to 101 secrets.
        let name = format!("{:03}-secret", n * 37 % 101);
        created.push(
            put_ok(store, &address(ns, scope, &name), NOW, None, ROOMY, "x")
                .await
                .id,
        );
    }
    created.reverse();
    created
}

fn page_ids(items: &[SealedSecret]) -> Vec<SecretId> {
    ids(items)
}

/// An empty scope lists nothing, with no more to come, whatever the limit.
pub async fn list_of_an_empty_scope(store: Arc<dyn Store>) {
    for limit in [1, 10, 100] {
        let page = list_ok(&store, &home(), &Scope::Account, limit, None, NOW).await;
        assert!(page.items.is_empty());
        assert!(!page.has_more);
    }
}

/// Newest first, in exact creation order even within one second; a replace keeps its place, a
/// delete-and-put goes to the top.
pub async fn list_is_newest_first_in_creation_order_within_one_second(store: Arc<dyn Store>) {
    let ns = home();
    let scope = Scope::Account;
    let expected = populate(&store, &ns, &scope, 30).await;
    let page = list_ok(&store, &ns, &scope, 100, None, NOW).await;
    assert_eq!(
        page_ids(&page.items),
        expected,
        "newest first, in creation order"
    );
    assert!(!page.has_more);
    assert!(page
        .items
        .iter()
        .all(|s| s.address.namespace == ns && s.address.scope == scope));

    // Replace one in the middle: same place.
    let middle = page.items[15].address.clone();
    put_ok(&store, &middle, NOW, None, ROOMY, "replaced").await;
    assert_eq!(
        ids_in(&store, &ns, &scope, NOW).await,
        expected,
        "a replace keeps its place"
    );

    // Delete it and put it again: a new secret, now the newest.
    delete_ok(&store, &middle, NOW).await.expect("deleted");
    let again = put_ok(&store, &middle, NOW, None, ROOMY, "again").await;
    let mut now_expected: Vec<SecretId> = expected
        .iter()
        .filter(|id| **id != page.items[15].id)
        .cloned()
        .collect();
    now_expected.insert(0, again.id);
    assert_eq!(ids_in(&store, &ns, &scope, NOW).await, now_expected);
}

/// `starting_after` walks towards older secrets; `has_more` is false only on the last page.
pub async fn list_pages_forward_with_starting_after(store: Arc<dyn Store>) {
    let ns = home();
    let scope = user("usr_pages");
    let all = populate(&store, &ns, &scope, 25).await;
    let after = |id: &SecretId| Some(ListCursor::StartingAfter(id.clone()));

    let p1 = list_ok(&store, &ns, &scope, 10, None, NOW).await;
    assert_eq!(page_ids(&p1.items), all[0..10].to_vec());
    assert!(p1.has_more, "first page: more to come");
    let p2 = list_ok(&store, &ns, &scope, 10, after(&all[9]), NOW).await;
    assert_eq!(page_ids(&p2.items), all[10..20].to_vec());
    assert!(p2.has_more, "second page: more to come");
    let p3 = list_ok(&store, &ns, &scope, 10, after(&all[19]), NOW).await;
    assert_eq!(page_ids(&p3.items), all[20..25].to_vec());
    assert!(!p3.has_more, "last page");
    let past = list_ok(&store, &ns, &scope, 10, after(&all[24]), NOW).await;
    assert!(
        past.items.is_empty() && !past.has_more,
        "after the oldest: nothing"
    );

    // A page that ends exactly at the oldest has no more.
    let exact = list_ok(&store, &ns, &scope, 10, after(&all[14]), NOW).await;
    assert_eq!(page_ids(&exact.items), all[15..25].to_vec());
    assert!(!exact.has_more, "a page ending at the oldest has no more");
    let whole = list_ok(&store, &ns, &scope, 25, None, NOW).await;
    assert_eq!(page_ids(&whole.items), all);
    assert!(!whole.has_more, "limit equal to the count: no more");

    // One by one, the whole way.
    let mut walked = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_ok(&store, &ns, &scope, 1, cursor, NOW).await;
        assert_eq!(page.items.len(), 1);
        walked.push(page.items[0].id.clone());
        assert_eq!(
            page.has_more,
            walked.len() < all.len(),
            "has_more at #{}",
            walked.len()
        );
        if !page.has_more {
            break;
        }
        cursor = after(&page.items[0].id);
    }
    assert_eq!(walked, all);
}

/// `ending_before` takes the secrets just newer than the cursor, answered newest first;
/// `has_more` is false only when the page reaches the newest.
pub async fn list_pages_backward_with_ending_before(store: Arc<dyn Store>) {
    let ns = home();
    let scope = user("usr_pages");
    let all = populate(&store, &ns, &scope, 25).await;
    let before = |id: &SecretId| Some(ListCursor::EndingBefore(id.clone()));

    let b1 = list_ok(&store, &ns, &scope, 10, before(&all[24]), NOW).await;
    assert_eq!(
        page_ids(&b1.items),
        all[14..24].to_vec(),
        "the ten closest newer, newest first"
    );
    assert!(b1.has_more, "newer ones remain");
    let b2 = list_ok(&store, &ns, &scope, 10, before(&all[14]), NOW).await;
    assert_eq!(page_ids(&b2.items), all[4..14].to_vec());
    assert!(b2.has_more);
    let b3 = list_ok(&store, &ns, &scope, 10, before(&all[4]), NOW).await;
    assert_eq!(page_ids(&b3.items), all[0..4].to_vec());
    assert!(!b3.has_more, "reached the newest");
    let past = list_ok(&store, &ns, &scope, 10, before(&all[0]), NOW).await;
    assert!(
        past.items.is_empty() && !past.has_more,
        "before the newest: nothing"
    );

    let exact = list_ok(&store, &ns, &scope, 10, before(&all[10]), NOW).await;
    assert_eq!(page_ids(&exact.items), all[0..10].to_vec());
    assert!(!exact.has_more, "a page ending at the newest has no more");

    // One by one from the oldest to the newest.
    let mut walked = vec![all[24].clone()];
    let mut cursor = before(&all[24]);
    loop {
        let page = list_ok(&store, &ns, &scope, 1, cursor, NOW).await;
        assert_eq!(page.items.len(), 1);
        walked.push(page.items[0].id.clone());
        assert_eq!(
            page.has_more,
            walked.len() < all.len(),
            "has_more at #{}",
            walked.len()
        );
        if !page.has_more {
            break;
        }
        cursor = before(&page.items[0].id);
    }
    walked.reverse();
    assert_eq!(walked, all);

    // Forward and backward agree: back from the start of page 2 is page 1.
    let p2 = list_ok(
        &store,
        &ns,
        &scope,
        10,
        Some(ListCursor::StartingAfter(all[9].clone())),
        NOW,
    )
    .await;
    let back = list_ok(&store, &ns, &scope, 10, before(&p2.items[0].id), NOW).await;
    assert_eq!(page_ids(&back.items), all[0..10].to_vec());
    assert!(!back.has_more);
}

/// Expired secrets are skipped inside pages and do not make `has_more` true.
pub async fn list_has_more_counts_only_live_secrets(store: Arc<dyn Store>) {
    let ns = home();
    let scope = Scope::Account;
    // Oldest first: e0 (expires), l1, e2 (expires), l3, l4, e5 (expires, newest).
    let mut made = Vec::new();
    for (name, expires) in [
        ("e0", Some(NOW + 5)),
        ("l1", None),
        ("e2", Some(NOW + 5)),
        ("l3", None),
        ("l4", None),
        ("e5", Some(NOW + 5)),
    ] {
        made.push(
            put_ok(
                &store,
                &address(&ns, &scope, name),
                NOW,
                expires,
                ROOMY,
                name,
            )
            .await
            .id,
        );
    }
    let later = NOW + 5;
    let (l1, l3, l4) = (&made[1], &made[3], &made[4]);

    let all = list_ok(&store, &ns, &scope, 10, None, later).await;
    assert_eq!(
        page_ids(&all.items),
        vec![l4.clone(), l3.clone(), l1.clone()]
    );
    let first = list_ok(&store, &ns, &scope, 2, None, later).await;
    assert_eq!(page_ids(&first.items), vec![l4.clone(), l3.clone()]);
    assert!(first.has_more, "l1 remains");
    let last = list_ok(
        &store,
        &ns,
        &scope,
        1,
        Some(ListCursor::StartingAfter(l3.clone())),
        later,
    )
    .await;
    assert_eq!(page_ids(&last.items), vec![l1.clone()]);
    assert!(!last.has_more, "only an expired secret is older than l1");
    let exact = list_ok(&store, &ns, &scope, 3, None, later).await;
    assert!(!exact.has_more, "three live secrets, limit three");
    let newest = list_ok(
        &store,
        &ns,
        &scope,
        2,
        Some(ListCursor::EndingBefore(l1.clone())),
        later,
    )
    .await;
    assert_eq!(page_ids(&newest.items), vec![l4.clone(), l3.clone()]);
    assert!(!newest.has_more, "only an expired secret is newer than l4");
    let one = list_ok(
        &store,
        &ns,
        &scope,
        1,
        Some(ListCursor::EndingBefore(l1.clone())),
        later,
    )
    .await;
    assert_eq!(page_ids(&one.items), vec![l3.clone()]);
    assert!(one.has_more, "l4 remains");
}

/// The same first page asked for again and again, with no write in between, follows time
/// alone: a listed secret that expires leaves the page, and `has_more` turns false once the
/// only live secret past the page expires (a store that caches pages must see both).
pub async fn a_first_page_asked_again_follows_expiry_without_writes(store: Arc<dyn Store>) {
    let ns = home();
    // Oldest first: past (expires at +5), kept, newest.
    let scope = user("usr_pages_past");
    let mut made = Vec::new();
    for (name, expires) in [("past", Some(NOW + 5)), ("kept", None), ("newest", None)] {
        let at = address(&ns, &scope, name);
        made.push(put_ok(&store, &at, NOW, expires, ROOMY, name).await.id);
    }
    let (kept, newest) = (&made[1], &made[2]);
    for now in [NOW, NOW + 4] {
        let page = list_ok(&store, &ns, &scope, 2, None, now).await;
        assert_eq!(page_ids(&page.items), vec![newest.clone(), kept.clone()]);
        assert!(page.has_more, "past is live at {now}");
    }
    let page = list_ok(&store, &ns, &scope, 2, None, NOW + 5).await;
    assert_eq!(page_ids(&page.items), vec![newest.clone(), kept.clone()]);
    assert!(!page.has_more, "past expired at NOW + 5");

    // A listed secret that expires.
    let scope = user("usr_pages_listed");
    let a = put_ok(&store, &address(&ns, &scope, "a"), NOW, None, ROOMY, "a").await;
    let b = put_ok(
        &store,
        &address(&ns, &scope, "b"),
        NOW,
        Some(NOW + 7),
        ROOMY,
        "b",
    )
    .await;
    for now in [NOW, NOW + 6] {
        let page = list_ok(&store, &ns, &scope, 5, None, now).await;
        assert_eq!(page_ids(&page.items), vec![b.id.clone(), a.id.clone()]);
        assert!(!page.has_more);
    }
    let page = list_ok(&store, &ns, &scope, 5, None, NOW + 7).await;
    assert_eq!(
        page_ids(&page.items),
        vec![a.id.clone()],
        "b expired at NOW + 7"
    );
}
