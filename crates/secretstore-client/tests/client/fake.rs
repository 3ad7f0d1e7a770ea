//! A scripted fake server for retry tests: it answers each request with the next canned answer
//! (status, headers, body, delay) and records what every attempt carried. Once the script runs
//! out it answers 200 with a valid secret.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const SECRET_JSON: &str = r#"{"id":"appsecret_5110hHS1707T6fjBnah1LkdIwHu7ix","object":"apps.secret","created":1680209063,"expires_at":null,"livemode":false,"name":"my-api-key","scope":{"type":"account"}}"#;

#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

/// An error answer in Stripe's shape.
pub fn error(status: u16, code: &str, headers: &[(&'static str, &str)]) -> Canned {
    Canned {
        status,
        headers: headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
        body: format!(
            r#"{{"error":{{"type":"{}","code":"{code}","message":"canned {status}"}}}}"#,
            if status >= 500 {
                "api_error"
            } else {
                "invalid_request_error"
            }
        ),
        delay: Duration::ZERO,
    }
}

/// A success that arrives only after `delay`.
pub fn slow_ok(delay: Duration) -> Canned {
    Canned {
        status: 200,
        headers: Vec::new(),
        body: SECRET_JSON.to_owned(),
        delay,
    }
}

/// What one attempt carried.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    pub at: Instant,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub stripe_account: Option<String>,
    pub stripe_version: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Canned>,
    attempts: Vec<Attempt>,
}

pub struct Fake {
    pub url: String,
    script: Arc<Mutex<Script>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Fake {
    pub async fn start(answers: Vec<Canned>) -> Fake {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into(),
            attempts: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Fake {
            url,
            script,
            stop: Some(stop),
        }
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.script.lock().unwrap().attempts.clone()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut attempt = Attempt {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        body: String::new(),
        at: Instant::now(),
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        stripe_account: header("stripe-account"),
        stripe_version: header("stripe-version"),
        content_type: header("content-type"),
    };
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    attempt.body = String::from_utf8_lossy(&body).into_owned();
    let canned = {
        let mut script = script.lock().unwrap();
        script.attempts.push(attempt);
        script.answers.pop_front()
    }
    .unwrap_or_else(|| slow_ok(Duration::ZERO));
    tokio::time::sleep(canned.delay).await;
    let mut response = Response::builder()
        .status(canned.status)
        .header("content-type", "application/json")
        .header("request-id", "req_fake");
    for (name, value) in &canned.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(canned.body)).unwrap()
}
