//! A typed async client for Stripe's Secret Store API (`/v1/apps/secrets`), for any server that
//! speaks it: a secretstore (`http://127.0.0.1:12111` by default) or Stripe itself (the
//! default base URL). It gives Rust programs what Stripe's SDKs give Python and Node: typed
//! requests and answers, Stripe's error JSON as typed errors, list pagination as a stream, and
//! safe retries.
//!
//! - The four operations: [`Client::set`], [`Client::find`], [`Client::delete`],
//!   [`Client::list`] (one page) and [`Client::list_all`] (a [`Stream`](futures::Stream) over
//!   every page).
//! - Answers are [`Secret`] objects; a payload is a [`SecretPayload`], wiped from memory when
//!   dropped and redacted in `Debug` output. The API key is an [`ApiKey`], likewise wiped and
//!   shown only masked (`sk_test_****abcd`).
//! - Refusals are [`Error::Api`] holding an [`ApiError`] with Stripe's `type`, `code`,
//!   `message`, `param` and the `Request-Id`; [`Error::is_not_found`] and friends cover the
//!   common cases.
//! - Network failures, 409, 429 and 5xx answers are retried (twice by default) with
//!   exponential backoff and jitter, as `Stripe-Should-Retry` and `Retry-After` direct. Each
//!   set or delete carries one `Idempotency-Key` across all its attempts, so it runs once.
//! - `Stripe-Account` (act for an installing account), `Stripe-Version`, timeouts.
//!
//! # Example
//!
//! ```no_run
//! use futures::TryStreamExt as _;
//! use secretstore_client::{Client, DeleteSecret, FindSecret, ListSecrets, Scope, SetSecret};
//!
//! # async fn run() -> Result<(), secretstore_client::Error> {
//! // Against a local secretstore (`secretstore serve --dev`); leave base_url out for Stripe.
//! let client = Client::builder("sk_test_myapp")
//!     .base_url("http://127.0.0.1:12111")
//!     .build()?;
//! let user = Scope::user("usr_123");
//!
//! // Set (create or replace).
//! client
//!     .set(SetSecret::new(user.clone(), "github-token", "ghp_example"))
//!     .await?;
//!
//! // Find, with the payload.
//! let secret = client
//!     .find(FindSecret::new(user.clone(), "github-token").expand_payload())
//!     .await?;
//! if let Some(payload) = &secret.payload {
//!     assert_eq!(payload.expose(), "ghp_example");
//! }
//!
//! // List every secret of the scope, page after page.
//! let all: Vec<_> = client.list_all(ListSecrets::new(user.clone())).try_collect().await?;
//! println!("{} secrets", all.len());
//!
//! // Delete; a second delete is a 404.
//! client.delete(DeleteSecret::new(user.clone(), "github-token")).await?;
//! let again = client.delete(DeleteSecret::new(user, "github-token")).await;
//! assert!(again.is_err_and(|err| err.is_not_found()));
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! ```no_run
//! use secretstore_client::{Client, Error, FindSecret, Scope};
//!
//! # async fn run(client: Client) {
//! match client.find(FindSecret::new(Scope::Account, "missing")).await {
//!     Ok(secret) => println!("found {}", secret.id),
//!     Err(err) if err.is_not_found() => println!("no such secret"),
//!     Err(Error::Api(api)) => eprintln!("{} (code {:?})", api.message, api.code),
//!     Err(other) => eprintln!("{other}"),
//! }
//! # }
//! ```

mod admin;
mod api_key;
mod client;
mod error;
mod params;
mod retry;
mod secret;

pub use admin::{AdminClient, Download};
pub use api_key::ApiKey;
pub use client::{
    Client, ClientBuilder, DEFAULT_BASE_URL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
};
pub use error::{ApiError, Error, ErrorType};
pub use params::{DeleteSecret, FindSecret, ListSecrets, SetSecret};
pub use secret::{Page, ParseScopeError, Scope, Secret, SecretPayload};
