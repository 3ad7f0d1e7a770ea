//! Each operation against the real server: set, find (with and without the payload), replace,
//! expiry, list and delete.

use secretstore_client::{DeleteSecret, FindSecret, ListSecrets, Scope, SetSecret};

use crate::common::{now, server};

#[tokio::test]
async fn set_find_list_delete_round_trip() {
    let server = server().await;
    let client = server.client();

    let created = client
        .set(SetSecret::new(Scope::Account, "my-api-key", "s3cr3t"))
        .await
        .unwrap();
    assert!(created.id.starts_with("appsecret_"), "{}", created.id);
    assert_eq!(created.id.len(), "appsecret_".len() + 30);
    assert_eq!(created.name, "my-api-key");
    assert_eq!(created.scope, Scope::Account);
    assert_eq!(created.expires_at, None);
    assert!(!created.livemode);
    assert!(!created.deleted);
    assert!(created.payload.is_none(), "payload only when expanded");
    assert!((created.created - now()).abs() < 60);

    let found = client
        .find(FindSecret::new(Scope::Account, "my-api-key"))
        .await
        .unwrap();
    assert_eq!(found.id, created.id);
    assert!(found.payload.is_none());

    let revealed = client
        .find(FindSecret::new(Scope::Account, "my-api-key").expand_payload())
        .await
        .unwrap();
    assert_eq!(revealed.payload.as_ref().unwrap().expose(), "s3cr3t");
    assert!(!format!("{revealed:?}").contains("s3cr3t"));

    let page = client.list(ListSecrets::new(Scope::Account)).await.unwrap();
    assert!(!page.has_more);
    assert_eq!(page.url, "/v1/apps/secrets");
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].id, created.id);
    assert!(page.data[0].payload.is_none());

    let page = client
        .list(ListSecrets::new(Scope::Account).expand_payload())
        .await
        .unwrap();
    assert_eq!(page.data[0].payload.as_ref().unwrap().expose(), "s3cr3t");

    let deleted = client
        .delete(DeleteSecret::new(Scope::Account, "my-api-key"))
        .await
        .unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.id, created.id);
    assert!(deleted.payload.is_none());

    let err = client
        .find(FindSecret::new(Scope::Account, "my-api-key"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let page = client.list(ListSecrets::new(Scope::Account)).await.unwrap();
    assert!(page.data.is_empty());
}

#[tokio::test]
async fn set_replaces_and_keeps_id_and_created() {
    let server = server().await;
    let client = server.client();
    let scope = Scope::user("usr_123");
    let first = client
        .set(
            SetSecret::new(scope.clone(), "token", "one")
                .expires_at(now() + 3600)
                .expand_payload(),
        )
        .await
        .unwrap();
    assert_eq!(first.payload.as_ref().unwrap().expose(), "one");
    assert_eq!(first.scope, Scope::user("usr_123"));
    assert!(first.expires_at.is_some());

    // Replacing without an expiry clears it.
    let second = client
        .set(SetSecret::new(scope.clone(), "token", "two").expand_payload())
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.created, first.created);
    assert_eq!(second.expires_at, None);
    assert_eq!(second.payload.as_ref().unwrap().expose(), "two");
}

#[tokio::test]
async fn expiry_round_trips() {
    let server = server().await;
    let client = server.client();
    let at = now() + 30 * 86_400;
    let secret = client
        .set(SetSecret::new(Scope::Account, "expiring", "x").expires_at(at))
        .await
        .unwrap();
    assert_eq!(secret.expires_at, Some(at));
    let found = client
        .find(FindSecret::new(Scope::Account, "expiring"))
        .await
        .unwrap();
    assert_eq!(found.expires_at, Some(at));
}

#[tokio::test]
async fn delete_can_return_the_payload() {
    let server = server().await;
    let client = server.client();
    client
        .set(SetSecret::new(Scope::Account, "k", "bye"))
        .await
        .unwrap();
    let gone = client
        .delete(DeleteSecret::new(Scope::Account, "k").expand_payload())
        .await
        .unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.payload.as_ref().unwrap().expose(), "bye");
}

#[tokio::test]
async fn payloads_of_every_kind_survive_the_round_trip() {
    let server = server().await;
    let client = server.client();
    let payload = "line one\nline two & three = 4 + 5%\u{1F600} é \"quoted\" [brackets]";
    client
        .set(SetSecret::new(
            Scope::Account,
            "name with spaces/and+plus",
            payload,
        ))
        .await
        .unwrap();
    let found = client
        .find(FindSecret::new(Scope::Account, "name with spaces/and+plus").expand_payload())
        .await
        .unwrap();
    assert_eq!(found.payload.unwrap().expose(), payload);
    assert_eq!(found.name, "name with spaces/and+plus");
}

#[tokio::test]
async fn an_explicit_idempotency_key_replays_the_first_answer() {
    let server = server().await;
    let client = server.client();
    let params = SetSecret::new(Scope::Account, "once", "v1").idempotency_key("my-key-1");
    let first = client.set(params.clone()).await.unwrap();
    let again = client.set(params).await.unwrap();
    assert_eq!(first.id, again.id);

    // The same key with other parameters is refused, as a typed idempotency error.
    let err = client
        .set(SetSecret::new(Scope::Account, "once", "v2").idempotency_key("my-key-1"))
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert!(api.is_idempotency(), "{err}");
    assert_eq!(api.status, 400);
}

#[tokio::test]
async fn stripe_version_is_accepted() {
    let server = server().await;
    let client = secretstore_client::Client::builder(crate::common::KEY)
        .base_url(format!("{}/", server.url))
        .stripe_version("2024-06-20")
        .build()
        .unwrap();
    client
        .set(SetSecret::new(Scope::Account, "v", "x"))
        .await
        .unwrap();
}
