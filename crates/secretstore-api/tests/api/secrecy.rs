//! No plaintext payload anywhere on disk: not in the database, its WAL, or anything else in the
//! data directory, whether the secret is live, replaced or deleted.

use crate::common::{app, contains, files_under};

#[tokio::test]
async fn payload_bytes_are_nowhere_in_the_data_directory() {
    let app = app().build().await;
    let payloads = [
        "plain-payload-7c1e0b9d",
        "replaced-payload-44aa01",
        "deleted-payload-9f8e7d",
    ];
    app.set(&format!(
        "name=a&payload={}&scope[type]=account",
        payloads[0]
    ))
    .await;
    app.set(&format!(
        "name=b&payload={}&scope[type]=account",
        payloads[1]
    ))
    .await;
    app.set("name=b&payload=other&scope[type]=account").await;
    app.set(&format!(
        "name=c&payload={}&scope[type]=user&scope[user]=usr_1",
        payloads[2]
    ))
    .await;
    app.delete("name=c&scope[type]=user&scope[user]=usr_1")
        .await;
    let files = files_under(&app.data_dir());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("secretstore.db-wal")),
        "the WAL is checked too"
    );
    for (path, bytes) in &files {
        for payload in payloads {
            assert!(
                !contains(bytes, payload.as_bytes()),
                "{payload} found in {}",
                path.display()
            );
        }
    }
}
