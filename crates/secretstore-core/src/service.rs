//! `SecretService`: what set, find, delete and list mean. It takes validated domain values from
//! the HTTP layer, decides against the clock and the limits, seals payloads on the way in and
//! opens them on the way out (only when the caller asked for them), and leaves persistence to a
//! `SecretStore`.

use std::sync::Arc;

use secretstore_crypto::{envelope_v2, CryptoError};
use zeroize::Zeroizing;

use crate::audit::AuditTicket;
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::error::{CoreError, SealError, StoreError};
use crate::ids::{Namespace, SecretId};
use crate::keys::{KeyError, KeyManager, NewUserKey, Rotated, Sealing};
use crate::limits::Limits;
use crate::principal::{Access, Permission};
use crate::secret::{ExpiresAt, Payload, Scope, SecretAddress};
use crate::store::{
    AtomicWrites, AuditAppend, ListCursor, ListQuery, PutRequest, SealedSecret, SecretStore, Write,
    Written,
};

/// A secret as answered: metadata, plus the payload when the caller expanded it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub id: SecretId,
    pub address: SecretAddress,
    pub created: i64,
    pub expires_at: Option<i64>,
    pub payload: Option<Payload>,
}

/// A create-or-replace.
#[derive(Debug, Clone)]
pub struct SetRequest {
    pub address: SecretAddress,
    pub payload: Payload,
    /// Unix seconds as given; checked against the clock here.
    pub expires_at: Option<i64>,
    /// Answer with the payload (`expand[]=payload`).
    pub reveal: bool,
}

/// A find of one secret.
#[derive(Debug, Clone)]
pub struct FindRequest {
    pub address: SecretAddress,
    pub reveal: bool,
}

/// A delete of one secret; the answer is the secret as it was.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub address: SecretAddress,
    pub reveal: bool,
}

/// One page of one scope.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub namespace: Namespace,
    pub scope: Scope,
    pub limit: u32,
    pub cursor: Option<ListCursor>,
    pub reveal: bool,
}

impl SetRequest {
    pub fn access(&self) -> Access<'_> {
        Access {
            permission: Permission::SecretWrite,
            scope: &self.address.scope,
        }
    }
}

impl FindRequest {
    pub fn access(&self) -> Access<'_> {
        Access {
            permission: Permission::SecretRead,
            scope: &self.address.scope,
        }
    }
}

impl DeleteRequest {
    pub fn access(&self) -> Access<'_> {
        Access {
            permission: Permission::SecretWrite,
            scope: &self.address.scope,
        }
    }
}

impl ListRequest {
    pub fn access(&self) -> Access<'_> {
        Access {
            permission: Permission::SecretRead,
            scope: &self.scope,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Secret>,
    pub has_more: bool,
}

/// Associated data binding a sealed payload to its secret's identity. Every field is length
/// prefixed, so no two identities give the same bytes.
pub fn payload_aad(address: &SecretAddress, id: &SecretId) -> Vec<u8> {
    let user = address.scope.user().map(|u| u.as_str()).unwrap_or("");
    let fields: [&[u8]; 7] = [
        address.namespace.app.as_str().as_bytes(),
        address.namespace.account.as_str().as_bytes(),
        address.namespace.mode.as_str().as_bytes(),
        address.scope.type_str().as_bytes(),
        user.as_bytes(),
        address.name.as_str().as_bytes(),
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

/// A commit that answered another kind of write than it was given: a backend's bug.
fn unexpected(written: &dyn std::fmt::Debug) -> CoreError {
    CoreError::Store(StoreError::Internal(format!(
        "a commit answered an unexpected write: {written:?}"
    )))
}

#[derive(Debug, Clone)]
pub struct SecretService {
    secrets: Arc<dyn SecretStore>,
    writes: Arc<dyn AtomicWrites>,
    keys: Arc<KeyManager>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl SecretService {
    /// `writes` must be the store that `keys` keeps its keys in: a user's first key is stored
    /// by the commit of the user's first secret (`Write::AddKey`), and `keys` reads it back.
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        writes: Arc<dyn AtomicWrites>,
        keys: Arc<KeyManager>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            secrets,
            writes,
            keys,
            clock,
            limits,
        }
    }

    pub async fn set(
        &self,
        ctx: &RequestContext,
        request: SetRequest,
    ) -> Result<Secret, CoreError> {
        let now = self.clock.now();
        let expires_at = request
            .expires_at
            .map(|at| ExpiresAt::validate(at, now).map(ExpiresAt::get))
            .transpose()?;
        let writing = self.keys.writing().await;
        let mut sealed_again = false;
        let stored = loop {
            let address = request.address.clone();
            let Sealing { kek, new_user_key } = self
                .keys
                .sealing(&address.namespace, &address.scope)
                .await?;
            let seal_address = address.clone();
            let plaintext = Zeroizing::new(request.payload.expose().as_bytes().to_vec());
            let put = PutRequest {
                address,
                new_id: SecretId::generate(),
                now,
                expires_at,
                max_per_scope: self.limits.max_secrets_per_scope,
                seal: Box::new(move |id: &SecretId| {
                    envelope_v2::seal(&kek, &payload_aad(&seal_address, id), &plaintext)
                        .map_err(SealError::from)
                }),
            };
            let put = match (&new_user_key, &ctx.audit) {
                (None, None) => self.secrets.put(put).await.map_err(CoreError::from),
                (new, _) => {
                    let writes = new.iter().map(NewUserKey::write);
                    let writes = writes.chain([Write::PutSecret(put)]).collect();
                    // The put is the last write, so its answer comes last.
                    self.commit(ctx, writes)
                        .await
                        .and_then(|mut written| match written.pop() {
                            Some(Written::PutSecret(stored)) => Ok(stored),
                            other => Err(unexpected(&other)),
                        })
                }
            };
            match (put, new_user_key) {
                (Ok(stored), new) => {
                    if let Some(new) = new {
                        self.keys.stored(new);
                    }
                    break stored;
                }
                // Another request or server stored the user's first key meanwhile: seal under
                // that one (the next `sealing` reads it).
                (Err(CoreError::Store(StoreError::AlreadyExists(_))), Some(new))
                    if !sealed_again =>
                {
                    self.keys.lost(&new);
                    sealed_again = true;
                }
                (Err(err), _) => return Err(err),
            }
        };
        drop(writing);
        Ok(Secret {
            id: stored.id,
            address: stored.address,
            created: stored.created,
            expires_at: stored.expires_at,
            payload: request.reveal.then_some(request.payload),
        })
    }

    pub async fn find(
        &self,
        _ctx: &RequestContext,
        request: FindRequest,
    ) -> Result<Secret, CoreError> {
        match self.secrets.get(&request.address, self.clock.now()).await? {
            Some(stored) => self.answer(stored, request.reveal).await,
            None => Err(CoreError::NotFound {
                name: request.address.name,
            }),
        }
    }

    pub async fn delete(
        &self,
        ctx: &RequestContext,
        request: DeleteRequest,
    ) -> Result<Secret, CoreError> {
        let now = self.clock.now();
        let deleted = match &ctx.audit {
            None => self.secrets.delete(&request.address, now).await?,
            Some(ticket) => {
                let delete = Write::DeleteLive {
                    address: request.address.clone(),
                    now,
                };
                match self
                    .audited(ticket, vec![delete])
                    .await
                    .map(|mut w| w.pop())
                {
                    Ok(Some(Written::DeleteSecret(deleted))) => deleted,
                    Ok(other) => return Err(unexpected(&other)),
                    // Nothing live there: nothing was deleted, and the record went with it.
                    Err(CoreError::Store(StoreError::Missing(_))) => None,
                    Err(err) => return Err(err),
                }
            }
        };
        match deleted {
            Some(stored) => self.answer(stored, request.reveal).await,
            None => Err(CoreError::NotFound {
                name: request.address.name,
            }),
        }
    }

    /// Commits `writes` as one transaction, with the request's audit record if it has one.
    async fn commit(
        &self,
        ctx: &RequestContext,
        writes: Vec<Write>,
    ) -> Result<Vec<Written>, CoreError> {
        match &ctx.audit {
            None => Ok(self.writes.commit(writes).await?),
            Some(ticket) => self.audited(ticket, writes).await,
        }
    }

    /// Commits `writes` with the request's audit record (a success, as it will be answered),
    /// and notes the record as written; answers what `writes` did, without the record.
    async fn audited(
        &self,
        ticket: &AuditTicket,
        mut writes: Vec<Write>,
    ) -> Result<Vec<Written>, CoreError> {
        let mut event = ticket.slot.take_draft();
        event.status = 200;
        event.code = None;
        let event = Arc::new(event);
        let record = Write::Audit(AuditAppend::new(
            Arc::clone(&event),
            Arc::clone(&ticket.chain),
        ));
        writes.push(record);
        let written = self.writes.commit(writes).await;
        let mut written = match written {
            Ok(written) => written,
            Err(err) => {
                // The record of the failure is the middleware's, from the same draft.
                ticket
                    .slot
                    .restore(Arc::try_unwrap(event).unwrap_or_else(|shared| (*shared).clone()));
                return Err(err.into());
            }
        };
        match written.pop() {
            Some(Written::Audit(entry)) => {
                ticket.slot.mark_written(entry);
                Ok(written)
            }
            last => Err(CoreError::Store(StoreError::Internal(format!(
                "a commit answered {last:?} without its audit record"
            )))),
        }
    }

    pub async fn list(
        &self,
        _ctx: &RequestContext,
        request: ListRequest,
    ) -> Result<ListPage, CoreError> {
        let query = ListQuery {
            namespace: request.namespace,
            scope: request.scope,
            limit: request.limit,
            cursor: request.cursor,
            now: self.clock.now(),
        };
        let page = self.secrets.list(&query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for stored in page.items {
            items.push(self.answer(stored, request.reveal).await?);
        }
        Ok(ListPage {
            items,
            has_more: page.has_more,
        })
    }

    /// Removes expired secrets from storage; the background sweep calls it.
    pub async fn purge_expired(&self) -> Result<u64, CoreError> {
        Ok(self.secrets.purge_expired(self.clock.now()).await?)
    }

    /// Rotates `namespace`'s key online (`KeyManager::rotate_namespace`), with each stored
    /// secret's identity as its payload was sealed with.
    pub async fn rotate_namespace(&self, namespace: &Namespace) -> Result<Rotated, CoreError> {
        Ok(self
            .keys
            .rotate_namespace(namespace, |stored| payload_aad(&stored.address, &stored.id))
            .await?)
    }

    async fn answer(&self, stored: SealedSecret, reveal: bool) -> Result<Secret, CoreError> {
        let payload = if reveal {
            let aad = payload_aad(&stored.address, &stored.id);
            let opened = self
                .keys
                .open_payload(
                    &stored.address.namespace,
                    &stored.address.scope,
                    &aad,
                    &stored.sealed,
                )
                .await
                .map_err(|err| match err {
                    KeyError::Crypto { source, .. } => CoreError::Unsealable {
                        id: stored.id.clone(),
                        source,
                    },
                    other => CoreError::Key(other),
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
            address: stored.address,
            created: stored.created,
            expires_at: stored.expires_at,
            payload,
        })
    }
}
