//! `MemoryStore`: every storage trait, in memory. It exists for tests: of the service, without
//! files, and of the storage traits themselves, since a second implementation shows the
//! conformance suite describes the traits rather than the SQLite store. `handle` gives another
//! handle on the same data, as a second server on one database would have, so the checks of
//! the rules across processes run here too (claims carry leases, as a shared database's must).
//! Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use secretstore_core::audit::GENESIS;
use secretstore_core::{
    is_live, Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, AtomicWrites, ClaimTimes,
    Completed, Credential, CredentialId, CursorKind, Directory, DirectoryPage, IdempotencyClaim,
    IdempotencyKey, IdempotencyStore, Installation, InstallationFilter, InstallationId, KeptAnswer,
    KeyOwner, KeyStore, Lifecycle, ListCursor, ListQuery, Listed, MetaStore, Namespace, PutRequest,
    Removed, Reseal, RootUse, Scope, SealedSecret, SecretAddress, SecretId, SecretStore, SessionId,
    StoreError, StoredKey, StoredList, User, UserId, UserSession, Write, Written,
};
use secretstore_core::{AuditAnchor, AuditAppend, AuditChain, AuditEntry, AuditFilter, AuditStore};
use secretstore_crypto::KeyId;

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
    /// The directory, each in order of creation.
    accounts: Vec<Account>,
    apps: Vec<App>,
    installations: Vec<Installation>,
    users: Vec<User>,
    keys: Vec<ApiKeyRecord>,
    sessions: Vec<UserSession>,
    /// The audit chain, oldest first, and the anchor a prune left.
    audit: Vec<AuditEntry>,
    anchor: Option<AuditAnchor>,
    /// The key hierarchy's stored keys, in order of adding.
    stored_keys: Vec<StoredKey>,
    /// How many removals destroyed keys (`KeyStore::destroyed_generation`): every handle sees
    /// it at once, as a server would hear the removal's notification.
    keys_destroyed: u64,
}

/// Appends to `audit` (a chain that starts after `anchor`).
fn audit_append(
    audit: &mut Vec<AuditEntry>,
    anchor: Option<&AuditAnchor>,
    append: AuditAppend,
) -> AuditEntry {
    let head = match (audit.last(), anchor) {
        (Some(last), _) => (last.seq, last.hash),
        (None, Some(anchor)) => (anchor.seq, anchor.hash),
        (None, None) => (0, GENESIS),
    };
    let entry = append.entry_after(head);
    audit.push(entry.clone());
    entry
}

/// A page of `items` (oldest first), newest first after the one whose id is `after`.
fn page_of<T: Clone>(
    items: impl DoubleEndedIterator<Item = T>,
    id: impl Fn(&T) -> String,
    page: &DirectoryPage,
) -> Result<Listed<T>, StoreError> {
    let newest_first: Vec<T> = items.rev().collect();
    let start = match &page.starting_after {
        None => 0,
        Some(after) => match newest_first.iter().position(|item| id(item) == *after) {
            Some(at) => at + 1,
            None => {
                return Err(StoreError::CursorNotFound {
                    kind: CursorKind::StartingAfter,
                    id: after.clone(),
                })
            }
        },
    };
    let rest = &newest_first[start..];
    let limit = page.limit as usize;
    Ok(Listed {
        items: rest.iter().take(limit).cloned().collect(),
        has_more: rest.len() > limit,
    })
}

impl Data {
    fn installed(&self, app: &AppId, account: &AccountId) -> bool {
        self.apps
            .iter()
            .any(|a| a.id == *app && a.owner == *account)
            || self
                .installations
                .iter()
                .any(|i| i.app == *app && i.account == *account)
    }

    /// Deletes the stored keys `doomed` picks (crypto-shredding); answers how many went.
    fn remove_keys(&mut self, doomed: impl Fn(&KeyOwner) -> bool) -> u64 {
        let before = self.stored_keys.len();
        self.stored_keys.retain(|k| !doomed(&k.owner));
        let destroyed = (before - self.stored_keys.len()) as u64;
        if destroyed > 0 {
            self.keys_destroyed += 1;
        }
        destroyed
    }

    /// Deletes the secrets `doomed` picks; answers how many went.
    fn remove_secrets(&mut self, doomed: impl Fn(&SecretAddress) -> bool) -> u64 {
        let before = self.secrets.rows.len();
        self.secrets.rows.retain(|address, _| !doomed(address));
        (before - self.secrets.rows.len()) as u64
    }

    fn remove_app(&mut self, id: &AppId) -> Removed {
        let before = (
            self.apps.len(),
            self.installations.len(),
            self.keys.len(),
            self.sessions.len(),
        );
        self.apps.retain(|a| a.id != *id);
        self.installations.retain(|i| i.app != *id);
        self.keys.retain(|k| k.app != *id);
        self.sessions.retain(|s| s.app != *id);
        Removed {
            apps: (before.0 - self.apps.len()) as u64,
            installations: (before.1 - self.installations.len()) as u64,
            api_keys: (before.2 - self.keys.len()) as u64,
            user_sessions: (before.3 - self.sessions.len()) as u64,
            secrets: self.remove_secrets(|a| a.namespace.app == *id),
            users: 0,
            keys: self.remove_keys(|o| matches!(o, KeyOwner::Namespace(ns) if ns.app == *id)),
        }
    }
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

    async fn count_secrets(&self) -> Result<u64, StoreError> {
        Ok(self.open()?.secrets.rows.len() as u64)
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
        quota: u64,
    ) -> Result<Completed, StoreError> {
        let mut data = self.open()?;
        data.claims.remove(key);
        let owners: u64 = data
            .kept
            .iter()
            .filter(|(other, _)| other.credential == key.credential && *other != key)
            .map(|(other, kept)| kept.bytes(other))
            .sum();
        if owners.saturating_add(answer.bytes(key)) > quota {
            return Ok(Completed::OverQuota);
        }
        data.kept.insert(key.clone(), answer);
        Ok(Completed::Kept)
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
impl Directory for MemoryStore {
    async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if data.accounts.iter().any(|a| a.id == account.id) {
            return Err(StoreError::AlreadyExists(format!("account {}", account.id)));
        }
        data.accounts.push(account);
        Ok(())
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        Ok(self.open()?.accounts.iter().find(|a| a.id == *id).cloned())
    }

    async fn accounts(&self, page: &DirectoryPage) -> Result<Listed<Account>, StoreError> {
        let data = self.open()?;
        page_of(data.accounts.iter().cloned(), |a| a.id.to_string(), page)
    }

    async fn remove_account(&self, id: &AccountId) -> Result<Option<Removed>, StoreError> {
        let mut data = self.open()?;
        if !data.accounts.iter().any(|a| a.id == *id) {
            return Ok(None);
        }
        let mut removed = Removed::default();
        let owned: Vec<AppId> = data
            .apps
            .iter()
            .filter(|a| a.owner == *id)
            .map(|a| a.id.clone())
            .collect();
        for app in owned {
            let more = data.remove_app(&app);
            removed += more;
        }
        removed.secrets += data.remove_secrets(|a| a.namespace.account == *id);
        removed.keys += data.remove_keys(|o| match o {
            KeyOwner::Namespace(ns) => ns.account == *id,
            KeyOwner::User { account, .. } => account == id,
            KeyOwner::Service | KeyOwner::Digest => false,
        });
        let before = (
            data.sessions.len(),
            data.installations.len(),
            data.users.len(),
        );
        data.sessions.retain(|s| s.account != *id);
        data.installations.retain(|i| i.account != *id);
        data.users.retain(|u| u.account != *id);
        removed.user_sessions += (before.0 - data.sessions.len()) as u64;
        removed.installations += (before.1 - data.installations.len()) as u64;
        removed.users += (before.2 - data.users.len()) as u64;
        data.accounts.retain(|a| a.id != *id);
        Ok(Some(removed))
    }

    async fn create_app(&self, app: App) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if data.apps.iter().any(|a| a.id == app.id) {
            return Err(StoreError::AlreadyExists(format!("app {}", app.id)));
        }
        if !data.accounts.iter().any(|a| a.id == app.owner) {
            return Err(StoreError::Missing(format!("account {}", app.owner)));
        }
        data.apps.push(app);
        Ok(())
    }

    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        Ok(self.open()?.apps.iter().find(|a| a.id == *id).cloned())
    }

    async fn apps(&self, page: &DirectoryPage) -> Result<Listed<App>, StoreError> {
        let data = self.open()?;
        page_of(data.apps.iter().cloned(), |a| a.id.to_string(), page)
    }

    async fn remove_app(&self, id: &AppId) -> Result<Option<Removed>, StoreError> {
        let mut data = self.open()?;
        if !data.apps.iter().any(|a| a.id == *id) {
            return Ok(None);
        }
        Ok(Some(data.remove_app(id)))
    }

    async fn create_installation(&self, installation: Installation) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if !data.apps.iter().any(|a| a.id == installation.app) {
            return Err(StoreError::Missing(format!("app {}", installation.app)));
        }
        if !data.accounts.iter().any(|a| a.id == installation.account) {
            return Err(StoreError::Missing(format!(
                "account {}",
                installation.account
            )));
        }
        if data.installed(&installation.app, &installation.account) {
            return Err(StoreError::AlreadyExists(format!(
                "an installation of app {} on account {}",
                installation.app, installation.account
            )));
        }
        data.installations.push(installation);
        Ok(())
    }

    async fn installation(&self, id: &InstallationId) -> Result<Option<Installation>, StoreError> {
        Ok(self
            .open()?
            .installations
            .iter()
            .find(|i| i.id == *id)
            .cloned())
    }

    async fn installations(
        &self,
        filter: &InstallationFilter,
        page: &DirectoryPage,
    ) -> Result<Listed<Installation>, StoreError> {
        let data = self.open()?;
        let wanted = data.installations.iter().filter(|i| {
            filter.app.as_ref().is_none_or(|app| i.app == *app)
                && filter
                    .account
                    .as_ref()
                    .is_none_or(|acct| i.account == *acct)
        });
        let wanted: Vec<Installation> = wanted.cloned().collect();
        page_of(wanted.into_iter(), |i| i.id.to_string(), page)
    }

    async fn remove_installation(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Removed>, StoreError> {
        let mut data = self.open()?;
        let Some(at) = data.installations.iter().position(|i| i.id == *id) else {
            return Ok(None);
        };
        let inst = data.installations.remove(at);
        let before = data.sessions.len();
        data.sessions
            .retain(|s| !(s.app == inst.app && s.account == inst.account));
        let sessions = (before - data.sessions.len()) as u64;
        let secrets = data
            .remove_secrets(|a| a.namespace.app == inst.app && a.namespace.account == inst.account);
        let keys = data.remove_keys(|o| {
            matches!(o, KeyOwner::Namespace(ns) if ns.app == inst.app && ns.account == inst.account)
        });
        Ok(Some(Removed {
            installations: 1,
            user_sessions: sessions,
            secrets,
            keys,
            ..Removed::default()
        }))
    }

    async fn installed(&self, app: &AppId, account: &AccountId) -> Result<bool, StoreError> {
        Ok(self.open()?.installed(app, account))
    }

    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if !data.accounts.iter().any(|a| a.id == user.account) {
            return Err(StoreError::Missing(format!("account {}", user.account)));
        }
        if data
            .users
            .iter()
            .any(|u| u.account == user.account && u.id == user.id)
        {
            return Err(StoreError::AlreadyExists(format!(
                "user {} of account {}",
                user.id, user.account
            )));
        }
        data.users.push(user);
        Ok(())
    }

    async fn user(&self, account: &AccountId, id: &UserId) -> Result<Option<User>, StoreError> {
        Ok(self
            .open()?
            .users
            .iter()
            .find(|u| u.account == *account && u.id == *id)
            .cloned())
    }

    async fn users(
        &self,
        account: &AccountId,
        page: &DirectoryPage,
    ) -> Result<Listed<User>, StoreError> {
        let data = self.open()?;
        let mine: Vec<User> = data
            .users
            .iter()
            .filter(|u| u.account == *account)
            .cloned()
            .collect();
        page_of(mine.into_iter(), |u| u.id.to_string(), page)
    }

    async fn remove_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<Removed>, StoreError> {
        let mut data = self.open()?;
        let Some(at) = data
            .users
            .iter()
            .position(|u| u.account == *account && u.id == *id)
        else {
            return Ok(None);
        };
        data.users.remove(at);
        let before = data.sessions.len();
        data.sessions
            .retain(|s| !(s.account == *account && s.user == *id));
        let sessions = (before - data.sessions.len()) as u64;
        let secrets = data.remove_secrets(|a| {
            a.namespace.account == *account && a.scope == Scope::User(id.clone())
        });
        let keys = data.remove_keys(
            |o| matches!(o, KeyOwner::User { account: a, user } if a == account && user == id),
        );
        Ok(Some(Removed {
            users: 1,
            user_sessions: sessions,
            secrets,
            keys,
            ..Removed::default()
        }))
    }

    async fn create_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if !data.apps.iter().any(|a| a.id == key.app) {
            return Err(StoreError::Missing(format!("app {}", key.app)));
        }
        if data.keys.iter().any(|k| k.id == key.id) {
            return Err(StoreError::AlreadyExists(format!("key {}", key.id)));
        }
        data.keys.push(key);
        Ok(())
    }

    async fn key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.open()?.keys.iter().find(|k| k.id == *id).cloned())
    }

    async fn keys(
        &self,
        app: &AppId,
        page: &DirectoryPage,
    ) -> Result<Listed<ApiKeyRecord>, StoreError> {
        let data = self.open()?;
        let of_app: Vec<ApiKeyRecord> = data
            .keys
            .iter()
            .filter(|k| k.app == *app)
            .cloned()
            .collect();
        page_of(of_app.into_iter(), |k| k.id.to_string(), page)
    }

    async fn roll_key(
        &self,
        id: &ApiKeyId,
        expires_at: i64,
        new: ApiKeyRecord,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut data = self.open()?;
        let Some(at) = data.keys.iter().position(|k| k.id == *id) else {
            return Ok(None);
        };
        if data.keys.iter().any(|k| k.id == new.id) {
            return Err(StoreError::AlreadyExists(format!("key {}", new.id)));
        }
        let old = &mut data.keys[at];
        old.expires_at = Some(old.expires_at.map_or(expires_at, |t| t.min(expires_at)));
        let rolled = old.clone();
        data.keys.push(new);
        Ok(Some(rolled))
    }

    async fn revoke_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let mut data = self.open()?;
        Ok(data.keys.iter_mut().find(|k| k.id == *id).map(|k| {
            k.revoked = true;
            k.clone()
        }))
    }

    async fn create_session(&self, session: UserSession) -> Result<(), StoreError> {
        let mut data = self.open()?;
        if !data.installed(&session.app, &session.account) {
            return Err(StoreError::Missing(format!(
                "an installation of app {} on account {}",
                session.app, session.account
            )));
        }
        if !data
            .users
            .iter()
            .any(|u| u.account == session.account && u.id == session.user)
        {
            return Err(StoreError::Missing(format!(
                "user {} of account {}",
                session.user, session.account
            )));
        }
        data.sessions.push(session);
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        Ok(self.open()?.sessions.iter().find(|s| s.id == *id).cloned())
    }

    async fn remove_session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        let mut data = self.open()?;
        let at = data.sessions.iter().position(|s| s.id == *id);
        Ok(at.map(|at| data.sessions.remove(at)))
    }

    async fn credential(&self, hash: &CredentialId) -> Result<Option<Credential>, StoreError> {
        let data = self.open()?;
        if let Some(key) = data.keys.iter().find(|k| k.hash == *hash) {
            return Ok(Some(Credential::Key(key.clone())));
        }
        Ok(data
            .sessions
            .iter()
            .find(|s| s.hash == *hash)
            .map(|s| Credential::Session(s.clone())))
    }
}

#[async_trait]
impl AtomicWrites for MemoryStore {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        let mut data = self.open()?;
        // Applied to a copy, which replaces the data only if every write succeeded.
        let mut staged = data.secrets.clone();
        let mut audit = data.audit.clone();
        let anchor = data.anchor.clone();
        let mut keys = data.stored_keys.clone();
        let written = writes
            .into_iter()
            .map(|write| match write {
                Write::PutSecret(request) => staged.put(request).map(Written::PutSecret),
                Write::DeleteSecret { address, now } => {
                    Ok(Written::DeleteSecret(staged.delete(&address, now)))
                }
                Write::DeleteLive { address, now } => match staged.delete(&address, now) {
                    Some(secret) => Ok(Written::DeleteSecret(Some(secret))),
                    None => Err(StoreError::Missing(format!(
                        "secret {}",
                        address.name.as_str()
                    ))),
                },
                Write::Audit(append) => Ok(Written::Audit(audit_append(
                    &mut audit,
                    anchor.as_ref(),
                    append,
                ))),
                Write::AddKey(key) => {
                    if keys
                        .iter()
                        .any(|k| k.owner == key.owner && k.version == key.version)
                    {
                        return Err(key.taken());
                    }
                    keys.push(key.clone());
                    Ok(Written::AddKey(key))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        data.secrets = staged;
        data.audit = audit;
        data.stored_keys = keys;
        Ok(written)
    }
}

/// Where `keys_not_under` puts a key: the order of the SQL backends' primary key (kind, app,
/// account, mode, scope_user as stored, version; text byte by byte), so that every backend
/// walks alike.
fn key_order(key: &StoredKey) -> ([&str; 5], u32) {
    (key.owner.stored_columns(), key.version)
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys: Vec<StoredKey> = self
            .open()?
            .stored_keys
            .iter()
            .filter(|k| k.owner == *owner)
            .cloned()
            .collect();
        keys.sort_by_key(|k| k.version);
        Ok(keys)
    }

    async fn add_key(&self, key: StoredKey) -> Result<StoredKey, StoreError> {
        let mut data = self.open()?;
        let stored = data
            .stored_keys
            .iter()
            .find(|k| k.owner == key.owner && k.version == key.version);
        if let Some(stored) = stored {
            return Ok(stored.clone());
        }
        data.stored_keys.push(key.clone());
        Ok(key)
    }

    async fn keys_not_under(&self, root: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        let data = self.open()?;
        let mut keys: Vec<&StoredKey> =
            data.stored_keys.iter().filter(|k| k.root != root).collect();
        keys.sort_by(|a, b| key_order(a).cmp(&key_order(b)));
        Ok(keys.into_iter().take(limit as usize).cloned().collect())
    }

    async fn rewrap_key(&self, key: &StoredKey, to: (KeyId, Vec<u8>)) -> Result<bool, StoreError> {
        let mut data = self.open()?;
        let found = data.stored_keys.iter_mut().find(|k| {
            k.owner == key.owner
                && k.version == key.version
                && k.root == key.root
                && k.wrapped == key.wrapped
        });
        let Some(stored) = found else {
            return Ok(false);
        };
        (stored.root, stored.wrapped) = to;
        Ok(true)
    }

    async fn keys_by_root(&self) -> Result<Vec<RootUse>, StoreError> {
        let data = self.open()?;
        let mut counts: BTreeMap<[u8; 8], u64> = BTreeMap::new();
        for key in &data.stored_keys {
            *counts.entry(key.root.0).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(root, keys)| RootUse {
                root: KeyId(root),
                keys,
            })
            .collect())
    }

    fn destroyed_generation(&self) -> u64 {
        self.data.lock().keys_destroyed
    }

    async fn stale_sealed(
        &self,
        namespace: &Namespace,
        current: [&[u8]; 2],
        after: Option<&SecretId>,
        limit: u32,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        let data = self.open()?;
        let mut stale: Vec<SealedSecret> = data
            .secrets
            .rows
            .values()
            .map(|row| &row.secret)
            .filter(|s| {
                s.address.namespace == *namespace
                    && !s.sealed.starts_with(match s.address.scope {
                        Scope::Account => current[0],
                        Scope::User(_) => current[1],
                    })
                    && after.is_none_or(|after| s.id > *after)
            })
            .cloned()
            .collect();
        stale.sort_by(|a, b| a.id.cmp(&b.id));
        stale.truncate(limit as usize);
        Ok(stale)
    }

    async fn reseal(&self, reseals: Vec<Reseal>) -> Result<u64, StoreError> {
        let mut data = self.open()?;
        let mut applied = 0;
        for reseal in reseals {
            let row = data
                .secrets
                .rows
                .values_mut()
                .find(|row| row.secret.id == reseal.id && row.secret.sealed == reseal.from);
            if let Some(row) = row {
                row.secret.sealed = reseal.to;
                applied += 1;
            }
        }
        Ok(applied)
    }

    async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, StoreError> {
        let data = self.open()?;
        let held: BTreeSet<&Namespace> = data
            .secrets
            .rows
            .keys()
            .map(|address| &address.namespace)
            .filter(|ns| after.is_none_or(|after| *ns > after))
            .collect();
        Ok(held.into_iter().take(limit as usize).cloned().collect())
    }

    async fn users_with_keys(
        &self,
        after: Option<&(AccountId, UserId)>,
        limit: u32,
    ) -> Result<Vec<(AccountId, UserId)>, StoreError> {
        let data = self.open()?;
        let users: BTreeSet<(AccountId, UserId)> = data
            .stored_keys
            .iter()
            .filter_map(|key| match &key.owner {
                KeyOwner::User { account, user } => Some((account.clone(), user.clone())),
                _ => None,
            })
            .filter(|user| after.is_none_or(|after| user > after))
            .collect();
        Ok(users.into_iter().take(limit as usize).collect())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn audit_append(&self, append: AuditAppend) -> Result<AuditEntry, StoreError> {
        let mut data = self.open()?;
        let anchor = data.anchor.clone();
        Ok(audit_append(&mut data.audit, anchor.as_ref(), append))
    }

    async fn audit_scan(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .open()?
            .audit
            .iter()
            .filter(|e| e.seq > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .open()?
            .audit
            .iter()
            .rev()
            .filter(|e| filter.matches(e.seq, &e.event))
            .take(filter.limit as usize)
            .cloned()
            .collect())
    }

    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        Ok(self.open()?.anchor.clone())
    }

    async fn audit_prune(
        &self,
        before_ms: i64,
        now_ms: i64,
        chain: Arc<AuditChain>,
    ) -> Result<u64, StoreError> {
        let mut data = self.open()?;
        let keep_from = data.audit.len().saturating_sub(1);
        let doomed = data.audit[..keep_from]
            .iter()
            .take_while(|e| e.event.time_ms < before_ms)
            .count();
        if doomed == 0 {
            return Ok(0);
        }
        let last = &data.audit[doomed - 1];
        data.anchor = Some(chain.anchor(last.seq, last.hash, now_ms));
        data.audit.drain(..doomed);
        Ok(doomed as u64)
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
