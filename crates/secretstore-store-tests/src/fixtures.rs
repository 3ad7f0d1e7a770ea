//! Building blocks for the checks: tenants, keys, put requests whose seal closure records the
//! id it was given and writes it into the sealed bytes (so a check can see which id a stored
//! value was sealed for), and short-hands for the calls that must succeed.

use std::sync::Arc;

use secretstore_core::{
    AccountId, AppId, IdempotencyKey, KeptAnswer, ListCursor, ListQuery, Mode, Namespace,
    PutRequest, Scope, SealedSecret, SecretId, SecretKey, SecretName, Store, StoreError,
    StoredList, UserId,
};
use secretstore_crypto::CryptoError;

/// The instant most checks run at; any fixed value works because time is passed in.
pub const NOW: i64 = 1_700_000_000;

/// A generous maximum, for checks that are not about the maximum.
pub const ROOMY: u32 = 10_000;

pub fn namespace(app: &str, account: &str, mode: Mode) -> Namespace {
    Namespace {
        app: AppId::parse(app).expect("fixture app id"),
        account: AccountId::parse(account).expect("fixture account id"),
        mode,
    }
}

/// The namespace most checks use.
pub fn home() -> Namespace {
    namespace("app_conformance", "acct_1", Mode::Test)
}

pub fn user(id: &str) -> Scope {
    Scope::User(UserId::parse(id).expect("fixture user id"))
}

pub fn key(namespace: &Namespace, scope: &Scope, name: &str) -> SecretKey {
    SecretKey {
        namespace: namespace.clone(),
        scope: scope.clone(),
        name: SecretName::parse(name).expect("fixture name"),
    }
}

/// The sealed bytes the fixtures' seal closure writes: the tag, then the id it was given.
pub fn sealed_bytes(tag: &str, id: &SecretId) -> Vec<u8> {
    format!("{tag}|{id}").into_bytes()
}

/// A put whose seal answers `sealed_bytes(tag, id)`.
pub fn put_request(
    key: &SecretKey,
    now: i64,
    expires_at: Option<i64>,
    max_per_scope: u32,
    tag: &str,
) -> PutRequest {
    let tag = tag.to_owned();
    PutRequest {
        key: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at,
        max_per_scope,
        seal: Box::new(move |id: &SecretId| Ok(sealed_bytes(&tag, id))),
    }
}

/// A put whose seal answers exactly these bytes.
pub fn put_bytes(key: &SecretKey, now: i64, bytes: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at: None,
        max_per_scope: ROOMY,
        seal: Box::new(move |_: &SecretId| Ok(bytes)),
    }
}

/// A put whose seal fails, as a broken key source would.
pub fn failing_put(key: &SecretKey, now: i64, max_per_scope: u32) -> PutRequest {
    PutRequest {
        key: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at: None,
        max_per_scope,
        seal: Box::new(|_: &SecretId| Err(CryptoError::Random)),
    }
}

/// A put that must succeed.
pub async fn put_ok(
    store: &Arc<dyn Store>,
    key: &SecretKey,
    now: i64,
    expires_at: Option<i64>,
    max_per_scope: u32,
    tag: &str,
) -> SealedSecret {
    match store
        .put(put_request(key, now, expires_at, max_per_scope, tag))
        .await
    {
        Ok(stored) => stored,
        Err(e) => panic!("put {:?} ({tag}) failed: {e:?}", key.name),
    }
}

pub async fn get_ok(store: &Arc<dyn Store>, key: &SecretKey, now: i64) -> Option<SealedSecret> {
    match store.get(key, now).await {
        Ok(found) => found,
        Err(e) => panic!("get {:?} failed: {e:?}", key.name),
    }
}

pub async fn delete_ok(store: &Arc<dyn Store>, key: &SecretKey, now: i64) -> Option<SealedSecret> {
    match store.delete(key, now).await {
        Ok(found) => found,
        Err(e) => panic!("delete {:?} failed: {e:?}", key.name),
    }
}

pub fn query(
    namespace: &Namespace,
    scope: &Scope,
    limit: u32,
    cursor: Option<ListCursor>,
    now: i64,
) -> ListQuery {
    ListQuery {
        namespace: namespace.clone(),
        scope: scope.clone(),
        limit,
        cursor,
        now,
    }
}

pub async fn list_ok(
    store: &Arc<dyn Store>,
    namespace: &Namespace,
    scope: &Scope,
    limit: u32,
    cursor: Option<ListCursor>,
    now: i64,
) -> StoredList {
    match store
        .list(&query(namespace, scope, limit, cursor.clone(), now))
        .await
    {
        Ok(page) => page,
        Err(e) => panic!("list {scope:?} limit {limit} cursor {cursor:?} failed: {e:?}"),
    }
}

/// The ids of a whole scope (up to 100), newest first.
pub async fn ids_in(
    store: &Arc<dyn Store>,
    namespace: &Namespace,
    scope: &Scope,
    now: i64,
) -> Vec<SecretId> {
    list_ok(store, namespace, scope, 100, None, now)
        .await
        .items
        .into_iter()
        .map(|s| s.id)
        .collect()
}

pub fn ids(items: &[SealedSecret]) -> Vec<SecretId> {
    items.iter().map(|s| s.id.clone()).collect()
}

pub fn idempotency_key(credential: &str, key: &str) -> IdempotencyKey {
    IdempotencyKey::new(credential.as_bytes(), key)
}

pub fn kept_answer(status: u16, body: &str, created: i64) -> KeptAnswer {
    KeptAnswer {
        fingerprint: [status as u8; 32],
        status,
        sealed_body: body.as_bytes().to_vec(),
        created,
    }
}

/// Asserts the error is `ScopeFull` with this maximum.
pub fn assert_scope_full<T: std::fmt::Debug>(result: Result<T, StoreError>, max: u32) {
    match result {
        Err(StoreError::ScopeFull { max: got }) => assert_eq!(got, max, "ScopeFull's max"),
        other => panic!("expected ScopeFull {{ max: {max} }}, got {other:?}"),
    }
}
