//! `AdminClient`: the admin API of a secretstore server (provisioning accounts, apps,
//! installations, users, API keys and user sessions), kept apart from [`Client`](crate::Client),
//! which speaks only Stripe's API. Requests and answers are JSON values: the admin API's objects
//! are this server's own, and the command line prints them as they come. `download` is the one
//! exception: it streams a large binary answer (`GET /v1/backup`) chunk by chunk.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::client::{chain, parse_base_url, request_id};
use crate::error::{ApiError, Error};

/// How long `AdminClient::download` waits for the answer to start: the server makes its copy of
/// the store before it answers, which for a large database takes a while.
const DOWNLOAD_START: Duration = Duration::from_secs(600);

/// How long `Download::chunk` waits for the next chunk before giving up on the transfer.
const DOWNLOAD_IDLE: Duration = Duration::from_secs(60);

/// The request timeout of a download (reqwest's counts the whole transfer): far beyond any
/// transfer that is still moving, which `DOWNLOAD_IDLE` watches instead.
const DOWNLOAD_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// An answer being streamed (`AdminClient::download`).
#[derive(Debug)]
pub struct Download {
    response: reqwest::Response,
    url: String,
}

impl Download {
    /// The size the server announced (`Content-Length`), if it did.
    pub fn announced_len(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next chunk, or `None` once the answer is whole. An answer cut short (fewer bytes
    /// than announced, a connection closed) is an `Error::Network`, never a quiet end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match tokio::time::timeout(DOWNLOAD_IDLE, self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(err)) => Err(Error::Network {
                url: self.url.clone(),
                message: chain(&err),
            }),
            Err(_) => Err(Error::Timeout {
                url: self.url.clone(),
                after: DOWNLOAD_IDLE,
            }),
        }
    }
}

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

    /// A GET whose answer is streamed rather than read whole: a backup can be larger than
    /// memory, and take longer than the 60 s a JSON answer is given. The server may take up
    /// to `DOWNLOAD_START` to start answering (it makes the copy first), then each chunk may
    /// take up to `DOWNLOAD_IDLE`; the whole transfer has no limit of its own.
    pub async fn download(&self, path: &str) -> Result<Download, Error> {
        let request = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token.as_str())
            .timeout(DOWNLOAD_CAP)
            .send();
        let response = tokio::time::timeout(DOWNLOAD_START, request)
            .await
            .map_err(|_| Error::Timeout {
                url: self.base_url.clone(),
                after: DOWNLOAD_START,
            })?
            .map_err(|err| self.network(&err))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let id = request_id(response.headers());
            let body = response.bytes().await.map_err(|err| self.network(&err))?;
            return Err(Error::Api(Box::new(ApiError::from_answer(
                status, id, &body,
            ))));
        }
        Ok(Download {
            response,
            url: self.base_url.clone(),
        })
    }

    fn network(&self, err: &reqwest::Error) -> Error {
        Error::Network {
            url: self.base_url.clone(),
            message: chain(err),
        }
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
