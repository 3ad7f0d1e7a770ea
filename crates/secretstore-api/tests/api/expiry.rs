//! Expiry against a clock the test moves: a secret is gone from find, list and delete the second
//! its time comes, stops counting toward the scope maximum, and the sweep removes it from the
//! database file.

use crate::common::{app, START};

const ACCOUNT: &str = "scope[type]=account";

fn rows_named(dir: &std::path::Path, name: &str) -> i64 {
    let db = rusqlite::Connection::open(dir.join("secretstore.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM secrets WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_secret_disappears_at_once_and_is_swept_from_the_file() {
    let app = app().max_per_scope(2).build().await;
    let set = app
        .set(&format!(
            "name=short&payload=p&{ACCOUNT}&expires_at={}",
            START + 60
        ))
        .await;
    assert_eq!(set.json["expires_at"], START + 60);
    app.set(&format!("name=long&payload=p&{ACCOUNT}")).await;

    app.clock.advance(59);
    assert_eq!(app.find(&format!("name=short&{ACCOUNT}")).await.status, 200);
    app.clock.advance(1);
    let gone = app.find(&format!("name=short&{ACCOUNT}")).await;
    gone.assert_error(404, "invalid_request_error", Some("resource_missing"));
    assert_eq!(gone.message(), "No such secret: 'short'");
    let list = app.list(ACCOUNT).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["data"][0]["name"], "long");
    assert_eq!(
        app.delete(&format!("name=short&{ACCOUNT}")).await.status,
        404
    );

    // Not counted toward the maximum of 2.
    assert_eq!(
        app.set(&format!("name=third&payload=p&{ACCOUNT}"))
            .await
            .status,
        200
    );

    assert_eq!(
        rows_named(&app.data_dir(), "short"),
        1,
        "still in the file until the sweep"
    );
    let removed = app.service.purge_expired().await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(rows_named(&app.data_dir(), "short"), 0);
    assert_eq!(rows_named(&app.data_dir(), "long"), 1);
}

#[tokio::test]
async fn setting_over_an_expired_secret_creates_a_new_one() {
    let app = app().build().await;
    let old = app
        .set(&format!(
            "name=k&payload=old&{ACCOUNT}&expires_at={}",
            START + 10
        ))
        .await;
    app.clock.advance(10);
    let new = app
        .set(&format!("name=k&payload=new&{ACCOUNT}&expand[]=payload"))
        .await;
    assert_ne!(new.json["id"], old.json["id"]);
    assert_eq!(new.json["created"], START + 10);
    assert_eq!(new.json["payload"], "new");
}

#[tokio::test]
async fn expired_secret_is_left_out_of_list_pages() {
    let app = app().build().await;
    for i in 0..5 {
        let expiry = if i % 2 == 0 {
            format!("&expires_at={}", START + 5)
        } else {
            String::new()
        };
        app.set(&format!("name=s{i}&payload=p&{ACCOUNT}{expiry}"))
            .await;
    }
    app.clock.advance(5);
    let page = app.list(&format!("{ACCOUNT}&limit=2")).await;
    let names: Vec<_> = page.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["s3", "s1"]);
    assert_eq!(page.json["has_more"], false);
}
