//! `KeyStore`: keys are kept per owner (a namespace, the service, the digest key) and version,
//! each exactly as given; the first key stored for a version is the one every later add of it
//! answers, however many race; a re-wrap is a compare-and-set; and the walks of a rotation
//! (keys under other root key versions, secrets not under a namespace's current key, the
//! namespaces that hold secrets) answer exactly what they should, in a stable order, page by
//! page. A reseal applies only where the sealed bytes are still what the rotation read, and
//! what it wrote is what every later find answers.

use std::collections::BTreeSet;
use std::sync::Arc;

use secretstore_core::{
    AccountId, KeyOwner, Mode, Namespace, Reseal, RootUse, Scope, SealedSecret, SecretId, Store,
    StoreError, StoredKey, UserId, Write, Written,
};
use secretstore_crypto::KeyId;
use tokio::task::JoinSet;

use crate::fixtures::*;

/// Root key versions, with zero and high bytes (which text would not keep), in an order of
/// their bytes that is not the order of their names.
const ROOT_A: KeyId = KeyId([0xa0, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0xff]);
const ROOT_B: KeyId = KeyId([0xb0, 0, 0, 0, 0, 0, 0, 0]);
const ROOT_C: KeyId = KeyId([0x0c, 0xff, 0xfe, 0x00, 0x7f, 0x80, 0x01, 0x02]);
/// A root key version that wraps nothing.
const ROOT_UNUSED: KeyId = KeyId([0x11; 8]);

fn namespace_owner(app: &str, account: &str, mode: Mode) -> KeyOwner {
    KeyOwner::Namespace(namespace(app, account, mode))
}

/// The home namespace's key owner.
pub(crate) fn home_owner() -> KeyOwner {
    KeyOwner::Namespace(home())
}

/// The owner of the namespace that differs from home only in its mode.
fn live_owner() -> KeyOwner {
    KeyOwner::Namespace(Namespace {
        mode: Mode::Live,
        ..home()
    })
}

/// A key of `owner`, made at an instant of its own for each version.
fn key(owner: &KeyOwner, version: u32, root: KeyId, wrapped: &[u8]) -> StoredKey {
    StoredKey {
        owner: owner.clone(),
        version,
        root,
        wrapped: wrapped.to_vec(),
        created: NOW + i64::from(version),
    }
}

async fn add_ok(store: &Arc<dyn Store>, key: &StoredKey) -> StoredKey {
    match store.add_key(key.clone()).await {
        Ok(stored) => stored,
        Err(e) => panic!("add_key {:?} v{} failed: {e:?}", key.owner, key.version),
    }
}

async fn keys_of_ok(store: &Arc<dyn Store>, owner: &KeyOwner) -> Vec<StoredKey> {
    match store.keys_of(owner).await {
        Ok(keys) => keys,
        Err(e) => panic!("keys_of {owner:?} failed: {e:?}"),
    }
}

async fn not_under_ok(store: &Arc<dyn Store>, root: KeyId, limit: u32) -> Vec<StoredKey> {
    match store.keys_not_under(root, limit).await {
        Ok(keys) => keys,
        Err(e) => panic!("keys_not_under {root} limit {limit} failed: {e:?}"),
    }
}

async fn rewrap_ok(store: &Arc<dyn Store>, key: &StoredKey, root: KeyId, wrapped: &[u8]) -> bool {
    match store.rewrap_key(key, (root, wrapped.to_vec())).await {
        Ok(done) => done,
        Err(e) => panic!("rewrap_key {:?} v{} failed: {e:?}", key.owner, key.version),
    }
}

/// Keys in one order whatever order they came in, to compare as sets.
fn sorted(mut keys: Vec<StoredKey>) -> Vec<StoredKey> {
    keys.sort_by(|a, b| (&a.owner, a.version).cmp(&(&b.owner, b.version)));
    keys
}

/// Every byte value, so that no backend may keep wrapped keys as text.
fn every_byte() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

/// Each version of an owner's key comes back as it was given, oldest first (whatever order they
/// were added in); owners of every kind are apart, and so are two namespaces that differ only
/// in their mode.
pub async fn keys_are_kept_per_owner_oldest_first(store: Arc<dyn Store>) {
    let (home, live) = (home_owner(), live_owner());
    let home_keys = [
        key(&home, 1, ROOT_A, &every_byte()),
        key(&home, 2, ROOT_B, b"\x00home v2\xff"),
        key(&home, 3, ROOT_C, b"home v3"),
    ];
    let live_key = key(&live, 1, ROOT_B, b"live v1");
    let service_key = key(&KeyOwner::Service, 1, ROOT_C, b"service v1");
    let digest_keys = [
        key(&KeyOwner::Digest, 1, ROOT_A, b"digest v1"),
        key(&KeyOwner::Digest, u32::MAX, ROOT_B, b"digest, last version"),
    ];
    assert!(
        keys_of_ok(&store, &home).await.is_empty(),
        "a fresh store holds no keys"
    );
    // Out of order, and interleaved with other owners'.
    for added in [
        &home_keys[2],
        &digest_keys[1],
        &home_keys[0],
        &live_key,
        &service_key,
        &home_keys[1],
        &digest_keys[0],
    ] {
        assert_eq!(
            &add_ok(&store, added).await,
            added,
            "a first add answers the key"
        );
    }
    assert_eq!(keys_of_ok(&store, &home).await, home_keys.to_vec());
    assert_eq!(
        keys_of_ok(&store, &live).await,
        vec![live_key],
        "the mode is part of the owner"
    );
    assert_eq!(
        keys_of_ok(&store, &KeyOwner::Service).await,
        vec![service_key]
    );
    assert_eq!(
        keys_of_ok(&store, &KeyOwner::Digest).await,
        digest_keys.to_vec()
    );
    for elsewhere in [
        namespace_owner("app_conformance", "acct_2", Mode::Test),
        namespace_owner("app_other", "acct_1", Mode::Test),
    ] {
        assert!(keys_of_ok(&store, &elsewhere).await.is_empty());
    }
}

/// Adding a version its owner has answers the key stored first and changes nothing: the loser
/// of a race uses the winner's key.
pub async fn add_key_of_a_stored_version_answers_the_first(store: Arc<dyn Store>) {
    let home = home_owner();
    let first = key(&home, 1, ROOT_A, b"first");
    assert_eq!(add_ok(&store, &first).await, first);
    let mut second = key(&home, 1, ROOT_B, b"second");
    second.created = NOW + 100;
    assert_eq!(
        add_ok(&store, &second).await,
        first,
        "the key stored first is answered"
    );
    assert_eq!(keys_of_ok(&store, &home).await, vec![first.clone()]);
    // The same version of another owner is another key.
    let live = key(&live_owner(), 1, ROOT_B, b"second");
    assert_eq!(add_ok(&store, &live).await, live);
    assert_eq!(keys_of_ok(&store, &home).await, vec![first]);
}

/// 32 adds of one owner's first key at once, each with other wrapped bytes: one is stored, and
/// every add answers it.
pub async fn concurrent_adds_of_one_version_keep_one_key(store: Arc<dyn Store>) {
    let stores = [Arc::clone(&store)];
    let winner = add_at_once(&stores, 32).await;
    assert_eq!(keys_of_ok(&store, &home_owner()).await, vec![winner]);
}

/// The owner of the key of `user`'s secrets on the home account.
fn user_owner(user: &str) -> KeyOwner {
    KeyOwner::User {
        account: home().account,
        user: UserId::parse(user).expect("fixture user id"),
    }
}

/// A user's first key stored with the first secret sealed under it (`Write::AddKey`): stored
/// together, or, when the user has that key version already, neither, with `AlreadyExists`.
pub async fn a_commit_adds_a_new_key_with_its_writes_or_nothing(store: Arc<dyn Store>) {
    let owner = user_owner("usr_first");
    let scope = Scope::User(UserId::parse("usr_first").expect("fixture user id"));
    let first = key(&owner, 1, ROOT_A, b"first");
    let a = address(&home(), &scope, "a");
    let written = store
        .commit(vec![
            Write::AddKey(first.clone()),
            Write::PutSecret(put_request(&a, NOW, None, ROOMY, "a")),
        ])
        .await
        .expect("commit");
    let [Written::AddKey(added), Written::PutSecret(put)] = written.as_slice() else {
        panic!("answers out of order: {written:?}");
    };
    assert_eq!(*added, first);
    assert_eq!(get_ok(&store, &a, NOW).await.as_ref(), Some(put));

    let second = key(&owner, 1, ROOT_B, b"second");
    let b = address(&home(), &scope, "b");
    let lost = store
        .commit(vec![
            Write::AddKey(second),
            Write::PutSecret(put_request(&b, NOW, None, ROOMY, "b")),
        ])
        .await;
    assert!(
        matches!(lost, Err(StoreError::AlreadyExists(_))),
        "{lost:?}"
    );
    assert_eq!(
        get_ok(&store, &b, NOW).await,
        None,
        "the put went with the key"
    );
    assert_eq!(keys_of_ok(&store, &owner).await, vec![first.clone()]);

    // The next version, and the same version of another user, are keys of their own.
    let next = key(&owner, 2, ROOT_B, b"next");
    let other = key(&user_owner("usr_other"), 1, ROOT_B, b"other");
    let written = store
        .commit(vec![
            Write::AddKey(next.clone()),
            Write::AddKey(other.clone()),
        ])
        .await
        .expect("commit");
    assert_eq!(
        written,
        vec![
            Written::AddKey(next.clone()),
            Written::AddKey(other.clone())
        ]
    );
    assert_eq!(keys_of_ok(&store, &owner).await, vec![first, next]);
    assert_eq!(keys_of_ok(&store, &other.owner).await, vec![other]);
}

/// `count` commits at once, spread over `stores`, each adding `user`'s key version 1 (its own
/// wrapped bytes) with a secret of its own sealed under it: exactly one commits, the others
/// fail with `AlreadyExists` and store nothing. Checks that, and returns the key stored.
pub(crate) async fn commit_new_keys_at_once(
    stores: &[Arc<dyn Store>],
    user: &str,
    count: usize,
) -> StoredKey {
    let owner = user_owner(user);
    let scope = Scope::User(UserId::parse(user).expect("fixture user id"));
    let mut tasks = JoinSet::new();
    for n in 0..count {
        let store = Arc::clone(&stores[n % stores.len()]);
        let candidate = key(&owner, 1, ROOT_A, format!("candidate {n}").as_bytes());
        let at = address(&home(), &scope, &format!("secret-{n}"));
        tasks.spawn(async move {
            let put = put_request(&at, NOW, None, ROOMY, "sealed under the candidate");
            let outcome = store
                .commit(vec![
                    Write::AddKey(candidate.clone()),
                    Write::PutSecret(put),
                ])
                .await;
            (candidate, at, outcome)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (candidate, at, outcome) = joined.expect("task");
        match outcome {
            Ok(_) => winners.push((candidate, at)),
            Err(StoreError::AlreadyExists(_)) => {
                for store in stores {
                    assert_eq!(get_ok(store, &at, NOW).await, None, "a loser's put stayed");
                }
            }
            Err(e) => panic!("commit failed otherwise: {e:?}"),
        }
    }
    let [(winner, at)] = &winners[..] else {
        panic!("{} commits stored the first key, not one", winners.len());
    };
    for store in stores {
        assert!(get_ok(store, at, NOW).await.is_some(), "the winner's put");
        assert_eq!(keys_of_ok(store, &owner).await, vec![winner.clone()]);
    }
    winner.clone()
}

/// 16 commits of one user's first key at once: one stores its key and secret, no other does.
pub async fn concurrent_commits_of_a_new_key_keep_one(store: Arc<dyn Store>) {
    commit_new_keys_at_once(&[store], "usr_racing", 16).await;
}

/// `count` adds of the home namespace's key version 1 at once, spread over `stores`, each with
/// its own wrapped bytes; checks they all answer one of them, and returns it.
pub(crate) async fn add_at_once(stores: &[Arc<dyn Store>], count: usize) -> StoredKey {
    let candidates: Vec<StoredKey> = (0..count)
        .map(|n| {
            let root = [ROOT_A, ROOT_B, ROOT_C][n % 3];
            key(&home_owner(), 1, root, format!("candidate {n}").as_bytes())
        })
        .collect();
    let mut tasks = JoinSet::new();
    for (n, candidate) in candidates.iter().enumerate() {
        let store = Arc::clone(&stores[n % stores.len()]);
        let candidate = candidate.clone();
        tasks.spawn(async move { store.add_key(candidate).await });
    }
    let mut answers = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.expect("task").expect("add_key"));
    }
    let winner = answers[0].clone();
    assert!(
        answers.iter().all(|answer| *answer == winner),
        "every add answers the one key stored: {answers:?}"
    );
    assert!(
        candidates.contains(&winner),
        "the key stored is one of those added"
    );
    winner
}

/// Exactly the keys wrapped by other root key versions, every owner's, in an order that does
/// not change between calls, so that `limit` takes a prefix of it.
pub async fn keys_not_under_answers_the_keys_of_other_roots(store: Arc<dyn Store>) {
    let (home, live) = (home_owner(), live_owner());
    let other = namespace_owner("app_other", "acct_1", Mode::Test);
    let keys = [
        key(&home, 1, ROOT_A, b"home v1"),
        key(&home, 2, ROOT_B, b"home v2"),
        key(&live, 1, ROOT_A, b"live v1"),
        key(&KeyOwner::Service, 1, ROOT_C, b"service v1"),
        key(&KeyOwner::Digest, 1, ROOT_B, b"digest v1"),
        key(&other, 1, ROOT_A, b"other v1"),
    ];
    assert!(not_under_ok(&store, ROOT_A, 100).await.is_empty());
    for k in &keys {
        add_ok(&store, k).await;
    }
    for root in [ROOT_A, ROOT_B, ROOT_C, ROOT_UNUSED] {
        let expected: Vec<StoredKey> = keys.iter().filter(|k| k.root != root).cloned().collect();
        let all = not_under_ok(&store, root, 100).await;
        assert_eq!(sorted(all.clone()), sorted(expected), "not under {root}");
        assert_eq!(not_under_ok(&store, root, 100).await, all, "a stable order");
        for limit in 0..=all.len() {
            assert_eq!(
                not_under_ok(&store, root, limit as u32).await,
                all[..limit].to_vec(),
                "not under {root}, limit {limit}"
            );
        }
    }
}

/// A re-wrap changes the root key version and the wrapped bytes of one key (never its version
/// or `created`, nor any other key) if the key is still wrapped as the caller read it; a second
/// re-wrap from what the first replaced answers false and changes nothing.
pub async fn rewrap_key_is_a_compare_and_set(store: Arc<dyn Store>) {
    let home = home_owner();
    let first = add_ok(&store, &key(&home, 1, ROOT_A, b"wrapped by a")).await;
    let second = add_ok(&store, &key(&home, 2, ROOT_A, b"wrapped by a")).await;
    let service = add_ok(&store, &key(&KeyOwner::Service, 1, ROOT_A, b"wrapped by a")).await;
    assert!(rewrap_ok(&store, &first, ROOT_B, b"wrapped by b").await);
    let rewrapped = StoredKey {
        root: ROOT_B,
        wrapped: b"wrapped by b".to_vec(),
        ..first.clone()
    };
    assert_eq!(
        keys_of_ok(&store, &home).await,
        vec![rewrapped.clone(), second.clone()]
    );

    // Whatever no longer matches is refused: the old key (a stale read), the right root with
    // other bytes, the right bytes with another root, a version that does not exist.
    let refused = [
        first.clone(),
        StoredKey {
            wrapped: b"other bytes".to_vec(),
            ..rewrapped.clone()
        },
        StoredKey {
            root: ROOT_C,
            ..rewrapped.clone()
        },
        StoredKey {
            version: 9,
            ..rewrapped.clone()
        },
    ];
    for stale in &refused {
        assert!(
            !rewrap_ok(&store, stale, ROOT_C, b"wrapped by c").await,
            "re-wrap from {stale:?}"
        );
    }
    assert_eq!(
        keys_of_ok(&store, &home).await,
        vec![rewrapped.clone(), second.clone()],
        "a refused re-wrap changes nothing and adds nothing"
    );
    assert!(rewrap_ok(&store, &rewrapped, ROOT_C, b"wrapped by c").await);
    let again = StoredKey {
        root: ROOT_C,
        wrapped: b"wrapped by c".to_vec(),
        ..first
    };
    assert_eq!(keys_of_ok(&store, &home).await, vec![again.clone(), second]);
    assert_eq!(
        keys_of_ok(&store, &KeyOwner::Service).await,
        vec![service.clone()]
    );
    assert_eq!(not_under_ok(&store, ROOT_A, 100).await, vec![again]);
}

async fn users_with_keys_ok(
    store: &Arc<dyn Store>,
    after: Option<&(AccountId, UserId)>,
    limit: u32,
) -> Vec<(AccountId, UserId)> {
    match store.users_with_keys(after, limit).await {
        Ok(found) => found,
        Err(e) => panic!("users_with_keys after {after:?} limit {limit} failed: {e:?}"),
    }
}

/// Every user with a key of their own, once however many versions it has, in (account, user)
/// order byte by byte, paged by `after`; the keys of namespaces and of the server are not
/// users'.
pub async fn users_with_keys_lists_each_user_once(store: Arc<dyn Store>) {
    assert!(users_with_keys_ok(&store, None, 10).await.is_empty());
    let user_owner = |account: &str, user: &str| KeyOwner::User {
        account: AccountId::parse(account).expect("account"),
        user: UserId::parse(user).expect("user"),
    };
    let mut expected = Vec::new();
    for (account, user) in [
        ("acct_2", "usr_a"),
        ("acct_1", "usr_b"),
        ("acct_1", "usr_a.x"),
        ("acct_1", "usr_A"),
        ("acct_1", "usr_a"),
    ] {
        add_ok(&store, &key(&user_owner(account, user), 1, ROOT_A, b"w")).await;
        expected.push((
            AccountId::parse(account).expect("account"),
            UserId::parse(user).expect("user"),
        ));
    }
    expected.sort();
    add_ok(
        &store,
        &key(&user_owner("acct_1", "usr_a"), 2, ROOT_A, b"w2"),
    )
    .await;
    add_ok(&store, &key(&home_owner(), 1, ROOT_A, b"ns")).await;
    add_ok(&store, &key(&KeyOwner::Service, 1, ROOT_A, b"svc")).await;

    assert_eq!(users_with_keys_ok(&store, None, 10).await, expected);
    let first = users_with_keys_ok(&store, None, 2).await;
    assert_eq!(first, expected[..2]);
    let second = users_with_keys_ok(&store, first.last(), 2).await;
    assert_eq!(second, expected[2..4]);
    let third = users_with_keys_ok(&store, second.last(), 2).await;
    assert_eq!(third, expected[4..]);
    assert!(users_with_keys_ok(&store, third.last(), 2).await.is_empty());
}

/// How many keys each root key version wraps, every owner's, as keys are added and re-wrapped;
/// a version that wraps nothing is not listed.
pub async fn keys_by_root_counts_the_keys_of_each_root(store: Arc<dyn Store>) {
    async fn counts(store: &Arc<dyn Store>) -> Vec<(KeyId, u64)> {
        let mut uses: Vec<RootUse> = store.keys_by_root().await.expect("keys_by_root");
        uses.sort_by_key(|u| u.root.0);
        uses.into_iter().map(|u| (u.root, u.keys)).collect()
    }
    assert!(counts(&store).await.is_empty());
    let (home, live) = (home_owner(), live_owner());
    let under_b = add_ok(&store, &key(&home, 1, ROOT_B, b"home v1")).await;
    for k in [
        key(&home, 2, ROOT_A, b"home v2"),
        key(&live, 1, ROOT_A, b"live v1"),
        key(&KeyOwner::Service, 1, ROOT_A, b"service v1"),
        key(&KeyOwner::Digest, 1, ROOT_C, b"digest v1"),
        key(&KeyOwner::Digest, 2, ROOT_C, b"digest v2"),
    ] {
        add_ok(&store, &k).await;
    }
    // Sorted by root id: ROOT_C, ROOT_A, ROOT_B.
    assert_eq!(
        counts(&store).await,
        vec![(ROOT_C, 2), (ROOT_A, 3), (ROOT_B, 1)]
    );
    assert!(rewrap_ok(&store, &under_b, ROOT_C, b"home v1 under c").await);
    assert_eq!(counts(&store).await, vec![(ROOT_C, 3), (ROOT_A, 3)]);
}

/// The sealed header of format 2 under key version `version`.
fn header(version: u32) -> Vec<u8> {
    let mut bytes = vec![2];
    bytes.extend(version.to_be_bytes());
    bytes
}

/// Sealed bytes of format 1 (a root key id after the 1) and of format 2 under a key version,
/// each with a tag after the header.
fn format1(tag: u8) -> Vec<u8> {
    let mut bytes = vec![1, 0xa0, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0xff];
    bytes.push(tag);
    bytes
}

fn format2(version: u32, tag: u8) -> Vec<u8> {
    let mut bytes = header(version);
    bytes.extend([tag, 0, tag]);
    bytes
}

/// The header of format 2 under a key version combined with a user's key, and sealed bytes
/// under it.
fn user_header(version: u32) -> Vec<u8> {
    let mut bytes = header(version);
    bytes[0] = 3;
    bytes
}

fn format2_user(version: u32, tag: u8) -> Vec<u8> {
    let mut bytes = user_header(version);
    bytes.extend([tag, 0, tag]);
    bytes
}

async fn put_sealed(
    store: &Arc<dyn Store>,
    namespace: &Namespace,
    scope: &Scope,
    name: &str,
    sealed: Vec<u8>,
    expires_at: Option<i64>,
) -> SealedSecret {
    let mut request = put_bytes(&address(namespace, scope, name), NOW, sealed);
    request.expires_at = expires_at;
    match store.put(request).await {
        Ok(stored) => stored,
        Err(e) => panic!("put {name} failed: {e:?}"),
    }
}

async fn stale_ok(
    store: &Arc<dyn Store>,
    namespace: &Namespace,
    current: [&[u8]; 2],
    after: Option<&SecretId>,
    limit: u32,
) -> Vec<SealedSecret> {
    match store.stale_sealed(namespace, current, after, limit).await {
        Ok(found) => found,
        Err(e) => panic!("stale_sealed after {after:?} limit {limit} failed: {e:?}"),
    }
}

/// A namespace's secrets whose sealed bytes do not start with the current header of their
/// scope (format 1, an older key version, bytes shorter than the header, and for a user's
/// secret the namespace key's header without the user's key, or for an account's secret the
/// reverse), every scope, expired ones too, each as stored, in id order; paged by `after`.
/// Secrets under their scope's current header and secrets of any other namespace (the same one
/// in the other mode included) are never answered.
pub async fn stale_sealed_answers_what_a_rotation_must_reseal(store: Arc<dyn Store>) {
    let ns = home();
    let (for_account, for_user) = (header(2), user_header(2));
    let current: [&[u8]; 2] = [&for_account, &for_user];
    let user = user("usr_stale");
    let mut stale = vec![
        put_sealed(&store, &ns, &Scope::Account, "format-1", format1(1), None).await,
        put_sealed(&store, &ns, &user, "format-1-user", format1(2), None).await,
        put_sealed(&store, &ns, &Scope::Account, "v1", format2(1, 3), None).await,
        put_sealed(&store, &ns, &user, "v1-user", format2_user(1, 4), None).await,
        put_sealed(&store, &ns, &user, "v2-namespace-key", format2(2, 11), None).await,
        put_sealed(
            &store,
            &ns,
            &Scope::Account,
            "v2-user-key",
            format2_user(2, 12),
            None,
        )
        .await,
        put_sealed(
            &store,
            &ns,
            &Scope::Account,
            "v1-expired",
            format2(1, 5),
            Some(NOW + 1),
        )
        .await,
        put_sealed(&store, &ns, &Scope::Account, "short", vec![2, 0, 0], None).await,
        put_sealed(&store, &ns, &Scope::Account, "v3", format2(3, 6), None).await,
    ];
    for (name, sealed) in [("v2", format2(2, 7)), ("v2-header-only", header(2))] {
        put_sealed(&store, &ns, &Scope::Account, name, sealed, None).await;
    }
    put_sealed(&store, &ns, &user, "v2-user", format2_user(2, 8), None).await;
    put_sealed(
        &store,
        &ns,
        &user,
        "v2-user-header-only",
        user_header(2),
        None,
    )
    .await;
    let live = Namespace {
        mode: Mode::Live,
        ..ns.clone()
    };
    let other_app = namespace("app_other", "acct_1", Mode::Test);
    // Of the live namespace first, then of the other app.
    let mut format1_elsewhere = Vec::new();
    for elsewhere in [&live, &other_app] {
        let v1 = format2(1, 9);
        put_sealed(&store, elsewhere, &Scope::Account, "v1", v1, None).await;
        let old = put_sealed(&store, elsewhere, &user, "format-1", format1(10), None).await;
        format1_elsewhere.push(old);
    }
    assert_eq!(
        get_ok(
            &store,
            &address(&ns, &Scope::Account, "v1-expired"),
            NOW + 1
        )
        .await,
        None,
        "expired"
    );
    stale.sort_by(|a, b| a.id.cmp(&b.id));

    assert_eq!(stale_ok(&store, &ns, current, None, 100).await, stale);
    for limit in [1, 2, 3] {
        let mut pages = Vec::new();
        let mut after: Option<SecretId> = None;
        loop {
            let page = stale_ok(&store, &ns, current, after.as_ref(), limit).await;
            assert!(page.len() <= limit as usize, "limit {limit}");
            match page.last() {
                Some(last) => after = Some(last.id.clone()),
                None => break,
            }
            pages.extend(page);
        }
        assert_eq!(pages, stale, "paged by {limit}");
    }
    let last = stale.last().map(|s| s.id.clone());
    assert!(stale_ok(&store, &ns, current, last.as_ref(), 100)
        .await
        .is_empty());
    assert!(stale_ok(&store, &ns, current, None, 0).await.is_empty());
    let empty = namespace("app_empty", "acct_1", Mode::Test);
    assert!(stale_ok(&store, &empty, current, None, 100)
        .await
        .is_empty());
    // The live namespace's current key is its own: there, only format 1 is stale.
    assert_eq!(
        stale_ok(&store, &live, [&header(1), &user_header(1)], None, 100).await,
        vec![format1_elsewhere[0].clone()]
    );
}

/// A reseal changes a secret's sealed bytes only where they are still its `from` (a put that
/// replaced the secret meanwhile wins), nothing else about it, and answers how many it
/// changed; every find afterwards answers the new bytes, also of a secret found (and so
/// perhaps cached) just before.
pub async fn reseal_applies_only_where_the_sealed_bytes_still_match(store: Arc<dyn Store>) {
    let ns = home();
    let user = user("usr_reseal");
    let first = put_sealed(&store, &ns, &Scope::Account, "first", format1(1), None).await;
    let second = put_sealed(&store, &ns, &user, "second", format2(1, 2), None).await;
    let third = put_sealed(
        &store,
        &ns,
        &Scope::Account,
        "third",
        format2(1, 3),
        Some(NOW + 3600),
    )
    .await;
    for secret in [&first, &second, &third] {
        assert_eq!(
            get_ok(&store, &secret.address, NOW).await.as_ref(),
            Some(secret)
        );
    }
    // A put replaces the second after the rotation read it.
    let replaced = (store
        .put(put_bytes(&second.address, NOW + 1, format2_user(2, 20)))
        .await)
        .expect("replace");
    assert_eq!(replaced.id, second.id);

    let reseal = |secret: &SealedSecret, tag: u8| Reseal {
        id: secret.id.clone(),
        from: secret.sealed.clone(),
        to: format2(2, tag),
    };
    let reseals = vec![
        reseal(&first, 11),
        reseal(&second, 12),
        reseal(&third, 13),
        Reseal {
            id: SecretId::generate(),
            from: format1(4),
            to: format2(2, 14),
        },
    ];
    assert_eq!(
        store.reseal(reseals.clone()).await.expect("reseal"),
        2,
        "the first and the third"
    );
    let resealed_first = SealedSecret {
        sealed: format2(2, 11),
        ..first
    };
    let resealed_third = SealedSecret {
        sealed: format2(2, 13),
        ..third
    };
    for expected in [&resealed_first, &replaced, &resealed_third] {
        assert_eq!(
            get_ok(&store, &expected.address, NOW + 1).await.as_ref(),
            Some(expected),
            "a find after the reseal"
        );
    }
    assert_eq!(
        store.reseal(reseals).await.expect("reseal again"),
        0,
        "nothing is still as it was read"
    );
    assert_eq!(store.reseal(Vec::new()).await.expect("reseal nothing"), 0);
    assert_eq!(
        get_ok(&store, &resealed_first.address, NOW + 1).await,
        Some(resealed_first.clone())
    );
    assert!(
        stale_ok(&store, &ns, [&header(2), &user_header(2)], None, 100)
            .await
            .is_empty(),
        "every secret is under version 2 now"
    );
    let listed = list_ok(&store, &ns, &Scope::Account, 10, None, NOW + 1).await;
    assert_eq!(listed.items, vec![resealed_third, resealed_first]);
}

async fn namespaces_ok(
    store: &Arc<dyn Store>,
    after: Option<&Namespace>,
    limit: u32,
) -> Vec<Namespace> {
    match store.namespaces(after, limit).await {
        Ok(found) => found,
        Err(e) => panic!("namespaces after {after:?} limit {limit} failed: {e:?}"),
    }
}

/// Every namespace that holds a secret (an expired one too: it is still sealed), once, in the
/// order of `Namespace` (app and account byte by byte, then test before live), paged by
/// `after`; one whose secrets were all deleted is not listed.
pub async fn namespaces_lists_each_namespace_with_secrets_once(store: Arc<dyn Store>) {
    assert!(namespaces_ok(&store, None, 10).await.is_empty());
    let held = [
        namespace("app_B", "acct_1", Mode::Test),
        namespace("app_a", "acct_1", Mode::Live),
        namespace("app_a", "acct_1", Mode::Test),
        namespace("app_a", "acct_2", Mode::Test),
        namespace("app_a.x", "acct_1", Mode::Live),
        namespace("app_a-x", "acct_Z", Mode::Test),
    ];
    for (n, ns) in held.iter().enumerate() {
        for scope in [Scope::Account, user("usr_1")] {
            put_sealed(&store, ns, &scope, &format!("s{n}"), format1(1), None).await;
        }
    }
    let expired = namespace("app_c", "acct_1", Mode::Test);
    put_sealed(
        &store,
        &expired,
        &Scope::Account,
        "e",
        format1(2),
        Some(NOW + 1),
    )
    .await;
    let emptied = namespace("app_d", "acct_1", Mode::Test);
    let gone = address(&emptied, &Scope::Account, "gone");
    store
        .put(put_bytes(&gone, NOW, format1(3)))
        .await
        .expect("put");
    assert!(delete_ok(&store, &gone, NOW).await.is_some());

    let expected: Vec<Namespace> = held
        .iter()
        .chain([&expired])
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(namespaces_ok(&store, None, 100).await, expected);
    for limit in [1, 2, 3] {
        let mut pages = Vec::new();
        let mut after: Option<Namespace> = None;
        loop {
            let page = namespaces_ok(&store, after.as_ref(), limit).await;
            assert!(page.len() <= limit as usize, "limit {limit}");
            match page.last() {
                Some(last) => after = Some(last.clone()),
                None => break,
            }
            pages.extend(page);
        }
        assert_eq!(pages, expected, "paged by {limit}");
    }
    assert!(namespaces_ok(&store, None, 0).await.is_empty());
    // `after` need not hold secrets itself.
    let between = namespace("app_a", "acct_1a", Mode::Test);
    let later: Vec<Namespace> = expected
        .iter()
        .filter(|ns| **ns > between)
        .cloned()
        .collect();
    assert_eq!(namespaces_ok(&store, Some(&between), 100).await, later);
}
