//! The client: one HTTP connection pool, the credentials and headers every request carries,
//! and the loop that sends a request, retries it when Stripe's rules say a retry may help (with
//! one `Idempotency-Key` for all attempts of a POST, so the server runs it at most once), and
//! turns the answer into a typed object or a typed error.
//!
//! Bodies that may hold a payload (the form of a set, the answer of an expanded find or list)
//! are kept in buffers that are wiped after use. That is best effort: the HTTP stack's own
//! buffers are outside this crate's reach.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt as _};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize as _, Zeroizing};

use crate::api_key::ApiKey;
use crate::error::{ApiError, Error};
use crate::params::{DeleteSecret, FindSecret, ListSecrets, SetSecret};
use crate::retry::{new_idempotency_key, RetryPolicy, Verdict};
use crate::secret::{Page, Secret};

/// Stripe's API, the default base URL. A local secretstore is `http://127.0.0.1:12111`.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

/// How long one attempt may take, connecting and reading the answer included (Stripe's SDKs
/// use the same 80 seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(80);

/// How long connecting may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts after the first, by default.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The largest answer read; no valid answer comes near it (a full page of 100 secrets with
/// 5,000-character payloads is about 2 MB).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A client for Stripe's Secret Store API, against secretstore or Stripe itself.
///
/// Cheap to clone: clones share one connection pool. Build it with [`Client::builder`].
///
/// ```no_run
/// use secretstore_client::{Client, FindSecret, Scope, SetSecret};
///
/// # async fn run() -> Result<(), secretstore_client::Error> {
/// let client = Client::builder("sk_test_myapp")
///     .base_url("http://127.0.0.1:12111")
///     .build()?;
/// client
///     .set(SetSecret::new(Scope::Account, "my-api-key", "s3cr3t"))
///     .await?;
/// let found = client
///     .find(FindSecret::new(Scope::Account, "my-api-key").expand_payload())
///     .await?;
/// assert_eq!(found.payload.as_ref().map(|p| p.expose()), Some("s3cr3t"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    api_key: ApiKey,
    /// `Bearer <key>`, built once and marked sensitive so the HTTP stack never logs it.
    authorization: HeaderValue,
    /// Without a trailing slash.
    base_url: String,
    stripe_account: Option<HeaderValue>,
    stripe_version: Option<HeaderValue>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Client")
            .field("base_url", &inner.base_url)
            .field("api_key", &inner.api_key)
            .field("stripe_account", &inner.stripe_account)
            .field("stripe_version", &inner.stripe_version)
            .field("timeout", &inner.timeout)
            .field("max_retries", &inner.retry.max_retries)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    api_key: ApiKey,
    base_url: String,
    stripe_account: Option<String>,
    stripe_version: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    root_certificates: Vec<Vec<u8>>,
}

/// Certificate authorities (PEM) to trust beside the system's, for a server with a private CA.
pub(crate) fn trusting(
    mut builder: reqwest::ClientBuilder,
    pems: &[Vec<u8>],
) -> Result<reqwest::ClientBuilder, Error> {
    for pem in pems {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|err| {
            Error::InvalidArgument(format!("the CA certificate is not PEM: {err}"))
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

impl ClientBuilder {
    /// Trust this certificate authority (PEM, one or more certificates) besides the system's:
    /// for a secretstore serving TLS with a private or self-signed certificate.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// The server: `https://api.stripe.com` (the default) or a secretstore such as
    /// `http://127.0.0.1:12111`. A path prefix is kept (`https://gateway/stripe`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Act on this connected account (`Stripe-Account: acct_...`): an app backend acting for
    /// an account that installed the app. See also [`Client::for_account`].
    pub fn stripe_account(mut self, account: impl Into<String>) -> Self {
        self.stripe_account = Some(account.into());
        self
    }

    /// Pin the API version (`Stripe-Version`); without it the account's default applies.
    pub fn stripe_version(mut self, version: impl Into<String>) -> Self {
        self.stripe_version = Some(version.into());
        self
    }

    /// How long one attempt may take, answer included (default 80 s). Each retry gets its
    /// own.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Attempts after the first for failures a retry may cure (default 2; 0 turns retries
    /// off).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The wait before the first retry and the most any backoff waits (default 0.5 s and 8 s).
    /// Waits double on each retry and are scaled by a random factor between 0.5 and 1. A
    /// server's `Retry-After` is never undercut; one over 60 s ends the call with the
    /// server's answer instead.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max.max(initial);
        self
    }

    /// Checks the settings and builds the client. Fails with [`Error::InvalidArgument`] on an
    /// empty key, a base URL that is not `http(s)://...`, or a header value that cannot be sent.
    pub fn build(self) -> Result<Client, Error> {
        let key = self.api_key.expose();
        if key.is_empty() {
            return Err(Error::InvalidArgument("the API key is empty".to_owned()));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(format!(
                "the API key {} holds spaces or characters a header cannot carry",
                self.api_key.masked()
            )));
        }
        let bearer = Zeroizing::new(format!("Bearer {key}"));
        let mut authorization = HeaderValue::from_str(&bearer).map_err(|_| {
            Error::InvalidArgument("the API key cannot be sent in a header".to_owned())
        })?;
        authorization.set_sensitive(true);

        let base_url = parse_base_url(&self.base_url)?;
        let stripe_account = header_value("Stripe-Account", self.stripe_account.as_deref())?;
        let stripe_version = header_value("Stripe-Version", self.stripe_version.as_deref())?;

        let http = trusting(reqwest::Client::builder(), &self.root_certificates)?
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("secretstore-client/", env!("CARGO_PKG_VERSION")))
            // An API answers; it does not redirect. Following one would turn a POST into a GET
            // and hide a wrong base URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| {
                Error::InvalidArgument(format!("cannot set up the HTTP client: {err}"))
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_key: self.api_key,
                authorization,
                base_url,
                stripe_account,
                stripe_version,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
    }
}

pub(crate) fn parse_base_url(text: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::InvalidArgument(format!("base URL {text:?} {why}"));
    if !text.contains("://") {
        // `127.0.0.1:12111` or `localhost:12111`: the URL parser's own words ("relative URL
        // without a base", or a scheme named "localhost") would not say what is missing.
        return Err(invalid(&format!(
            "has no scheme: write it as http://{text} (or https://{text})"
        )));
    }
    let url =
        reqwest::Url::parse(text).map_err(|err| invalid(&format!("does not parse: {err}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("is not http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not hold credentials (give the API key instead)",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn header_value(name: &str, value: Option<&str>) -> Result<Option<HeaderValue>, Error> {
    value
        .map(|value| {
            HeaderValue::from_str(value).map_err(|_| {
                Error::InvalidArgument(format!(
                    "{name} {value:?} holds characters a header cannot carry"
                ))
            })
        })
        .transpose()
}

impl Client {
    /// Starts configuring a client that authenticates with `api_key` (sent as
    /// `Authorization: Bearer`). The key is wiped from memory when the client is dropped and is
    /// shown only masked (`sk_test_****abcd`) in `Debug` output and errors.
    ///
    /// ```
    /// use std::time::Duration;
    /// use secretstore_client::Client;
    ///
    /// # fn main() -> Result<(), secretstore_client::Error> {
    /// let client = Client::builder("sk_test_myapp")
    ///     .base_url("http://127.0.0.1:12111")
    ///     .stripe_account("acct_123")
    ///     .stripe_version("2024-06-20")
    ///     .timeout(Duration::from_secs(10))
    ///     .max_retries(3)
    ///     .build()?;
    /// assert!(!format!("{client:?}").contains("sk_test_myapp"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(api_key: impl Into<ApiKey>) -> ClientBuilder {
        ClientBuilder {
            api_key: api_key.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            stripe_account: None,
            stripe_version: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy {
                max_retries: DEFAULT_MAX_RETRIES,
                ..RetryPolicy::default()
            },
            root_certificates: Vec::new(),
        }
    }

    /// A client for Stripe's API with every default.
    pub fn new(api_key: impl Into<ApiKey>) -> Result<Client, Error> {
        Client::builder(api_key).build()
    }

    /// The same client acting on another connected account (`Stripe-Account`), sharing the
    /// connection pool: for an app backend that serves many installing accounts.
    ///
    /// ```no_run
    /// # use secretstore_client::{Client, ListSecrets, Scope};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// let page = client.for_account("acct_123")?.list(ListSecrets::new(Scope::Account)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn for_account(&self, account: impl Into<String>) -> Result<Client, Error> {
        let account = account.into();
        let mut inner = (*self.inner).clone();
        inner.stripe_account = header_value("Stripe-Account", Some(&account))?;
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The base URL requests go to (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Sets (creates or replaces) a secret: `POST /v1/apps/secrets`.
    ///
    /// Retries, if any, carry the same `Idempotency-Key` (a random one, or the one given with
    /// [`SetSecret::idempotency_key`]), so the secret is written once however often the
    /// request is sent.
    ///
    /// ```no_run
    /// # use secretstore_client::{Client, Scope, SetSecret};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// let in_a_day = 1_900_000_000;
    /// let secret = client
    ///     .set(SetSecret::new(Scope::user("usr_123"), "github-token", "ghp_...").expires_at(in_a_day))
    ///     .await?;
    /// println!("stored {} as {}", secret.name, secret.id);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set(&self, params: SetSecret) -> Result<Secret, Error> {
        let key = params
            .idempotency_key
            .clone()
            .unwrap_or_else(new_idempotency_key);
        let form = params.form().encode();
        self.post("/v1/apps/secrets", form, &key).await
    }

    /// Finds a secret by name: `GET /v1/apps/secrets/find`. The payload is in the answer only
    /// when asked for with [`FindSecret::expand_payload`]. A missing or expired secret is a
    /// 404 `resource_missing` ([`Error::is_not_found`]).
    ///
    /// ```no_run
    /// # use secretstore_client::{Client, FindSecret, Scope};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// match client.find(FindSecret::new(Scope::Account, "my-api-key").expand_payload()).await {
    ///     Ok(secret) => {
    ///         let payload = secret.payload.expect("asked for");
    ///         use_the_key(payload.expose());
    ///     }
    ///     Err(err) if err.is_not_found() => println!("not set yet"),
    ///     Err(err) => return Err(err),
    /// }
    /// # Ok(())
    /// # }
    /// # fn use_the_key(_: &str) {}
    /// ```
    pub async fn find(&self, params: FindSecret) -> Result<Secret, Error> {
        let query = params.form().encode();
        self.get("/v1/apps/secrets/find", &query).await
    }

    /// Deletes a secret by name: `POST /v1/apps/secrets/delete`. The answer is the secret as it
    /// was, with `deleted` true. A missing or expired secret is a 404 `resource_missing`.
    ///
    /// ```no_run
    /// # use secretstore_client::{Client, DeleteSecret, Scope};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// let gone = client.delete(DeleteSecret::new(Scope::Account, "my-api-key")).await?;
    /// assert!(gone.deleted);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(&self, params: DeleteSecret) -> Result<Secret, Error> {
        let key = params
            .idempotency_key
            .clone()
            .unwrap_or_else(new_idempotency_key);
        let form = params.form().encode();
        self.post("/v1/apps/secrets/delete", form, &key).await
    }

    /// One page of a scope's secrets, newest first: `GET /v1/apps/secrets`. Use
    /// [`Page::has_more`] and [`ListSecrets::starting_after`] to walk on, or
    /// [`list_all`](Client::list_all) to have it done for you.
    ///
    /// ```no_run
    /// # use secretstore_client::{Client, ListSecrets, Scope};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// let page = client.list(ListSecrets::new(Scope::Account).limit(5)).await?;
    /// for secret in &page.data {
    ///     println!("{} {}", secret.name, secret.created);
    /// }
    /// if page.has_more {
    ///     println!("and more");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, params: ListSecrets) -> Result<Page, Error> {
        let query = params.form().encode();
        self.get("/v1/apps/secrets", &query).await
    }

    /// Every secret of a scope, as a stream that fetches page after page (`starting_after`
    /// the last secret of each; with [`ListSecrets::ending_before`], towards newer secrets
    /// instead). An error ends the stream after it is yielded.
    ///
    /// ```no_run
    /// use futures::TryStreamExt as _;
    /// # use secretstore_client::{Client, ListSecrets, Scope};
    /// # async fn run(client: Client) -> Result<(), secretstore_client::Error> {
    /// let names: Vec<String> = client
    ///     .list_all(ListSecrets::new(Scope::user("usr_123")).limit(100))
    ///     .map_ok(|secret| secret.name)
    ///     .try_collect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_all(&self, params: ListSecrets) -> BoxStream<'static, Result<Secret, Error>> {
        struct Walk {
            client: Client,
            params: ListSecrets,
            buffered: VecDeque<Secret>,
            finished: bool,
        }
        let backwards = params.ending_before.is_some() && params.starting_after.is_none();
        let walk = Walk {
            client: self.clone(),
            params,
            buffered: VecDeque::new(),
            finished: false,
        };
        stream::unfold(walk, move |mut walk| async move {
            loop {
                if let Some(secret) = walk.buffered.pop_front() {
                    return Some((Ok(secret), walk));
                }
                if walk.finished {
                    return None;
                }
                match walk.client.list(walk.params.clone()).await {
                    Ok(page) => {
                        walk.finished = !page.has_more || page.data.is_empty();
                        if backwards {
                            // Pages come newest first; walking towards newer secrets, the next
                            // cursor is this page's newest, and its secrets are yielded nearest
                            // the starting cursor first.
                            if let Some(first) = page.data.first() {
                                walk.params.ending_before = Some(first.id.clone());
                            }
                            walk.buffered.extend(page.data.into_iter().rev());
                        } else {
                            if let Some(last) = page.data.last() {
                                walk.params.starting_after = Some(last.id.clone());
                            }
                            walk.buffered.extend(page.data);
                        }
                    }
                    Err(err) => {
                        walk.finished = true;
                        return Some((Err(err), walk));
                    }
                }
            }
        })
        .boxed()
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &str) -> Result<T, Error> {
        let url = if query.is_empty() {
            format!("{}{path}", self.inner.base_url)
        } else {
            format!("{}{path}?{query}", self.inner.base_url)
        };
        let (status, answer) = self.attempts(Method::GET, &url, None, None).await?;
        decode(status, &answer)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        mut form: Zeroizing<String>,
        idempotency_key: &str,
    ) -> Result<T, Error> {
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            Error::InvalidArgument(
                "the idempotency key holds characters a header cannot carry".to_owned(),
            )
        })?;
        let url = format!("{}{path}", self.inner.base_url);
        // The body is shared (not copied) with each attempt; once every attempt is done this is
        // the only reference left and the bytes can be wiped.
        let body = Bytes::from(std::mem::take(&mut *form).into_bytes());
        let outcome = self
            .attempts(Method::POST, &url, Some(&body), Some(&key))
            .await;
        if let Ok(mut unique) = body.try_into_mut() {
            unique.as_mut().zeroize();
        }
        let (status, answer) = outcome?;
        decode(status, &answer)
    }

    /// Sends the request until it succeeds, fails for good, or runs out of retries.
    async fn attempts(
        &self,
        method: Method,
        url: &str,
        body: Option<&Bytes>,
        idempotency_key: Option<&HeaderValue>,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Error> {
        let inner = &*self.inner;
        let mut retry = 0u32;
        loop {
            let mut request = inner
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, inner.authorization.clone());
            if let Some(account) = &inner.stripe_account {
                request = request.header("stripe-account", account.clone());
            }
            if let Some(version) = &inner.stripe_version {
                request = request.header("stripe-version", version.clone());
            }
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key.clone());
            }
            if let Some(body) = body {
                request = request
                    .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
                    .body(body.clone());
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match read_body(response).await {
                        Ok(answer) if status.is_success() => {
                            return Ok((status.as_u16(), answer));
                        }
                        Ok(answer) => {
                            let err = ApiError::from_answer(
                                status.as_u16(),
                                request_id(&headers),
                                &answer,
                            );
                            match inner.retry.after_answer(retry, status, &headers) {
                                Verdict::Retry(wait) => {
                                    tokio::time::sleep(wait).await;
                                    retry += 1;
                                    continue;
                                }
                                Verdict::GiveUp => return Err(err.into()),
                            }
                        }
                        Err(BodyError::TooLarge) => {
                            return Err(Error::Decode {
                                status: status.as_u16(),
                                message: format!(
                                    "the answer is larger than {MAX_ANSWER_BYTES} bytes"
                                ),
                            });
                        }
                        Err(BodyError::Transport(err)) => err,
                    }
                }
                Err(err) => err,
            };
            if failure.is_builder() {
                return Err(Error::InvalidArgument(format!(
                    "the request cannot be built: {}",
                    chain(&failure)
                )));
            }
            match inner.retry.after_transport_error(retry) {
                Verdict::Retry(wait) => {
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Verdict::GiveUp => return Err(self.transport_error(&failure)),
            }
        }
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        let url = self.inner.base_url.clone();
        if err.is_timeout() {
            Error::Timeout {
                url,
                after: self.inner.timeout,
            }
        } else {
            Error::Network {
                url,
                message: chain(err),
            }
        }
    }
}

/// The error and its causes in one line, without the request URL (its query names secrets;
/// the base URL is reported separately).
pub(crate) fn chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = next {
        let text = current.to_string();
        // reqwest's own message names the URL; its causes say what happened.
        let text = match text.find(" for url (") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads the whole answer into a buffer that is wiped on drop. It grows by moving into a
/// larger wiped buffer, never by reallocating in place (which would leave copies behind), and
/// each chunk the HTTP stack hands over is wiped once copied, when nothing else holds it.
async fn read_body(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let expected = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0)
        .min(MAX_ANSWER_BYTES);
    let mut answer = Zeroizing::new(Vec::with_capacity(expected));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BodyError::TooLarge);
        }
        if answer.capacity() - answer.len() < chunk.len() {
            let wanted = (answer.len() + chunk.len()).max(answer.capacity() * 2);
            let mut larger = Zeroizing::new(Vec::with_capacity(wanted));
            larger.extend_from_slice(&answer);
            answer = larger;
        }
        answer.extend_from_slice(&chunk);
        if let Ok(mut unique) = chunk.try_into_mut() {
            unique.as_mut().zeroize();
        }
    }
    Ok(answer)
}

/// Decodes a 2xx answer. A failure says where the JSON went wrong but never quotes it: the
/// answer may hold a payload.
fn decode<T: DeserializeOwned>(status: u16, answer: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(answer).map_err(|err| {
        let what = match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON".to_owned()
            }
            serde_json::error::Category::Io => "unreadable".to_owned(),
            serde_json::error::Category::Data => {
                let text = err.to_string();
                // Field names are safe to show; values are not.
                if text.starts_with("missing field") {
                    text.split(" at line").next().unwrap_or("").to_owned()
                } else {
                    "a value of the wrong type or form".to_owned()
                }
            }
        };
        Error::Decode {
            status,
            message: format!("{what} (line {}, column {})", err.line(), err.column()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:12111/").ok().as_deref(),
            Some("http://127.0.0.1:12111")
        );
        for bare in ["127.0.0.1:12111", "localhost:12111"] {
            let Err(Error::InvalidArgument(message)) = parse_base_url(bare) else {
                panic!("{bare} accepted");
            };
            assert!(message.contains(&format!("http://{bare}")), "{message}");
        }
        assert_eq!(
            parse_base_url("https://gateway.example/stripe/")
                .ok()
                .as_deref(),
            Some("https://gateway.example/stripe")
        );
        for bad in [
            "127.0.0.1:12111",
            "ftp://x",
            "http://x/?a=b",
            "http://sk_test_x:@host",
        ] {
            assert!(
                matches!(parse_base_url(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_key_never_appears_in_debug_or_errors() {
        let client = Client::builder("sk_test_0123456789abcdefghij")
            .build()
            .map_err(|e| e.to_string());
        let debug = format!("{client:?}");
        assert!(!debug.contains("0123456789abcdefghij"), "{debug}");
        assert!(debug.contains("sk_test_****ghij"), "{debug}");

        let err = Client::builder("sk_test_0123456789 abcdefghij")
            .build()
            .map(|_| ())
            .map_err(|e| e.to_string());
        let text = format!("{err:?}");
        assert!(!text.contains("0123456789"), "{text}");
        assert!(matches!(
            Client::builder("").build(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn decode_errors_never_quote_the_answer() {
        let err = decode::<Secret>(200, br#"{"id":"appsecret_1","created":"s3cr3t"}"#)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let text = format!("{err:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        let err = decode::<Secret>(200, br#"{"id":"x"}"#)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(format!("{err:?}").contains("missing field"), "{err:?}");
    }
}
