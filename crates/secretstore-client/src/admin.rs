//! `AdminClient`: the admin API of a secretstore server (provisioning accounts, apps,
//! installations, users, API keys and user sessions), kept apart from [`Client`](crate::Client),
//! which speaks only Stripe's API. Requests and answers are JSON values: the admin API's objects
//! are this server's own, and the command line prints them as they come.

use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::client::{chain, parse_base_url, request_id};
use crate::error::{ApiError, Error};

/// A client of one server's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of the admin API at `base_url` (such as `http://127.0.0.1:12112`) with the admin
    /// token, trusting these certificate authorities (PEM) besides the system's.
    pub fn new(
        base_url: &str,
        token: Zeroizing<String>,
        root_certificates: &[Vec<u8>],
    ) -> Result<Self, Error> {
        if token.trim().is_empty() {
            return Err(Error::InvalidArgument("the admin token is empty".into()));
        }
        let http = crate::client::trusting(reqwest::Client::builder(), root_certificates)?
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: parse_base_url(base_url)?,
            token,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Error> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, Error> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Error> {
        let response = request
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|err| Error::Network {
                url: self.base_url.clone(),
                message: chain(&err),
            })?;
        let status = response.status().as_u16();
        let id = request_id(response.headers());
        let body = response.bytes().await.map_err(|err| Error::Network {
            url: self.base_url.clone(),
            message: chain(&err),
        })?;
        if !(200..300).contains(&status) {
            return Err(Error::Api(Box::new(ApiError::from_answer(
                status, id, &body,
            ))));
        }
        serde_json::from_slice(&body).map_err(|err| Error::Decode {
            status,
            message: format!(
                "not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ),
        })
    }
}
