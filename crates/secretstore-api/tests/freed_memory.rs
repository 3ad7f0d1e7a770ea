//! After requests that carry or answer a payload (set, its idempotent replay, find, list and
//! delete, each with the payload expanded), no heap block the process freed held the payload:
//! every buffer it passed through in this server's code was wiped before it was freed. The
//! global allocator of this test binary zeroes what it hands out and, while a request runs,
//! looks through every block it takes back for the payload.
//!
//! The real router runs in process, without sockets: what hyper and the kernel buffer in a
//! real server is not covered here (docs/api.md §7 says what they keep). Its own binary, since
//! a global allocator is per binary; one test, so nothing else allocates the payload meanwhile.

// A global allocator cannot be written without unsafe code; it is confined to `Scanning`.
#![allow(unsafe_code)]
// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use http::{Method, Request};
use secretstore_testkit::app::{app, TestApp, KEY};
use tower::ServiceExt as _;

/// The start of the payload the test stores; nothing else in the process holds these bytes.
const MARKER: &[u8] = b"zqxFREEDmemoryMARKERzqx";

static WATCHING: AtomicBool = AtomicBool::new(false);
static FREED_WITH_MARKER: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, zeroing every block it hands out (so a block holds only what was
/// written into it) and, while `WATCHING`, counting the blocks it takes back that hold `MARKER`.
struct Scanning;

// SAFETY: every call is passed on to the system allocator with the same arguments; the only
// addition reads a block that is still allocated, just before it is returned.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `alloc_zeroed`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: passed on as given.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.load(Ordering::Relaxed) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes, zeroed when it was
            // allocated, so every byte was written at least once. Volatile reads, since the
            // block is about to be freed and nothing else would ever read it.
            let holds_marker = (0..layout.size().saturating_sub(MARKER.len() - 1)).any(|at| {
                MARKER
                    .iter()
                    .enumerate()
                    .all(|(i, byte)| unsafe { ptr.add(at + i).read_volatile() } == *byte)
            });
            if holds_marker {
                FREED_WITH_MARKER.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: passed on as given.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// Sends a request as an SDK would and returns how many freed blocks held the payload while
/// it ran, and whether its answer held it. The answer's body is looked at where it lies.
async fn freed_during(
    app: &TestApp,
    method: Method,
    path: &str,
    params: &str,
    headers: &[(&str, &str)],
) -> (usize, bool) {
    let mut builder = Request::builder()
        .method(method.clone())
        .header("authorization", format!("Bearer {KEY}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = if method == Method::GET {
        builder
            .uri(format!("{path}?{params}"))
            .body(Body::empty())
            .unwrap()
    } else {
        builder
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(params.to_owned()))
            .unwrap()
    };
    FREED_WITH_MARKER.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Relaxed);
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let answered = body.windows(MARKER.len()).any(|w| w == MARKER);
    drop(body);
    WATCHING.store(false, Ordering::Relaxed);
    (FREED_WITH_MARKER.load(Ordering::Relaxed), answered)
}

/// A request of the test: what to call it, method, path, parameters and extra headers.
type Step<'a> = (&'a str, Method, &'a str, &'a str, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn no_freed_buffer_held_a_payload() {
    let app = app().build().await;
    // Long enough that a buffer grown from a small start outgrows it mid-payload.
    let payload = format!(
        "{}{}",
        std::str::from_utf8(MARKER).unwrap(),
        "x".repeat(2_000)
    );
    let set = format!("name=n&payload={payload}&scope[type]=account&expand[]=payload");
    let keyed = [("idempotency-key", "k1")];
    let find = "name=n&scope[type]=account&expand[]=payload";
    let steps: [Step<'_>; 5] = [
        ("set", Method::POST, "/v1/apps/secrets", &set, &keyed),
        (
            "set replayed",
            Method::POST,
            "/v1/apps/secrets",
            &set,
            &keyed,
        ),
        ("find", Method::GET, "/v1/apps/secrets/find", find, &[]),
        (
            "list",
            Method::GET,
            "/v1/apps/secrets",
            "scope[type]=account&expand[]=data.payload",
            &[],
        ),
        ("delete", Method::POST, "/v1/apps/secrets/delete", find, &[]),
    ];
    drop(payload);
    for (step, method, path, params, headers) in steps {
        let (freed, answered) = freed_during(&app, method, path, params, headers).await;
        assert!(answered, "{step}: the answer holds the payload");
        assert_eq!(freed, 0, "{step}: freed blocks that still held the payload");
    }
}
