//! `SecretService`: what set, find, delete and list mean. It takes validated domain values from
//! the HTTP layer, decides against the clock and the limits, seals payloads on the way in and
//! opens them on the way out (only when the caller asked for them), and leaves persistence to a
//! `Store`.

use std::sync::Arc;

use secretstore_crypto::{CryptoError, Envelope};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::CoreError;
use crate::idempotency::{IdempotencyClaim, IdempotencyKey, KeptAnswer};
use crate::ids::{Namespace, SecretId};
use crate::limits::{Limits, IDEMPOTENCY_TTL_SECS};
use crate::secret::{ExpiresAt, Payload, Scope, SecretKey};
use crate::store::{ListCursor, ListQuery, PutRequest, SealedSecret, Store};

/// A secret as answered: metadata, plus the payload when the caller expanded it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub id: SecretId,
    pub key: SecretKey,
    pub created: i64,
    pub expires_at: Option<i64>,
    pub payload: Option<Payload>,
}

/// A create-or-replace.
#[derive(Debug, Clone)]
pub struct SetRequest {
    pub key: SecretKey,
    pub payload: Payload,
    /// Unix seconds as given; checked against the clock here.
    pub expires_at: Option<i64>,
}

/// One page of one scope.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub namespace: Namespace,
    pub scope: Scope,
    pub limit: u32,
    pub cursor: Option<ListCursor>,
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Secret>,
    pub has_more: bool,
}

/// Associated data binding a sealed payload to its secret's identity. Every field is length
/// prefixed, so no two identities give the same bytes.
pub fn payload_aad(key: &SecretKey, id: &SecretId) -> Vec<u8> {
    let user = key.scope.user().map(|u| u.as_str()).unwrap_or("");
    let fields: [&[u8]; 7] = [
        key.namespace.app.as_str().as_bytes(),
        key.namespace.account.as_str().as_bytes(),
        key.namespace.mode.as_str().as_bytes(),
        key.scope.type_str().as_bytes(),
        user.as_bytes(),
        key.name.as_str().as_bytes(),
        id.as_str().as_bytes(),
    ];
    let mut aad = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    aad.extend_from_slice(b"secretstore/payload/v1\0");
    for field in fields {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad
}

const ROOT_KEY_CHECK: &str = "root_key_check";
const ROOT_KEY_CHECK_AAD: &[u8] = b"secretstore/root-key-check/v1";
const ROOT_KEY_CHECK_PLAINTEXT: &[u8] = b"secretstore opens this data with this root key";

#[derive(Debug, Clone)]
pub struct SecretService {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl SecretService {
    pub fn new(
        store: Arc<dyn Store>,
        envelope: Arc<Envelope>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            envelope,
            clock,
            limits,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Refuses to run against data written under another root key: better to fail at start-up
    /// with a clear message than to answer every find with an error. The first start records a
    /// check value sealed under the key.
    pub async fn verify_root_key(&self) -> Result<(), CoreError> {
        match self.store.meta_get(ROOT_KEY_CHECK).await? {
            Some(sealed) => match self.envelope.open(ROOT_KEY_CHECK_AAD, &sealed) {
                Ok(plain) if plain.as_slice() == ROOT_KEY_CHECK_PLAINTEXT => Ok(()),
                Ok(_) | Err(_) => Err(CoreError::WrongRootKey {
                    given: self.envelope.key_id().to_string(),
                }),
            },
            None => {
                let sealed = self
                    .envelope
                    .seal(ROOT_KEY_CHECK_AAD, ROOT_KEY_CHECK_PLAINTEXT)
                    .map_err(CoreError::Crypto)?;
                self.store.meta_put(ROOT_KEY_CHECK, sealed).await?;
                Ok(())
            }
        }
    }

    pub async fn set(&self, request: SetRequest, reveal: bool) -> Result<Secret, CoreError> {
        let now = self.clock.now();
        let expires_at = request
            .expires_at
            .map(|at| ExpiresAt::validate(at, now).map(ExpiresAt::get))
            .transpose()?;
        let envelope = Arc::clone(&self.envelope);
        let seal_key = request.key.clone();
        let plaintext = Zeroizing::new(request.payload.expose().as_bytes().to_vec());
        let stored = self
            .store
            .put(PutRequest {
                key: request.key,
                new_id: SecretId::generate(),
                now,
                expires_at,
                max_per_scope: self.limits.max_secrets_per_scope,
                seal: Box::new(move |id: &SecretId| {
                    envelope.seal(&payload_aad(&seal_key, id), &plaintext)
                }),
            })
            .await?;
        Ok(Secret {
            id: stored.id,
            key: stored.key,
            created: stored.created,
            expires_at: stored.expires_at,
            payload: reveal.then_some(request.payload),
        })
    }

    pub async fn find(&self, key: &SecretKey, reveal: bool) -> Result<Secret, CoreError> {
        match self.store.get(key, self.clock.now()).await? {
            Some(stored) => self.answer(stored, reveal),
            None => Err(CoreError::NotFound {
                name: key.name.clone(),
            }),
        }
    }

    pub async fn delete(&self, key: &SecretKey, reveal: bool) -> Result<Secret, CoreError> {
        match self.store.delete(key, self.clock.now()).await? {
            Some(stored) => self.answer(stored, reveal),
            None => Err(CoreError::NotFound {
                name: key.name.clone(),
            }),
        }
    }

    pub async fn list(&self, request: ListRequest, reveal: bool) -> Result<ListPage, CoreError> {
        let query = ListQuery {
            namespace: request.namespace,
            scope: request.scope,
            limit: request.limit,
            cursor: request.cursor,
            now: self.clock.now(),
        };
        let page = self.store.list(&query).await?;
        let items = page
            .items
            .into_iter()
            .map(|stored| self.answer(stored, reveal))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage {
            items,
            has_more: page.has_more,
        })
    }

    /// Removes expired secrets and stale idempotency records; the background sweep calls it.
    pub async fn purge_expired(&self) -> Result<u64, CoreError> {
        Ok(self.store.purge_expired(self.clock.now()).await?)
    }

    pub async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
    ) -> Result<IdempotencyClaim, CoreError> {
        Ok(self.store.idempotency_claim(key, self.clock.now()).await?)
    }

    /// Keeps an answer for replay, sealed: the body of a set or delete may hold a payload.
    pub async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        fingerprint: [u8; 32],
        status: u16,
        body: &[u8],
    ) -> Result<(), CoreError> {
        let sealed_body = self
            .envelope
            .seal(&key.aad(), body)
            .map_err(CoreError::Crypto)?;
        let now = self.clock.now();
        let answer = KeptAnswer {
            fingerprint,
            status,
            sealed_body,
            created: now,
        };
        Ok(self.store.idempotency_complete(key, answer, now).await?)
    }

    pub async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), CoreError> {
        Ok(self.store.idempotency_release(key).await?)
    }

    /// Opens a kept answer's body for replay.
    pub fn open_kept_answer(
        &self,
        key: &IdempotencyKey,
        answer: &KeptAnswer,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        self.envelope
            .open(&key.aad(), &answer.sealed_body)
            .map_err(CoreError::KeptAnswerUnsealable)
    }

    /// How long a kept answer is replayed.
    pub fn idempotency_ttl(&self) -> i64 {
        IDEMPOTENCY_TTL_SECS
    }

    fn answer(&self, stored: SealedSecret, reveal: bool) -> Result<Secret, CoreError> {
        let payload = if reveal {
            let aad = payload_aad(&stored.key, &stored.id);
            let opened = self.envelope.open(&aad, &stored.sealed).map_err(|source| {
                CoreError::Unsealable {
                    id: stored.id.clone(),
                    source,
                }
            })?;
            let payload = Payload::from_opened(opened).ok_or_else(|| CoreError::Unsealable {
                id: stored.id.clone(),
                source: CryptoError::Malformed,
            })?;
            Some(payload)
        } else {
            None
        };
        Ok(Secret {
            id: stored.id,
            key: stored.key,
            created: stored.created,
            expires_at: stored.expires_at,
            payload,
        })
    }
}
