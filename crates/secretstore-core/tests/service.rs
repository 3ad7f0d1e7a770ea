//! `SecretService` on its own, over the in-memory store: what it seals and opens, and what it
//! decides against the clock. (The HTTP and SQLite layers are tested above and below it; these
//! need neither. The key hierarchy has tests of its own, `keys.rs`.)

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use secretstore_core::{
    AccountId, AppId, CoreError, CredentialId, DeleteRequest, FindRequest, InvalidExpiry,
    KeyManager, Limits, ListQuery, ListRequest, ManualClock, Mode, Namespace, Payload, PutRequest,
    RequestContext, Scope, SealedSecret, SecretAddress, SecretName, SecretService, SecretStore,
    SetRequest, StoreError, StoredList,
};
use secretstore_core::{
    AtomicWrites, AuditChain, AuditEvent, AuditSlot, AuditStore, AuditTicket, Write, Written,
};
use secretstore_crypto::{DigestKey, LocalRootKey, RootKey, RootKeyring};
use secretstore_testkit::MemoryStore;

const NOW: i64 = 1_700_000_000;

fn address(name: &str) -> SecretAddress {
    SecretAddress {
        namespace: Namespace {
            app: AppId::parse("app").unwrap(),
            account: AccountId::parse("acct_1").unwrap(),
            mode: Mode::Test,
        },
        scope: Scope::Account,
        name: SecretName::parse(name).unwrap(),
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: None,
        credential: CredentialId::of(b"sk_test_app"),
        audit: None,
    }
}

/// The service over `store`, with a key hierarchy of its own (its keys in a store of their own:
/// a test store need not keep keys).
async fn service<S: SecretStore + AtomicWrites>(
    store: Arc<S>,
) -> (SecretService, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let keys = Arc::new(MemoryStore::new());
    let ring = RootKeyring::new(
        Arc::new(LocalRootKey::new(RootKey::generate().unwrap())),
        vec![],
    )
    .unwrap();
    let keys = KeyManager::start(ring, keys.clone(), &*keys, clock.clone())
        .await
        .unwrap();
    let service = SecretService::new(
        store.clone(),
        store,
        Arc::new(keys),
        clock.clone(),
        Limits::default(),
    );
    (service, clock)
}

fn set(name: &str, payload: &str, expires_at: Option<i64>, reveal: bool) -> SetRequest {
    SetRequest {
        address: address(name),
        payload: Payload::parse(payload).unwrap(),
        expires_at,
        reveal,
    }
}

#[tokio::test]
async fn the_payload_is_sealed_and_opened_only_when_asked() {
    let store = Arc::new(MemoryStore::new());
    let (service, _) = service(store.clone()).await;
    let created = service
        .set(&ctx(), set("k", "s3cr3t", None, false))
        .await
        .unwrap();
    assert!(created.payload.is_none(), "not revealed unless asked");
    let stored = store.get(&address("k"), NOW).await.unwrap().unwrap();
    assert!(
        !stored.sealed.windows(6).any(|w| w == b"s3cr3t"),
        "storage holds the plaintext"
    );
    let plain = FindRequest {
        address: address("k"),
        reveal: false,
    };
    assert!(service.find(&ctx(), plain).await.unwrap().payload.is_none());
    let revealed = FindRequest {
        address: address("k"),
        reveal: true,
    };
    let found = service.find(&ctx(), revealed).await.unwrap();
    assert_eq!(found.payload.unwrap().expose(), "s3cr3t");
    assert_eq!(found.id, created.id);
}

#[tokio::test]
async fn a_replace_keeps_id_and_created_and_an_expiry_is_checked_against_the_clock() {
    let (service, clock) = service(Arc::new(MemoryStore::new())).await;
    let first = service
        .set(&ctx(), set("k", "one", None, false))
        .await
        .unwrap();
    clock.advance(5);
    let second = service
        .set(&ctx(), set("k", "two", Some(NOW + 100), true))
        .await
        .unwrap();
    assert_eq!((second.id, second.created), (first.id, NOW));
    assert_eq!(second.payload.unwrap().expose(), "two");
    for (at, why) in [
        (NOW + 5, InvalidExpiry::NotInFuture),
        (NOW + 5 + 3_155_760_001, InvalidExpiry::TooFar),
    ] {
        match service.set(&ctx(), set("k", "x", Some(at), false)).await {
            Err(CoreError::InvalidExpiry(got)) => assert_eq!(got, why),
            other => panic!("expected {why:?}, got {other:?}"),
        }
    }
    clock.advance(100);
    let gone = DeleteRequest {
        address: address("k"),
        reveal: false,
    };
    assert!(matches!(
        service.delete(&ctx(), gone).await,
        Err(CoreError::NotFound { .. })
    ));
}

/// A store that answers every read of `victim` with the sealed bytes of `attacker`, as an
/// attacker who can write the database would arrange.
#[derive(Debug)]
struct Swapped {
    inner: Arc<MemoryStore>,
}

#[async_trait]
impl SecretStore for Swapped {
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        self.inner.put(request).await
    }
    async fn get(
        &self,
        address_: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let found = self.inner.get(address_, now).await?;
        let other = self.inner.get(&address("attacker"), now).await?;
        Ok(match (found, other) {
            (Some(mut victim), Some(attacker)) if address_.name.as_str() == "victim" => {
                victim.sealed = attacker.sealed;
                Some(victim)
            }
            (found, _) => found,
        })
    }
    async fn delete(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        self.inner.delete(address, now).await
    }
    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError> {
        self.inner.list(query).await
    }
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
    async fn count_secrets(&self) -> Result<u64, StoreError> {
        self.inner.count_secrets().await
    }
}

#[async_trait]
impl AtomicWrites for Swapped {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        self.inner.commit(writes).await
    }
}

/// A context whose audit record goes to a slot drafted with `operation`.
fn audited(operation: &str) -> (RequestContext, Arc<AuditSlot>) {
    let slot = Arc::new(AuditSlot::new(AuditEvent {
        operation: operation.to_owned().into(),
        status: 0,
        ..AuditEvent::default()
    }));
    let chain = Arc::new(AuditChain::new(DigestKey::new(
        &RootKey::generate().unwrap(),
    )));
    let ctx = RequestContext {
        audit: Some(AuditTicket {
            slot: Arc::clone(&slot),
            chain,
        }),
        ..ctx()
    };
    (ctx, slot)
}

#[tokio::test]
async fn a_write_commits_its_audit_record_with_it_and_a_refused_one_none() {
    let store = Arc::new(MemoryStore::new());
    let (service, _) = service(store.clone()).await;
    let (ctx, slot) = audited("secrets.set");
    service.set(&ctx, set("a", "p", None, false)).await.unwrap();
    let written = slot.take_written().expect("written with the set");
    assert_eq!((written.seq, written.event.status), (1, 200));
    assert_eq!(written.event.operation, "secrets.set");
    assert_eq!(store.audit_scan(0, 10).await.unwrap(), vec![written]);

    let (ctx, slot) = audited("secrets.delete");
    let gone = DeleteRequest {
        address: address("never"),
        reveal: false,
    };
    assert!(matches!(
        service.delete(&ctx, gone).await,
        Err(CoreError::NotFound { .. })
    ));
    assert!(
        slot.take_written().is_none(),
        "a 404 is recorded by the caller"
    );
    let past = set("b", "p", Some(NOW - 1), false);
    assert!(service.set(&ctx, past).await.is_err());
    assert_eq!(store.audit_scan(0, 10).await.unwrap().len(), 1);

    let (ctx, slot) = audited("secrets.delete");
    let delete = DeleteRequest {
        address: address("a"),
        reveal: false,
    };
    service.delete(&ctx, delete).await.unwrap();
    assert_eq!(slot.take_written().map(|e| e.seq), Some(2));
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_secret_does_not_open() {
    let (service, _) = service(Arc::new(Swapped {
        inner: Arc::new(MemoryStore::new()),
    }))
    .await;
    service
        .set(&ctx(), set("victim", "victim-payload", None, false))
        .await
        .unwrap();
    service
        .set(&ctx(), set("attacker", "attacker-payload", None, false))
        .await
        .unwrap();
    let find = FindRequest {
        address: address("victim"),
        reveal: true,
    };
    match service.find(&ctx(), find).await {
        Err(CoreError::Unsealable { .. }) => {}
        other => panic!("expected Unsealable, got {other:?}"),
    }
    let list = ListRequest {
        namespace: address("x").namespace,
        scope: Scope::Account,
        limit: 10,
        cursor: None,
        reveal: true,
    };
    // The list reads through `list`, which is not swapped: both open.
    assert_eq!(service.list(&ctx(), list).await.unwrap().items.len(), 2);
}

/// A service whose key hierarchy keeps its keys in `store` (through `keys`, the store itself
/// unless a test stands between them), as a server's does: a user's first key is then stored
/// by the write of the user's first secret.
async fn service_keeping_keys(
    store: &Arc<MemoryStore>,
    keys: Arc<dyn secretstore_core::KeyStore>,
    root: &RootKey,
) -> SecretService {
    service_learning_users(store, keys, root, false).await
}

/// As `service_keeping_keys`; with `learn`, its key hierarchy has first learnt which users
/// have a key (`KeyManager::learn_users`), as a server does once it has started.
async fn service_learning_users(
    store: &Arc<MemoryStore>,
    keys: Arc<dyn secretstore_core::KeyStore>,
    root: &RootKey,
    learn: bool,
) -> SecretService {
    let clock = Arc::new(ManualClock::new(NOW));
    let ring = RootKeyring::new(Arc::new(LocalRootKey::new(root.clone())), vec![]).unwrap();
    let keys = KeyManager::start(ring, keys, &**store, clock.clone())
        .await
        .unwrap();
    if learn {
        keys.learn_users().await.unwrap();
    }
    SecretService::new(
        store.clone(),
        store.clone(),
        Arc::new(keys),
        clock,
        Limits {
            max_secrets_per_scope: 100,
        },
    )
}

fn user_address(user: &str, name: &str) -> SecretAddress {
    SecretAddress {
        scope: Scope::User(secretstore_core::UserId::parse(user).unwrap()),
        ..address(name)
    }
}

/// A set of `user`'s secret `name`, whose payload names it.
fn user_set(user: &str, name: &str) -> SetRequest {
    SetRequest {
        address: user_address(user, name),
        payload: Payload::parse(&format!("payload of {name}")).unwrap(),
        expires_at: None,
        reveal: false,
    }
}

/// `user` has one key in `store`, and each of the user's secrets `names` (set by `user_set`)
/// opens through every one of `services`.
async fn assert_one_key_opens_all(
    store: &MemoryStore,
    user: &str,
    services: &[&SecretService],
    names: &[String],
) {
    let owner = secretstore_core::KeyOwner::User {
        account: AccountId::parse("acct_1").unwrap(),
        user: secretstore_core::UserId::parse(user).unwrap(),
    };
    let keys = secretstore_core::KeyStore::keys_of(store, &owner)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "one key for the user: {keys:?}");
    for name in names {
        for service in services {
            let find = FindRequest {
                address: user_address(user, name),
                reveal: true,
            };
            let found = service.find(&ctx(), find).await.unwrap();
            assert_eq!(
                found.payload.unwrap().expose(),
                format!("payload of {name}")
            );
        }
    }
}

/// First secrets of one new user, written at once through two servers: each may make a key
/// for the user and store it with its secret; one commits first, and the others' commits fail
/// whole and seal again under its key. Every write succeeds, the user has one key, and every
/// secret opens through either server; whether the servers read the user's keys first or,
/// having learnt which users have one, make the key without reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_secrets_of_a_new_user_store_one_key_and_all_open() {
    for learn in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let root = RootKey::generate().unwrap();
        let one = Arc::new(service_learning_users(&store, store.clone(), &root, learn).await);
        let two = Arc::new(service_learning_users(&store, store.clone(), &root, learn).await);
        let names: Vec<String> = (0..24).map(|n| format!("first-{n}")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (n, name) in names.iter().enumerate() {
            let service = if n % 2 == 0 { one.clone() } else { two.clone() };
            let request = user_set("usr_new", name);
            tasks.spawn(async move { service.set(&ctx(), request).await.map(|_| ()) });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap().unwrap();
        }
        assert_one_key_opens_all(&store, "usr_new", &[&one, &two], &names).await;
    }
}

/// The keys of a `MemoryStore`, except that the next `late` reads of a user's keys miss what
/// is stored: as a read made just before another server's commit of the user's first key.
/// Reads of users' keys are counted in `user_reads`.
#[derive(Debug, Default)]
struct LateKeyReads {
    store: Arc<MemoryStore>,
    late: std::sync::atomic::AtomicUsize,
    user_reads: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl secretstore_core::KeyStore for LateKeyReads {
    async fn keys_of(
        &self,
        owner: &secretstore_core::KeyOwner,
    ) -> Result<Vec<secretstore_core::StoredKey>, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let user = matches!(owner, secretstore_core::KeyOwner::User { .. });
        if user {
            self.user_reads.fetch_add(1, SeqCst);
        }
        let late = user
            && self
                .late
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
        match late {
            true => Ok(Vec::new()),
            false => self.store.keys_of(owner).await,
        }
    }
    async fn add_key(
        &self,
        key: secretstore_core::StoredKey,
    ) -> Result<secretstore_core::StoredKey, StoreError> {
        self.store.add_key(key).await
    }
    async fn keys_not_under(
        &self,
        root: secretstore_crypto::KeyId,
        limit: u32,
    ) -> Result<Vec<secretstore_core::StoredKey>, StoreError> {
        self.store.keys_not_under(root, limit).await
    }
    async fn rewrap_key(
        &self,
        key: &secretstore_core::StoredKey,
        to: (secretstore_crypto::KeyId, Vec<u8>),
    ) -> Result<bool, StoreError> {
        self.store.rewrap_key(key, to).await
    }
    async fn keys_by_root(&self) -> Result<Vec<secretstore_core::RootUse>, StoreError> {
        self.store.keys_by_root().await
    }
    async fn stale_sealed(
        &self,
        namespace: &Namespace,
        current: [&[u8]; 2],
        after: Option<&secretstore_core::SecretId>,
        limit: u32,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        self.store
            .stale_sealed(namespace, current, after, limit)
            .await
    }
    async fn reseal(&self, reseals: Vec<secretstore_core::Reseal>) -> Result<u64, StoreError> {
        self.store.reseal(reseals).await
    }
    async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, StoreError> {
        self.store.namespaces(after, limit).await
    }
    async fn users_with_keys(
        &self,
        after: Option<&(AccountId, secretstore_core::UserId)>,
        limit: u32,
    ) -> Result<Vec<(AccountId, secretstore_core::UserId)>, StoreError> {
        self.store.users_with_keys(after, limit).await
    }
}

/// A user's first key made by two servers: the second one's read of the user's keys came
/// before the first one's commit, so it makes a key too, and its commit of that key with the
/// secret fails whole. It then seals again under the key stored, and its write succeeds: both
/// secrets open through both servers, and the user has one key.
#[tokio::test]
async fn a_write_that_lost_the_race_for_a_users_first_key_seals_again_under_the_winner() {
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let one = service_keeping_keys(&store, store.clone(), &root).await;
    let late = Arc::new(LateKeyReads {
        store: store.clone(),
        ..LateKeyReads::default()
    });
    let two = service_keeping_keys(&store, late.clone(), &root).await;
    one.set(&ctx(), user_set("usr_raced", "first"))
        .await
        .unwrap();
    late.late.store(1, std::sync::atomic::Ordering::SeqCst);
    two.set(&ctx(), user_set("usr_raced", "second"))
        .await
        .unwrap();
    assert_eq!(
        late.late.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the late read happened"
    );
    let names = ["first".to_string(), "second".to_string()];
    assert_one_key_opens_all(&store, "usr_raced", &[&one, &two], &names).await;
}

/// A server that has learnt which users have a key makes a new user's first key without
/// reading the user's keys; a user who has one (made before the server started, by another
/// server) is still read, and sealed under that key.
#[tokio::test]
async fn a_server_that_learnt_its_users_reads_no_key_for_a_new_user() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let one = service_keeping_keys(&store, store.clone(), &root).await;
    one.set(&ctx(), user_set("usr_old", "before"))
        .await
        .unwrap();
    let counted = Arc::new(LateKeyReads {
        store: store.clone(),
        ..LateKeyReads::default()
    });
    let two = service_learning_users(&store, counted.clone(), &root, true).await;

    two.set(&ctx(), user_set("usr_new", "first")).await.unwrap();
    assert_eq!(counted.user_reads.load(SeqCst), 0, "no read for a new user");
    two.set(&ctx(), user_set("usr_old", "after")).await.unwrap();
    assert_eq!(
        counted.user_reads.load(SeqCst),
        1,
        "the known user's key is read"
    );

    assert_one_key_opens_all(&store, "usr_new", &[&one, &two], &["first".into()]).await;
    let names = ["before".to_string(), "after".to_string()];
    assert_one_key_opens_all(&store, "usr_old", &[&one, &two], &names).await;
}

/// A user's first key stored by another server after this one learnt its users: this server
/// takes the user for new, makes a key, and its commit fails on the key stored; it then reads
/// that key and seals under it. The write succeeds and the user keeps one key.
#[tokio::test]
async fn a_key_stored_by_another_server_after_learning_is_the_one_sealed_under() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let counted = Arc::new(LateKeyReads {
        store: store.clone(),
        ..LateKeyReads::default()
    });
    let two = service_learning_users(&store, counted.clone(), &root, true).await;
    let one = service_keeping_keys(&store, store.clone(), &root).await;
    one.set(&ctx(), user_set("usr_later", "first"))
        .await
        .unwrap();

    two.set(&ctx(), user_set("usr_later", "second"))
        .await
        .unwrap();
    assert_eq!(
        counted.user_reads.load(SeqCst),
        1,
        "read once, after the commit failed"
    );
    let names = ["first".to_string(), "second".to_string()];
    assert_one_key_opens_all(&store, "usr_later", &[&one, &two], &names).await;
}
