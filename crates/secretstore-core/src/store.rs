//! The narrow interfaces a storage backend implements, and the records that cross them: one
//! trait per kind of record (`SecretStore`, `IdempotencyStore`, `MetaStore`, `Directory` of
//! tenants; `AuditStore`, the audit log; `KeyStore`, the wrapped keys of the key hierarchy),
//! `AtomicWrites` to commit writes of several
//! records as one transaction, and `Lifecycle`. A backend implements them all, which makes it a
//! `Store`; each trait has its own module of the conformance suite, which is the executable form
//! of the documentation below.
//!
//! A backend stores sealed bytes and metadata; it never sees a plaintext payload. It is
//! responsible for atomicity (a put either fully happens or not at all), durability (a write
//! that returned `Ok` survives a crash), the per-scope maximum (checked in the same transaction
//! as the insert) and ordering (list is newest first in the exact order puts created the
//! secrets).
//!
//! # Rules across processes
//!
//! Several server processes may share one database (a backend that allows it, such as
//! PostgreSQL; the embedded SQLite store takes an exclusive lock on its directory instead, so
//! there is only ever one handle). Through any number of handles on one database:
//!
//! - the per-scope maximum holds exactly under concurrent puts through different handles;
//! - a (scope, name) is never stored twice, however many handles create it at once;
//! - a write acknowledged through one handle is seen at once by reads through every other
//!   (no handle may answer from a cache another handle's write has made stale);
//! - an idempotency claim taken through one handle is `InFlight` through every other, and a
//!   claim held by a handle that went away without releasing it (its process died) is free
//!   once its lease is over (`ClaimTimes::held_after`);
//! - an owner's quota of kept answers is one, whichever handles its answers are kept through;
//! - an owner's key of one version is stored once, however many handles add it at once, and a
//!   re-wrap or a re-seal through one handle is a compare-and-set against writes through every
//!   other.

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditAnchor, AuditChain, AuditEntry, AuditEvent, AuditFilter};
use crate::error::{CursorKind, SealError, StoreError};
use crate::idempotency::{ClaimTimes, Completed, IdempotencyClaim, IdempotencyKey, KeptAnswer};
use crate::ids::{AccountId, AppId, Mode, UserId};
use crate::ids::{Namespace, SecretId};
use crate::principal::CredentialId;
use crate::secret::{Scope, SecretAddress};
use crate::tenancy::{
    Account, ApiKeyId, ApiKeyRecord, App, Credential, DirectoryPage, Installation, InstallationId,
    Listed, Removed, SessionId, User, UserSession,
};
use secretstore_crypto::KeyId;

/// A secret as stored: metadata in the clear, payload sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub id: SecretId,
    pub address: SecretAddress,
    /// Unix seconds when this scope + name was first created; a replace keeps it.
    pub created: i64,
    pub expires_at: Option<i64>,
    /// The envelope: wrapped data key, nonce and ciphertext. Opaque to storage.
    pub sealed: Vec<u8>,
}

/// Seals the payload for the id the secret will have. The backend calls it exactly once, inside
/// the write, after deciding whether the put creates (the request's `new_id`) or replaces (the
/// existing id): the ciphertext is bound to the id, so it cannot be made earlier. It does no
/// I/O, so a backend may call it inside a transaction.
pub type Seal = Box<dyn FnOnce(&SecretId) -> Result<Vec<u8>, SealError> + Send>;

/// Calls a seal closure for a backend: its failure becomes `StoreError::Seal`, and a panic in it
/// an `Internal` error, so that it cannot take a backend's writer (a thread, a transaction)
/// down with it.
pub fn seal_once(seal: Seal, id: &SecretId) -> Result<Vec<u8>, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seal(id))) {
        Ok(Ok(sealed)) => Ok(sealed),
        Ok(Err(e)) => Err(StoreError::Seal(e)),
        Err(_) => Err(StoreError::Internal("sealing the payload panicked".into())),
    }
}

/// Create or replace one secret.
pub struct PutRequest {
    pub address: SecretAddress,
    /// The id of the secret if this put creates it.
    pub new_id: SecretId,
    /// The time of the request: `created` of a new secret, and the instant against which
    /// existing secrets are live or expired.
    pub now: i64,
    pub expires_at: Option<i64>,
    /// Live secrets the scope may hold; a put of a new name into a full scope fails with
    /// `StoreError::ScopeFull` and changes nothing.
    pub max_per_scope: u32,
    pub seal: Seal,
}

impl std::fmt::Debug for PutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutRequest")
            .field("address", &self.address)
            .field("new_id", &self.new_id)
            .field("now", &self.now)
            .field("expires_at", &self.expires_at)
            .field("max_per_scope", &self.max_per_scope)
            .finish_non_exhaustive()
    }
}

/// Where a list page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    /// Secrets older than this one (the next page).
    StartingAfter(SecretId),
    /// Secrets newer than this one (the previous page), still answered newest first.
    EndingBefore(SecretId),
}

impl ListCursor {
    pub fn kind(&self) -> CursorKind {
        match self {
            ListCursor::StartingAfter(_) => CursorKind::StartingAfter,
            ListCursor::EndingBefore(_) => CursorKind::EndingBefore,
        }
    }

    pub fn id(&self) -> &SecretId {
        match self {
            ListCursor::StartingAfter(id) | ListCursor::EndingBefore(id) => id,
        }
    }
}

/// One page of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub namespace: Namespace,
    pub scope: Scope,
    pub limit: u32,
    pub cursor: Option<ListCursor>,
    /// Secrets expired at this instant are left out.
    pub now: i64,
}

/// A page of live secrets, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredList {
    pub items: Vec<SealedSecret>,
    /// More live secrets exist beyond this page in the direction of travel (older for
    /// `starting_after` or no cursor, newer for `ending_before`).
    pub has_more: bool,
}

/// Secrets.
#[async_trait]
pub trait SecretStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the secret, or replaces the payload and `expires_at` of the live secret at the
    /// same address (keeping its id and `created`). An expired secret at the address is treated
    /// as absent: it is removed and a new one created. Returns the secret as now stored.
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError>;

    /// The live secret at this address, if any.
    async fn get(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError>;

    /// Removes the live secret at this address and returns it as it was; `None` if there is no
    /// live one (an expired one is not deleted by this call, and not returned).
    async fn delete(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError>;

    /// A page of live secrets of one scope. A cursor that names no live secret of that
    /// namespace and scope is `StoreError::CursorNotFound`.
    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError>;

    /// Deletes secrets expired at `now`; returns how many went.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// How many secrets are stored, every namespace, expired ones not yet purged included (the
    /// `secretstore_secrets_stored` gauge). Read once a metrics scrape, not per request: it may
    /// count the whole table, but must not hold writes up while it does.
    async fn count_secrets(&self) -> Result<u64, StoreError>;
}

/// Idempotency records: claims of requests running, and answers kept for replay.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims a key for a request about to run; or reports that another request holds it
    /// (a claim taken after `at.held_after`); or returns the answer kept for it (one created
    /// after `at.kept_after`). A stale answer or an abandoned claim counts as nothing: the key
    /// is claimed.
    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        at: ClaimTimes,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Keeps the answer of a claimed key (durably) and releases the claim; unless its owner
    /// (`key.credential`) would then keep more than `quota` bytes: the sum of
    /// `KeptAnswer::bytes` over every answer of the owner still stored (a stale one counts until
    /// `idempotency_purge` deletes it; the answer this one replaces, a stale one of the same key,
    /// does not), this one included. Then nothing is kept, the claim is released all the same,
    /// and the answer is `Completed::OverQuota`. The sum is kept in storage: it holds across
    /// restarts and through every handle on the database, exactly, however many complete at
    /// once.
    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        answer: KeptAnswer,
        quota: u64,
    ) -> Result<Completed, StoreError>;

    /// Releases a claim without keeping an answer, so a retry with the key runs again.
    /// Releasing a key that is not claimed does nothing.
    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError>;

    /// Deletes kept answers created at or before `kept_after`; returns how many went.
    async fn idempotency_purge(&self, kept_after: i64) -> Result<u64, StoreError>;
}

/// Whose key a stored key is (`keys`): a namespace's key-encryption key, which wraps the data
/// key of each of its secrets, a user's own key, or one of the server's own keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyOwner {
    Namespace(Namespace),
    /// A user of an account: combined with a namespace's key (`Kek::for_user`), its key wraps
    /// the data keys of the user's secrets in that namespace, so that removing the user (which
    /// destroys this key) destroys them in every app and mode, and removing the namespace
    /// destroys them there. It has one version; the root key rotation re-wraps it like any.
    User {
        account: AccountId,
        user: UserId,
    },
    /// Seals what the server keeps that is not a secret of a namespace: idempotent answers
    /// (which may hold a payload) and the root-key check.
    Service,
    /// The key of keyed digests (`DigestKey`): credential digests and the audit chain.
    Digest,
}

impl KeyOwner {
    /// The kind a user's key is stored as (`stored_columns`).
    pub const USER_KIND: &'static str = "user";

    /// The owner's kind as stored: `namespace`, `user`, `service` or `digest`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyOwner::Namespace(_) => "namespace",
            KeyOwner::User { .. } => Self::USER_KIND,
            KeyOwner::Service => "service",
            KeyOwner::Digest => "digest",
        }
    }

    /// The owner from its stored columns (`stored_columns`). `None` for what this version does
    /// not know.
    pub fn from_columns(columns: [&str; 5]) -> Option<Self> {
        let [kind, app, account, mode, user] = columns;
        match (kind, app, account, mode, user) {
            ("service", "", "", "", "") => Some(KeyOwner::Service),
            ("digest", "", "", "", "") => Some(KeyOwner::Digest),
            ("namespace", app, account, mode, "") => Some(KeyOwner::Namespace(Namespace {
                app: AppId::parse(app).ok()?,
                account: AccountId::parse(account).ok()?,
                mode: Mode::parse(mode)?,
            })),
            ("user", "", account, "", user) => Some(KeyOwner::User {
                account: AccountId::parse(account).ok()?,
                user: UserId::parse(user).ok()?,
            }),
            _ => None,
        }
    }

    /// The owner of a key a backend reads back, from its stored columns (`from_columns`). One
    /// this version cannot read (a kind a newer secretstore added, or a damaged row) is an
    /// error rather than skipped: the reads that meet every owner's keys serve root key
    /// rotations, and a key skipped there would stay wrapped by a root key version the
    /// operator then believes unused and retires, after which nothing could unwrap it.
    pub fn from_stored(columns: [&str; 5]) -> Result<Self, StoreError> {
        Self::from_columns(columns).ok_or_else(|| {
            StoreError::Internal(
                "a stored key names an owner this secretstore does not know (keys.kind, app, \
                 account, mode, scope_user): written by a newer secretstore, or damaged"
                    .into(),
            )
        })
    }

    /// The kind, app, account, mode and scope_user columns a stored key's owner is kept as, in
    /// that order: what both SQL backends bind to find an owner's rows. What an owner does not
    /// have is empty.
    pub fn stored_columns(&self) -> [&str; 5] {
        let kind = self.kind();
        match self {
            KeyOwner::Namespace(ns) => [
                kind,
                ns.app.as_str(),
                ns.account.as_str(),
                ns.mode.as_str(),
                "",
            ],
            KeyOwner::User { account, user } => [kind, "", account.as_str(), "", user.as_str()],
            KeyOwner::Service | KeyOwner::Digest => [kind, "", "", "", ""],
        }
    }
}

/// A key as stored: wrapped by one version of the root key, which it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub owner: KeyOwner,
    /// The key's own version within its owner: 1 for the first, one more for each rotation.
    pub version: u32,
    /// The id of the root key version that wrapped it.
    pub root: KeyId,
    /// The key, wrapped (`RootKeyProvider::wrap`); opaque to storage.
    pub wrapped: Vec<u8>,
    /// Unix seconds when this version was made.
    pub created: i64,
}

impl StoredKey {
    /// What `Write::AddKey` fails with when the owner has this version already.
    pub fn taken(&self) -> StoreError {
        StoreError::AlreadyExists(format!(
            "version {} of the key of {:?}",
            self.version, self.owner
        ))
    }
}

/// How many stored keys one root key version wraps (`KeyStore::keys_by_root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootUse {
    pub root: KeyId,
    pub keys: u64,
}

/// One re-sealed payload for `KeyStore::reseal`: the secret's sealed bytes change from `from`
/// to `to`, unless they are no longer `from` (a write replaced the secret meanwhile, sealed
/// under the current key already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    pub id: SecretId,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// The wrapped keys of the key hierarchy (`keys`), and the secrets a key rotation re-wraps.
/// Keys are never changed in place except by `rewrap_key`, which only changes which root key
/// wraps them; a rotation adds a version.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Every version of `owner`'s key, oldest first.
    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<StoredKey>, StoreError>;

    /// Stores `key` unless its owner already has a key of that version, and answers the one
    /// stored: of several handles that race to make an owner's first key, one wins and all of
    /// them use its key.
    async fn add_key(&self, key: StoredKey) -> Result<StoredKey, StoreError>;

    /// Up to `limit` keys wrapped by another root key version than `root`, in a stable order.
    async fn keys_not_under(&self, root: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError>;

    /// Changes which root key wraps `key` (its owner and version) to `to`, if it is still
    /// wrapped as `key` says (compare-and-set on the root id and the wrapped bytes); answers
    /// whether it did.
    async fn rewrap_key(&self, key: &StoredKey, to: (KeyId, Vec<u8>)) -> Result<bool, StoreError>;

    /// How many keys each root key version wraps, for `keys status`.
    async fn keys_by_root(&self) -> Result<Vec<RootUse>, StoreError>;

    /// Up to `limit` secrets of `namespace` (expired ones too), in id order after `after`,
    /// whose sealed bytes do not start with `current[0]` (an account's secret) or `current[1]`
    /// (a user's secret): the headers of the namespace's current key version, alone and
    /// combined with a user's key. They are the ones a rotation has still to re-wrap.
    async fn stale_sealed(
        &self,
        namespace: &Namespace,
        current: [&[u8]; 2],
        after: Option<&SecretId>,
        limit: u32,
    ) -> Result<Vec<SealedSecret>, StoreError>;

    /// Applies `reseals` in one transaction, each only if the secret's sealed bytes are still
    /// its `from`; answers how many were applied.
    async fn reseal(&self, reseals: Vec<Reseal>) -> Result<u64, StoreError>;

    /// Up to `limit` namespaces that hold secrets, in order after `after`; for rotating every
    /// namespace.
    async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, StoreError>;

    /// Up to `limit` users that have a key of their own (`KeyOwner::User`), each once, in a
    /// stable order after `after`; for learning at start which users have one
    /// (`KeyManager::learn_users`).
    async fn users_with_keys(
        &self,
        after: Option<&(AccountId, UserId)>,
        limit: u32,
    ) -> Result<Vec<(AccountId, UserId)>, StoreError>;

    /// Whether other servers may share this store (and cache its keys): a namespace rotation
    /// then waits for their caches before its last pass.
    fn shared(&self) -> bool {
        false
    }

    /// A number that changes once keys may have been destroyed through another handle (a
    /// removal through another server): a key cached before the change may be gone, and must
    /// be read again before it seals anything. A store no other server writes answers 0 (this
    /// server's own removals drop its keys directly: `KeyManager::forget`).
    fn destroyed_generation(&self) -> u64 {
        0
    }
}

/// Small named values of the store itself (the root key check, for one).
#[async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug + 'static {
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets a named value, durably.
    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError>;
}

/// Which installations a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallationFilter {
    pub app: Option<AppId>,
    pub account: Option<AccountId>,
}

/// The tenants of production mode (`tenancy`): who may hold secrets, and the credentials that
/// reach them. Listings are newest first and page with `starting_after` (an id of the listing).
/// A create of an id that exists fails with `StoreError::AlreadyExists` and changes nothing;
/// one that refers to an object that does not exist (an app's owner, an installation's app or
/// account, a user's account, a key's app, a session's installation or user) fails with
/// `StoreError::Missing`. A removal takes what the object owns with it, in one transaction, and
/// answers how much went (`None`: there was no such object, and nothing changed):
///
/// - an installation: that app's secrets in that account (both modes) and its user sessions
///   there (an app's owner is not an installation that can be removed);
/// - a user: every secret in that user's scope on the account (every app, both modes) and the
///   user's sessions;
/// - an app: its keys, installations, sessions and secrets everywhere;
/// - an account: its users, its installations, the apps it owns (as above) and every secret of
///   any app on the account.
///
/// Through any handle, a revoked key, a removed object and an expired roll are seen at once by
/// the next request (see the crate's rules across processes for other handles).
///
/// Every write that changes something inserts `audit::directory_record()` (the admin
/// request's audit record, when there is one) in its own transaction, so that the change and
/// its record stand or fall together.
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug + 'static {
    async fn create_account(&self, account: Account) -> Result<(), StoreError>;
    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    async fn accounts(&self, page: &DirectoryPage) -> Result<Listed<Account>, StoreError>;
    async fn remove_account(&self, id: &AccountId) -> Result<Option<Removed>, StoreError>;

    async fn create_app(&self, app: App) -> Result<(), StoreError>;
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError>;
    async fn apps(&self, page: &DirectoryPage) -> Result<Listed<App>, StoreError>;
    async fn remove_app(&self, id: &AppId) -> Result<Option<Removed>, StoreError>;

    /// An app may be installed once on an account (its owner has it already).
    async fn create_installation(&self, installation: Installation) -> Result<(), StoreError>;
    async fn installation(&self, id: &InstallationId) -> Result<Option<Installation>, StoreError>;
    async fn installations(
        &self,
        filter: &InstallationFilter,
        page: &DirectoryPage,
    ) -> Result<Listed<Installation>, StoreError>;
    async fn remove_installation(&self, id: &InstallationId)
        -> Result<Option<Removed>, StoreError>;
    /// Whether `account` installed `app` or owns it.
    async fn installed(&self, app: &AppId, account: &AccountId) -> Result<bool, StoreError>;

    async fn create_user(&self, user: User) -> Result<(), StoreError>;
    async fn user(&self, account: &AccountId, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn users(
        &self,
        account: &AccountId,
        page: &DirectoryPage,
    ) -> Result<Listed<User>, StoreError>;
    async fn remove_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<Removed>, StoreError>;

    async fn create_key(&self, key: ApiKeyRecord) -> Result<(), StoreError>;
    async fn key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn keys(
        &self,
        app: &AppId,
        page: &DirectoryPage,
    ) -> Result<Listed<ApiKeyRecord>, StoreError>;
    /// Adds `new` and sets the key's `expires_at` (unless it already ends sooner), in one
    /// transaction; answers the key as it now is.
    async fn roll_key(
        &self,
        id: &ApiKeyId,
        expires_at: i64,
        new: ApiKeyRecord,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn revoke_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    async fn create_session(&self, session: UserSession) -> Result<(), StoreError>;
    async fn session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError>;
    async fn remove_session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError>;

    /// The key or session with this hash, revoked or expired ones included (the caller
    /// decides).
    async fn credential(&self, hash: &CredentialId) -> Result<Option<Credential>, StoreError>;
}

/// A record to append to the audit chain: the backend gives it the next seq and links it to
/// the record before (`AuditChain::entry`), in the transaction that appends it, so that the
/// chain has one order however many handles append.
#[derive(Debug, Clone)]
pub struct AuditAppend {
    event: Arc<AuditEvent>,
    chain: Arc<AuditChain>,
    /// `audit::fields_digest(&event)`, computed by `new` on the caller's thread.
    fields: crate::audit::ChainHash,
}

impl AuditAppend {
    pub fn new(event: Arc<AuditEvent>, chain: Arc<AuditChain>) -> Self {
        let fields = crate::audit::fields_digest(&event);
        Self {
            event,
            chain,
            fields,
        }
    }

    /// The record as the entry that follows `prev` (the chain's head: its seq and hash).
    pub fn entry_after(&self, prev: (i64, crate::audit::ChainHash)) -> AuditEntry {
        self.chain
            .entry_with_fields(prev, Arc::clone(&self.event), &self.fields)
    }
}

/// The audit log (`audit`): an append-only chain of records, in the same database as the
/// secrets. A record appended with a write (`Write::Audit` in a `commit`) is durable with it;
/// one appended alone (`audit_append`, the record of a read or a refusal) is visible to every
/// reader when the call returns and durable within `AUDIT_SYNC_WITHIN_MS`, without waiting for a
/// sync of its own.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends one record; answers it as stored.
    async fn audit_append(&self, append: AuditAppend) -> Result<AuditEntry, StoreError>;

    /// Up to `limit` records with seq above `after`, oldest first: the chain as stored, for
    /// verification.
    async fn audit_scan(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Records matching `filter`, newest first, at most `filter.limit`.
    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// The anchor the chain starts from, if it was pruned.
    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError>;

    /// Deletes every record older than `before_ms` (unix milliseconds), except the newest
    /// record (the chain's head stays, so the next append still links to it), and replaces the
    /// anchor with one at the last record deleted, sealed by `chain`, in one transaction.
    /// Answers how many records went.
    async fn audit_prune(
        &self,
        before_ms: i64,
        now_ms: i64,
        chain: Arc<AuditChain>,
    ) -> Result<u64, StoreError>;
}

/// How long a record appended alone may take to reach the disk (`AuditStore`).
pub const AUDIT_SYNC_WITHIN_MS: u64 = 100;

/// One write of a `commit`. Each kind of record that must commit together with others (a put
/// with its audit record; a removal of an installation with all its secrets) has a variant.
#[derive(Debug)]
pub enum Write {
    /// As `SecretStore::put`.
    PutSecret(PutRequest),
    /// As `SecretStore::delete`.
    DeleteSecret { address: SecretAddress, now: i64 },
    /// As `DeleteSecret`, but a delete that finds no live secret fails the commit with
    /// `StoreError::Missing` (so that nothing else in it, its audit record, stays either).
    DeleteLive { address: SecretAddress, now: i64 },
    /// As `AuditStore::audit_append`, but durable with the writes beside it.
    Audit(AuditAppend),
    /// As `KeyStore::add_key`, for a key its owner must not have yet: a user's first key,
    /// stored with the first payload sealed under it (`KeyManager::sealing`). If the owner has
    /// this version already (another request or server made it first), the commit fails with
    /// `StoreError::AlreadyExists` and stores nothing, so no payload is kept under a key that
    /// lost.
    AddKey(StoredKey),
}

/// What one write of a `commit` did, in the order the writes were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    PutSecret(SealedSecret),
    DeleteSecret(Option<SealedSecret>),
    Audit(AuditEntry),
    AddKey(StoredKey),
}

/// Writes of several records as one transaction.
#[async_trait]
pub trait AtomicWrites: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `writes` in order, each seeing the ones before it, as one durable transaction:
    /// every write takes effect or none does. The first write that fails (a full scope, a seal
    /// error) undoes the others and is the error returned; on success the answers come in the
    /// order of `writes`.
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError>;
}

/// The backend as a whole.
#[async_trait]
pub trait Lifecycle: Send + Sync + std::fmt::Debug + 'static {
    /// Storage answers and can take writes (for a readiness check): `Unavailable` while writes
    /// cannot succeed (a full or read-only disk, a standby database, writes failing), and `Ok`
    /// again by itself, without any other call, once they can. It may write to find out
    /// (`WriteHealth`), at most once a second, and not while other writes show how they fare.
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and stops accepting new ones; for a clean shutdown. Later calls
    /// of any trait fail with `StoreError::Unavailable`; closing twice is harmless.
    async fn close(&self) -> Result<(), StoreError>;

    /// Sets the gauges of `crate::metrics` that only this backend knows (PostgreSQL's
    /// connection pool), just before a scrape reads them. Nothing by default.
    fn record_gauges(&self) {}

    /// A transactionally consistent copy of the whole database (every record of every trait
    /// above, sealed as stored: ciphertext and wrapped keys, never a payload or a root key),
    /// taken while writes go on, for `GET /v1/backup`. The copy is a file already unlinked
    /// from every directory, so it goes away when the file is closed: a transfer cut short
    /// leaves nothing behind. By default `StoreError::Unsupported`: a backend whose database
    /// runs elsewhere is backed up with that database's own tools.
    async fn snapshot(&self) -> Result<std::fs::File, StoreError> {
        Err(StoreError::Unsupported(
            "this storage backend takes no backups itself: back up its database with the \
             database's own tools"
                .into(),
        ))
    }
}

/// A complete backend: every storage trait. Implemented for any type that implements them all.
pub trait Store:
    SecretStore
    + IdempotencyStore
    + MetaStore
    + Directory
    + AtomicWrites
    + AuditStore
    + KeyStore
    + Lifecycle
{
}

impl<T> Store for T where
    T: SecretStore
        + IdempotencyStore
        + MetaStore
        + Directory
        + AtomicWrites
        + AuditStore
        + KeyStore
        + Lifecycle
{
}
