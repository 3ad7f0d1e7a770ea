//! The whole `Idempotency-Key` protocol, in one place. A POST that carries the header claims
//! the key (per credential and account, as Stripe scopes keys) before it runs; a second request
//! with the key while the first runs is 409 `idempotency_key_in_use`; the first completed answer
//! (status and body) is kept for 24 hours and replayed, with `Idempotent-Replayed: true` and
//! `Original-Request` (the request id of the request that ran), to a request with the same key
//! and the same parameters, while other parameters are `idempotency_key_reused`. Server failures
//! (5xx) are not kept, so a retry can succeed; nor are refusals before the request ran (they
//! happen before the claim). The work runs in its own task, so a client that goes away
//! mid-request cannot leave a claim behind or a write without its kept answer.
//!
//! A key's owner, as stored, is a keyed digest (`DigestKey`, a stored key of the hierarchy) of the
//! credential and the account acted on, never the credential's plain SHA-256: that is the
//! directory's look-up of the credential, and a reader of the database could test guessed API
//! keys against it. The request's stored fingerprint is keyed the same way, since the request
//! holds the payload. The same key under another `Stripe-Account` is another owner's, so it runs
//! as a new request.
//!
//! Kept answers are sealed like payloads: status, original request id and body together, under
//! associated data naming everything stored beside them (the owner, the key, the request's
//! fingerprint and the time the answer was kept), so a row edited in the database (another
//! status, fingerprint or time, a blob moved from another key) fails to open, a 500, and is
//! never answered. The fingerprint is compared only once the answer has opened, since an
//! unauthenticated fingerprint would let an edit choose between a replay and a refusal.
//!
//! No kept answer holds a payload (`Answered`), so none outlives its secret: a set's answer is
//! kept with `"payload": null` and its replay answers the payload of the request replayed,
//! which the matching fingerprint proves is the one first sent; a delete's replay answers
//! `"payload": null`, the secret being gone. Each owner may keep `quota` bytes of answers
//! (`KeptAnswer::bytes`, summed by storage); past it a request still runs, its answer is not
//! kept, and the answer says so (`Idempotent-Kept: false`). A claim held by a server that died
//! is free again after its lease (`LEASE_SECS`).

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::IntoResponse as _;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use secretstore_core::KeyManager;
use secretstore_core::{
    AccountId, ClaimTimes, Clock, Completed, CredentialId, IdempotencyClaim, IdempotencyKey,
    IdempotencyStore, KeptAnswer, Payload, Principal, RequestId, StoreError,
};
use zeroize::Zeroizing;

use crate::error::{ApiError, Code};
use crate::extract::StripeForm;
use crate::{render, AppState};

/// Kept answers are replayed for 24 hours.
pub const KEPT_FOR_SECS: i64 = 24 * 60 * 60;

/// A claim not completed or released within this time belongs to a request whose server went
/// away; another request may then claim the key. Far longer than any request runs.
pub const LEASE_SECS: i64 = 60;

/// Longest `Idempotency-Key` header value.
pub const MAX_KEY_LEN: usize = 255;

/// Bytes of kept answers one owner (a credential on an account) may have stored, by default
/// (`--idempotency-quota-bytes`): some 100,000 answers of ordinary size, or 1,100 of the
/// largest (60 kB each: a name and a user id of 5,000 characters that JSON writes as escapes).
pub const DEFAULT_QUOTA_BYTES: u64 = 64 * 1024 * 1024;

/// Says on an answer that it was not kept for a replay (the owner's quota is full, or keeping
/// it failed), so a retry with the same key runs the request again.
const NOT_KEPT: (&str, &str) = ("idempotent-kept", "false");

/// The domains of the keyed digests this module stores (`DigestKey::digest`).
const OWNER_DOMAIN: &str = "secretstore/idempotency-owner/v1";
const FINGERPRINT_DOMAIN: &str = "secretstore/idempotency-fingerprint/v1";

/// What keeps and replays answers.
#[derive(Debug, Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    /// Seals kept answers (under the service key) and keys the stored digests (owners and
    /// fingerprints).
    keys: Arc<KeyManager>,
    clock: Arc<dyn Clock>,
    /// Bytes of kept answers each owner may have stored.
    quota: u64,
}

/// A 200 answer of an operation: the body sent, and the body kept for a replay when that is
/// not the same. No kept answer holds a payload: an answer that shows one is kept with
/// `"payload": null` instead (`render::without_payload`), and its replay answers the payload
/// of the request replayed, if that request carries it (`Operation::replayed_payload`).
#[derive(Debug)]
pub struct Answered {
    body: Zeroizing<Vec<u8>>,
    kept: Option<Zeroizing<Vec<u8>>>,
    /// The body shows a payload, and so is wiped once sent.
    shows_payload: bool,
}

impl Answered {
    /// An answer kept as it is sent. One that shows no payload (only ids, names and times) is
    /// freed without a wipe: a wipe writes each byte on its own (zeroize's volatile writes),
    /// which was 4% of a list's instructions (callgrind) for an answer with nothing secret.
    pub fn new(body: Zeroizing<Vec<u8>>, shows_payload: bool) -> Self {
        Self {
            body,
            kept: None,
            shows_payload,
        }
    }

    /// An answer kept as `kept` (`None`: as it is sent).
    pub fn kept_as(body: Zeroizing<Vec<u8>>, kept: Option<Zeroizing<Vec<u8>>>) -> Self {
        Self {
            body,
            kept,
            shows_payload: true,
        }
    }
}

/// The `Idempotency-Key` of a POST, checked; `None` when there is none (or it is not a POST,
/// where the header means nothing).
#[derive(Debug, Clone)]
pub struct KeyHeader(pub Option<String>);

impl FromRequestParts<AppState> for KeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match key_of(&parts.method, &parts.headers) {
            Some(key) => Ok(KeyHeader(Some(key?.to_owned()))),
            None => Ok(KeyHeader(None)),
        }
    }
}

/// The request's `Idempotency-Key`, checked: `None` when there is none or the request is not
/// a POST (where the header means nothing). The one home of what a well-formed key is, for
/// the protocol and for the echo of the header on the answer.
pub fn key_of<'h>(method: &Method, headers: &'h HeaderMap) -> Option<Result<&'h str, ApiError>> {
    if *method != Method::POST {
        return None;
    }
    let value = headers.get(crate::headers::IDEMPOTENCY_KEY)?;
    let invalid = |message: String| {
        Err(ApiError::new(Code::IdempotencyKeyInvalid, message).with_param("Idempotency-Key"))
    };
    let Ok(text) = value.to_str() else {
        return Some(invalid(
            "The Idempotency-Key header must be printable ASCII.".into(),
        ));
    };
    Some(if text.is_empty() {
        invalid("The Idempotency-Key header must not be empty.".into())
    } else if text.len() > MAX_KEY_LEN {
        invalid(format!(
            "The Idempotency-Key header may be at most {MAX_KEY_LEN} characters long."
        ))
    } else {
        Ok(text)
    })
}

/// An `Idempotency-Key` and the fingerprint of its request, or nothing.
#[derive(Debug, Clone)]
pub struct Keyed(Option<(String, [u8; 32])>);

impl Keyed {
    /// Whether the request has a key (and so may be replayed).
    pub fn is_keyed(&self) -> bool {
        self.0.is_some()
    }
}

/// Associated data of a kept answer: every column stored beside the sealed blob (the owner,
/// the key, the request's fingerprint, the time the answer was kept), so that it opens only
/// with all of them as they were.
fn aad(key: &IdempotencyKey, fingerprint: &[u8; 32], created: i64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(112 + key.key.len());
    aad.extend_from_slice(b"secretstore/idempotent-answer/v4\0");
    aad.extend_from_slice(key.credential.as_bytes());
    aad.extend_from_slice(&(key.key.len() as u32).to_be_bytes());
    aad.extend_from_slice(key.key.as_bytes());
    aad.extend_from_slice(fingerprint);
    aad.extend_from_slice(&created.to_be_bytes());
    aad
}

/// Where an answer comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The request ran.
    Ran,
    /// A kept answer, replayed; the request that ran had this request id.
    Replay { original: Option<RequestId> },
}

/// A JSON answer. A replay says so (`Idempotent-Replayed: true`) and names the request it
/// replays (`Original-Request`), as Stripe's answers do. The body may hold a payload: it is
/// handed to the HTTP layer as it is, without a copy, and wiped when that layer drops it
/// (if `wipe`: an answer that shows no payload need not be).
fn respond(
    status: StatusCode,
    mut body: Zeroizing<Vec<u8>>,
    wipe: bool,
    source: Source,
) -> Response {
    let bytes = if wipe {
        Bytes::from_owner(body)
    } else {
        Bytes::from(std::mem::take(&mut *body))
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Source::Replay { original } = source {
        headers.insert(
            crate::headers::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
        if let Some(id) = original.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
            headers.insert(crate::headers::ORIGINAL_REQUEST, id);
        }
    }
    response
}

/// The answer of a request that ran: 200 with its JSON body, or its error.
fn answer_of(result: Result<Answered, ApiError>) -> Result<Response, ApiError> {
    result.map(|answered| {
        respond(
            StatusCode::OK,
            answered.body,
            answered.shows_payload,
            Source::Ran,
        )
    })
}

/// The answer of a request that ran under a key: as `answer_of`, saying so when it was not
/// kept for a replay (`kept` false).
fn keyed_answer_of(result: Result<Answered, ApiError>, kept: bool) -> Result<Response, ApiError> {
    let not_kept = |mut response: Response| {
        response
            .headers_mut()
            .insert(NOT_KEPT.0, HeaderValue::from_static(NOT_KEPT.1));
        response
    };
    match (answer_of(result), kept) {
        (result, true) => result,
        (Ok(response), false) => Ok(not_kept(response)),
        (Err(err), false) => Ok(not_kept(err.into_response())),
    }
}

/// A kept answer, opened.
struct Opened {
    status: StatusCode,
    /// The request id of the request that ran, if it had one.
    original: Option<RequestId>,
    body: Zeroizing<Vec<u8>>,
}

/// A kept answer's plaintext: status (2 bytes), the request id of the request that ran
/// (`RequestId::LEN` bytes, zeros when it had none), then the body.
const KEPT_HEADER_LEN: usize = 2 + RequestId::LEN;

impl Idempotency {
    /// `quota`: bytes of kept answers each owner may have stored (`u64::MAX`: no limit).
    pub fn new(
        store: Arc<dyn IdempotencyStore>,
        keys: Arc<KeyManager>,
        clock: Arc<dyn Clock>,
        quota: u64,
    ) -> Self {
        Self {
            store,
            keys,
            clock,
            quota,
        }
    }

    /// The request's key, if it has one, with the fingerprint of the request.
    pub fn keyed(&self, key: KeyHeader, form: &StripeForm, account: &AccountId) -> Keyed {
        Keyed(key.0.map(|key| (key, self.fingerprint(form, account))))
    }

    /// What makes two requests "the same" for an idempotency key: method, path, the account
    /// acted on and every parameter, in a canonical order (the SDKs may order them differently
    /// on retry). Keyed, as the owner is: the parameters hold the payload, often a third-party
    /// credential, and a plain hash of them in the database would let its reader test guesses.
    fn fingerprint(&self, form: &StripeForm, account: &AccountId) -> [u8; 32] {
        let mut pairs: Vec<(&str, &str)> = form
            .form
            .pairs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        pairs.sort_unstable();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + 2 * pairs.len());
        parts.extend([
            form.method.as_str().as_bytes(),
            form.uri.path().as_bytes(),
            account.as_str().as_bytes(),
        ]);
        for (key, value) in pairs {
            parts.extend([key.as_bytes(), value.as_bytes()]);
        }
        self.keys.digest_key().digest(FINGERPRINT_DOMAIN, &parts)
    }

    /// Who a key belongs to: the credential, acting on one account.
    fn owner(&self, principal: &Principal) -> CredentialId {
        CredentialId::from_bytes(self.keys.digest_key().digest(
            OWNER_DOMAIN,
            &[
                principal.credential.as_bytes(),
                principal.namespace.account.as_str().as_bytes(),
            ],
        ))
    }

    fn times(&self) -> ClaimTimes {
        let now = self.clock.now();
        ClaimTimes {
            now,
            kept_after: now - KEPT_FOR_SECS,
            held_after: now - LEASE_SECS,
        }
    }

    /// Runs `work` (an operation that answers 200 with a JSON body, or an error) under the
    /// request's idempotency key, if it has one. `request_id` is kept with the answer, so a
    /// replay can name the request it replays; `replayed_payload` is what a replay of this
    /// request shows as its payload where the answer kept has none (`Answered`).
    pub async fn run<W>(
        &self,
        principal: &Principal,
        keyed: Keyed,
        request_id: Option<RequestId>,
        replayed_payload: Option<Payload>,
        work: W,
    ) -> Result<Response, ApiError>
    where
        W: Future<Output = Result<Answered, ApiError>> + Send + 'static,
    {
        let Some((text, fingerprint)) = keyed.0 else {
            return answer_of(work.await);
        };
        let key = IdempotencyKey::new(self.owner(principal), &text);
        match self.store.idempotency_claim(&key, self.times()).await? {
            IdempotencyClaim::InFlight => Err(ApiError::new(
                Code::IdempotencyKeyInUse,
                format!(
                    "There is currently another in-progress request using this idempotency key \
                     ('{text}'). Retry after it completes."
                ),
            )),
            IdempotencyClaim::Kept(kept) => {
                // Opened first: the stored fingerprint decides between a replay and a refusal,
                // so it is believed only once the answer sealed with it has opened.
                let opened = self.open(&key, &kept)?;
                if kept.fingerprint != fingerprint {
                    return Err(ApiError::new(
                        Code::IdempotencyKeyReused,
                        format!(
                            "Keys for idempotent requests can only be used with the same \
                             parameters they were first used with. Try using a key other than \
                             '{text}' if you meant to execute a different request."
                        ),
                    ));
                }
                let body = match (&replayed_payload, opened.status) {
                    (Some(payload), StatusCode::OK) => render::with_payload(&opened.body, payload),
                    _ => opened.body,
                };
                secretstore_core::metrics::idempotent_replay();
                let source = Source::Replay {
                    original: opened.original,
                };
                Ok(respond(opened.status, body, true, source))
            }
            IdempotencyClaim::Claimed => {
                // The work runs in its own task: if the client goes away mid-request, the write
                // and the keeping of its answer still finish, and the claim is never left
                // dangling.
                let this = self.clone();
                let task = tokio::spawn(async move {
                    let result = work.await;
                    let kept = this.keep(&key, fingerprint, request_id, &result).await;
                    (result, kept)
                });
                match task.await {
                    Ok((result, kept)) => keyed_answer_of(result, kept),
                    Err(err) => Err(ApiError::internal(format!(
                        "the request's task failed: {err}"
                    ))),
                }
            }
        }
    }

    /// Keeps the answer of a request that ran, or releases its claim if it failed on the
    /// server's side (5xx), so a retry can succeed. Answers whether it did what the protocol
    /// promises (kept the answer, or deliberately not a 5xx): `false` when an answer that
    /// should have been kept was not, the owner's quota being full or storage failing.
    async fn keep(
        &self,
        key: &IdempotencyKey,
        fingerprint: [u8; 32],
        request_id: Option<RequestId>,
        result: &Result<Answered, ApiError>,
    ) -> bool {
        let (status, body) = match result {
            Ok(answered) => (
                StatusCode::OK,
                answered.kept.as_ref().unwrap_or(&answered.body).clone(),
            ),
            Err(err) => (err.status(), Zeroizing::new(err.to_json())),
        };
        if status.is_server_error() {
            if let Err(err) = self.store.idempotency_release(key).await {
                tracing::error!(error = %err, "releasing an idempotency key failed");
            }
            return true;
        }
        let kept = match self.seal(key, fingerprint, request_id, status, &body) {
            Ok(answer) => {
                self.store
                    .idempotency_complete(key, answer, self.quota)
                    .await
            }
            Err(err) => Err(err),
        };
        match kept {
            Ok(Completed::Kept) => true,
            Ok(Completed::OverQuota) => {
                // The store released the claim: a retry with the key runs again.
                tracing::info!(
                    quota = self.quota,
                    "an idempotent answer was not kept: the credential's kept answers on this \
                     account fill its quota (--idempotency-quota-bytes)"
                );
                false
            }
            Err(err) => {
                // The request's own answer stands; only its replay is lost.
                tracing::error!(error = %err, "keeping the idempotent answer failed");
                let _ = self.store.idempotency_release(key).await;
                false
            }
        }
    }

    fn seal(
        &self,
        key: &IdempotencyKey,
        fingerprint: [u8; 32],
        request_id: Option<RequestId>,
        status: StatusCode,
        body: &[u8],
    ) -> Result<KeptAnswer, StoreError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(KEPT_HEADER_LEN + body.len()));
        plain.extend_from_slice(&status.as_u16().to_be_bytes());
        match request_id {
            Some(id) => plain.extend_from_slice(id.as_str().as_bytes()),
            None => plain.extend_from_slice(&[0; RequestId::LEN]),
        }
        plain.extend_from_slice(body);
        let created = self.clock.now();
        let sealed = self
            .keys
            .seal_service(&aad(key, &fingerprint, created), &plain)
            .map_err(|e| StoreError::Internal(format!("sealing a kept answer failed: {e}")))?;
        Ok(KeptAnswer {
            fingerprint,
            sealed,
            created,
        })
    }

    fn open(&self, key: &IdempotencyKey, kept: &KeptAnswer) -> Result<Opened, ApiError> {
        let plain = self
            .keys
            .open_service(&aad(key, &kept.fingerprint, kept.created), &kept.sealed)
            .map_err(|e| {
                secretstore_core::metrics::payload_unsealable();
                ApiError::internal(format!("a kept idempotent answer failed to open: {e}"))
            })?;
        if plain.len() < KEPT_HEADER_LEN {
            return Err(ApiError::internal(
                "a kept idempotent answer is shorter than its header",
            ));
        }
        let (head, body) = plain.split_at(KEPT_HEADER_LEN);
        let status = StatusCode::from_u16(u16::from_be_bytes([head[0], head[1]]))
            .map_err(|_| ApiError::internal("a kept idempotent answer has no valid status"))?;
        let mut id = [0u8; RequestId::LEN];
        id.copy_from_slice(&head[2..]);
        Ok(Opened {
            status,
            original: RequestId::new(id),
            body: Zeroizing::new(body.to_vec()),
        })
    }

    /// Deletes kept answers past their 24 hours; the background sweep calls it.
    pub async fn purge_stale(&self) -> Result<u64, StoreError> {
        self.store.idempotency_purge(self.times().kept_after).await
    }
}
