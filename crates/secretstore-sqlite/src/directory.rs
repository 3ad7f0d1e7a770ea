//! The tenant directory in SQLite: each read and write of `Directory` as one function of a
//! connection (writes run in the writer's savepoints, so a removal and everything it takes with
//! it commit together or not at all) and the row mappings. The store keeps core's
//! `DirectoryCache` of the look-ups every request makes; the writer clears it after any
//! directory write commits and before it answers (as it does the secret cache for secrets), so a
//! revocation is seen by the very next request.

use rusqlite::{params, Connection, OptionalExtension, Row};
use secretstore_core::{
    Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, Credential, CredentialHint,
    CredentialId, CursorKind, DirectoryPage, Installation, InstallationFilter, InstallationId,
    KeyType, Listed, Mode, Permissions, Removed, SessionId, StoreError, User, UserId, UserSession,
};

use crate::errors::{damaged, sql_failure};

fn failure(e: rusqlite::Error) -> StoreError {
    sql_failure(&e)
}

fn exists(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<bool, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.exists(params))
        .map_err(failure)
}

fn account_exists(conn: &Connection, id: &AccountId) -> Result<bool, StoreError> {
    exists(conn, "SELECT 1 FROM accounts WHERE id = ?1", [id.as_str()])
}

fn app_exists(conn: &Connection, id: &AppId) -> Result<bool, StoreError> {
    exists(conn, "SELECT 1 FROM apps WHERE id = ?1", [id.as_str()])
}

fn parsed<T, E>(value: Result<T, E>, what: &str) -> Result<T, StoreError> {
    value.map_err(|_| damaged(what))
}

/// One page of `table` (whose rows have `seq` and `id`), newest first, filtered by `filter`
/// (an SQL condition on numbered parameters bound from `args`, which must not use `?90`-`?92`).
fn page<T>(
    conn: &Connection,
    table: &str,
    columns: &str,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
    page: &DirectoryPage,
    row: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Listed<T>, StoreError> {
    let before = match &page.starting_after {
        None => i64::MAX,
        Some(id) => {
            let sql = format!("SELECT seq FROM {table} WHERE id = ?90 AND {filter}");
            let mut stmt = conn.prepare_cached(&sql).map_err(failure)?;
            for (i, arg) in args.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, arg).map_err(failure)?;
            }
            stmt.raw_bind_parameter(90, id.as_str()).map_err(failure)?;
            let mut rows = stmt.raw_query();
            match rows.next().map_err(failure)? {
                Some(r) => r.get::<_, i64>(0).map_err(failure)?,
                None => {
                    return Err(StoreError::CursorNotFound {
                        kind: CursorKind::StartingAfter,
                        id: id.clone(),
                    })
                }
            }
        }
    };
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE {filter} AND seq < ?91 ORDER BY seq DESC LIMIT ?92"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(failure)?;
    for (i, arg) in args.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, arg).map_err(failure)?;
    }
    stmt.raw_bind_parameter(91, before).map_err(failure)?;
    stmt.raw_bind_parameter(92, i64::from(page.limit) + 1)
        .map_err(failure)?;
    let mut rows = stmt.raw_query();
    let mut items = Vec::new();
    while let Some(r) = rows.next().map_err(failure)? {
        items.push(row(r)?);
    }
    let has_more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    Ok(Listed { items, has_more })
}

// ---------------------------------------------------------------------------------------------
// Accounts

const ACCOUNT_COLUMNS: &str = "id, name, created";

fn account_row(row: &Row<'_>) -> Result<Account, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    Ok(Account {
        id: parsed(AccountId::parse(&id), "accounts.id")?,
        name: row.get(1).map_err(failure)?,
        created: row.get(2).map_err(failure)?,
    })
}

pub fn create_account(conn: &Connection, account: &Account) -> Result<(), StoreError> {
    if account_exists(conn, &account.id)? {
        return Err(StoreError::AlreadyExists(format!("account {}", account.id)));
    }
    conn.prepare_cached("INSERT INTO accounts (id, name, created) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![account.id.as_str(), account.name, account.created]))
        .map_err(failure)?;
    Ok(())
}

pub fn account(conn: &Connection, id: &AccountId) -> Result<Option<Account>, StoreError> {
    one(
        conn,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
        [id.as_str()],
        account_row,
    )
}

pub fn accounts(conn: &Connection, p: &DirectoryPage) -> Result<Listed<Account>, StoreError> {
    page(
        conn,
        "accounts",
        ACCOUNT_COLUMNS,
        "1 = 1",
        &[],
        p,
        account_row,
    )
}

fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row(params, |r| Ok(row(r))).optional())
        .map_err(failure)?
        .transpose()
}

/// Deletes with a count.
fn delete(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map(|n| n as u64)
        .map_err(failure)
}

pub fn remove_account(conn: &Connection, id: &AccountId) -> Result<Option<Removed>, StoreError> {
    if !account_exists(conn, id)? {
        return Ok(None);
    }
    let mut removed = Removed::default();
    let owned: Vec<String> = conn
        .prepare_cached("SELECT id FROM apps WHERE owner = ?1")
        .and_then(|mut s| {
            s.query_map([id.as_str()], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(failure)?;
    for app in owned {
        let app = parsed(AppId::parse(&app), "apps.id")?;
        removed += remove_app_rows(conn, &app)?;
    }
    let a = id.as_str();
    for app in apps_with_secrets(conn)? {
        removed.secrets += delete(conn, DELETE_ACCOUNT_SECRETS, [app.as_str(), a])?;
    }
    removed.user_sessions += delete(conn, "DELETE FROM user_sessions WHERE account = ?1", [a])?;
    removed.installations += delete(conn, "DELETE FROM installations WHERE account = ?1", [a])?;
    removed.users += delete(conn, "DELETE FROM users WHERE account = ?1", [a])?;
    // Every namespace key of any app on the account, and its users' keys (whatever the kind:
    // a key of the server's own has no account).
    for (kind, app) in key_kinds_and_apps(conn)? {
        removed.keys += delete(conn, DELETE_ACCOUNT_KEYS, [kind.as_str(), app.as_str(), a])?;
    }
    delete(conn, "DELETE FROM accounts WHERE id = ?1", [a])?;
    Ok(Some(removed))
}

// The removals' statements over `secrets` and `keys`; a test checks that each is a search of
// an index, never a scan of the table.
pub(crate) const APPS_WITH_SECRETS: [&str; 2] = [
    "SELECT app FROM secrets ORDER BY app LIMIT 1",
    "SELECT app FROM secrets WHERE app > ?1 ORDER BY app LIMIT 1",
];
pub(crate) const KEY_KINDS: [&str; 2] = [
    "SELECT kind FROM keys ORDER BY kind LIMIT 1",
    "SELECT kind FROM keys WHERE kind > ?1 ORDER BY kind LIMIT 1",
];
pub(crate) const KEY_APPS_OF_KIND: [&str; 2] = [
    "SELECT app FROM keys WHERE kind = ?1 ORDER BY app LIMIT 1",
    "SELECT app FROM keys WHERE kind = ?1 AND app > ?2 ORDER BY app LIMIT 1",
];
pub(crate) const DELETE_ACCOUNT_SECRETS: &str =
    "DELETE FROM secrets WHERE app = ?1 AND account = ?2";
pub(crate) const DELETE_USER_SECRETS: &str =
    "DELETE FROM secrets WHERE app = ?1 AND account = ?2 AND livemode IN (0, 1)
         AND scope_type = 'user' AND scope_user = ?3";
pub(crate) const DELETE_ACCOUNT_KEYS: &str =
    "DELETE FROM keys WHERE kind = ?1 AND app = ?2 AND account = ?3";

/// Each distinct value that a query's first column takes, in order, one seek apiece: `first`
/// answers the smallest (given `fixed` as `?1`..), `next` the smallest after the value bound
/// last (`fixed`, then that value). With an index that leads with the column (after the
/// columns `fixed` binds), that is a seek per value instead of a read of every row.
fn skip_scan(
    conn: &Connection,
    first: &str,
    next: &str,
    fixed: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut values: Vec<String> = Vec::new();
    loop {
        let (sql, last) = match values.last() {
            None => (first, None),
            Some(last) => (next, Some(last.as_str())),
        };
        let mut stmt = conn.prepare_cached(sql).map_err(failure)?;
        let bound = fixed.iter().copied().chain(last);
        let found = stmt
            .query_row(rusqlite::params_from_iter(bound), |r| r.get::<_, String>(0))
            .optional()
            .map_err(failure)?;
        match found {
            Some(value) => values.push(value),
            None => return Ok(values),
        }
    }
}

/// The apps that hold secrets. No index of `secrets` leads with the account (each would cost
/// every create one more insert), so a removal of an account's or a user's secrets walks the
/// apps, which both of `secrets`' indexes lead with, and deletes app by app.
fn apps_with_secrets(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let [first, next] = APPS_WITH_SECRETS;
    skip_scan(conn, first, next, &[])
}

/// The (kind, app) pairs that `keys` holds, which its primary key leads with: as for
/// `apps_with_secrets`, an account's keys are deleted pair by pair.
fn key_kinds_and_apps(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let [first, next] = KEY_KINDS;
    let kinds = skip_scan(conn, first, next, &[])?;
    let mut pairs = Vec::new();
    for kind in kinds {
        let [first, next] = KEY_APPS_OF_KIND;
        let apps = skip_scan(conn, first, next, &[kind.as_str()])?;
        pairs.extend(apps.into_iter().map(|app| (kind.clone(), app)));
    }
    Ok(pairs)
}

// ---------------------------------------------------------------------------------------------
// Apps

const APP_COLUMNS: &str = "id, name, owner, created";

fn app_row(row: &Row<'_>) -> Result<App, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    let owner: String = row.get(2).map_err(failure)?;
    Ok(App {
        id: parsed(AppId::parse(&id), "apps.id")?,
        name: row.get(1).map_err(failure)?,
        owner: parsed(AccountId::parse(&owner), "apps.owner")?,
        created: row.get(3).map_err(failure)?,
    })
}

pub fn create_app(conn: &Connection, app: &App) -> Result<(), StoreError> {
    if app_exists(conn, &app.id)? {
        return Err(StoreError::AlreadyExists(format!("app {}", app.id)));
    }
    if !account_exists(conn, &app.owner)? {
        return Err(StoreError::Missing(format!("account {}", app.owner)));
    }
    conn.prepare_cached("INSERT INTO apps (id, name, owner, created) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| {
            s.execute(params![
                app.id.as_str(),
                app.name,
                app.owner.as_str(),
                app.created
            ])
        })
        .map_err(failure)?;
    Ok(())
}

pub fn app(conn: &Connection, id: &AppId) -> Result<Option<App>, StoreError> {
    one(
        conn,
        &format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"),
        [id.as_str()],
        app_row,
    )
}

pub fn apps(conn: &Connection, p: &DirectoryPage) -> Result<Listed<App>, StoreError> {
    page(conn, "apps", APP_COLUMNS, "1 = 1", &[], p, app_row)
}

fn remove_app_rows(conn: &Connection, id: &AppId) -> Result<Removed, StoreError> {
    let a = id.as_str();
    Ok(Removed {
        apps: delete(conn, "DELETE FROM apps WHERE id = ?1", [a])?,
        installations: delete(conn, "DELETE FROM installations WHERE app = ?1", [a])?,
        users: 0,
        api_keys: delete(conn, "DELETE FROM api_keys WHERE app = ?1", [a])?,
        user_sessions: delete(conn, "DELETE FROM user_sessions WHERE app = ?1", [a])?,
        secrets: delete(conn, "DELETE FROM secrets WHERE app = ?1", [a])?,
        keys: delete(
            conn,
            "DELETE FROM keys WHERE kind = 'namespace' AND app = ?1",
            [a],
        )?,
    })
}

pub fn remove_app(conn: &Connection, id: &AppId) -> Result<Option<Removed>, StoreError> {
    if !app_exists(conn, id)? {
        return Ok(None);
    }
    remove_app_rows(conn, id).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Installations

const INSTALLATION_COLUMNS: &str = "id, app, account, created";

fn installation_row(row: &Row<'_>) -> Result<Installation, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    let app: String = row.get(1).map_err(failure)?;
    let account: String = row.get(2).map_err(failure)?;
    Ok(Installation {
        id: parsed(InstallationId::parse(&id), "installations.id")?,
        app: parsed(AppId::parse(&app), "installations.app")?,
        account: parsed(AccountId::parse(&account), "installations.account")?,
        created: row.get(3).map_err(failure)?,
    })
}

pub fn installed(conn: &Connection, app: &AppId, account: &AccountId) -> Result<bool, StoreError> {
    exists(
        conn,
        "SELECT 1 FROM apps WHERE id = ?1 AND owner = ?2
         UNION ALL SELECT 1 FROM installations WHERE app = ?1 AND account = ?2",
        [app.as_str(), account.as_str()],
    )
}

pub fn create_installation(conn: &Connection, inst: &Installation) -> Result<(), StoreError> {
    if !app_exists(conn, &inst.app)? {
        return Err(StoreError::Missing(format!("app {}", inst.app)));
    }
    if !account_exists(conn, &inst.account)? {
        return Err(StoreError::Missing(format!("account {}", inst.account)));
    }
    if installed(conn, &inst.app, &inst.account)? {
        return Err(StoreError::AlreadyExists(format!(
            "an installation of app {} on account {}",
            inst.app, inst.account
        )));
    }
    conn.prepare_cached(
        "INSERT INTO installations (id, app, account, created) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            inst.id.as_str(),
            inst.app.as_str(),
            inst.account.as_str(),
            inst.created
        ])
    })
    .map_err(failure)?;
    Ok(())
}

pub fn installation(
    conn: &Connection,
    id: &InstallationId,
) -> Result<Option<Installation>, StoreError> {
    one(
        conn,
        &format!("SELECT {INSTALLATION_COLUMNS} FROM installations WHERE id = ?1"),
        [id.as_str()],
        installation_row,
    )
}

pub fn installations(
    conn: &Connection,
    filter: &InstallationFilter,
    p: &DirectoryPage,
) -> Result<Listed<Installation>, StoreError> {
    let app = filter.app.as_ref().map(AppId::as_str);
    let account = filter.account.as_ref().map(AccountId::as_str);
    page(
        conn,
        "installations",
        INSTALLATION_COLUMNS,
        "(?1 IS NULL OR app = ?1) AND (?2 IS NULL OR account = ?2)",
        &[&app, &account],
        p,
        installation_row,
    )
}

pub fn remove_installation(
    conn: &Connection,
    id: &InstallationId,
) -> Result<Option<Removed>, StoreError> {
    let Some(inst) = installation(conn, id)? else {
        return Ok(None);
    };
    let (app, account) = (inst.app.as_str(), inst.account.as_str());
    Ok(Some(Removed {
        installations: delete(
            conn,
            "DELETE FROM installations WHERE id = ?1",
            [id.as_str()],
        )?,
        user_sessions: delete(
            conn,
            "DELETE FROM user_sessions WHERE app = ?1 AND account = ?2",
            [app, account],
        )?,
        secrets: delete(
            conn,
            "DELETE FROM secrets WHERE app = ?1 AND account = ?2",
            [app, account],
        )?,
        keys: delete(
            conn,
            "DELETE FROM keys WHERE kind = 'namespace' AND app = ?1 AND account = ?2",
            [app, account],
        )?,
        ..Removed::default()
    }))
}

// ---------------------------------------------------------------------------------------------
// Users

const USER_COLUMNS: &str = "id, account, email, created";

fn user_row(row: &Row<'_>) -> Result<User, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    let account: String = row.get(1).map_err(failure)?;
    Ok(User {
        id: parsed(UserId::parse(&id), "users.id")?,
        account: parsed(AccountId::parse(&account), "users.account")?,
        email: row.get(2).map_err(failure)?,
        created: row.get(3).map_err(failure)?,
    })
}

pub fn create_user(conn: &Connection, user: &User) -> Result<(), StoreError> {
    if !account_exists(conn, &user.account)? {
        return Err(StoreError::Missing(format!("account {}", user.account)));
    }
    if user_row_exists(conn, &user.account, &user.id)? {
        return Err(StoreError::AlreadyExists(format!(
            "user {} of account {}",
            user.id, user.account
        )));
    }
    conn.prepare_cached("INSERT INTO users (id, account, email, created) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| {
            s.execute(params![
                user.id.as_str(),
                user.account.as_str(),
                user.email,
                user.created
            ])
        })
        .map_err(failure)?;
    Ok(())
}

fn user_row_exists(
    conn: &Connection,
    account: &AccountId,
    id: &UserId,
) -> Result<bool, StoreError> {
    exists(
        conn,
        "SELECT 1 FROM users WHERE account = ?1 AND id = ?2",
        [account.as_str(), id.as_str()],
    )
}

pub fn user(
    conn: &Connection,
    account: &AccountId,
    id: &UserId,
) -> Result<Option<User>, StoreError> {
    one(
        conn,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE account = ?1 AND id = ?2"),
        [account.as_str(), id.as_str()],
        user_row,
    )
}

pub fn users(
    conn: &Connection,
    account: &AccountId,
    p: &DirectoryPage,
) -> Result<Listed<User>, StoreError> {
    let account = account.as_str();
    page(
        conn,
        "users",
        USER_COLUMNS,
        "account = ?1",
        &[&account],
        p,
        user_row,
    )
}

pub fn remove_user(
    conn: &Connection,
    account: &AccountId,
    id: &UserId,
) -> Result<Option<Removed>, StoreError> {
    if !user_row_exists(conn, account, id)? {
        return Ok(None);
    }
    let (a, u) = (account.as_str(), id.as_str());
    let mut secrets = 0;
    for app in apps_with_secrets(conn)? {
        secrets += delete(conn, DELETE_USER_SECRETS, [app.as_str(), a, u])?;
    }
    Ok(Some(Removed {
        users: delete(
            conn,
            "DELETE FROM users WHERE account = ?1 AND id = ?2",
            [a, u],
        )?,
        user_sessions: delete(
            conn,
            "DELETE FROM user_sessions WHERE account = ?1 AND user = ?2",
            [a, u],
        )?,
        secrets,
        keys: delete(
            conn,
            "DELETE FROM keys WHERE kind = 'user' AND app = '' AND account = ?1 AND mode = ''
                 AND scope_user = ?2",
            [a, u],
        )?,
        ..Removed::default()
    }))
}

// ---------------------------------------------------------------------------------------------
// Credentials

const KEY_COLUMNS: &str = "id, app, livemode, key_type, can_read, can_write, name, created, \
                           expires_at, revoked, hash, hint_prefix, hint_last4";

pub(crate) fn mode(livemode: bool) -> Mode {
    if livemode {
        Mode::Live
    } else {
        Mode::Test
    }
}

fn hash(bytes: Vec<u8>, what: &str) -> Result<CredentialId, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| damaged(what))?;
    Ok(CredentialId::from_bytes(bytes))
}

fn hint(prefix: &str, last4: Option<String>) -> CredentialHint {
    CredentialHint::from_stored(prefix, last4.as_deref())
}

fn key_row(row: &Row<'_>) -> Result<ApiKeyRecord, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    let app: String = row.get(1).map_err(failure)?;
    let key_type: String = row.get(3).map_err(failure)?;
    let prefix: String = row.get(11).map_err(failure)?;
    Ok(ApiKeyRecord {
        id: parsed(ApiKeyId::parse(&id), "api_keys.id")?,
        app: parsed(AppId::parse(&app), "api_keys.app")?,
        mode: mode(row.get(2).map_err(failure)?),
        key_type: match key_type.as_str() {
            "secret" => KeyType::Secret,
            "restricted" => KeyType::Restricted,
            _ => return Err(damaged("api_keys.key_type")),
        },
        permissions: Permissions {
            read: row.get(4).map_err(failure)?,
            write: row.get(5).map_err(failure)?,
        },
        name: row.get(6).map_err(failure)?,
        created: row.get(7).map_err(failure)?,
        expires_at: row.get(8).map_err(failure)?,
        revoked: row.get(9).map_err(failure)?,
        hash: hash(row.get(10).map_err(failure)?, "api_keys.hash")?,
        hint: hint(&prefix, row.get(12).map_err(failure)?),
    })
}

pub fn create_key(conn: &Connection, key: &ApiKeyRecord) -> Result<(), StoreError> {
    if !app_exists(conn, &key.app)? {
        return Err(StoreError::Missing(format!("app {}", key.app)));
    }
    if exists(
        conn,
        "SELECT 1 FROM api_keys WHERE id = ?1",
        [key.id.as_str()],
    )? {
        return Err(StoreError::AlreadyExists(format!("key {}", key.id)));
    }
    let (prefix, last4) = key.hint.stored_parts();
    conn.prepare_cached(
        "INSERT INTO api_keys (id, app, livemode, key_type, can_read, can_write, name, created,
                               expires_at, revoked, hash, hint_prefix, hint_last4)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            key.id.as_str(),
            key.app.as_str(),
            key.mode.livemode(),
            key.key_type.as_str(),
            key.permissions.read,
            key.permissions.write,
            key.name,
            key.created,
            key.expires_at,
            key.revoked,
            &key.hash.as_bytes()[..],
            prefix,
            last4
        ])
    })
    .map_err(failure)?;
    Ok(())
}

pub fn key(conn: &Connection, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    one(
        conn,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
        [id.as_str()],
        key_row,
    )
}

pub fn keys(
    conn: &Connection,
    app: &AppId,
    p: &DirectoryPage,
) -> Result<Listed<ApiKeyRecord>, StoreError> {
    let app = app.as_str();
    page(
        conn,
        "api_keys",
        KEY_COLUMNS,
        "app = ?1",
        &[&app],
        p,
        key_row,
    )
}

pub fn roll_key(
    conn: &Connection,
    id: &ApiKeyId,
    expires_at: i64,
    new: &ApiKeyRecord,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    if key(conn, id)?.is_none() {
        return Ok(None);
    }
    conn.prepare_cached(
        "UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.as_str(), expires_at]))
    .map_err(failure)?;
    create_key(conn, new)?;
    key(conn, id)
}

pub fn revoke_key(conn: &Connection, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    conn.prepare_cached("UPDATE api_keys SET revoked = 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([id.as_str()]))
        .map_err(failure)?;
    key(conn, id)
}

const SESSION_COLUMNS: &str =
    "id, app, account, user, livemode, created, expires_at, hash, hint_prefix, hint_last4";

fn session_row(row: &Row<'_>) -> Result<UserSession, StoreError> {
    let id: String = row.get(0).map_err(failure)?;
    let app: String = row.get(1).map_err(failure)?;
    let account: String = row.get(2).map_err(failure)?;
    let user: String = row.get(3).map_err(failure)?;
    let prefix: String = row.get(8).map_err(failure)?;
    Ok(UserSession {
        id: parsed(SessionId::parse(&id), "user_sessions.id")?,
        app: parsed(AppId::parse(&app), "user_sessions.app")?,
        account: parsed(AccountId::parse(&account), "user_sessions.account")?,
        user: parsed(UserId::parse(&user), "user_sessions.user")?,
        mode: mode(row.get(4).map_err(failure)?),
        created: row.get(5).map_err(failure)?,
        expires_at: row.get(6).map_err(failure)?,
        hash: hash(row.get(7).map_err(failure)?, "user_sessions.hash")?,
        hint: hint(&prefix, row.get(9).map_err(failure)?),
    })
}

pub fn create_session(conn: &Connection, session: &UserSession) -> Result<(), StoreError> {
    if !installed(conn, &session.app, &session.account)? {
        return Err(StoreError::Missing(format!(
            "an installation of app {} on account {}",
            session.app, session.account
        )));
    }
    if !user_row_exists(conn, &session.account, &session.user)? {
        return Err(StoreError::Missing(format!(
            "user {} of account {}",
            session.user, session.account
        )));
    }
    let (prefix, last4) = session.hint.stored_parts();
    conn.prepare_cached(
        "INSERT INTO user_sessions (id, app, account, user, livemode, created, expires_at, hash,
                                    hint_prefix, hint_last4)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            session.id.as_str(),
            session.app.as_str(),
            session.account.as_str(),
            session.user.as_str(),
            session.mode.livemode(),
            session.created,
            session.expires_at,
            &session.hash.as_bytes()[..],
            prefix,
            last4
        ])
    })
    .map_err(failure)?;
    Ok(())
}

pub fn session(conn: &Connection, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
    one(
        conn,
        &format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE id = ?1"),
        [id.as_str()],
        session_row,
    )
}

pub fn remove_session(
    conn: &Connection,
    id: &SessionId,
) -> Result<Option<UserSession>, StoreError> {
    let found = session(conn, id)?;
    if found.is_some() {
        delete(
            conn,
            "DELETE FROM user_sessions WHERE id = ?1",
            [id.as_str()],
        )?;
    }
    Ok(found)
}

pub fn credential(
    conn: &Connection,
    hash: &CredentialId,
) -> Result<Option<Credential>, StoreError> {
    let bytes = &hash.as_bytes()[..];
    if let Some(key) = one(
        conn,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"),
        [bytes],
        key_row,
    )? {
        return Ok(Some(Credential::Key(key)));
    }
    Ok(one(
        conn,
        &format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE hash = ?1"),
        [bytes],
        session_row,
    )?
    .map(Credential::Session))
}
