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
    let http = client();
    let started = Instant::now();
    let (status, body) = find(
        &http,
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
    let server = with_canary(&mut site, &["--header-timeout", "3"]).await;
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

#[tokio::test]
async fn connections_beyond_the_limit_get_503_json() {
    let mut site = site();
    let server = with_canary(
        &mut site,
        &["--max-connections", "100", "--header-timeout", "60"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(addr(&server.url)).unwrap());
    }
    // Refusals are written at once; after a pause, a held connection simply has nothing to read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut refused = 0;
    for stream in &mut held {
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 1024];
        if let Ok(n) = stream.read(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..n]);
            if answer.starts_with("HTTP/1.1 503") {
                assert!(answer.contains(r#""type":"api_error""#), "{answer}");
                assert!(answer
                    .to_ascii_lowercase()
                    .contains("stripe-should-retry: true"));
                refused += 1;
            }
        }
    }
    // 100 slots, one of them the canary client's pooled connection: 201 of 300 are refused.
    assert!(
        (200..=201).contains(&refused),
        "{refused} of 300 connections were refused"
    );
    drop(held);
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
