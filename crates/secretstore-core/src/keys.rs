//! The key hierarchy's policy: which key seals what, where each key comes from, and how keys
//! are rotated while the server serves. The primitives are `secretstore_crypto`'s; the wrapped
//! keys live in storage (`KeyStore`), so this sits in core, between the two.
//!
//! - The root key ring (`RootKeyring`) wraps every stored key; its active version wraps new
//!   ones, older versions only unwrap until `rotate_root` has re-wrapped what they held.
//! - Each namespace (app, account, mode) has a key-encryption key, made on the namespace's
//!   first write. Two first writes racing (on one server or several) make one key: the store
//!   keeps the first `add_key` and answers it to both. A rotation adds a version; payloads
//!   are sealed under the newest and opened under whichever version their header names.
//! - Each user (of an account) has a key of their own, combined with the namespace key for
//!   the user's secrets. It is made by the write of the user's first secret and stored in that
//!   write's transaction (`Sealing::new_user_key`), so that the first secret costs one commit.
//!   Two first writes racing: one commits, the other's commit fails whole and it seals again
//!   under the key that won.
//! - The service key seals what the server keeps outside any namespace (idempotent answers);
//!   the digest key keys credential digests and the audit chain. A data directory made before
//!   the hierarchy keeps its digest key (derived from its root key, carried over once), so its
//!   audit chain and kept answers stay valid.
//!
//! Unwrapped keys are cached in memory: a namespace key is unwrapped once (one root-key call,
//! which for an HSM is a round trip to the token), not per request. The cache of a namespace
//! is read again from storage after `RELOAD_AFTER`, so that a rotation made through another
//! server sharing the database is picked up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use secretstore_crypto::{
    envelope_v2, CryptoError, DigestKey, Kek, KeyId, RootKeyProvider, RootKeyring, SealedFormat,
    SecretKey,
};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::{AccountId, Namespace, UserId};
use crate::secret::Scope;
use crate::store::{KeyOwner, KeyStore, MetaStore, Reseal, SealedSecret, StoredKey, Write};
use crate::user_filter::UserFilter;

/// How long a namespace's unwrapped keys are used before storage is asked again for newer
/// versions (made by a rotation through another server).
pub const RELOAD_AFTER: Duration = Duration::from_secs(10);

/// Namespaces whose keys are held unwrapped at most; past it the cache starts afresh (each
/// key is one root-key unwrap away).
const CACHED_NAMESPACES: usize = 100_000;

/// How many users `learn_users` reads from storage at a time.
const LEARN_BATCH: u32 = 1_000;

/// How many secrets a rotation re-wraps per transaction.
const RESEAL_BATCH: u32 = 200;

/// Where a data directory made before the hierarchy kept its root key check: a value sealed in
/// format 1 under the root key.
const LEGACY_CHECK: &str = "root_key_check";
const LEGACY_CHECK_AAD: &[u8] = b"secretstore/root-key-check/v1";
const LEGACY_CHECK_PLAINTEXT: &[u8] = b"secretstore opens this data with this root key";

/// Why a key of the hierarchy could not be had. None carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the stored keys are wrapped by root key {needed}, a different key from the root keys \
         given ({given}); start with the root key this data was made with (the first \
         --root-key-file or --pkcs11-key-label is the active one, older ones may follow it)"
    )]
    MissingRoot { needed: KeyId, given: String },
    #[error(
        "root key {root} does not open this data's keys: it is another key with the same id, \
         or the stored keys were altered"
    )]
    WrongRoot { root: KeyId },
    #[error("the {what} failed: {source}")]
    Crypto {
        what: &'static str,
        #[source]
        source: CryptoError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The associated data a stored key is wrapped under: its owner and version, so a wrapped key
/// copied to another owner's row, or to another version, does not unwrap.
fn key_aad(owner: &KeyOwner, version: u32) -> Vec<u8> {
    let columns = owner.stored_columns();
    // The user column came after keys of the other kinds were first wrapped; theirs leave it
    // out (it is empty for them), so that they unwrap as they always did.
    let named = match owner {
        KeyOwner::User { .. } => &columns[..],
        _ => &columns[..4],
    };
    let version = version.to_be_bytes();
    let mut fields: Vec<&[u8]> = named.iter().map(|c| c.as_bytes()).collect();
    fields.push(&version);
    length_prefixed(b"secretstore/stored-key/v1", &fields)
}

/// The owner of a user's own key.
fn user_owner((account, user): &(AccountId, UserId)) -> KeyOwner {
    KeyOwner::User {
        account: account.clone(),
        user: user.clone(),
    }
}

/// The context a user's combined key is derived with (`Kek::for_user`): the namespace and the
/// user, so that no two of them share a key.
fn user_context(namespace: &Namespace, user: &UserId) -> Vec<u8> {
    length_prefixed(
        b"secretstore/user-kek/v1",
        &[
            namespace.app.as_str().as_bytes(),
            namespace.account.as_str().as_bytes(),
            namespace.mode.as_str().as_bytes(),
            user.as_str().as_bytes(),
        ],
    )
}

/// `domain` followed by every field with its length, so no two lists of fields give the same
/// bytes.
pub(crate) fn length_prefixed(domain: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(domain.len() + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.extend_from_slice(domain);
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// One version of a namespace's key, unwrapped: as a key-encryption key, and as the key a
/// user's combined key is derived from.
struct NamespaceKey {
    kek: Arc<Kek>,
    key: SecretKey,
}

/// A namespace's keys, unwrapped, by version.
struct NamespaceKeys {
    versions: BTreeMap<u32, NamespaceKey>,
    loaded: Instant,
    /// `KeyStore::destroyed_generation` when they were read.
    generation: u64,
}

impl NamespaceKeys {
    fn newest(&self) -> Option<(&u32, &NamespaceKey)> {
        self.versions.iter().next_back()
    }
}

/// A user's own key, unwrapped.
struct UserKey {
    key: SecretKey,
    loaded: Instant,
    /// `KeyStore::destroyed_generation` when it was read.
    generation: u64,
}

/// The key a write seals its payload under (`KeyManager::sealing`).
#[derive(Debug)]
pub struct Sealing {
    pub kek: Arc<Kek>,
    /// The user's own key, made for this write because the user had none: the write stores
    /// it (`NewUserKey::write`) in the same transaction as the payload sealed under it.
    pub new_user_key: Option<NewUserKey>,
}

/// A user's first key, made by a write and not stored yet. Stored in the write's own
/// transaction rather than in one before it, a user's first secret costs one commit, not two.
/// Once that commit succeeded, `KeyManager::stored` keeps it for the writes after it; if
/// another request or server stored the user's first key meanwhile, the commit fails with
/// `StoreError::AlreadyExists` and the write seals again under that key.
pub struct NewUserKey {
    stored: StoredKey,
    key: SecretKey,
    user: (AccountId, UserId),
    /// `KeyStore::destroyed_generation` when the user was found to have no key.
    generation: u64,
}

impl NewUserKey {
    /// The write that stores it.
    pub fn write(&self) -> Write {
        Write::AddKey(self.stored.clone())
    }
}

impl std::fmt::Debug for NewUserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserKey")
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

/// What `status` reports of one root key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootStatus {
    pub id: KeyId,
    /// Where it comes from (`file /etc/...`, `PKCS#11 token ...`); `None` for a root key that
    /// wraps stored keys but was not given to this server.
    pub source: Option<String>,
    pub active: bool,
    /// Stored keys it wraps (namespace keys and the server's own).
    pub keys: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotated {
    /// Stored keys re-wrapped (root rotation), or secrets re-wrapped (namespace rotation).
    pub rewrapped: u64,
    /// Secrets still in format 1 that were sealed again in format 2.
    pub resealed: u64,
    /// The namespace key's new version (namespace rotation).
    pub version: u32,
}

/// The key hierarchy of one server.
pub struct KeyManager {
    ring: RwLock<Arc<RootKeyring>>,
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    namespaces: Mutex<HashMap<Namespace, Arc<NamespaceKeys>>>,
    users: Mutex<HashMap<(AccountId, UserId), Arc<UserKey>>>,
    /// Which users may have a key: the others' first write makes one without reading.
    users_with_keys: UserFilter,
    /// Shared by each write from the moment it takes its sealing key until its row is stored
    /// (`writing`), exclusive around a removal and the `forget` after it (`removing`): a write
    /// that took a key a removal then destroys would otherwise store a row no key opens.
    writes: tokio::sync::RwLock<()>,
    service: Arc<Kek>,
    digest: DigestKey,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager").finish_non_exhaustive()
    }
}

impl KeyManager {
    /// Opens the hierarchy over `store`: checks that `ring` opens the stored keys, carries a
    /// data directory made before the hierarchy over (its format-1 check must open, and its
    /// digest key is kept), and makes the server's own keys on first start.
    pub async fn start(
        ring: RootKeyring,
        store: Arc<dyn KeyStore>,
        meta: &dyn MetaStore,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let ring = Arc::new(ring);
        let legacy = match store.keys_of(&KeyOwner::Service).await?.is_empty() {
            true => legacy_digest(&ring, meta).await?,
            false => None,
        };
        let now = clock.now();
        let digest = match legacy {
            Some(key) => key,
            None => SecretKey::generate().map_err(|source| KeyError::Crypto {
                what: "making the digest key",
                source,
            })?,
        };
        // The digest key before the service key: a start interrupted between the two finds no
        // service key, and `add_key` then answers the digest key stored the first time.
        let digest = first_key(&ring, &*store, KeyOwner::Digest, digest, now).await?;
        let service = SecretKey::generate().map_err(|source| KeyError::Crypto {
            what: "making the service key",
            source,
        })?;
        let service = first_key(&ring, &*store, KeyOwner::Service, service, now).await?;
        Ok(Self {
            ring: RwLock::new(ring),
            store,
            clock,
            namespaces: Mutex::default(),
            users: Mutex::default(),
            users_with_keys: UserFilter::default(),
            writes: tokio::sync::RwLock::new(()),
            service: Arc::new(Kek::new(1, &service)),
            digest: DigestKey::from_secret_key(&digest),
        })
    }

    /// The key of keyed digests (credential digests, the audit chain).
    pub fn digest_key(&self) -> &DigestKey {
        &self.digest
    }

    fn ring(&self) -> Arc<RootKeyring> {
        Arc::clone(&self.ring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes a ring read again from the key sources (SIGHUP): its active version becomes the
    /// active one, and every version of the previous ring it lacks is kept as an older one, so
    /// that a key file overwritten with a new key still leaves the old key to unwrap what it
    /// wrapped until `rotate_root` has moved it (the next start no longer has it).
    pub fn reload_ring(&self, ring: RootKeyring) -> Result<(), CryptoError> {
        let mut current = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let active = Arc::clone(ring.active());
        let others = ring
            .ids()
            .into_iter()
            .chain(current.ids())
            .filter(|id| *id != active.id())
            .fold(Vec::new(), |mut kept: Vec<Arc<dyn RootKeyProvider>>, id| {
                if !kept.iter().any(|p| p.id() == id) {
                    if let Some(provider) = ring.get(id).or_else(|| current.get(id)) {
                        kept.push(Arc::clone(provider));
                    }
                }
                kept
            });
        *current = Arc::new(RootKeyring::new(active, others)?);
        Ok(())
    }

    /// Seals what the server keeps outside any namespace (an idempotent answer) under the
    /// service key; it opens only with the same `aad`.
    pub fn seal_service(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        envelope_v2::seal(&self.service, aad, plaintext)
    }

    /// Opens what `seal_service` sealed, or a value kept in format 1 before the hierarchy.
    pub fn open_service(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match envelope_v2::sealed_format(sealed)? {
            SealedFormat::V1 { .. } => self.ring().open_v1(aad, sealed),
            SealedFormat::V2 { .. } => envelope_v2::open(&self.service, aad, sealed),
        }
    }

    /// The key new payloads of `namespace` in `scope` are sealed under: the namespace key's
    /// newest version, made now if the namespace has none, combined with the user's own key
    /// for a user's secret. A user who has no key yet gets one made here and stored by the
    /// write itself (`Sealing::new_user_key`).
    pub async fn sealing(&self, namespace: &Namespace, scope: &Scope) -> Result<Sealing, KeyError> {
        let keys = self.namespace_keys(namespace, None).await?;
        let keys = match keys.newest() {
            Some(_) => keys,
            None => {
                let key = SecretKey::generate().map_err(|source| KeyError::Crypto {
                    what: "making a namespace key",
                    source,
                })?;
                let owner = KeyOwner::Namespace(namespace.clone());
                first_key(&self.ring(), &*self.store, owner, key, self.clock.now()).await?;
                self.reload(namespace).await?
            }
        };
        let Some((&version, newest)) = keys.newest() else {
            return Err(KeyError::Store(StoreError::Internal(format!(
                "the key stored for {namespace:?} is not read back"
            ))));
        };
        let Scope::User(user) = scope else {
            return Ok(Sealing {
                kek: Arc::clone(&newest.kek),
                new_user_key: None,
            });
        };
        let combined = |user_key: &SecretKey| {
            Arc::new(Kek::for_user(
                version,
                &newest.key,
                user_key,
                &user_context(namespace, user),
            ))
        };
        let id = (namespace.account.clone(), user.clone());
        let known = match self.users_with_keys.may_have(&id.0, &id.1) {
            true => self.user_key(&id).await?,
            false => None,
        };
        if let Some(known) = known {
            return Ok(Sealing {
                kek: combined(&known.key),
                new_user_key: None,
            });
        }
        let new = self.new_user_key(id)?;
        Ok(Sealing {
            kek: combined(&new.key),
            new_user_key: Some(new),
        })
    }

    /// A user's key made by `sealing` and stored by the write's commit: later writes and
    /// reads of the user's secrets use it.
    pub fn stored(&self, new: NewUserKey) {
        self.remember_user(new.user, new.key, new.generation);
    }

    /// A user's key made by `sealing` that could not be stored because the user has one
    /// already (stored by another request, or by another server sharing the database): the
    /// next `sealing` for the user reads that one.
    pub fn lost(&self, new: &NewUserKey) {
        self.users_with_keys.insert(&new.user.0, &new.user.1);
    }

    /// Reads which users have a key in storage, so that a user's first secret needs no read
    /// to learn that the user has none (`UserFilter`). Run once, after `start`, while the
    /// server serves: until it is done every write for a user reads, as it would without it.
    /// Answers how many users it read.
    pub async fn learn_users(&self) -> Result<u64, KeyError> {
        let mut after = None;
        let mut learnt = 0;
        loop {
            let users = self
                .store
                .users_with_keys(after.as_ref(), LEARN_BATCH)
                .await?;
            for (account, user) in &users {
                self.users_with_keys.insert(account, user);
            }
            learnt += users.len() as u64;
            let full = users.len() == LEARN_BATCH as usize;
            match users.into_iter().next_back() {
                Some(last) if full => after = Some(last),
                _ => break,
            }
        }
        self.users_with_keys.learnt();
        Ok(learnt)
    }

    /// As `sealing`, but a user's key that does not exist yet is stored now, on its own.
    pub async fn sealing_key(
        &self,
        namespace: &Namespace,
        scope: &Scope,
    ) -> Result<Arc<Kek>, KeyError> {
        let sealing = self.sealing(namespace, scope).await?;
        let Some(new) = sealing.new_user_key else {
            return Ok(sealing.kek);
        };
        let owner = new.stored.owner.clone();
        // Now cached, whether this key or one another request or server stored first.
        self.store_user_key(new).await?;
        match self.sealing(namespace, scope).await? {
            Sealing {
                kek,
                new_user_key: None,
            } => Ok(kek),
            Sealing { .. } => Err(KeyError::Store(StoreError::Internal(format!(
                "the key stored for {owner:?} is not read back"
            )))),
        }
    }

    /// Opens a payload of `namespace` in `scope` sealed in either format; `aad` is the
    /// secret's identity.
    pub async fn open_payload(
        &self,
        namespace: &Namespace,
        scope: &Scope,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let opened = match envelope_v2::sealed_format(sealed) {
            Ok(SealedFormat::V1 { .. }) => self.ring().open_v1(aad, sealed),
            Ok(SealedFormat::V2 {
                kek_version,
                per_user,
            }) => {
                let kek = self
                    .opening_key(namespace, scope, kek_version, per_user)
                    .await?;
                envelope_v2::open(&kek, aad, sealed)
            }
            Err(e) => Err(e),
        };
        opened.map_err(|source| KeyError::Crypto {
            what: "opening a payload",
            source,
        })
    }

    /// The key a value sealed under `version` of the namespace key opens with: that version,
    /// or (`per_user`) that version combined with the key of the user whose secret it is.
    async fn opening_key(
        &self,
        namespace: &Namespace,
        scope: &Scope,
        version: u32,
        per_user: bool,
    ) -> Result<Arc<Kek>, KeyError> {
        let keys = self.namespace_keys(namespace, Some(version)).await?;
        let Some(key) = keys.versions.get(&version) else {
            return Err(KeyError::Crypto {
                what: "opening a payload",
                source: CryptoError::UnknownKeyVersion(version),
            });
        };
        match (per_user, scope) {
            (false, _) => Ok(Arc::clone(&key.kek)),
            (true, Scope::User(user)) => self.user_kek(namespace, user, version, &key.key).await,
            // A user's key sealed what is now an account's secret: moved from another row.
            (true, Scope::Account) => Err(KeyError::Crypto {
                what: "opening a payload",
                source: CryptoError::Tampered,
            }),
        }
    }

    /// `version` of the namespace key (`namespace_key`) combined with `user`'s own key, which
    /// is made now if the user has none.
    async fn user_kek(
        &self,
        namespace: &Namespace,
        user: &UserId,
        version: u32,
        namespace_key: &SecretKey,
    ) -> Result<Arc<Kek>, KeyError> {
        let id = (namespace.account.clone(), user.clone());
        let user_key = match self.user_key(&id).await? {
            Some(key) => key,
            None => self.store_user_key(self.new_user_key(id)?).await?,
        };
        Ok(Arc::new(Kek::for_user(
            version,
            namespace_key,
            &user_key.key,
            &user_context(namespace, user),
        )))
    }

    /// The user's key from the cache, else from storage; `None` if the user has none.
    async fn user_key(&self, id: &(AccountId, UserId)) -> Result<Option<Arc<UserKey>>, KeyError> {
        let cached = self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|key| self.fresh(key.loaded, key.generation))
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        // Read before the key: a removal between the two makes the next use read it again.
        let generation = self.store.destroyed_generation();
        let Some(stored) = self.store.keys_of(&user_owner(id)).await?.pop() else {
            return Ok(None);
        };
        let key = unwrap(&self.ring(), &stored)?;
        Ok(Some(self.remember_user(id.clone(), key, generation)))
    }

    /// A new key for the user `id`, made and wrapped but not stored.
    fn new_user_key(&self, id: (AccountId, UserId)) -> Result<NewUserKey, KeyError> {
        // Read before the key is stored: a removal after it makes the next use read it again.
        let generation = self.store.destroyed_generation();
        let owner = user_owner(&id);
        let key = SecretKey::generate().map_err(|source| KeyError::Crypto {
            what: "making a user's key",
            source,
        })?;
        let (root, wrapped) = self
            .ring()
            .wrap(&key_aad(&owner, 1), &key)
            .map_err(|source| KeyError::Crypto {
                what: "wrapping a new key",
                source,
            })?;
        Ok(NewUserKey {
            stored: StoredKey {
                owner,
                version: 1,
                root,
                wrapped,
                created: self.clock.now(),
            },
            key,
            user: id,
            generation,
        })
    }

    /// Stores `new` on its own, not with a write, unless the user has a key already (stored
    /// first by another request or server), and answers the user's key: `new`'s or that one.
    async fn store_user_key(&self, new: NewUserKey) -> Result<Arc<UserKey>, KeyError> {
        let stored = self.store.add_key(new.stored.clone()).await?;
        let key = match stored == new.stored {
            true => new.key,
            false => unwrap(&self.ring(), &stored)?,
        };
        Ok(self.remember_user(new.user, key, new.generation))
    }

    fn remember_user(
        &self,
        id: (AccountId, UserId),
        key: SecretKey,
        generation: u64,
    ) -> Arc<UserKey> {
        let key = Arc::new(UserKey {
            key,
            loaded: Instant::now(),
            generation,
        });
        self.users_with_keys.insert(&id.0, &id.1);
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if users.len() >= CACHED_NAMESPACES {
            users.clear();
        }
        users.insert(id, Arc::clone(&key));
        key
    }

    /// Held by a write of a secret from before it takes its sealing key until its row is
    /// stored, so that no removal (`removing`) comes between the two on this server.
    pub async fn writing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.writes.read().await
    }

    /// Held around a removal and the `forget` after it: waits for the writes that took a key
    /// before it to be stored (the removal then takes their rows too), and holds back the ones
    /// after it until the destroyed keys are forgotten (they make new keys).
    pub async fn removing(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.writes.write().await
    }

    /// Drops every key this server holds unwrapped, after a removal destroyed some of them:
    /// nothing more is sealed under those here (a later write to the same namespace or user
    /// makes new keys), and the others are unwrapped again when next needed (removals are
    /// rare; which namespaces an installation's removal took is not known here). Other
    /// servers sharing the database drop theirs when the removal's notification reaches them
    /// (`KeyStore::destroyed_generation`), or within `RELOAD_AFTER` at the latest.
    pub fn forget(&self) {
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The namespace's keys from the cache, read again from storage when they are older than
    /// `RELOAD_AFTER` or lack `version`.
    async fn namespace_keys(
        &self,
        namespace: &Namespace,
        version: Option<u32>,
    ) -> Result<Arc<NamespaceKeys>, KeyError> {
        let cached = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned();
        if let Some(keys) = cached {
            let fresh = self.fresh(keys.loaded, keys.generation) && !keys.versions.is_empty();
            if fresh && version.is_none_or(|v| keys.versions.contains_key(&v)) {
                return Ok(keys);
            }
        }
        self.reload(namespace).await
    }

    /// Whether keys read at `loaded`, under `generation`, may still be used: younger than
    /// `RELOAD_AFTER`, and no removal through another server destroyed keys since.
    fn fresh(&self, loaded: Instant, generation: u64) -> bool {
        loaded.elapsed() < RELOAD_AFTER && generation == self.store.destroyed_generation()
    }

    async fn reload(&self, namespace: &Namespace) -> Result<Arc<NamespaceKeys>, KeyError> {
        let owner = KeyOwner::Namespace(namespace.clone());
        // Read before the keys: a removal between the two makes the next use read them again.
        let generation = self.store.destroyed_generation();
        let stored = self.store.keys_of(&owner).await?;
        let ring = self.ring();
        let mut versions = BTreeMap::new();
        for key in &stored {
            let secret = unwrap(&ring, key)?;
            let kek = Arc::new(Kek::new(key.version, &secret));
            versions.insert(key.version, NamespaceKey { kek, key: secret });
        }
        let keys = Arc::new(NamespaceKeys {
            versions,
            loaded: Instant::now(),
            generation,
        });
        let mut cache = self
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_NAMESPACES {
            cache.clear();
        }
        cache.insert(namespace.clone(), Arc::clone(&keys));
        Ok(keys)
    }

    /// How many stored keys each root key version wraps, the ones given to this server first
    /// (the active one at the top).
    pub async fn status(&self) -> Result<Vec<RootStatus>, KeyError> {
        let ring = self.ring();
        let uses = self.store.keys_by_root().await?;
        let active = ring.active().id();
        let mut out: Vec<RootStatus> = ring
            .ids()
            .into_iter()
            .map(|id| RootStatus {
                id,
                source: ring.get(id).map(|p| p.describe()),
                active: id == active,
                keys: uses.iter().find(|u| u.root == id).map_or(0, |u| u.keys),
            })
            .collect();
        for used in uses {
            if !out.iter().any(|s| s.id == used.root) {
                out.push(RootStatus {
                    id: used.root,
                    source: None,
                    active: false,
                    keys: used.keys,
                });
            }
        }
        Ok(out)
    }

    /// Up to `limit` namespaces holding secrets, after `after` (for rotating every one).
    pub async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, KeyError> {
        Ok(self.store.namespaces(after, limit).await?)
    }

    /// How many secrets are still sealed in format 1, which only the root key that sealed them
    /// opens: that root key cannot be retired before a namespace rotation has moved them. It
    /// reads every namespace's secrets that are not in format 2.
    pub async fn legacy_secrets(&self) -> Result<u64, KeyError> {
        let mut count = 0;
        let mut after_ns: Option<Namespace> = None;
        loop {
            let namespaces = self.store.namespaces(after_ns.as_ref(), 100).await?;
            let Some(last) = namespaces.last().cloned() else {
                return Ok(count);
            };
            for namespace in &namespaces {
                let mut after = None;
                loop {
                    let batch = self
                        .store
                        .stale_sealed(namespace, [&[2], &[3]], after.as_ref(), 1000)
                        .await?;
                    let Some(last) = batch.last() else { break };
                    after = Some(last.id.clone());
                    // A user's secret still under the namespace key alone is in format 2.
                    count += batch
                        .iter()
                        .filter(|s| {
                            matches!(
                                envelope_v2::sealed_format(&s.sealed),
                                Ok(SealedFormat::V1 { .. })
                            )
                        })
                        .count() as u64;
                }
            }
            after_ns = Some(last);
        }
    }

    /// Re-wraps every stored key that another root key version wraps under the active one.
    /// Keys themselves do not change, so every request keeps being served as before; a key
    /// re-wrapped meanwhile by another server is left as it is.
    pub async fn rotate_root(&self) -> Result<Rotated, KeyError> {
        let ring = self.ring();
        let active = ring.active().id();
        let mut done = Rotated::default();
        loop {
            let batch = self.store.keys_not_under(active, 100).await?;
            if batch.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for key in batch {
                let secret = unwrap(&ring, &key)?;
                let (root, wrapped) = ring
                    .wrap(&key_aad(&key.owner, key.version), &secret)
                    .map_err(|source| KeyError::Crypto {
                        what: "re-wrapping a stored key",
                        source,
                    })?;
                if self.store.rewrap_key(&key, (root, wrapped)).await? {
                    done.rewrapped += 1;
                    progressed = true;
                }
            }
            if !progressed {
                // Every key of the batch changed under us (another server rotates too): read
                // the next batch, which no longer holds them once that rotation is done.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Rotates `namespace`'s key: makes a new version, seals new payloads under it from now on,
    /// and re-wraps every existing payload's data key under it in batches (a payload still in
    /// format 1 is sealed again in format 2). The payloads' ciphertexts do not change and no
    /// request waits for the rotation. `aad` gives a stored secret's identity, as it was sealed
    /// with.
    pub async fn rotate_namespace(
        &self,
        namespace: &Namespace,
        aad: impl Fn(&SealedSecret) -> Vec<u8>,
    ) -> Result<Rotated, KeyError> {
        let old = self.namespace_keys(namespace, None).await?;
        let version = old.versions.keys().next_back().map_or(1, |v| v + 1);
        let secret = SecretKey::generate().map_err(|source| KeyError::Crypto {
            what: "making a namespace key",
            source,
        })?;
        let owner = KeyOwner::Namespace(namespace.clone());
        let ring = self.ring();
        let (root, wrapped) = ring
            .wrap(&key_aad(&owner, version), &secret)
            .map_err(|source| KeyError::Crypto {
                what: "wrapping a namespace key",
                source,
            })?;
        let stored = self
            .store
            .add_key(StoredKey {
                owner,
                version,
                root,
                wrapped,
                created: self.clock.now(),
            })
            .await?;
        // Another rotation may have made this version first; use the stored one.
        let keys = self.reload(namespace).await?;
        if !keys.versions.contains_key(&stored.version) {
            return Err(KeyError::Store(StoreError::Internal(
                "a new key version is not read back".into(),
            )));
        }
        let mut done = Rotated {
            version: stored.version,
            ..Rotated::default()
        };
        self.reseal_all(namespace, &keys, stored.version, &aad, &mut done)
            .await?;
        // Servers sharing the database seal under the old version until their cache is
        // reloaded; a second pass after that moves what they wrote meanwhile.
        if self.store.shared() {
            tokio::time::sleep(RELOAD_AFTER + Duration::from_secs(1)).await;
            self.reseal_all(namespace, &keys, stored.version, &aad, &mut done)
                .await?;
        }
        Ok(done)
    }

    /// Re-wraps every payload of `namespace` not yet under `version` of its key: an account's
    /// secret under that version, a user's under that version combined with the user's key (a
    /// user's secret sealed under the namespace key alone, before users had keys, moves to
    /// it).
    async fn reseal_all(
        &self,
        namespace: &Namespace,
        keys: &NamespaceKeys,
        version: u32,
        aad: &impl Fn(&SealedSecret) -> Vec<u8>,
        done: &mut Rotated,
    ) -> Result<(), KeyError> {
        let Some(new) = keys.versions.get(&version) else {
            return Err(KeyError::Crypto {
                what: "re-wrapping a payload",
                source: CryptoError::UnknownKeyVersion(version),
            });
        };
        let current = envelope_v2::header(version, false);
        let current_user = envelope_v2::header(version, true);
        let mut after = None;
        loop {
            let batch = self
                .store
                .stale_sealed(
                    namespace,
                    [&current, &current_user],
                    after.as_ref(),
                    RESEAL_BATCH,
                )
                .await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            after = Some(last.id.clone());
            let mut reseals = Vec::with_capacity(batch.len());
            let mut resealed = 0;
            for stored in batch {
                let aad = aad(&stored);
                let scope = &stored.address.scope;
                let target = match scope {
                    Scope::Account => Arc::clone(&new.kek),
                    Scope::User(user) => self.user_kek(namespace, user, version, &new.key).await?,
                };
                let to = match envelope_v2::sealed_format(&stored.sealed) {
                    Ok(SealedFormat::V2 {
                        kek_version,
                        per_user,
                    }) => {
                        let old = self
                            .opening_key(namespace, scope, kek_version, per_user)
                            .await
                            .map_err(|e| match e {
                                KeyError::Crypto { source, .. } => KeyError::Crypto {
                                    what: "re-wrapping a payload",
                                    source,
                                },
                                other => other,
                            })?;
                        envelope_v2::rewrap(&old, &target, &aad, &stored.sealed)
                    }
                    Ok(SealedFormat::V1 { .. }) => {
                        resealed += 1;
                        self.ring()
                            .open_v1(&aad, &stored.sealed)
                            .and_then(|plain| envelope_v2::seal(&target, &aad, &plain))
                    }
                    Err(e) => Err(e),
                }
                .map_err(|source| KeyError::Crypto {
                    what: "re-wrapping a payload",
                    source,
                })?;
                reseals.push(Reseal {
                    id: stored.id,
                    from: stored.sealed,
                    to,
                });
            }
            let applied = self.store.reseal(reseals).await?;
            done.rewrapped += applied;
            done.resealed += resealed.min(applied);
        }
    }
}

fn missing_root(ring: &RootKeyring, needed: KeyId) -> KeyError {
    let given = ring
        .ids()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    KeyError::MissingRoot {
        needed,
        given: given.join(", "),
    }
}

/// Unwraps a stored key with the root key version it names.
fn unwrap(ring: &RootKeyring, key: &StoredKey) -> Result<SecretKey, KeyError> {
    if ring.get(key.root).is_none() {
        return Err(missing_root(ring, key.root));
    }
    ring.unwrap(key.root, &key_aad(&key.owner, key.version), &key.wrapped)
        .map_err(|source| match source {
            CryptoError::Tampered => KeyError::WrongRoot { root: key.root },
            source => KeyError::Crypto {
                what: "unwrapping a stored key",
                source,
            },
        })
}

/// Stores `key` as `owner`'s first version unless it has one, and answers the one stored,
/// unwrapped.
async fn first_key(
    ring: &RootKeyring,
    store: &dyn KeyStore,
    owner: KeyOwner,
    key: SecretKey,
    now: i64,
) -> Result<SecretKey, KeyError> {
    if let Some(existing) = store.keys_of(&owner).await?.into_iter().next_back() {
        return unwrap(ring, &existing);
    }
    let (root, wrapped) =
        ring.wrap(&key_aad(&owner, 1), &key)
            .map_err(|source| KeyError::Crypto {
                what: "wrapping a new key",
                source,
            })?;
    let stored = store
        .add_key(StoredKey {
            owner,
            version: 1,
            root,
            wrapped,
            created: now,
        })
        .await?;
    unwrap(ring, &stored)
}

/// A data directory made before the hierarchy: its format-1 root key check must open with the
/// ring (else the ring is wrong for this data), and the digest key it used, derived from that
/// root key, is carried over. `None` for data made under the hierarchy or none at all.
async fn legacy_digest(
    ring: &RootKeyring,
    meta: &dyn MetaStore,
) -> Result<Option<SecretKey>, KeyError> {
    let Some(check) = meta.meta_get(LEGACY_CHECK).await? else {
        return Ok(None);
    };
    let root = match envelope_v2::sealed_format(&check) {
        Ok(SealedFormat::V1 { root }) => root,
        _ => {
            return Err(KeyError::Store(StoreError::Internal(
                "the stored root key check is not in format 1".into(),
            )))
        }
    };
    let Some(provider) = ring.get(root) else {
        return Err(missing_root(ring, root));
    };
    match provider.open_v1(LEGACY_CHECK_AAD, &check) {
        Ok(plain) if plain.as_slice() == LEGACY_CHECK_PLAINTEXT => {}
        _ => return Err(KeyError::WrongRoot { root }),
    }
    Ok(provider
        .legacy_subkey(DigestKey::LEGACY_INFO)
        .map(SecretKey::from))
}
