//! What was acknowledged survives: a clean restart, and SIGKILL in the middle of 32 clients
//! setting secrets. After each kill the database passes SQLite's integrity check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::{client, find, integrity_check, set, site};

const KEY: &str = "sk_test_durable";

#[tokio::test]
async fn restart_keeps_every_acknowledged_secret() {
    let mut site = site();
    let mut server = site.start(&[]);
    let http = client();
    let mut expected = Vec::new();
    for i in 0..20 {
        let user = format!("usr_{}", i % 3);
        let name = format!("secret-{i}");
        let payload = format!("payload-{i}-é😀");
        let scope: Vec<(&str, &str)> = if i % 2 == 0 {
            vec![("scope[type]", "account")]
        } else {
            vec![("scope[type]", "user"), ("scope[user]", user.as_str())]
        };
        let mut form = vec![("name", name.as_str()), ("payload", payload.as_str())];
        form.extend(scope.iter().copied());
        let (status, body) = set(&http, &server.url, KEY, &form).await.unwrap();
        assert_eq!(status, 200, "{body}");
        expected.push((
            name,
            payload,
            scope
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
            body["id"].clone(),
        ));
    }
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(server.log_text().contains("stopped"));

    let server = site.start(&[]);
    for (name, payload, scope, id) in &expected {
        let mut query: Vec<(&str, &str)> = vec![("name", name), ("expand[]", "payload")];
        query.extend(scope.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (status, body) = find(&http, &server.url, KEY, &query).await.unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(&body["payload"], payload.as_str());
        assert_eq!(&body["id"], id);
    }
    assert_eq!(integrity_check(&site.db()), "ok");
}

/// 32 clients set distinct secrets as fast as they can until the server dies; returns what was
/// acknowledged.
type Acked = Arc<Mutex<Vec<(String, String, String)>>>;

/// Answers other than 200 seen by the writers (there must be none).
type Unexpected = Arc<Mutex<Vec<String>>>;

async fn write_until_killed(url: &str, round: usize) -> (Acked, Unexpected) {
    let acked = Acked::default();
    let unexpected = Unexpected::default();
    for client_no in 0..32 {
        let url = url.to_owned();
        let acked = acked.clone();
        let unexpected = unexpected.clone();
        tokio::spawn(async move {
            let http = client();
            for j in 0.. {
                let user = format!("usr_{client_no}");
                let name = format!("r{round}-c{client_no}-{j}");
                let payload = format!("payload of {name} {}", j * 7919);
                let form = [
                    ("name", name.as_str()),
                    ("payload", payload.as_str()),
                    ("scope[type]", "user"),
                    ("scope[user]", user.as_str()),
                ];
                match set(&http, &url, KEY, &form).await {
                    Ok((200, _)) => acked.lock().unwrap().push((user, name, payload)),
                    Ok((status, body)) => {
                        unexpected.lock().unwrap().push(format!("{status}: {body}"));
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
    }
    (acked, unexpected)
}

#[tokio::test]
async fn sigkill_under_32_writers_loses_nothing_acknowledged() {
    let mut site = site();
    let http = client();
    let mut all_acked = Vec::new();
    for round in 0..3 {
        let mut server = site.start(&["--max-secrets-per-scope", "1000000"]);
        let (acked, unexpected) = write_until_killed(&server.url, round).await;
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill9();
        // Let the writers notice the dead server and stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            unexpected.lock().unwrap().is_empty(),
            "{:?}",
            unexpected.lock().unwrap()
        );
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            acked.len() > 32,
            "round {round}: the load ran ({} acknowledged)",
            acked.len()
        );
        all_acked.extend(acked);
        assert_eq!(integrity_check(&site.db()), "ok", "round {round}");
    }

    let server = site.start(&["--max-secrets-per-scope", "1000000"]);
    let all_acked = Arc::new(all_acked);
    let mut checkers = Vec::new();
    for part in 0..8 {
        let all_acked = all_acked.clone();
        let http = http.clone();
        let url = server.url.clone();
        checkers.push(tokio::spawn(async move {
            for (user, name, payload) in all_acked.iter().skip(part).step_by(8) {
                let query = [
                    ("name", name.as_str()),
                    ("scope[type]", "user"),
                    ("scope[user]", user.as_str()),
                    ("expand[]", "payload"),
                ];
                let (status, body) = find(&http, &url, KEY, &query).await.unwrap();
                assert_eq!(status, 200, "acknowledged {name} lost: {body}");
                assert_eq!(body["payload"].as_str(), Some(payload.as_str()), "{name}");
            }
        }));
    }
    for checker in checkers {
        checker.await.unwrap();
    }
    eprintln!("{} acknowledged sets survived 3 SIGKILLs", all_acked.len());
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_cleanly() {
    let mut site = site();
    let mut server = site.start(&["--max-secrets-per-scope", "1000000"]);
    let (acked, unexpected) = write_until_killed(&server.url, 9).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "{:?}\n{}",
        status.0,
        status.1.log_text()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        unexpected.lock().unwrap().is_empty(),
        "{:?}",
        unexpected.lock().unwrap()
    );
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(!acked.is_empty());
    let server = site.start(&[]);
    let http = client();
    for (user, name, payload) in acked.iter().step_by(7) {
        let query = [
            ("name", name.as_str()),
            ("scope[type]", "user"),
            ("scope[user]", user.as_str()),
            ("expand[]", "payload"),
        ];
        let (status, body) = find(&http, &server.url, KEY, &query).await.unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["payload"].as_str(), Some(payload.as_str()));
    }
}
