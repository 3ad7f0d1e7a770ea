//! Stripe's error JSON from the real server, as typed errors.

use secretstore_client::{
    Client, DeleteSecret, Error, ErrorType, FindSecret, ListSecrets, Scope, SetSecret,
};

use crate::common::{now, server};

#[tokio::test]
async fn a_missing_secret_is_resource_missing() {
    let server = server().await;
    let client = server.client();
    let err = client
        .find(FindSecret::new(Scope::Account, "nope"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("resource_missing"));
    let api = err.api().unwrap();
    assert_eq!(api.kind, ErrorType::InvalidRequestError);
    assert_eq!(api.message, "No such secret: 'nope'");
    assert_eq!(api.param.as_deref(), Some("name"));
    assert!(api.request_id.as_deref().unwrap().starts_with("req_"));
    assert!(err.to_string().contains("No such secret: 'nope'"), "{err}");

    let err = client
        .delete(DeleteSecret::new(Scope::Account, "nope"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());

    let err = client
        .list(
            ListSecrets::new(Scope::Account)
                .starting_after("appsecret_000000000000000000000000000000"),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.api().unwrap().param.as_deref(), Some("starting_after"));
}

#[tokio::test]
async fn invalid_parameters_are_parameter_errors() {
    let server = server().await;
    let client = server.client();

    let err = client
        .set(SetSecret::new(Scope::Account, "", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("parameter_invalid_string_empty"));
    assert_eq!(err.api().unwrap().param.as_deref(), Some("name"));

    let err = client
        .set(SetSecret::new(Scope::user(""), "n", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("parameter_invalid_string_empty"));
    assert_eq!(err.api().unwrap().param.as_deref(), Some("scope[user]"));

    let err = client
        .set(SetSecret::new(Scope::Account, "n", "x").expires_at(now() - 10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("parameter_out_of_range"));
    assert_eq!(err.api().unwrap().param.as_deref(), Some("expires_at"));
    assert!(err.api().unwrap().message.contains("future"), "{err}");

    let err = client
        .list(ListSecrets::new(Scope::Account).limit(0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("parameter_out_of_range"));

    let err = client
        .list(
            ListSecrets::new(Scope::Account)
                .starting_after("appsecret_a")
                .ending_before("appsecret_b"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("parameters_exclusive"));

    let err = client
        .set(SetSecret::new(Scope::Account, "n", "x".repeat(5001)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("parameter_invalid_string_too_long"));
}

#[tokio::test]
async fn a_bad_key_is_a_401_that_shows_the_key_masked() {
    let server = server().await;
    let client = server.client_with("sk_nope_0123456789abcdefXYZW");
    let err = client
        .find(FindSecret::new(Scope::Account, "x"))
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert!(api.is_authentication(), "{err}");
    assert_eq!(api.status, 401);
    assert_eq!(api.kind, ErrorType::InvalidRequestError);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
}

#[tokio::test]
async fn a_bad_account_is_a_403() {
    let server = server().await;
    let client = Client::builder(crate::common::KEY)
        .base_url(&server.url)
        .stripe_account("not-an-account")
        .build()
        .unwrap();
    let err = client
        .list(ListSecrets::new(Scope::Account))
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert!(api.is_permission(), "{err}");
    assert_eq!(api.code.as_deref(), Some("account_invalid"));
}

#[tokio::test]
async fn a_full_scope_is_scope_full() {
    let server = crate::common::server_with_max(2).await;
    let client = server.client();
    for name in ["a", "b"] {
        client
            .set(SetSecret::new(Scope::Account, name, "x"))
            .await
            .unwrap();
    }
    let err = client
        .set(SetSecret::new(Scope::Account, "c", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("scope_full"));
}

#[tokio::test]
async fn nothing_listening_is_a_network_error() {
    // Bind then drop a listener: the port is free and refuses connections.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder(crate::common::KEY)
        .base_url(format!("http://127.0.0.1:{port}"))
        .max_retries(1)
        .retry_backoff(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_millis(2),
        )
        .build()
        .unwrap();
    let err = client
        .find(FindSecret::new(Scope::Account, "x"))
        .await
        .unwrap_err();
    assert!(err.is_transport(), "{err}");
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("clientapp"), "{text}");
}
