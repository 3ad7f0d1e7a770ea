//! `MemoryStore`: every storage trait, in memory. It exists for tests: of the service, without
//! files, and of the storage traits themselves, since a second implementation shows the
//! conformance suite describes the traits rather than the SQLite store. `handle` gives another
//! handle on the same data, as a second server on one database would have, so the checks of
//! the rules across processes run here too (claims carry leases, as a shared database's must).
//! Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use secretstore_core::{
    is_live, AtomicWrites, ClaimTimes, IdempotencyClaim, IdempotencyKey, IdempotencyStore,
    KeptAnswer, Lifecycle, ListCursor, ListQuery, MetaStore, PutRequest, SealedSecret,
    SecretAddress, SecretStore, StoreError, StoredList, Write, Written,
};

/// A stored secret and its place in the order of creation.
#[derive(Debug, Clone)]
struct Row {
    seq: u64,
    secret: SealedSecret,
}

#[derive(Debug, Clone, Default)]
struct Secrets {
    rows: BTreeMap<SecretAddress, Row>,
    next_seq: u64,
}

#[derive(Debug, Default)]
struct Data {
    secrets: Secrets,
    kept: HashMap<IdempotencyKey, KeptAnswer>,
    /// Claims and when they were taken.
    claims: HashMap<IdempotencyKey, i64>,
    meta: HashMap<String, Vec<u8>>,
}

/// An in-memory store; see the module documentation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    closed: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Another handle on the same data, open until it is closed itself.
    pub fn handle(&self) -> Self {
        Self {
            data: Arc::clone(&self.data),
            closed: AtomicBool::new(false),
        }
    }

    fn open(&self) -> Result<parking_lot::MutexGuard<'_, Data>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("shutting down".into()));
        }
        Ok(self.data.lock())
    }
}

impl Secrets {
    fn live(&self, address: &SecretAddress, now: i64) -> Option<&Row> {
        self.rows
            .get(address)
            .filter(|row| is_live(row.secret.expires_at, now))
    }

    fn put(&mut self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        let PutRequest {
            address,
            new_id,
            now,
            expires_at,
            max_per_scope,
            seal,
        } = request;
        if let Some(row) = self.rows.get_mut(&address) {
            if is_live(row.secret.expires_at, now) {
                row.secret.sealed = seal(&row.secret.id)?;
                row.secret.expires_at = expires_at;
                return Ok(row.secret.clone());
            }
        }
        let live = self
            .rows
            .iter()
            .filter(|(other, row)| {
                other.namespace == address.namespace
                    && other.scope == address.scope
                    && **other != address
                    && is_live(row.secret.expires_at, now)
            })
            .count();
        if live >= max_per_scope as usize {
            return Err(StoreError::ScopeFull { max: max_per_scope });
        }
        let sealed = seal(&new_id)?;
        let secret = SealedSecret {
            id: new_id,
            address: address.clone(),
            created: now,
            expires_at,
            sealed,
        };
        self.next_seq += 1;
        self.rows.insert(
            address,
            Row {
                seq: self.next_seq,
                secret: secret.clone(),
            },
        );
        Ok(secret)
    }

    fn delete(&mut self, address: &SecretAddress, now: i64) -> Option<SealedSecret> {
        self.live(address, now)?;
        self.rows.remove(address).map(|row| row.secret)
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        self.open()?.secrets.put(request)
    }

    async fn get(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        Ok(self
            .open()?
            .secrets
            .live(address, now)
            .map(|row| row.secret.clone()))
    }

    async fn delete(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        Ok(self.open()?.secrets.delete(address, now))
    }

    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError> {
        let data = self.open()?;
        let mut rows: Vec<&Row> = data
            .secrets
            .rows
            .iter()
            .filter(|(address, row)| {
                address.namespace == query.namespace
                    && address.scope == query.scope
                    && is_live(row.secret.expires_at, query.now)
            })
            .map(|(_, row)| row)
            .collect();
        // Newest first.
        rows.sort_by_key(|row| std::cmp::Reverse(row.seq));
        let limit = query.limit as usize;
        let (items, has_more): (Vec<&Row>, bool) = match &query.cursor {
            None => (
                rows.iter().take(limit).copied().collect(),
                rows.len() > limit,
            ),
            Some(cursor) => {
                let Some(at) = rows.iter().position(|row| row.secret.id == *cursor.id()) else {
                    return Err(StoreError::CursorNotFound {
                        kind: cursor.kind(),
                        id: cursor.id().to_string(),
                    });
                };
                match cursor {
                    ListCursor::StartingAfter(_) => {
                        let older = &rows[at + 1..];
                        (
                            older.iter().take(limit).copied().collect(),
                            older.len() > limit,
                        )
                    }
                    ListCursor::EndingBefore(_) => {
                        let newer = &rows[..at];
                        let from = newer.len().saturating_sub(limit);
                        (newer[from..].to_vec(), from > 0)
                    }
                }
            }
        };
        Ok(StoredList {
            items: items.into_iter().map(|row| row.secret.clone()).collect(),
            has_more,
        })
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut data = self.open()?;
        let before = data.secrets.rows.len();
        data.secrets
            .rows
            .retain(|_, row| is_live(row.secret.expires_at, now));
        Ok((before - data.secrets.rows.len()) as u64)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        at: ClaimTimes,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut data = self.open()?;
        if let Some(kept) = data.kept.get(key).filter(|k| k.created > at.kept_after) {
            return Ok(IdempotencyClaim::Kept(kept.clone()));
        }
        if data
            .claims
            .get(key)
            .is_some_and(|&taken| taken > at.held_after)
        {
            return Ok(IdempotencyClaim::InFlight);
        }
        data.claims.insert(key.clone(), at.now);
        Ok(IdempotencyClaim::Claimed)
    }

    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        answer: KeptAnswer,
    ) -> Result<(), StoreError> {
        let mut data = self.open()?;
        data.claims.remove(key);
        data.kept.insert(key.clone(), answer);
        Ok(())
    }

    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        self.open()?.claims.remove(key);
        Ok(())
    }

    async fn idempotency_purge(&self, kept_after: i64) -> Result<u64, StoreError> {
        let mut data = self.open()?;
        let before = data.kept.len();
        data.kept.retain(|_, kept| kept.created > kept_after);
        Ok((before - data.kept.len()) as u64)
    }
}

#[async_trait]
impl MetaStore for MemoryStore {
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.open()?.meta.get(name).cloned())
    }

    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.open()?.meta.insert(name.to_owned(), value);
        Ok(())
    }
}

#[async_trait]
impl AtomicWrites for MemoryStore {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        let mut data = self.open()?;
        // Applied to a copy, which replaces the data only if every write succeeded.
        let mut staged = data.secrets.clone();
        let written = writes
            .into_iter()
            .map(|write| match write {
                Write::PutSecret(request) => staged.put(request).map(Written::PutSecret),
                Write::DeleteSecret { address, now } => {
                    Ok(Written::DeleteSecret(staged.delete(&address, now)))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        data.secrets = staged;
        Ok(written)
    }
}

#[async_trait]
impl Lifecycle for MemoryStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        self.open().map(|_| ())
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}
