//! `KeyManager`, the key hierarchy's policy, over the in-memory store: the server's own keys are
//! made once and only the right root key opens them; a data directory made before the hierarchy
//! keeps its digest key and its format-1 payloads open; racing first writes into a namespace
//! make one key, even through two servers; a root rotation moves every stored key to the active
//! root version; a namespace rotation re-wraps every payload without changing it.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use secretstore_core::{
    payload_aad, AccountId, AppId, CredentialId, FindRequest, KeyError, KeyManager, Limits,
    ManualClock, MetaStore, Mode, Namespace, Payload, PutRequest, RequestContext, Scope,
    SecretAddress, SecretId, SecretName, SecretService, SecretStore, SetRequest, UserId,
};
use secretstore_crypto::{
    envelope_v2, sealed_format, DigestKey, Envelope, RootKey, RootKeyring, SealedFormat,
};
use secretstore_testkit::MemoryStore;

const NOW: i64 = 1_700_000_000;

fn ring(keys: &[&RootKey]) -> RootKeyring {
    RootKeyring::local(keys[0], &keys[1..]).unwrap()
}

async fn manager(store: &Arc<MemoryStore>, keys: &[&RootKey]) -> Result<KeyManager, KeyError> {
    KeyManager::start(
        ring(keys),
        store.clone(),
        &**store,
        Arc::new(ManualClock::new(NOW)),
    )
    .await
}

fn namespace(account: &str) -> Namespace {
    Namespace {
        app: AppId::parse("app").unwrap(),
        account: AccountId::parse(account).unwrap(),
        mode: Mode::Test,
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: None,
        credential: CredentialId::of(b"sk_test_app"),
        audit: None,
    }
}

fn address(account: &str, name: &str) -> SecretAddress {
    SecretAddress {
        namespace: namespace(account),
        scope: Scope::Account,
        name: SecretName::parse(name).unwrap(),
    }
}

fn service(store: &Arc<MemoryStore>, keys: KeyManager) -> SecretService {
    SecretService::new(
        store.clone(),
        store.clone(),
        Arc::new(keys),
        Arc::new(ManualClock::new(NOW)),
        Limits {
            max_secrets_per_scope: 10_000,
        },
    )
}

async fn set(service: &SecretService, account: &str, name: &str, payload: &str) {
    service
        .set(
            &ctx(),
            SetRequest {
                address: address(account, name),
                payload: Payload::parse(payload).unwrap(),
                expires_at: None,
                reveal: false,
            },
        )
        .await
        .unwrap();
}

async fn find(service: &SecretService, account: &str, name: &str) -> String {
    let found = service
        .find(
            &ctx(),
            FindRequest {
                address: address(account, name),
                reveal: true,
            },
        )
        .await
        .unwrap();
    found.payload.unwrap().expose().to_owned()
}

#[tokio::test]
async fn the_servers_keys_are_made_once_and_only_the_root_key_that_wrapped_them_opens_them() {
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let first = manager(&store, &[&root]).await.unwrap();
    let again = manager(&store, &[&root]).await.unwrap();
    let digest = |keys: &KeyManager| keys.digest_key().digest("test", &[b"x"]);
    assert_eq!(digest(&first), digest(&again), "one digest key, made once");
    let sealed = first.seal_service(b"aad", b"kept answer").unwrap();
    assert_eq!(
        again.open_service(b"aad", &sealed).unwrap().as_slice(),
        b"kept answer"
    );

    let other = RootKey::generate().unwrap();
    match manager(&store, &[&other]).await {
        Err(KeyError::MissingRoot { needed, given }) => {
            assert_eq!(needed, root.id());
            assert_eq!(given, other.id().to_string());
        }
        other => panic!("expected MissingRoot, got {other:?}"),
    }
    // Given as an older version beside a new active one, the right key still opens them.
    manager(&store, &[&other, &root]).await.unwrap();
}

#[tokio::test]
async fn a_directory_made_before_the_hierarchy_keeps_its_digest_key_and_its_payloads() {
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    // What a server before the hierarchy left: its root key check, and a payload in format 1.
    let legacy = Envelope::new(&root);
    store
        .meta_put(
            "root_key_check",
            legacy
                .seal(
                    b"secretstore/root-key-check/v1",
                    b"secretstore opens this data with this root key",
                )
                .unwrap(),
        )
        .await
        .unwrap();
    let keys = manager(&store, &[&root]).await.unwrap();
    assert_eq!(
        keys.digest_key().digest("d", &[b"p"]),
        DigestKey::new(&root).digest("d", &[b"p"]),
        "credential digests and the audit chain keep their key"
    );
    let sealed = legacy.seal(b"identity", b"old payload").unwrap();
    assert!(matches!(
        sealed_format(&sealed),
        Ok(SealedFormat::V1 { .. })
    ));
    let opened = keys
        .open_payload(&namespace("acct_1"), &Scope::Account, b"identity", &sealed)
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), b"old payload");

    // A secret sealed in format 1 before the hierarchy opens through the service, and a
    // namespace rotation seals it again in format 2.
    let legacy_root = root.clone();
    store
        .put(PutRequest {
            address: address("acct_1", "old"),
            new_id: SecretId::generate(),
            now: NOW,
            expires_at: None,
            max_per_scope: 10,
            seal: Box::new(move |id| {
                Envelope::new(&legacy_root)
                    .seal(&payload_aad(&address("acct_1", "old"), id), b"old payload")
                    .map_err(Into::into)
            }),
        })
        .await
        .unwrap();
    let svc = service(&store, keys);
    assert_eq!(find(&svc, "acct_1", "old").await, "old payload");
    let rotated = svc.rotate_namespace(&namespace("acct_1")).await.unwrap();
    assert_eq!((rotated.rewrapped, rotated.resealed), (1, 1));
    assert_eq!(find(&svc, "acct_1", "old").await, "old payload");

    // Another root key is refused, naming the one the data needs.
    let store2 = Arc::new(MemoryStore::new());
    store2
        .meta_put(
            "root_key_check",
            store.meta_get("root_key_check").await.unwrap().unwrap(),
        )
        .await
        .unwrap();
    let other = RootKey::generate().unwrap();
    assert!(matches!(
        manager(&store2, &[&other]).await,
        Err(KeyError::MissingRoot { needed, .. }) if needed == root.id()
    ));
}

#[tokio::test]
async fn racing_first_writes_through_two_servers_make_one_namespace_key() {
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let one = Arc::new(manager(&store, &[&root]).await.unwrap());
    let two = Arc::new(manager(&store, &[&root]).await.unwrap());
    let ns = namespace("acct_race");
    // A user's first secret makes the user's key too: racing, they make one of each.
    let scope = |n: usize| match n % 4 < 2 {
        true => Scope::Account,
        false => Scope::User(UserId::parse("usr_race").unwrap()),
    };
    let mut tasks = Vec::new();
    for n in 0..32 {
        let keys = if n % 2 == 0 { one.clone() } else { two.clone() };
        let (ns, scope) = (ns.clone(), scope(n));
        tasks.push(tokio::spawn(async move {
            let kek = keys.sealing_key(&ns, &scope).await.unwrap();
            envelope_v2::seal(&kek, b"id", format!("payload {n}").as_bytes()).unwrap()
        }));
    }
    for (n, task) in tasks.into_iter().enumerate() {
        let sealed = task.await.unwrap();
        // Sealed through either server, it opens through both: there is one key.
        for keys in [&one, &two] {
            let opened = keys
                .open_payload(&ns, &scope(n), b"id", &sealed)
                .await
                .unwrap();
            assert_eq!(opened.as_slice(), format!("payload {n}").as_bytes());
        }
    }
}

#[tokio::test]
async fn a_root_rotation_moves_every_stored_key_and_the_old_root_is_then_unneeded() {
    let store = Arc::new(MemoryStore::new());
    let old = RootKey::generate().unwrap();
    let svc = service(&store, manager(&store, &[&old]).await.unwrap());
    for account in ["acct_a", "acct_b", "acct_c"] {
        set(&svc, account, "token", &format!("payload of {account}")).await;
    }
    let new = RootKey::generate().unwrap();
    let keys = manager(&store, &[&new, &old]).await.unwrap();
    let before = keys.status().await.unwrap();
    assert_eq!(before.iter().find(|r| r.id == old.id()).unwrap().keys, 5);
    let rotated = keys.rotate_root().await.unwrap();
    // Three namespace keys, the service key and the digest key.
    assert_eq!(rotated.rewrapped, 5);
    let after = keys.status().await.unwrap();
    assert_eq!(after.iter().find(|r| r.id == old.id()).unwrap().keys, 0);
    assert_eq!(after.iter().find(|r| r.id == new.id()).unwrap().keys, 5);
    assert_eq!(
        keys.rotate_root().await.unwrap().rewrapped,
        0,
        "nothing left to move"
    );

    let svc = service(&store, manager(&store, &[&new]).await.unwrap());
    for account in ["acct_a", "acct_b", "acct_c"] {
        assert_eq!(
            find(&svc, account, "token").await,
            format!("payload of {account}")
        );
    }
}

#[tokio::test]
async fn a_namespace_rotation_re_wraps_every_payload_without_changing_it() {
    let store = Arc::new(MemoryStore::new());
    let root = RootKey::generate().unwrap();
    let svc = service(&store, manager(&store, &[&root]).await.unwrap());
    for n in 0..450 {
        set(&svc, "acct_ns", &format!("s{n}"), &format!("payload {n}")).await;
    }
    set(&svc, "acct_other", "s0", "untouched").await;
    let rotated = svc.rotate_namespace(&namespace("acct_ns")).await.unwrap();
    assert_eq!((rotated.version, rotated.rewrapped), (2, 450));
    for n in [0, 199, 200, 449] {
        assert_eq!(
            find(&svc, "acct_ns", &format!("s{n}")).await,
            format!("payload {n}")
        );
    }
    // A fresh server reads them under version 2; nothing is left under version 1.
    let svc = service(&store, manager(&store, &[&root]).await.unwrap());
    let again = svc.rotate_namespace(&namespace("acct_ns")).await.unwrap();
    assert_eq!((again.version, again.rewrapped), (3, 450));
    assert_eq!(find(&svc, "acct_ns", "s7").await, "payload 7");
    assert_eq!(find(&svc, "acct_other", "s0").await, "untouched");
}

/// A removal through one server destroys keys another server holds unwrapped: the other hears
/// of it (`KeyStore::destroyed_generation`) and seals its next write under new keys, which
/// open through any server, instead of under the destroyed ones, which open nowhere.
#[tokio::test]
async fn a_removal_through_one_server_stops_another_sealing_under_destroyed_keys() {
    use secretstore_core::{Account, Directory as _, User};
    let store = Arc::new(MemoryStore::new());
    let other = Arc::new(store.handle());
    let root = RootKey::generate().unwrap();
    let here = manager(&store, &[&root]).await.unwrap();
    let there = manager(&other, &[&root]).await.unwrap();
    let (ns, user) = (namespace("acct_gone"), UserId::parse("usr_gone").unwrap());
    let scope = Scope::User(user.clone());
    store
        .create_account(Account {
            id: ns.account.clone(),
            name: None,
            created: NOW,
        })
        .await
        .unwrap();
    store
        .create_user(User {
            id: user.clone(),
            account: ns.account.clone(),
            email: None,
            created: NOW,
        })
        .await
        .unwrap();
    let before = there.sealing_key(&ns, &scope).await.unwrap();
    let old = envelope_v2::seal(&before, b"id", b"before the removal").unwrap();
    let removed = store
        .remove_user(&ns.account, &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.keys, 1, "the user's key");
    here.forget();

    let after = there.sealing_key(&ns, &scope).await.unwrap();
    let new = envelope_v2::seal(&after, b"id", b"after the removal").unwrap();
    let fresh = manager(&store, &[&root]).await.unwrap();
    for keys in [&here, &there, &fresh] {
        let opened = keys.open_payload(&ns, &scope, b"id", &new).await.unwrap();
        assert_eq!(opened.as_slice(), b"after the removal");
        assert!(keys.open_payload(&ns, &scope, b"id", &old).await.is_err());
    }
}
