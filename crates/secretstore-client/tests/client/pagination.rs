//! Pages and the auto-paginating stream, against a server whose scopes hold more than a page.

use futures::{StreamExt as _, TryStreamExt as _};
use secretstore_client::{ListSecrets, Scope, SetSecret};

use crate::common::server_with_max;

/// Creates `count` secrets named s00, s01, ... in order; returns their ids, oldest first.
async fn fill(client: &secretstore_client::Client, scope: &Scope, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let secret = client
            .set(SetSecret::new(
                scope.clone(),
                format!("s{i:02}"),
                format!("p{i}"),
            ))
            .await
            .unwrap();
        ids.push(secret.id);
    }
    ids
}

#[tokio::test]
async fn list_all_walks_every_page_newest_first() {
    let server = server_with_max(100).await;
    let client = server.client();
    let scope = Scope::Account;
    let ids = fill(&client, &scope, 25).await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let page = client
        .list(ListSecrets::new(scope.clone()).limit(10))
        .await
        .unwrap();
    assert!(page.has_more);
    assert_eq!(page.data.len(), 10);
    let page_ids: Vec<&str> = page.data.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        page_ids,
        newest_first[..10]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    let streamed: Vec<String> = client
        .list_all(ListSecrets::new(scope.clone()).limit(10))
        .map_ok(|s| s.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, newest_first);

    // A page size that divides the count exactly ends cleanly too.
    let streamed: Vec<String> = client
        .list_all(ListSecrets::new(scope.clone()).limit(5))
        .map_ok(|s| s.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, newest_first);

    // Starting after a cursor, with payloads.
    let rest: Vec<_> = client
        .list_all(
            ListSecrets::new(scope.clone())
                .limit(7)
                .starting_after(newest_first[19].clone())
                .expand_payload(),
        )
        .try_collect()
        .await
        .unwrap();
    let names: Vec<&str> = rest.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s04", "s03", "s02", "s01", "s00"]);
    assert_eq!(rest[0].payload.as_ref().unwrap().expose(), "p4");
}

#[tokio::test]
async fn list_all_with_ending_before_walks_towards_newer() {
    let server = server_with_max(100).await;
    let client = server.client();
    let scope = Scope::user("usr_pages");
    let ids = fill(&client, &scope, 12).await;
    // Everything newer than the oldest, nearest it first.
    let walked: Vec<String> = client
        .list_all(
            ListSecrets::new(scope)
                .limit(5)
                .ending_before(ids[0].clone()),
        )
        .map_ok(|s| s.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(walked, ids[1..].to_vec());
}

#[tokio::test]
async fn a_stream_error_is_yielded_once_and_ends_the_stream() {
    let server = server_with_max(100).await;
    let client = server.client();
    let mut stream = client.list_all(ListSecrets::new(Scope::Account).limit(1000));
    let first = stream.next().await.unwrap();
    assert_eq!(first.unwrap_err().code(), Some("parameter_out_of_range"));
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn an_empty_scope_streams_nothing() {
    let server = server_with_max(100).await;
    let client = server.client();
    let all: Vec<_> = client
        .list_all(ListSecrets::new(Scope::user("usr_empty")))
        .try_collect()
        .await
        .unwrap();
    assert!(all.is_empty());
}
