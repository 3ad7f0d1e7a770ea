//! Tenancy: namespaces (app, account, mode) and scopes (account, each user) never see each
//! other's secrets, count each other's secrets, or accept each other's ids as list cursors.

use std::sync::Arc;

use secretstore_core::{ListCursor, Mode, Namespace, Scope, SecretId, Store, StoreError};

use crate::fixtures::*;

/// Puts one secret named `shared` (max 1) into each place, then checks each sees only its own
/// for get, list, delete and counting.
async fn check_places_are_isolated(store: &Arc<dyn Store>, places: &[(Namespace, Scope)]) {
    let mut stored = Vec::new();
    for (n, (ns, scope)) in places.iter().enumerate() {
        // A maximum of 1: a put that counted another place's secret would be refused.
        stored.push(
            put_ok(
                store,
                &address(ns, scope, "shared"),
                NOW,
                None,
                1,
                &format!("p{n}"),
            )
            .await,
        );
    }
    for (n, (ns, scope)) in places.iter().enumerate() {
        let found = get_ok(store, &address(ns, scope, "shared"), NOW)
            .await
            .unwrap_or_else(|| panic!("place #{n}: own secret not found"));
        assert_eq!(found, stored[n], "place #{n} gets its own secret");
        assert_eq!(
            ids_in(store, ns, scope, NOW).await,
            vec![stored[n].id.clone()],
            "place #{n} lists only its own secret"
        );
    }
    // Deleting in the first place leaves every other one alone.
    let (ns0, scope0) = &places[0];
    assert_eq!(
        delete_ok(store, &address(ns0, scope0, "shared"), NOW + 1).await,
        Some(stored[0].clone())
    );
    for (n, (ns, scope)) in places.iter().enumerate().skip(1) {
        assert_eq!(
            get_ok(store, &address(ns, scope, "shared"), NOW + 1).await,
            Some(stored[n].clone()),
            "place #{n} untouched by a delete elsewhere"
        );
    }
    // A name only put in one place is absent in the others.
    put_ok(
        store,
        &address(ns0, scope0, "only-here"),
        NOW + 2,
        None,
        10,
        "o",
    )
    .await;
    for (n, (ns, scope)) in places.iter().enumerate().skip(1) {
        assert_eq!(
            get_ok(store, &address(ns, scope, "only-here"), NOW + 2).await,
            None,
            "place #{n} sees another place's name"
        );
        assert_eq!(
            delete_ok(store, &address(ns, scope, "only-here"), NOW + 2).await,
            None
        );
    }
    assert!(get_ok(store, &address(ns0, scope0, "only-here"), NOW + 2)
        .await
        .is_some());
}

/// App, account and mode each separate namespaces.
pub async fn namespaces_are_isolated(store: Arc<dyn Store>) {
    let places = [
        (namespace("app_a", "acct_1", Mode::Test), Scope::Account),
        (namespace("app_b", "acct_1", Mode::Test), Scope::Account),
        (namespace("app_a", "acct_2", Mode::Test), Scope::Account),
        (namespace("app_a", "acct_1", Mode::Live), Scope::Account),
    ];
    check_places_are_isolated(&store, &places).await;
}

/// The account scope and each user's scope are separate, in one namespace.
pub async fn scopes_are_isolated(store: Arc<dyn Store>) {
    let ns = home();
    let places = [
        (ns.clone(), Scope::Account),
        (ns.clone(), user("usr_A")),
        (ns.clone(), user("usr_B")),
        (ns, user("usr_AB")),
    ];
    check_places_are_isolated(&store, &places).await;
}

async fn expect_cursor_not_found(
    store: &Arc<dyn Store>,
    ns: &Namespace,
    scope: &Scope,
    id: &SecretId,
    now: i64,
    why: &str,
) {
    for cursor in [
        ListCursor::StartingAfter(id.clone()),
        ListCursor::EndingBefore(id.clone()),
    ] {
        let kind = cursor.kind();
        match store.list(&query(ns, scope, 10, Some(cursor), now)).await {
            Err(StoreError::CursorNotFound {
                kind: got,
                id: got_id,
            }) => {
                assert_eq!(got, kind, "{why}: the error names the cursor used");
                assert_eq!(got_id, id.as_str(), "{why}: the error names the id given");
            }
            other => panic!("{why} ({kind:?}): expected CursorNotFound, got {other:?}"),
        }
    }
}

/// A cursor must be a live secret of the same namespace and scope: another scope's, another
/// namespace's, an unknown, a deleted or an expired secret's id is `CursorNotFound`.
pub async fn cursors_from_elsewhere_are_not_found(store: Arc<dyn Store>) {
    let ns = home();
    let scope = user("usr_cursor");
    let own = put_ok(&store, &address(&ns, &scope, "own"), NOW, None, ROOMY, "o").await;
    let other_scope = put_ok(
        &store,
        &address(&ns, &Scope::Account, "x"),
        NOW,
        None,
        ROOMY,
        "x",
    )
    .await;
    let other_user = put_ok(
        &store,
        &address(&ns, &user("usr_other"), "x"),
        NOW,
        None,
        ROOMY,
        "x",
    )
    .await;
    let elsewhere = namespace("app_other", "acct_1", Mode::Test);
    let other_ns = put_ok(
        &store,
        &address(&elsewhere, &scope, "x"),
        NOW,
        None,
        ROOMY,
        "x",
    )
    .await;
    let live_ns = namespace("app_conformance", "acct_1", Mode::Live);
    let other_mode = put_ok(
        &store,
        &address(&live_ns, &scope, "x"),
        NOW,
        None,
        ROOMY,
        "x",
    )
    .await;
    let deleted = put_ok(
        &store,
        &address(&ns, &scope, "deleted"),
        NOW,
        None,
        ROOMY,
        "d",
    )
    .await;
    delete_ok(&store, &address(&ns, &scope, "deleted"), NOW)
        .await
        .expect("deleted");
    let expired = put_ok(
        &store,
        &address(&ns, &scope, "expired"),
        NOW,
        Some(NOW + 5),
        ROOMY,
        "e",
    )
    .await;

    let later = NOW + 5;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &other_scope.id,
        later,
        "account scope's id",
    )
    .await;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &other_user.id,
        later,
        "other user's id",
    )
    .await;
    expect_cursor_not_found(&store, &ns, &scope, &other_ns.id, later, "other app's id").await;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &other_mode.id,
        later,
        "other mode's id",
    )
    .await;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &SecretId::generate(),
        later,
        "unknown id",
    )
    .await;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &deleted.id,
        later,
        "deleted secret's id",
    )
    .await;
    expect_cursor_not_found(
        &store,
        &ns,
        &scope,
        &expired.id,
        later,
        "expired secret's id",
    )
    .await;

    // The scope's own live secret is a valid cursor in both directions.
    for cursor in [
        ListCursor::StartingAfter(own.id.clone()),
        ListCursor::EndingBefore(own.id.clone()),
    ] {
        let page = list_ok(&store, &ns, &scope, 10, Some(cursor), later).await;
        assert!(
            page.items.is_empty() && !page.has_more,
            "nothing else is live here"
        );
    }
    // And the expired one was valid while it lived.
    let page = list_ok(
        &store,
        &ns,
        &scope,
        10,
        Some(ListCursor::StartingAfter(expired.id.clone())),
        NOW,
    )
    .await;
    assert_eq!(ids(&page.items), vec![own.id]);
}
