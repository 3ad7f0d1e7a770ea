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
        operation: operation.into(),
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
