//! Crypto-shredding over the SQLite store, tested as the issue states it: copy the database,
//! remove an installation, a user, an app and an account, then try every copied row with the
//! real key hierarchy (the live store's keys and the root key). No row of what was removed
//! opens; every other row of the copy still does.
//!
//! The copy also holds the keys as they were before the removal, so with the same root key it
//! still opens all of itself: that is what a root key rotation, with the old root key then
//! destroyed, takes away (the last part, and SECURITY.md).

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use secretstore_core::{
    payload_aad, Account, AccountId, App, AppId, CredentialId, Installation, InstallationId,
    KeyError, KeyManager, Lifecycle as _, Limits, ManualClock, Mode, Namespace, Payload,
    RequestContext, Scope, SecretAddress, SecretName, SecretService, SecretStore as _, SetRequest,
    User, UserId,
};
use secretstore_crypto::{RootKey, RootKeyring};
use secretstore_sqlite::{restore, SqliteOptions, SqliteStore};

const NOW: i64 = 1_700_000_000;

fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

fn ring(keys: &[&RootKey]) -> RootKeyring {
    RootKeyring::local(keys[0], &keys[1..]).unwrap()
}

async fn hierarchy(store: &Arc<SqliteStore>, roots: &[&RootKey]) -> Result<KeyManager, KeyError> {
    KeyManager::start(
        ring(roots),
        store.clone(),
        &**store,
        Arc::new(ManualClock::new(NOW)),
    )
    .await
}

fn open(dir: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir, SqliteOptions::default()).unwrap())
}

fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

fn app(id: &str) -> AppId {
    AppId::parse(id).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// A secret named `name` of `app` on `acct` in `mode`, in the account's scope or (`Some`) a
/// user's.
fn at(app_id: &str, acct: &str, mode: Mode, owner: Option<&str>, name: &str) -> SecretAddress {
    SecretAddress {
        namespace: Namespace {
            app: app(app_id),
            account: account(acct),
            mode,
        },
        scope: owner.map_or(Scope::Account, |u| Scope::User(user(u))),
        name: SecretName::parse(name).unwrap(),
    }
}

/// Each secret's payload names its address, so a row opened is checked to be its own.
fn payload_of(address: &SecretAddress) -> String {
    format!("payload of {address:?}")
}

/// Opens the row `copy` holds at `address` with `keys`: its payload, or why not.
async fn open_copied(
    copy: &SqliteStore,
    keys: &KeyManager,
    address: &SecretAddress,
) -> Result<String, KeyError> {
    let row = copy.get(address, NOW).await.unwrap().expect("in the copy");
    let aad = payload_aad(&row.address, &row.id);
    let opened = keys
        .open_payload(&address.namespace, &address.scope, &aad, &row.sealed)
        .await?;
    Ok(String::from_utf8(opened.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_tenants_rows_in_a_copy_taken_before_do_not_open_with_the_real_hierarchy() {
    let tmp = private_tempdir();
    let live_dir = tmp.path().join("live");
    let store = open(&live_dir);
    let root = RootKey::generate().unwrap();
    let keys = Arc::new(hierarchy(&store, &[&root]).await.unwrap());
    let service = SecretService::new(
        store.clone(),
        store.clone(),
        Arc::clone(&keys),
        Arc::new(ManualClock::new(NOW)),
        Limits {
            max_secrets_per_scope: 100,
        },
    );

    // The directory: app_x (owned by acct_dev) installed on acct_1, acct_2 and acct_5; app_y
    // (owned by acct_dev) on acct_1, acct_2 and acct_5; app_z owned by acct_3 and installed
    // on acct_4. Users usr_1 (acct_1), usr_2 and usr_3 (acct_2), usr_5 (acct_5).
    let dir: &dyn secretstore_core::Directory = &*store;
    for id in ["acct_dev", "acct_1", "acct_2", "acct_3", "acct_4", "acct_5"] {
        dir.create_account(Account {
            id: account(id),
            name: None,
            created: NOW,
        })
        .await
        .unwrap();
    }
    for (id, owner) in [
        ("app_x", "acct_dev"),
        ("app_y", "acct_dev"),
        ("app_z", "acct_3"),
    ] {
        dir.create_app(App {
            id: app(id),
            name: id.into(),
            owner: account(owner),
            created: NOW,
        })
        .await
        .unwrap();
    }
    let mut installations = Vec::new();
    for (a, acct) in [
        ("app_x", "acct_1"),
        ("app_x", "acct_2"),
        ("app_x", "acct_5"),
        ("app_y", "acct_1"),
        ("app_y", "acct_2"),
        ("app_y", "acct_5"),
        ("app_z", "acct_4"),
    ] {
        let installation = Installation {
            id: InstallationId::generate(),
            app: app(a),
            account: account(acct),
            created: NOW,
        };
        installations.push(installation.clone());
        dir.create_installation(installation).await.unwrap();
    }
    for (id, acct) in [
        ("usr_1", "acct_1"),
        ("usr_2", "acct_2"),
        ("usr_3", "acct_2"),
        ("usr_5", "acct_5"),
    ] {
        dir.create_user(User {
            id: user(id),
            account: account(acct),
            email: None,
            created: NOW,
        })
        .await
        .unwrap();
    }

    use Mode::{Live, Test};
    // What each removal must shred, and what must survive all of them.
    let installation_gone = [
        at("app_x", "acct_1", Test, None, "stripe_key"),
        at("app_x", "acct_1", Live, None, "stripe_key"),
        at("app_x", "acct_1", Test, Some("usr_1"), "oauth"),
    ];
    let user_gone = [
        at("app_x", "acct_2", Test, Some("usr_2"), "oauth"),
        at("app_y", "acct_2", Live, Some("usr_2"), "oauth"),
    ];
    let app_gone = [
        at("app_z", "acct_4", Test, None, "token"),
        at("app_z", "acct_4", Test, Some("usr_4"), "token"),
        at("app_z", "acct_3", Live, None, "own_use"),
        at("app_z", "acct_3", Test, None, "token"),
    ];
    let account_gone = [
        at("app_x", "acct_5", Test, None, "token"),
        at("app_y", "acct_5", Live, None, "token"),
        at("app_y", "acct_5", Test, Some("usr_5"), "oauth"),
    ];
    let kept = [
        at("app_y", "acct_1", Test, None, "stripe_key"),
        at("app_y", "acct_1", Test, Some("usr_1"), "oauth"),
        at("app_x", "acct_2", Test, None, "stripe_key"),
        at("app_x", "acct_2", Test, Some("usr_3"), "oauth"),
        at("app_y", "acct_2", Live, Some("usr_3"), "oauth"),
        at("app_x", "acct_dev", Test, None, "own_use"),
    ];
    let removed: Vec<&SecretAddress> = installation_gone
        .iter()
        .chain(&user_gone)
        .chain(&app_gone)
        .chain(&account_gone)
        .collect();
    let ctx = RequestContext {
        request_id: None,
        credential: CredentialId::of(b"sk_test_app"),
        audit: None,
    };
    for address in removed.iter().copied().chain(&kept) {
        let payload = payload_of(address);
        let request = SetRequest {
            address: address.clone(),
            payload: Payload::parse(&payload).unwrap(),
            expires_at: None,
            reveal: false,
        };
        service.set(&ctx, request).await.unwrap();
    }

    // The copy, taken while the store serves, before any removal.
    let copy_file = tmp.path().join("copy.db");
    let mut snapshot = store.snapshot().await.unwrap();
    std::io::copy(
        &mut snapshot,
        &mut std::fs::File::create(&copy_file).unwrap(),
    )
    .unwrap();
    drop(snapshot);
    let copy_dir = tmp.path().join("copy");
    restore(&copy_dir, &copy_file).unwrap();
    let copy = open(&copy_dir);

    // The removals, each destroying the keys that protected what it took.
    let first = installations
        .iter()
        .find(|i| i.app == app("app_x") && i.account == account("acct_1"))
        .unwrap();
    let by_installation = dir.remove_installation(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (by_installation.secrets, by_installation.keys),
        (3, 2),
        "the namespace keys of app_x on acct_1, test and live"
    );
    let by_user = dir
        .remove_user(&account("acct_2"), &user("usr_2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((by_user.secrets, by_user.keys), (2, 1), "usr_2's own key");
    let by_app = dir.remove_app(&app("app_z")).await.unwrap().unwrap();
    assert_eq!(
        (by_app.secrets, by_app.keys),
        (4, 3),
        "app_z's namespaces on acct_4 (test) and acct_3 (test and live)"
    );
    let by_account = dir
        .remove_account(&account("acct_5"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_account.secrets, by_account.keys),
        (3, 4),
        "app_x test, app_y live and test on acct_5, and usr_5's key"
    );
    keys.forget();

    // Every copied row of what was removed, tried with the live hierarchy and the root key
    // (the running server's, and a fresh start's): none opens. Every other row does.
    let restarted = hierarchy(&store, &[&root]).await.unwrap();
    for hierarchy in [&*keys, &restarted] {
        for address in &removed {
            let opened = open_copied(&copy, hierarchy, address).await;
            assert!(
                opened.is_err(),
                "{address:?} opened from the copy after its removal"
            );
        }
        for address in &kept {
            assert_eq!(
                open_copied(&copy, hierarchy, address).await.unwrap(),
                payload_of(address)
            );
        }
    }

    // The copy's own keys, with the same root key, still open it all: the copy holds the
    // namespace and user keys as they were. Rotating the root key and destroying the old one
    // is what ends that, and the live data does not need the old root key afterwards.
    let copys_own = hierarchy(&copy, &[&root]).await.unwrap();
    for address in &removed {
        assert_eq!(
            open_copied(&copy, &copys_own, address).await.unwrap(),
            payload_of(address)
        );
    }
    let new_root = RootKey::generate().unwrap();
    let rotating = hierarchy(&store, &[&new_root, &root]).await.unwrap();
    assert!(rotating.rotate_root().await.unwrap().rewrapped > 0);
    let after_rotation = hierarchy(&store, &[&new_root]).await.unwrap();
    for address in &kept {
        let row = store.get(address, NOW).await.unwrap().unwrap();
        let aad = payload_aad(&row.address, &row.id);
        let opened = after_rotation
            .open_payload(&address.namespace, &address.scope, &aad, &row.sealed)
            .await
            .unwrap();
        assert_eq!(opened.as_slice(), payload_of(address).as_bytes());
    }
    assert!(matches!(
        hierarchy(&copy, &[&new_root]).await,
        Err(KeyError::MissingRoot { needed, .. }) if needed == root.id()
    ));
}
