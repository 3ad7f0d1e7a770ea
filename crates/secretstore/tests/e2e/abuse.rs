//! Slow and abusive clients against the real binary: slow-loris headers, slow bodies, thousands
//! of idle connections, a connection limit, oversized headers and bodies. Each is refused or
//! timed out (with the contract's JSON where HTTP still allows an answer) while a well-behaved
//! client keeps being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::server::{client, find, set, site, Site};

const KEY: &str = "sk_test_abuse";

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Reads whatever the server sends until it closes the connection (or `within` passes).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// A well-behaved client's find, timed: it must succeed while the abuse goes on.
async fn served_meanwhile(url: &str) -> Duration {
    served_with(&client(), url).await
}

/// A find of the canary by `http`, timed: it must succeed.
async fn served_with(http: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let (status, body) = find(
        http,
        url,
        KEY,
        &[("name", "canary"), ("scope[type]", "account")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    started.elapsed()
}

async fn with_canary(site: &mut Site, extra: &[&str]) -> crate::server::Server {
    let server = site.start(extra);
    let (status, _) = set(
        &client(),
        &server.url,
        KEY,
        &[
            ("name", "canary"),
            ("payload", "p"),
            ("scope[type]", "account"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    server
}

#[tokio::test]
async fn slow_loris_headers_are_cut_off_and_others_are_served() {
    let mut site = site();
    let server = with_canary(&mut site, &["--header-timeout", "2"]).await;
    let mut loris = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr(&server.url)).unwrap();
        stream
            .write_all(b"GET /v1/apps/secrets/find?name=canary HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        loris.push(stream);
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(served_meanwhile(&server.url).await);
    }
    eprintln!("slowest well-behaved find among 200 slow-loris connections: {slowest:?}");
    let started = Instant::now();
    for stream in &mut loris {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(10));
        assert!(closed, "a slow-loris connection was still open after 10 s");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_others_and_are_closed_when_idle() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &[
            "--header-timeout",
            "3",
            "--max-connections-per-client",
            "5000",
        ],
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(addr(&server.url)).unwrap());
    }
    for _ in 0..20 {
        served_meanwhile(&server.url).await;
    }
    for stream in &mut idle {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(15));
        assert!(closed, "an idle connection outlived the header timeout");
        assert!(
            answer.is_empty(),
            "an idle connection is closed without an answer: {answer}"
        );
    }
}

/// A connection from `local` (any 127.x.y.z is this machine), standing for another client.
async fn connect_from(local: [u8; 4], url: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((local, 0))).unwrap();
    socket.connect(addr(url).parse().unwrap()).await.unwrap()
}

/// Sends a find on `stream` and reads the answer's status line.
async fn find_status(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!(
        "GET /v1/apps/secrets/find?name=canary&scope%5Btype%5D=account HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {KEY}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn idle_connections_make_room_and_one_client_cannot_take_every_slot() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &[
            "--max-connections",
            "100",
            "--max-connections-per-client",
            "60",
            "--header-timeout",
            "60",
        ],
    )
    .await;
    // One client (127.0.0.3) opens more connections than it may: 60 are kept, idle; the rest
    // are answered 503 in JSON and closed.
    let mut abuser = Vec::new();
    for _ in 0..80 {
        abuser.push(connect_from([127, 0, 0, 3], &server.url).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut refused = 0;
    for stream in &mut abuser {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await
        {
            let answer = String::from_utf8_lossy(&buf[..n]);
            if answer.starts_with("HTTP/1.1 503") {
                assert!(
                    answer.contains(r#""code":"too_many_connections""#),
                    "{answer}"
                );
                assert!(
                    answer.contains("Your address has too many connections"),
                    "{answer}"
                );
                assert!(answer.contains("request-id: req_"), "{answer}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 20, "connections over the client's 60 are refused");
    // Others fill the rest of the 100 slots with idle connections...
    let mut others = Vec::new();
    for n in 0..40u8 {
        others.push(connect_from([127, 0, 1, n + 1], &server.url).await);
    }
    // ...and yet a new client is served: the longest-idle connection gives way.
    for n in 0..10u8 {
        let mut stream = connect_from([127, 0, 2, n + 1], &server.url).await;
        assert_eq!(find_status(&mut stream).await, "HTTP/1.1 200 OK");
    }
    drop((abuser, others));
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_json_when_none_is_idle() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &[
            "--max-connections",
            "100",
            "--header-timeout",
            "60",
            "--body-timeout",
            "60",
        ],
    )
    .await;
    // Busy connections: each has sent a POST's head and is still sending its body.
    let partial_post = format!(
        "POST /v1/apps/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname="
    );
    let mut busy = Vec::new();
    for _ in 0..99 {
        let mut stream = TcpStream::connect(addr(&server.url)).unwrap();
        stream.write_all(partial_post.as_bytes()).unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The canary client's pooled connection is idle: the first newcomer (busy at once, too)
    // takes its place; the rest find no idle connection to replace and are refused.
    let mut refused = 0;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr(&server.url)).unwrap();
        let _ = stream.write_all(partial_post.as_bytes());
        let (answer, _) = read_until_closed(&mut stream, Duration::from_millis(1500));
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains(r#""type":"api_error""#), "{answer}");
            assert!(answer
                .to_ascii_lowercase()
                .contains("stripe-should-retry: true"));
            refused += 1;
        }
        busy.push(stream);
    }
    assert!((49..=50).contains(&refused), "{refused} of 50 were refused");
    drop(busy);
}

#[tokio::test]
async fn under_a_low_open_files_limit_idle_sockets_neither_starve_requests_nor_flood_the_log() {
    let mut site = site();
    // 256 descriptors, soft and hard: the server cannot raise it.
    let server = site.start_under(&["prlimit", "--nofile=256:256", "--"], &[]);
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(addr(&server.url)).unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A legitimate request is served: idle connections gave their descriptors back.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (status, _) = find(
        &http,
        &server.url,
        KEY,
        &[("name", "absent"), ("scope[type]", "account")],
    )
    .await
    .unwrap();
    assert_eq!(status, 404);
    let warnings = server
        .log_text()
        .lines()
        .filter(|l| l.contains("accepting a connection failed"))
        .count();
    assert!(
        warnings <= 2,
        "{warnings} warnings in 3 s:\n{}",
        server.log_text()
    );
    drop(idle);
}

#[tokio::test]
async fn slow_bodies_get_408_and_oversized_requests_413_and_431() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &["--body-timeout", "1", "--max-body-bytes", "4096"],
    )
    .await;

    let mut slow = TcpStream::connect(addr(&server.url)).unwrap();
    slow.write_all(
        format!(
            "POST /v1/apps/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nname=slow"
        )
        .as_bytes(),
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    let mut big = TcpStream::connect(addr(&server.url)).unwrap();
    big.write_all(
        format!(
            "POST /v1/apps/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut big, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "declared size refused before the body is sent: {answer}"
    );
    assert!(answer.contains(r#""code":"request_too_large""#));

    let http = client();
    let headers = http
        .get(format!(
            "{}/v1/apps/secrets?scope[type]=account",
            server.url
        ))
        .bearer_auth(KEY)
        .header("x-padding", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(headers.status().as_u16(), 431);
    let body: serde_json::Value = headers.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");

    let nested = format!(
        "name=n&payload=p&scope[type]=account&x{}=1",
        "[a]".repeat(1000)
    );
    let answer = http
        .post(format!("{}/v1/apps/secrets", server.url))
        .bearer_auth(KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    served_meanwhile(&server.url).await;
}

#[tokio::test]
async fn a_keep_alive_client_is_told_when_a_refused_body_closes_its_connection() {
    let mut site = site();
    let server = with_canary(&mut site, &["--max-body-bytes", "4096"]).await;
    let http = client();
    let post = |key: &str, body: String| {
        http.post(format!("{}/v1/apps/secrets", server.url))
            .bearer_auth(key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Refused before its body is read (too large, or a key that is not even well formed): the
    // connection closes, and the answer says so, so that the client does not pool it and send
    // its next request into the close. Without the header the next request failed now and
    // then with no answer at all (an `IncompleteMessage` from hyper's client).
    for round in 0..20 {
        let (key, status, size) = if round % 2 == 0 {
            (KEY, 413, 64 * 1024)
        } else {
            ("not-a-key", 401, 2048)
        };
        let body = format!("name=n&payload={}", "x".repeat(size));
        let refused = post(key, body).await.unwrap();
        assert_eq!(refused.status().as_u16(), status);
        assert_eq!(
            refused
                .headers()
                .get("connection")
                .map(|v| v.to_str().unwrap()),
            Some("close"),
            "a {status} to a request whose body was left unread"
        );
        served_with(&http, &server.url).await;
    }
    // A body read to its end keeps the connection, whatever the answer.
    for (body, status) in [
        ("name=kept&payload=p&scope[type]=account", 200),
        ("name=kept&payload=p", 400),
    ] {
        let answer = post(KEY, body.to_owned()).await.unwrap();
        assert_eq!(answer.status().as_u16(), status);
        assert_eq!(answer.headers().get("connection"), None, "{status}");
    }
}

/// Sends raw bytes on a fresh connection and reads the whole answer.
fn raw_exchange(url: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr(url)).unwrap();
    stream.write_all(request).unwrap();
    read_until_closed(&mut stream, Duration::from_secs(10)).0
}

/// An answer hyper would have written bare: here JSON in the error shape, with a request id.
fn assert_json_refusal(answer: &str, status: &str, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{answer}");
    assert!(lower.contains("request-id: req_"), "{answer}");
    assert!(lower.contains("cache-control: no-store"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"]["code"], code, "{answer}");
    assert_eq!(json["error"]["type"], "invalid_request_error", "{answer}");
}

#[tokio::test]
async fn what_hyper_refuses_by_itself_is_answered_in_json_too() {
    let mut site = site();
    let server = with_canary(&mut site, &[]).await;
    // More than 100 headers (each small, well under --max-header-bytes).
    let mut many =
        String::from("GET /v1/apps/secrets?scope%5Btype%5D=account HTTP/1.1\r\nHost: x\r\n");
    for n in 0..120 {
        many.push_str(&format!("X-H{n}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_json_refusal(
        &raw_exchange(&server.url, many.as_bytes()),
        "431",
        "headers_too_large",
    );
    // A request line that is not HTTP.
    assert_json_refusal(
        &raw_exchange(
            &server.url,
            b"GET /v1/apps/secrets HTTP/9.9 nonsense\r\n\r\n",
        ),
        "400",
        "request_malformed",
    );
    assert_json_refusal(
        &raw_exchange(&server.url, b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "400",
        "request_malformed",
    );
    // A request target of 70,000 bytes.
    let long = format!(
        "GET /v1/apps/secrets/find?name={}&scope%5Btype%5D=account HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_json_refusal(
        &raw_exchange(&server.url, long.as_bytes()),
        "414",
        "uri_too_long",
    );
    // A well-behaved client is served throughout.
    served_meanwhile(&server.url).await;
}

#[tokio::test]
async fn a_secret_that_can_be_set_can_be_found() {
    let mut site = site();
    let server = site.start(&[]);
    let http = client();
    // 4-byte characters: 12 bytes each percent-encoded.
    let wide = |n: usize| "\u{1D11E}".repeat(n);
    // Each alone is within 5,000 characters, together they cannot fit in a find's URL.
    let (status, body) = set(
        &http,
        &server.url,
        KEY,
        &[
            ("name", &wide(5_000)),
            ("payload", "p"),
            ("scope[type]", "user"),
            ("scope[user]", &wide(5_000)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "parameter_invalid_string_too_long");
    assert_eq!(body["error"]["param"], "name");
    // The longest that fits (65,406 bytes encoded together) is set, and found.
    let name = wide(5_000); // 60,000 bytes encoded
    let user = format!("usr_{}", wide(449)); // 4 + 5,388 bytes
    let (status, body) = set(
        &http,
        &server.url,
        KEY,
        &[
            ("name", &name),
            ("payload", "p"),
            ("scope[type]", "user"),
            ("scope[user]", &user),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, found) = find(
        &http,
        &server.url,
        KEY,
        &[
            ("name", &name),
            ("scope[type]", "user"),
            ("scope[user]", &user),
            ("expand[]", "payload"),
        ],
    )
    .await
    .unwrap();
    assert_eq!((status, found["payload"].as_str()), (200, Some("p")));
}

#[tokio::test]
async fn a_client_that_sends_a_refused_body_whole_still_reads_the_413() {
    let mut site = site();
    let server = site.start(&[]);
    let body = vec![b'a'; 8 * 1024 * 1024];
    let mut answered = 0;
    for _ in 0..30 {
        let mut stream = TcpStream::connect(addr(&server.url)).unwrap();
        let head = format!(
            "POST /v1/apps/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // Everything first, as a simple client does, then the answer: 8 MB, more than the
        // kernel buffers between the two, so the client is still writing when the answer is
        // out.
        let sent = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&body));
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10));
        if sent.is_ok() && answer.starts_with("HTTP/1.1 413") {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 30,
        "clients that read a 413 instead of a broken pipe"
    );
}

#[tokio::test]
async fn bodies_in_flight_are_bounded_and_the_next_is_refused_with_503_retry() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &[
            "--max-body-bytes-in-flight",
            "1000000",
            "--body-timeout",
            "3",
        ],
    )
    .await;
    let head = |length: usize| {
        format!(
            "POST /v1/apps/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // Four clients start a 250,000-byte body each, send 100 KB of it and stall: 1,000,000
    // bytes reserved.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(addr(&server.url)).unwrap();
        stream.write_all(head(250_000).as_bytes()).unwrap();
        stream.write_all(&vec![b'a'; 100_000]).unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The next body does not fit: refused before it is read, and retryable.
    let answer = raw_exchange(&server.url, head(250_000).as_bytes());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("stripe-should-retry: true"), "{answer}");
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#""code":"server_busy""#), "{answer}");
    // Reads without a body are not held back.
    served_meanwhile(&server.url).await;
    // Once the stalled bodies time out, their bytes are free again.
    for stream in &mut stalled {
        let (answer, _) = read_until_closed(stream, Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let (status, body) = set(
        &client(),
        &server.url,
        KEY,
        &[
            ("name", "after"),
            ("payload", "p"),
            ("scope[type]", "account"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}
