//! `Stripe-Account`, scopes and modes keep secrets apart.

use secretstore_client::{Client, FindSecret, ListSecrets, Scope, SetSecret};

use crate::common::{server, KEY};

#[tokio::test]
async fn stripe_account_isolates_secrets() {
    let server = server().await;
    let own = server.client();
    let acct_1 = Client::builder(KEY)
        .base_url(&server.url)
        .stripe_account("acct_1")
        .build()
        .unwrap();
    let acct_2 = own.for_account("acct_2").unwrap();

    acct_1
        .set(SetSecret::new(Scope::Account, "shared-name", "for acct_1"))
        .await
        .unwrap();
    acct_2
        .set(SetSecret::new(Scope::Account, "shared-name", "for acct_2"))
        .await
        .unwrap();

    let one = acct_1
        .find(FindSecret::new(Scope::Account, "shared-name").expand_payload())
        .await
        .unwrap();
    assert_eq!(one.payload.unwrap().expose(), "for acct_1");
    let two = acct_2
        .find(FindSecret::new(Scope::Account, "shared-name").expand_payload())
        .await
        .unwrap();
    assert_eq!(two.payload.unwrap().expose(), "for acct_2");

    // The app's own account (no header) sees neither.
    let err = own
        .find(FindSecret::new(Scope::Account, "shared-name"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    // for_account made a new client; the original still has no account.
    assert!(own
        .list(ListSecrets::new(Scope::Account))
        .await
        .unwrap()
        .data
        .is_empty());
}

#[tokio::test]
async fn user_scopes_and_modes_are_separate() {
    let server = server().await;
    let test = server.client();
    test.set(SetSecret::new(Scope::user("usr_a"), "token", "a"))
        .await
        .unwrap();
    let err = test
        .find(FindSecret::new(Scope::user("usr_b"), "token"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let err = test
        .find(FindSecret::new(Scope::Account, "token"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());

    let live = server.client_with("sk_live_clientapp");
    let err = live
        .find(FindSecret::new(Scope::user("usr_a"), "token"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let secret = live
        .set(SetSecret::new(Scope::Account, "live-one", "x"))
        .await
        .unwrap();
    assert!(secret.livemode);
}
