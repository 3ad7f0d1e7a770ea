//! Secrecy at rest, checked on the files the real server wrote: no payload bytes anywhere in the
//! data directory, and a sealed payload moved onto another row with the sqlite3 shell fails to
//! open (500, with the reason in the log) instead of revealing the other secret.

use std::process::Command;

use crate::server::{client, contains, files_under, find, set, site};

const KEY: &str = "sk_test_tamper";

#[tokio::test]
async fn payload_bytes_are_in_no_file_of_the_data_directory() {
    let mut site = site();
    let mut server = site.start(&[]);
    let payload = "grep-me-if-you-can-0d9c7a41";
    let http = client();
    let (status, _) = set(
        &http,
        &server.url,
        KEY,
        &[
            ("name", "n"),
            ("payload", payload),
            ("scope[type]", "account"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let check = |when: &str| {
        let files = files_under(&site.data());
        assert!(
            files.len() >= 2,
            "{when}: {files:?}",
            files = files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for (path, bytes) in files {
            assert!(
                !contains(&bytes, payload.as_bytes()),
                "{when}: payload in {}",
                path.display()
            );
        }
    };
    check("while running");
    server.terminate();
    check("after stopping");
    assert!(!contains(server.log_text().as_bytes(), payload.as_bytes()));
}

#[tokio::test]
async fn a_sealed_payload_moved_to_another_row_fails_to_open() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        panic!("this test needs the sqlite3 shell (apt-get install sqlite3)");
    }
    let mut site = site();
    let mut server = site.start(&[]);
    let http = client();
    for (name, payload) in [
        ("victim", "victim-payload-81f3"),
        ("thief", "thief-payload-22aa"),
    ] {
        let (status, _) = set(
            &http,
            &server.url,
            KEY,
            &[
                ("name", name),
                ("payload", payload),
                ("scope[type]", "account"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
    server.terminate();
    let output = Command::new("sqlite3")
        .arg(site.db())
        .arg("UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'victim') WHERE name = 'thief';")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut server = site.start(&[]);
    let query = [
        ("name", "thief"),
        ("scope[type]", "account"),
        ("expand[]", "payload"),
    ];
    let (status, body) = find(&http, &server.url, KEY, &query).await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(!body.to_string().contains("payload-"), "{body}");
    let (status, body) = find(
        &http,
        &server.url,
        KEY,
        &[
            ("name", "victim"),
            ("scope[type]", "account"),
            ("expand[]", "payload"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body["payload"].as_str()),
        (200, Some("victim-payload-81f3"))
    );
    server.terminate();
    let log = server.log_text();
    assert!(
        log.contains("failed to open") && log.contains("moved from the record"),
        "{log}"
    );
    assert!(!log.contains("victim-payload") && !log.contains("thief-payload"));
}
