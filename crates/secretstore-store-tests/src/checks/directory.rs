//! `Directory`: accounts, apps, installations, users, keys and sessions; duplicates and
//! dangling references refused; listings newest first with `starting_after`; and removals that
//! take exactly what an object owns, with the counts, the keys that protected it included
//! (crypto-shredding).

use std::sync::Arc;

use secretstore_core::{
    Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, Credential, CredentialHint,
    CredentialId, CursorKind, DirectoryPage, Installation, InstallationFilter, InstallationId,
    KeyOwner, KeyType, Mode, Permissions, Removed, Scope, SessionId, Store, StoreError, StoredKey,
    User, UserId, UserSession,
};
use secretstore_crypto::KeyId;

use crate::fixtures::*;

fn acct(id: &str) -> AccountId {
    AccountId::parse(id).expect("fixture account")
}

fn app_id(id: &str) -> AppId {
    AppId::parse(id).expect("fixture app")
}

fn usr(id: &str) -> UserId {
    UserId::parse(id).expect("fixture user")
}

fn page(limit: u32, after: Option<&str>) -> DirectoryPage {
    DirectoryPage {
        limit,
        starting_after: after.map(str::to_owned),
    }
}

async fn account(store: &Arc<dyn Store>, id: &str) -> AccountId {
    store
        .create_account(Account {
            id: acct(id),
            name: Some(format!("{id} Inc.")),
            created: NOW,
        })
        .await
        .expect("create account");
    acct(id)
}

async fn app(store: &Arc<dyn Store>, id: &str, owner: &str) -> AppId {
    store
        .create_app(App {
            id: app_id(id),
            name: format!("App {id}"),
            owner: acct(owner),
            created: NOW,
        })
        .await
        .expect("create app");
    app_id(id)
}

async fn install(store: &Arc<dyn Store>, app: &str, account: &str) -> InstallationId {
    let id = InstallationId::generate();
    store
        .create_installation(Installation {
            id: id.clone(),
            app: app_id(app),
            account: acct(account),
            created: NOW,
        })
        .await
        .expect("create installation");
    id
}

async fn add_user(store: &Arc<dyn Store>, account: &str, id: &str) -> UserId {
    store
        .create_user(User {
            id: usr(id),
            account: acct(account),
            email: None,
            created: NOW,
        })
        .await
        .expect("create user");
    usr(id)
}

fn key_record(app: &str, tag: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId::generate(),
        app: app_id(app),
        mode: Mode::Test,
        key_type: KeyType::Restricted,
        permissions: Permissions {
            read: true,
            write: false,
        },
        name: Some(tag.to_owned()),
        created: NOW,
        expires_at: None,
        revoked: false,
        hash: CredentialId::of(format!("rk_test_{tag}").as_bytes()),
        hint: CredentialHint::new("rk_test_", Some(*b"WXYZ")),
    }
}

fn session_record(app: &str, account: &str, user: &str, tag: &str) -> UserSession {
    UserSession {
        id: SessionId::generate(),
        app: app_id(app),
        account: acct(account),
        user: usr(user),
        mode: Mode::Test,
        created: NOW,
        expires_at: NOW + 900,
        hash: CredentialId::of(format!("ek_test_{tag}").as_bytes()),
        hint: CredentialHint::new("ek_test_", None),
    }
}

fn already<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "expected AlreadyExists, got {result:?}"
    );
}

fn missing<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Missing(_))),
        "expected Missing, got {result:?}"
    );
}

/// Accounts: created once, read back, listed newest first in pages.
pub async fn directory_accounts_round_trip_and_page(store: Arc<dyn Store>) {
    for n in 0..5 {
        account(&store, &format!("acct_{n}")).await;
    }
    already(
        store
            .create_account(Account {
                id: acct("acct_3"),
                name: None,
                created: NOW,
            })
            .await,
    );
    let got = store
        .account(&acct("acct_3"))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.name.as_deref(), Some("acct_3 Inc."));
    assert_eq!(store.account(&acct("acct_none")).await.expect("get"), None);
    let first = store.accounts(&page(2, None)).await.expect("list");
    let ids: Vec<_> = first
        .items
        .iter()
        .map(|a| a.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["acct_4", "acct_3"]);
    assert!(first.has_more);
    let rest = store
        .accounts(&page(10, Some("acct_3")))
        .await
        .expect("list");
    let ids: Vec<_> = rest
        .items
        .iter()
        .map(|a| a.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["acct_2", "acct_1", "acct_0"]);
    assert!(!rest.has_more);
    match store.accounts(&page(10, Some("acct_none"))).await {
        Err(StoreError::CursorNotFound {
            kind: CursorKind::StartingAfter,
            ..
        }) => {}
        other => panic!("expected CursorNotFound, got {other:?}"),
    }
}

/// An app needs its owner; its owner counts as an installation; an installation needs its app
/// and account, is made once, and is found by app or by account.
pub async fn directory_apps_and_installations_refer_to_what_exists(store: Arc<dyn Store>) {
    missing(
        store
            .create_app(App {
                id: app_id("com.example.x"),
                name: "X".into(),
                owner: acct("acct_owner"),
                created: NOW,
            })
            .await,
    );
    account(&store, "acct_owner").await;
    account(&store, "acct_other").await;
    let x = app(&store, "com.example.x", "acct_owner").await;
    already(
        store
            .create_app(App {
                id: x.clone(),
                name: "X again".into(),
                owner: acct("acct_owner"),
                created: NOW,
            })
            .await,
    );
    assert!(store
        .installed(&x, &acct("acct_owner"))
        .await
        .expect("installed"));
    assert!(!store
        .installed(&x, &acct("acct_other"))
        .await
        .expect("installed"));
    let owner_again = Installation {
        id: InstallationId::generate(),
        app: x.clone(),
        account: acct("acct_owner"),
        created: NOW,
    };
    already(store.create_installation(owner_again).await);
    let stray = Installation {
        id: InstallationId::generate(),
        app: app_id("nope"),
        account: acct("acct_other"),
        created: NOW,
    };
    missing(store.create_installation(stray).await);
    let id = install(&store, "com.example.x", "acct_other").await;
    assert!(store
        .installed(&x, &acct("acct_other"))
        .await
        .expect("installed"));
    let twice = Installation {
        id: InstallationId::generate(),
        app: x.clone(),
        account: acct("acct_other"),
        created: NOW,
    };
    already(store.create_installation(twice).await);
    let found = store.installation(&id).await.expect("get").expect("exists");
    assert_eq!((found.app, found.account), (x.clone(), acct("acct_other")));
    for filter in [
        InstallationFilter {
            app: Some(x.clone()),
            account: None,
        },
        InstallationFilter {
            app: None,
            account: Some(acct("acct_other")),
        },
        InstallationFilter::default(),
    ] {
        let listed = store
            .installations(&filter, &page(10, None))
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1, "{filter:?}");
    }
    let none = InstallationFilter {
        app: None,
        account: Some(acct("acct_owner")),
    };
    assert!(store
        .installations(&none, &page(10, None))
        .await
        .expect("list")
        .items
        .is_empty());
}

/// Users belong to one account; keys and sessions are found by their hash whatever their
/// state; a roll keeps the old key until its end and adds the new; a revoke ends it.
pub async fn directory_users_keys_and_sessions(store: Arc<dyn Store>) {
    missing(
        store
            .create_user(User {
                id: usr("usr_1"),
                account: acct("acct_u"),
                email: None,
                created: NOW,
            })
            .await,
    );
    account(&store, "acct_u").await;
    account(&store, "acct_v").await;
    add_user(&store, "acct_u", "usr_1").await;
    // The same user id in another account is another user.
    add_user(&store, "acct_v", "usr_1").await;
    already(
        store
            .create_user(User {
                id: usr("usr_1"),
                account: acct("acct_u"),
                email: None,
                created: NOW,
            })
            .await,
    );
    assert_eq!(
        store
            .users(&acct("acct_u"), &page(10, None))
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    let a = app(&store, "app_a", "acct_u").await;
    missing(store.create_key(key_record("app_missing", "k0")).await);
    let key = key_record("app_a", "k1");
    store.create_key(key.clone()).await.expect("create key");
    assert_eq!(
        store.credential(&key.hash).await.expect("credential"),
        Some(Credential::Key(key.clone()))
    );
    assert_eq!(store.key(&key.id).await.expect("key"), Some(key.clone()));
    let new = key_record("app_a", "k2");
    let rolled = store
        .roll_key(&key.id, NOW + 60, new.clone())
        .await
        .expect("roll")
        .expect("exists");
    assert_eq!(rolled.expires_at, Some(NOW + 60));
    assert!(rolled.usable_at(NOW + 59) && !rolled.usable_at(NOW + 60));
    // A second roll cannot lengthen the first one's grace.
    let again = store
        .roll_key(&key.id, NOW + 600, key_record("app_a", "k3"))
        .await
        .expect("roll")
        .expect("exists");
    assert_eq!(again.expires_at, Some(NOW + 60));
    assert_eq!(
        store
            .keys(&a, &page(10, None))
            .await
            .expect("keys")
            .items
            .len(),
        3
    );
    let revoked = store
        .revoke_key(&new.id)
        .await
        .expect("revoke")
        .expect("exists");
    assert!(revoked.revoked && !revoked.usable_at(NOW));
    match store.credential(&new.hash).await.expect("credential") {
        Some(Credential::Key(found)) => assert!(found.revoked),
        other => panic!("expected the revoked key, got {other:?}"),
    }
    assert_eq!(
        store
            .revoke_key(&ApiKeyId::generate())
            .await
            .expect("revoke"),
        None
    );

    missing(
        store
            .create_session(session_record("app_a", "acct_v", "usr_1", "s0"))
            .await,
    );
    missing(
        store
            .create_session(session_record("app_a", "acct_u", "usr_nobody", "s0"))
            .await,
    );
    let session = session_record("app_a", "acct_u", "usr_1", "s1");
    store
        .create_session(session.clone())
        .await
        .expect("session");
    assert_eq!(
        store.credential(&session.hash).await.expect("credential"),
        Some(Credential::Session(session.clone()))
    );
    assert_eq!(
        store.remove_session(&session.id).await.expect("remove"),
        Some(session.clone())
    );
    assert_eq!(
        store.credential(&session.hash).await.expect("credential"),
        None
    );
    assert_eq!(store.session(&session.id).await.expect("session"), None);
}

/// Removals take exactly what each object owns, counted: an installation its app's secrets and
/// sessions on that account; a user its scope's secrets and sessions; an app everything of it;
/// an account its users, installations, apps and every secret on it.
pub async fn directory_removals_take_exactly_what_they_own(store: Arc<dyn Store>) {
    let owner = account(&store, "acct_owner").await;
    let other = account(&store, "acct_other").await;
    let x = app(&store, "app_x", "acct_owner").await;
    let y = app(&store, "app_y", "acct_other").await;
    let inst = install(&store, "app_x", "acct_other").await;
    add_user(&store, "acct_other", "usr_1").await;
    add_user(&store, "acct_other", "usr_2").await;
    let sessions = [
        session_record("app_x", "acct_other", "usr_1", "a"),
        session_record("app_y", "acct_other", "usr_1", "b"),
        session_record("app_x", "acct_other", "usr_2", "c"),
    ];
    for s in &sessions {
        store.create_session(s.clone()).await.expect("session");
    }
    store
        .create_key(key_record("app_x", "kx"))
        .await
        .expect("key");
    store
        .create_key(key_record("app_y", "ky"))
        .await
        .expect("key");
    // Secrets: app x on both accounts in both modes, app y on its owner, in account and user
    // scopes.
    let mut count = 0;
    for (app, account) in [
        ("app_x", "acct_owner"),
        ("app_x", "acct_other"),
        ("app_y", "acct_other"),
    ] {
        for mode in [Mode::Test, Mode::Live] {
            let ns = namespace(app, account, mode);
            for scope in [Scope::Account, user("usr_1"), user("usr_2")] {
                put_ok(&store, &address(&ns, &scope, "s"), NOW, None, ROOMY, "s").await;
                count += 1;
            }
        }
    }
    assert_eq!(count, 18);
    // The keys that protect them: each namespace's (two versions of one), the users' (and one
    // of a user of the owner's account), and the server's own.
    let mut owners = vec![
        KeyOwner::Service,
        user_key("acct_other", "usr_1"),
        user_key("acct_other", "usr_2"),
        user_key("acct_owner", "usr_9"),
    ];
    for (app, account) in [
        ("app_x", "acct_owner"),
        ("app_x", "acct_other"),
        ("app_y", "acct_other"),
    ] {
        for mode in [Mode::Test, Mode::Live] {
            owners.push(KeyOwner::Namespace(namespace(app, account, mode)));
        }
    }
    for owner in &owners {
        add_key_ok(&store, owner, 1).await;
    }
    add_key_ok(&store, &owners[4], 2).await;

    // The user usr_1 of acct_other: its scope's secrets under both apps and modes (4), its
    // sessions (2).
    let removed = store
        .remove_user(&other, &usr("usr_1"))
        .await
        .expect("remove user")
        .expect("existed");
    assert_eq!(
        removed,
        Removed {
            users: 1,
            user_sessions: 2,
            secrets: 4,
            keys: 1,
            ..Removed::default()
        }
    );
    assert_eq!(
        store
            .remove_user(&other, &usr("usr_1"))
            .await
            .expect("again"),
        None
    );

    // The installation of x on acct_other: x's remaining secrets there (account and usr_2
    // scopes, both modes: 4) and its session there (1).
    let removed = store
        .remove_installation(&inst)
        .await
        .expect("remove installation")
        .expect("existed");
    assert_eq!(
        removed,
        Removed {
            installations: 1,
            user_sessions: 1,
            secrets: 4,
            keys: 2,
            ..Removed::default()
        }
    );
    assert!(!store.installed(&x, &other).await.expect("installed"));
    assert!(store
        .installed(&x, &owner)
        .await
        .expect("the owner keeps it"));

    // A secret of x written on acct_other after that (as dev mode writes without an
    // installation), under a new namespace key.
    let late = namespace("app_x", "acct_other", Mode::Test);
    put_ok(
        &store,
        &address(&late, &Scope::Account, "late"),
        NOW,
        None,
        ROOMY,
        "l",
    )
    .await;
    add_key_ok(&store, &owners[6], 2).await;

    // Account acct_other: its user usr_2, the app y it owns (key, secrets: 4 left after usr_1,
    // its two namespace keys), usr_2's key, and x's late secret and key on it.
    let removed = store
        .remove_account(&other)
        .await
        .expect("remove account")
        .expect("existed");
    assert_eq!(
        removed,
        Removed {
            apps: 1,
            users: 1,
            api_keys: 1,
            secrets: 5,
            keys: 4,
            ..Removed::default()
        }
    );
    assert_eq!(store.app(&y).await.expect("app"), None);
    assert!(ids_in(&store, &late, &Scope::Account, NOW).await.is_empty());
    assert_eq!(store.account(&other).await.expect("account"), None);

    // App x: its key, its secrets on its owner (6) and its namespace keys there (3 versions).
    let removed = store
        .remove_app(&x)
        .await
        .expect("remove app")
        .expect("existed");
    assert_eq!(
        removed,
        Removed {
            apps: 1,
            api_keys: 1,
            secrets: 6,
            keys: 3,
            ..Removed::default()
        }
    );
    assert_eq!(
        store
            .credential(&CredentialId::of(b"rk_test_kx"))
            .await
            .expect("credential"),
        None
    );
    for mode in [Mode::Test, Mode::Live] {
        let ns = namespace("app_x", "acct_owner", mode);
        assert!(ids_in(&store, &ns, &Scope::Account, NOW).await.is_empty());
    }
    assert_eq!(store.remove_app(&x).await.expect("again"), None);
    assert!(store.account(&owner).await.expect("account").is_some());
    // What no removal owned keeps its key: the server's, and the owner account's user.
    for (at, owner) in owners.iter().enumerate() {
        let left = store.keys_of(owner).await.expect("keys_of").len();
        assert_eq!(left, usize::from(at == 0 || at == 3), "{owner:?}");
    }
}

fn user_key(account: &str, user: &str) -> KeyOwner {
    KeyOwner::User {
        account: acct(account),
        user: usr(user),
    }
}

async fn add_key_ok(store: &Arc<dyn Store>, owner: &KeyOwner, version: u32) {
    let key = StoredKey {
        owner: owner.clone(),
        version,
        root: KeyId([7; 8]),
        wrapped: vec![version as u8; 60],
        created: NOW,
    };
    store.add_key(key).await.expect("add_key");
}
