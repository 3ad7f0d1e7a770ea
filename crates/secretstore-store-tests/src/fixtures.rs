//! Building blocks for the checks: tenants, keys, put requests whose seal closure records the
//! id it was given and writes it into the sealed bytes (so a check can see which id a stored
//! value was sealed for), and short-hands for the calls that must succeed.

use std::sync::Arc;

use secretstore_core::{
    AccountId, AppId, ClaimTimes, Completed, CredentialId, IdempotencyClaim, IdempotencyKey,
    KeptAnswer, ListCursor, ListQuery, Mode, Namespace, PutRequest, Scope, SealError, SealedSecret,
    SecretAddress, SecretId, SecretName, Store, StoreError, StoredList, UserId,
};

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

pub fn address(namespace: &Namespace, scope: &Scope, name: &str) -> SecretAddress {
    SecretAddress {
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
    key: &SecretAddress,
    now: i64,
    expires_at: Option<i64>,
    max_per_scope: u32,
    tag: &str,
) -> PutRequest {
    let tag = tag.to_owned();
    PutRequest {
        address: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at,
        max_per_scope,
        seal: Box::new(move |id: &SecretId| Ok(sealed_bytes(&tag, id))),
    }
}

/// A put whose seal answers exactly these bytes.
pub fn put_bytes(key: &SecretAddress, now: i64, bytes: Vec<u8>) -> PutRequest {
    PutRequest {
        address: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at: None,
        max_per_scope: ROOMY,
        seal: Box::new(move |_: &SecretId| Ok(bytes)),
    }
}

/// A put whose seal fails, as a broken key source would.
pub fn failing_put(key: &SecretAddress, now: i64, max_per_scope: u32) -> PutRequest {
    PutRequest {
        address: key.clone(),
        new_id: SecretId::generate(),
        now,
        expires_at: None,
        max_per_scope,
        seal: Box::new(|_: &SecretId| Err(SealError("the random source failed".into()))),
    }
}

/// A put that must succeed.
pub async fn put_ok(
    store: &Arc<dyn Store>,
    key: &SecretAddress,
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

pub async fn get_ok(store: &Arc<dyn Store>, key: &SecretAddress, now: i64) -> Option<SealedSecret> {
    match store.get(key, now).await {
        Ok(found) => found,
        Err(e) => panic!("get {:?} failed: {e:?}", key.name),
    }
}

pub async fn delete_ok(
    store: &Arc<dyn Store>,
    key: &SecretAddress,
    now: i64,
) -> Option<SealedSecret> {
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
    IdempotencyKey::new(CredentialId::of(credential.as_bytes()), key)
}

/// A kept answer whose fingerprint is `tag` 32 times and whose sealed blob is `body`.
pub fn kept_answer(tag: u8, body: &str, created: i64) -> KeptAnswer {
    KeptAnswer {
        fingerprint: [tag; 32],
        sealed: body.as_bytes().to_vec(),
        created,
    }
}

/// A quota no check reaches, for checks that are not about the quota.
pub const NO_QUOTA: u64 = u64::MAX;

/// Claims `key` (it must be free) and completes it with `answer` under `quota`.
pub async fn claim_and_complete(
    store: &Arc<dyn Store>,
    key: &IdempotencyKey,
    answer: KeptAnswer,
    quota: u64,
) -> Completed {
    match store.idempotency_claim(key, at(answer.created)).await {
        Ok(IdempotencyClaim::Claimed) => {}
        other => panic!("claim {:?}: {other:?}", key.key),
    }
    match store.idempotency_complete(key, answer, quota).await {
        Ok(completed) => completed,
        Err(e) => panic!("complete {:?} failed: {e:?}", key.key),
    }
}

/// How long the checks treat a kept answer as fresh and a claim as held; any values would do,
/// since a backend only compares the instants it is given.
pub const KEPT_FOR: i64 = 86_400;
pub const LEASE: i64 = 60;

/// The claim instants at `now` under `KEPT_FOR` and `LEASE`.
pub fn at(now: i64) -> ClaimTimes {
    ClaimTimes {
        now,
        kept_after: now - KEPT_FOR,
        held_after: now - LEASE,
    }
}

/// Asserts the error is `ScopeFull` with this maximum.
pub fn assert_scope_full<T: std::fmt::Debug>(result: Result<T, StoreError>, max: u32) {
    match result {
        Err(StoreError::ScopeFull { max: got }) => assert_eq!(got, max, "ScopeFull's max"),
        other => panic!("expected ScopeFull {{ max: {max} }}, got {other:?}"),
    }
}
