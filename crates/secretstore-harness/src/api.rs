//! The four operations of `/v1/apps/secrets` as plain HTTP, classified the way the crash model
//! needs: an answer (status and body), a request that provably never reached the server, or a
//! request whose answer was lost. The harness speaks raw HTTP rather than through
//! `secretstore-client` because that client retries network failures, and a retry would hide
//! exactly the uncertain outcomes this harness must see.

use std::time::Duration;

use serde_json::Value;

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered. `body` is `Value::Null` if the body was cut off or not JSON (the
    /// status line alone already says the server decided).
    Answered { status: u16, body: Value },
    /// The connection was refused: the request never reached a server, so it changed nothing.
    NotSent,
    /// The request may have reached the server but no answer arrived (the server died, the
    /// connection broke, the client timed out): it may or may not have taken effect.
    Lost(String),
}

/// A user scope (`scope[type]=user&scope[user]=...`): both harnesses give every client or
/// group of secrets a user scope of its own, so no two clients share a name and no scope
/// reaches its maximum.
#[derive(Debug, Clone)]
pub struct Scope {
    user: String,
}

impl Scope {
    pub fn user(user: impl Into<String>) -> Self {
        Self { user: user.into() }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("scope[type]", "user".into()),
            ("scope[user]", self.user.clone()),
        ]
    }
}

/// One connection's worth of client: every request is sent with the app's key, and
/// `max_idle = 1` keeps it to one keep-alive connection when used sequentially.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub fn new(base: &str, key: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    pub async fn set(&self, scope: &Scope, name: &str, payload: &str, expand: bool) -> Outcome {
        let mut form = scope.params();
        form.push(("name", name.to_owned()));
        form.push(("payload", payload.to_owned()));
        if expand {
            form.push(("expand[]", "payload".into()));
        }
        self.send(
            self.http
                .post(format!("{}/v1/apps/secrets", self.base))
                .form(&form),
        )
        .await
    }

    pub async fn delete(&self, scope: &Scope, name: &str, expand: bool) -> Outcome {
        let mut form = scope.params();
        form.push(("name", name.to_owned()));
        if expand {
            form.push(("expand[]", "payload".into()));
        }
        self.send(
            self.http
                .post(format!("{}/v1/apps/secrets/delete", self.base))
                .form(&form),
        )
        .await
    }

    pub async fn find(&self, scope: &Scope, name: &str, expand: bool) -> Outcome {
        let mut query = scope.params();
        query.push(("name", name.to_owned()));
        if expand {
            query.push(("expand[]", "payload".into()));
        }
        self.send(
            self.http
                .get(format!("{}/v1/apps/secrets/find", self.base))
                .query(&query),
        )
        .await
    }

    pub async fn list(&self, scope: &Scope, limit: u32, expand: bool) -> Outcome {
        let mut query = scope.params();
        query.push(("limit", limit.to_string()));
        if expand {
            query.push(("expand[]", "data.payload".into()));
        }
        self.send(
            self.http
                .get(format!("{}/v1/apps/secrets", self.base))
                .query(&query),
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Outcome {
        let response = match request.bearer_auth(&self.key).send().await {
            Ok(response) => response,
            Err(err) if err.is_connect() => return Outcome::NotSent,
            Err(err) => return Outcome::Lost(describe(&err)),
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        Outcome::Answered { status, body }
    }
}

/// An error with its causes ("error sending request: connection closed before message
/// completed"), since reqwest's top-level message alone rarely says what happened.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
