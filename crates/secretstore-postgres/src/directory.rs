//! The tenant directory in PostgreSQL: each read and write of `Directory` as one function of a
//! connection or transaction, and the row mappings. The store runs each write in a transaction
//! that also sends `NOTIFY` on `CHANGED_CHANNEL`, delivered to every server listening on the
//! database when (and only if) the transaction commits; each server then clears its
//! `DirectoryCache`, so a revoked key or an ended session is refused everywhere at once.
//! A create that loses a race with another server's create of the same id meets the unique
//! constraint and answers `AlreadyExists`, as if it had come second.

use deadpool_postgres::GenericClient;
use secretstore_core::{
    Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, Credential, CredentialHint,
    CredentialId, CursorKind, DirectoryPage, Installation, InstallationFilter, InstallationId,
    KeyType, Listed, Mode, Permissions, Removed, SessionId, StoreError, User, UserId, UserSession,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::errors::{damaged, is_unique_violation, pg_failure};
use crate::secrets::{execute, prepared, query, query_opt};

/// The channel every directory write notifies, and every server listens on.
pub const CHANGED_CHANNEL: &str = "secretstore_directory_changed";

/// Sent in the transaction of every directory write.
pub async fn notify_changed<C: GenericClient>(tx: &C) -> Result<(), StoreError> {
    execute(tx, "SELECT pg_notify($1, '')", &[&CHANGED_CHANNEL]).await?;
    Ok(())
}

/// The payload of the notification a removal that destroyed keys sends too (besides
/// `notify_changed`'s): every server then drops the keys it holds unwrapped.
pub const KEYS_DESTROYED: &str = "keys";

/// Deletes the keys `sql` picks (crypto-shredding), telling every server if any went.
async fn destroy_keys<C: GenericClient>(
    tx: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let destroyed = execute(tx, sql, params).await?;
    if destroyed > 0 {
        execute(
            tx,
            "SELECT pg_notify($1, $2)",
            &[&CHANGED_CHANNEL, &KEYS_DESTROYED],
        )
        .await?;
    }
    Ok(destroyed)
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) fn col<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    row: &Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| pg_failure(&e))
}

fn parsed<T, E>(value: Result<T, E>, what: &str) -> Result<T, StoreError> {
    value.map_err(|_| damaged(what))
}

async fn exists<C: GenericClient>(
    client: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<bool, StoreError> {
    Ok(query_opt(client, sql, params).await?.is_some())
}

async fn account_exists<C: GenericClient>(client: &C, id: &AccountId) -> Result<bool, StoreError> {
    exists(
        client,
        "SELECT 1 FROM accounts WHERE id = $1",
        &[&id.as_str()],
    )
    .await
}

async fn app_exists<C: GenericClient>(client: &C, id: &AppId) -> Result<bool, StoreError> {
    exists(client, "SELECT 1 FROM apps WHERE id = $1", &[&id.as_str()]).await
}

/// Runs an INSERT of a create; a unique violation (another server created the same id first)
/// is `AlreadyExists(what)`.
async fn insert<C: GenericClient>(
    client: &C,
    sql: &str,
    params: Params<'_>,
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    let statement = prepared(client, sql).await?;
    match client.execute(&statement, params).await {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(what())),
        Err(e) => Err(pg_failure(&e)),
    }
}

async fn one<C: GenericClient, T>(
    client: &C,
    sql: &str,
    params: Params<'_>,
    row: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    query_opt(client, sql, params)
        .await?
        .map(|r| row(&r))
        .transpose()
}

/// One page of `table` (whose rows have `seq` and `id`), newest first, filtered by `filter` (an
/// SQL condition on `$1`..`$n`, bound from `args`; the page's own parameters follow them).
async fn page<C: GenericClient, T>(
    client: &C,
    table: &str,
    columns: &str,
    filter: &str,
    args: &[&(dyn ToSql + Sync)],
    page: &DirectoryPage,
    row: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Listed<T>, StoreError> {
    let next = args.len() + 1;
    let before = match &page.starting_after {
        None => i64::MAX,
        Some(id) => {
            let sql = format!("SELECT seq FROM {table} WHERE id = ${next} AND {filter}");
            let id = id.as_str();
            let mut params = args.to_vec();
            params.push(&id);
            match query_opt(client, &sql, &params).await? {
                Some(r) => col::<i64>(&r, 0)?,
                None => {
                    return Err(StoreError::CursorNotFound {
                        kind: CursorKind::StartingAfter,
                        id: id.to_owned(),
                    })
                }
            }
        }
    };
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE {filter} AND seq < ${next} ORDER BY seq DESC \
         LIMIT ${}",
        next + 1
    );
    let fetch = i64::from(page.limit) + 1;
    let mut params = args.to_vec();
    params.push(&before);
    params.push(&fetch);
    let mut items = query(client, &sql, &params)
        .await?
        .iter()
        .map(&row)
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    Ok(Listed { items, has_more })
}

// ---------------------------------------------------------------------------------------------
// Accounts

const ACCOUNT_COLUMNS: &str = "id, name, created";

fn account_row(row: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: parsed(AccountId::parse(&col::<String>(row, 0)?), "accounts.id")?,
        name: col(row, 1)?,
        created: col(row, 2)?,
    })
}

pub async fn create_account<C: GenericClient>(tx: &C, account: &Account) -> Result<(), StoreError> {
    let what = || format!("account {}", account.id);
    if account_exists(tx, &account.id).await? {
        return Err(StoreError::AlreadyExists(what()));
    }
    insert(
        tx,
        "INSERT INTO accounts (id, name, created) VALUES ($1, $2, $3)",
        &[&account.id.as_str(), &account.name, &account.created],
        what,
    )
    .await
}

pub async fn account<C: GenericClient>(
    client: &C,
    id: &AccountId,
) -> Result<Option<Account>, StoreError> {
    one(
        client,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
        &[&id.as_str()],
        account_row,
    )
    .await
}

pub async fn accounts<C: GenericClient>(
    client: &C,
    p: &DirectoryPage,
) -> Result<Listed<Account>, StoreError> {
    page(
        client,
        "accounts",
        ACCOUNT_COLUMNS,
        "TRUE",
        &[],
        p,
        account_row,
    )
    .await
}

pub async fn remove_account<C: GenericClient>(
    tx: &C,
    id: &AccountId,
) -> Result<Option<Removed>, StoreError> {
    if !account_exists(tx, id).await? {
        return Ok(None);
    }
    let a = id.as_str();
    let mut removed = Removed::default();
    let owned = query(tx, "SELECT id FROM apps WHERE owner = $1", &[&a]).await?;
    for row in owned {
        let app = parsed(AppId::parse(&col::<String>(&row, 0)?), "apps.id")?;
        removed += remove_app_rows(tx, &app).await?;
    }
    removed.secrets += execute(tx, "DELETE FROM secrets WHERE account = $1", &[&a]).await?;
    removed.user_sessions +=
        execute(tx, "DELETE FROM user_sessions WHERE account = $1", &[&a]).await?;
    removed.installations +=
        execute(tx, "DELETE FROM installations WHERE account = $1", &[&a]).await?;
    removed.users += execute(tx, "DELETE FROM users WHERE account = $1", &[&a]).await?;
    // Every namespace key of any app on the account, and its users' keys.
    removed.keys += destroy_keys(tx, "DELETE FROM keys WHERE account = $1", &[&a]).await?;
    execute(tx, "DELETE FROM accounts WHERE id = $1", &[&a]).await?;
    Ok(Some(removed))
}

// ---------------------------------------------------------------------------------------------
// Apps

const APP_COLUMNS: &str = "id, name, owner, created";

fn app_row(row: &Row) -> Result<App, StoreError> {
    Ok(App {
        id: parsed(AppId::parse(&col::<String>(row, 0)?), "apps.id")?,
        name: col(row, 1)?,
        owner: parsed(AccountId::parse(&col::<String>(row, 2)?), "apps.owner")?,
        created: col(row, 3)?,
    })
}

pub async fn create_app<C: GenericClient>(tx: &C, app: &App) -> Result<(), StoreError> {
    let what = || format!("app {}", app.id);
    if app_exists(tx, &app.id).await? {
        return Err(StoreError::AlreadyExists(what()));
    }
    if !account_exists(tx, &app.owner).await? {
        return Err(StoreError::Missing(format!("account {}", app.owner)));
    }
    insert(
        tx,
        "INSERT INTO apps (id, name, owner, created) VALUES ($1, $2, $3, $4)",
        &[
            &app.id.as_str(),
            &app.name,
            &app.owner.as_str(),
            &app.created,
        ],
        what,
    )
    .await
}

pub async fn app<C: GenericClient>(client: &C, id: &AppId) -> Result<Option<App>, StoreError> {
    one(
        client,
        &format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"),
        &[&id.as_str()],
        app_row,
    )
    .await
}

pub async fn apps<C: GenericClient>(
    client: &C,
    p: &DirectoryPage,
) -> Result<Listed<App>, StoreError> {
    page(client, "apps", APP_COLUMNS, "TRUE", &[], p, app_row).await
}

async fn remove_app_rows<C: GenericClient>(tx: &C, id: &AppId) -> Result<Removed, StoreError> {
    let a = id.as_str();
    Ok(Removed {
        apps: execute(tx, "DELETE FROM apps WHERE id = $1", &[&a]).await?,
        installations: execute(tx, "DELETE FROM installations WHERE app = $1", &[&a]).await?,
        users: 0,
        api_keys: execute(tx, "DELETE FROM api_keys WHERE app = $1", &[&a]).await?,
        user_sessions: execute(tx, "DELETE FROM user_sessions WHERE app = $1", &[&a]).await?,
        secrets: execute(tx, "DELETE FROM secrets WHERE app = $1", &[&a]).await?,
        keys: destroy_keys(
            tx,
            "DELETE FROM keys WHERE kind = 'namespace' AND app = $1",
            &[&a],
        )
        .await?,
    })
}

pub async fn remove_app<C: GenericClient>(
    tx: &C,
    id: &AppId,
) -> Result<Option<Removed>, StoreError> {
    if !app_exists(tx, id).await? {
        return Ok(None);
    }
    remove_app_rows(tx, id).await.map(Some)
}

// ---------------------------------------------------------------------------------------------
// Installations

const INSTALLATION_COLUMNS: &str = "id, app, account, created";

fn installation_row(row: &Row) -> Result<Installation, StoreError> {
    Ok(Installation {
        id: parsed(
            InstallationId::parse(&col::<String>(row, 0)?),
            "installations.id",
        )?,
        app: parsed(AppId::parse(&col::<String>(row, 1)?), "installations.app")?,
        account: parsed(
            AccountId::parse(&col::<String>(row, 2)?),
            "installations.account",
        )?,
        created: col(row, 3)?,
    })
}

pub async fn installed<C: GenericClient>(
    client: &C,
    app: &AppId,
    account: &AccountId,
) -> Result<bool, StoreError> {
    exists(
        client,
        "SELECT 1 FROM apps WHERE id = $1 AND owner = $2 \
         UNION ALL SELECT 1 FROM installations WHERE app = $1 AND account = $2 LIMIT 1",
        &[&app.as_str(), &account.as_str()],
    )
    .await
}

pub async fn create_installation<C: GenericClient>(
    tx: &C,
    inst: &Installation,
) -> Result<(), StoreError> {
    if !app_exists(tx, &inst.app).await? {
        return Err(StoreError::Missing(format!("app {}", inst.app)));
    }
    if !account_exists(tx, &inst.account).await? {
        return Err(StoreError::Missing(format!("account {}", inst.account)));
    }
    let what = || {
        format!(
            "an installation of app {} on account {}",
            inst.app, inst.account
        )
    };
    if installed(tx, &inst.app, &inst.account).await? {
        return Err(StoreError::AlreadyExists(what()));
    }
    insert(
        tx,
        "INSERT INTO installations (id, app, account, created) VALUES ($1, $2, $3, $4)",
        &[
            &inst.id.as_str(),
            &inst.app.as_str(),
            &inst.account.as_str(),
            &inst.created,
        ],
        what,
    )
    .await
}

pub async fn installation<C: GenericClient>(
    client: &C,
    id: &InstallationId,
) -> Result<Option<Installation>, StoreError> {
    one(
        client,
        &format!("SELECT {INSTALLATION_COLUMNS} FROM installations WHERE id = $1"),
        &[&id.as_str()],
        installation_row,
    )
    .await
}

pub async fn installations<C: GenericClient>(
    client: &C,
    filter: &InstallationFilter,
    p: &DirectoryPage,
) -> Result<Listed<Installation>, StoreError> {
    let app = filter.app.as_ref().map(AppId::as_str);
    let account = filter.account.as_ref().map(AccountId::as_str);
    page(
        client,
        "installations",
        INSTALLATION_COLUMNS,
        "($1::TEXT IS NULL OR app = $1) AND ($2::TEXT IS NULL OR account = $2)",
        &[&app, &account],
        p,
        installation_row,
    )
    .await
}

pub async fn remove_installation<C: GenericClient>(
    tx: &C,
    id: &InstallationId,
) -> Result<Option<Removed>, StoreError> {
    let Some(inst) = installation(tx, id).await? else {
        return Ok(None);
    };
    let (app, account) = (inst.app.as_str(), inst.account.as_str());
    Ok(Some(Removed {
        installations: execute(
            tx,
            "DELETE FROM installations WHERE id = $1",
            &[&id.as_str()],
        )
        .await?,
        user_sessions: execute(
            tx,
            "DELETE FROM user_sessions WHERE app = $1 AND account = $2",
            &[&app, &account],
        )
        .await?,
        secrets: execute(
            tx,
            "DELETE FROM secrets WHERE app = $1 AND account = $2",
            &[&app, &account],
        )
        .await?,
        keys: destroy_keys(
            tx,
            "DELETE FROM keys WHERE kind = 'namespace' AND app = $1 AND account = $2",
            &[&app, &account],
        )
        .await?,
        ..Removed::default()
    }))
}

// ---------------------------------------------------------------------------------------------
// Users

const USER_COLUMNS: &str = "id, account, email, created";

fn user_row(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: parsed(UserId::parse(&col::<String>(row, 0)?), "users.id")?,
        account: parsed(AccountId::parse(&col::<String>(row, 1)?), "users.account")?,
        email: col(row, 2)?,
        created: col(row, 3)?,
    })
}

async fn user_row_exists<C: GenericClient>(
    client: &C,
    account: &AccountId,
    id: &UserId,
) -> Result<bool, StoreError> {
    exists(
        client,
        "SELECT 1 FROM users WHERE account = $1 AND id = $2",
        &[&account.as_str(), &id.as_str()],
    )
    .await
}

pub async fn create_user<C: GenericClient>(tx: &C, user: &User) -> Result<(), StoreError> {
    if !account_exists(tx, &user.account).await? {
        return Err(StoreError::Missing(format!("account {}", user.account)));
    }
    let what = || format!("user {} of account {}", user.id, user.account);
    if user_row_exists(tx, &user.account, &user.id).await? {
        return Err(StoreError::AlreadyExists(what()));
    }
    insert(
        tx,
        "INSERT INTO users (id, account, email, created) VALUES ($1, $2, $3, $4)",
        &[
            &user.id.as_str(),
            &user.account.as_str(),
            &user.email,
            &user.created,
        ],
        what,
    )
    .await
}

pub async fn user<C: GenericClient>(
    client: &C,
    account: &AccountId,
    id: &UserId,
) -> Result<Option<User>, StoreError> {
    one(
        client,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE account = $1 AND id = $2"),
        &[&account.as_str(), &id.as_str()],
        user_row,
    )
    .await
}

pub async fn users<C: GenericClient>(
    client: &C,
    account: &AccountId,
    p: &DirectoryPage,
) -> Result<Listed<User>, StoreError> {
    page(
        client,
        "users",
        USER_COLUMNS,
        "account = $1",
        &[&account.as_str()],
        p,
        user_row,
    )
    .await
}

pub async fn remove_user<C: GenericClient>(
    tx: &C,
    account: &AccountId,
    id: &UserId,
) -> Result<Option<Removed>, StoreError> {
    if !user_row_exists(tx, account, id).await? {
        return Ok(None);
    }
    let (a, u) = (account.as_str(), id.as_str());
    Ok(Some(Removed {
        users: execute(
            tx,
            "DELETE FROM users WHERE account = $1 AND id = $2",
            &[&a, &u],
        )
        .await?,
        user_sessions: execute(
            tx,
            "DELETE FROM user_sessions WHERE account = $1 AND user_id = $2",
            &[&a, &u],
        )
        .await?,
        secrets: execute(
            tx,
            "DELETE FROM secrets WHERE account = $1 AND scope_type = 'user' AND scope_user = $2",
            &[&a, &u],
        )
        .await?,
        keys: destroy_keys(
            tx,
            "DELETE FROM keys WHERE kind = 'user' AND app = '' AND account = $1 AND mode = '' \
             AND scope_user = $2",
            &[&a, &u],
        )
        .await?,
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

fn key_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let key_type: String = col(row, 3)?;
    let prefix: String = col(row, 11)?;
    Ok(ApiKeyRecord {
        id: parsed(ApiKeyId::parse(&col::<String>(row, 0)?), "api_keys.id")?,
        app: parsed(AppId::parse(&col::<String>(row, 1)?), "api_keys.app")?,
        mode: mode(col(row, 2)?),
        key_type: match key_type.as_str() {
            "secret" => KeyType::Secret,
            "restricted" => KeyType::Restricted,
            _ => return Err(damaged("api_keys.key_type")),
        },
        permissions: Permissions {
            read: col(row, 4)?,
            write: col(row, 5)?,
        },
        name: col(row, 6)?,
        created: col(row, 7)?,
        expires_at: col(row, 8)?,
        revoked: col(row, 9)?,
        hash: hash(col(row, 10)?, "api_keys.hash")?,
        hint: hint(&prefix, col(row, 12)?),
    })
}

pub async fn create_key<C: GenericClient>(tx: &C, key: &ApiKeyRecord) -> Result<(), StoreError> {
    if !app_exists(tx, &key.app).await? {
        return Err(StoreError::Missing(format!("app {}", key.app)));
    }
    let what = || format!("key {}", key.id);
    if exists(
        tx,
        "SELECT 1 FROM api_keys WHERE id = $1",
        &[&key.id.as_str()],
    )
    .await?
    {
        return Err(StoreError::AlreadyExists(what()));
    }
    let (prefix, last4) = key.hint.stored_parts();
    insert(
        tx,
        "INSERT INTO api_keys (id, app, livemode, key_type, can_read, can_write, name, created, \
         expires_at, revoked, hash, hint_prefix, hint_last4) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &key.id.as_str(),
            &key.app.as_str(),
            &key.mode.livemode(),
            &key.key_type.as_str(),
            &key.permissions.read,
            &key.permissions.write,
            &key.name,
            &key.created,
            &key.expires_at,
            &key.revoked,
            &&key.hash.as_bytes()[..],
            &prefix,
            &last4,
        ],
        what,
    )
    .await
}

pub async fn key<C: GenericClient>(
    client: &C,
    id: &ApiKeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    one(
        client,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"),
        &[&id.as_str()],
        key_row,
    )
    .await
}

pub async fn keys<C: GenericClient>(
    client: &C,
    app: &AppId,
    p: &DirectoryPage,
) -> Result<Listed<ApiKeyRecord>, StoreError> {
    page(
        client,
        "api_keys",
        KEY_COLUMNS,
        "app = $1",
        &[&app.as_str()],
        p,
        key_row,
    )
    .await
}

pub async fn roll_key<C: GenericClient>(
    tx: &C,
    id: &ApiKeyId,
    expires_at: i64,
    new: &ApiKeyRecord,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let updated = execute(
        tx,
        "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE id = $1",
        &[&id.as_str(), &expires_at],
    )
    .await?;
    if updated == 0 {
        return Ok(None);
    }
    create_key(tx, new).await?;
    key(tx, id).await
}

pub async fn revoke_key<C: GenericClient>(
    tx: &C,
    id: &ApiKeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    execute(
        tx,
        "UPDATE api_keys SET revoked = TRUE WHERE id = $1",
        &[&id.as_str()],
    )
    .await?;
    key(tx, id).await
}

const SESSION_COLUMNS: &str =
    "id, app, account, user_id, livemode, created, expires_at, hash, hint_prefix, hint_last4";

fn session_row(row: &Row) -> Result<UserSession, StoreError> {
    let prefix: String = col(row, 8)?;
    Ok(UserSession {
        id: parsed(
            SessionId::parse(&col::<String>(row, 0)?),
            "user_sessions.id",
        )?,
        app: parsed(AppId::parse(&col::<String>(row, 1)?), "user_sessions.app")?,
        account: parsed(
            AccountId::parse(&col::<String>(row, 2)?),
            "user_sessions.account",
        )?,
        user: parsed(
            UserId::parse(&col::<String>(row, 3)?),
            "user_sessions.user_id",
        )?,
        mode: mode(col(row, 4)?),
        created: col(row, 5)?,
        expires_at: col(row, 6)?,
        hash: hash(col(row, 7)?, "user_sessions.hash")?,
        hint: hint(&prefix, col(row, 9)?),
    })
}

pub async fn create_session<C: GenericClient>(
    tx: &C,
    session: &UserSession,
) -> Result<(), StoreError> {
    if !installed(tx, &session.app, &session.account).await? {
        return Err(StoreError::Missing(format!(
            "an installation of app {} on account {}",
            session.app, session.account
        )));
    }
    if !user_row_exists(tx, &session.account, &session.user).await? {
        return Err(StoreError::Missing(format!(
            "user {} of account {}",
            session.user, session.account
        )));
    }
    let (prefix, last4) = session.hint.stored_parts();
    insert(
        tx,
        "INSERT INTO user_sessions (id, app, account, user_id, livemode, created, expires_at, \
         hash, hint_prefix, hint_last4) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &session.id.as_str(),
            &session.app.as_str(),
            &session.account.as_str(),
            &session.user.as_str(),
            &session.mode.livemode(),
            &session.created,
            &session.expires_at,
            &&session.hash.as_bytes()[..],
            &prefix,
            &last4,
        ],
        || format!("session {}", session.id),
    )
    .await
}

pub async fn session<C: GenericClient>(
    client: &C,
    id: &SessionId,
) -> Result<Option<UserSession>, StoreError> {
    one(
        client,
        &format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE id = $1"),
        &[&id.as_str()],
        session_row,
    )
    .await
}

pub async fn remove_session<C: GenericClient>(
    tx: &C,
    id: &SessionId,
) -> Result<Option<UserSession>, StoreError> {
    one(
        tx,
        &format!("DELETE FROM user_sessions WHERE id = $1 RETURNING {SESSION_COLUMNS}"),
        &[&id.as_str()],
        session_row,
    )
    .await
}

pub async fn credential<C: GenericClient>(
    client: &C,
    hash: &CredentialId,
) -> Result<Option<Credential>, StoreError> {
    let bytes = &hash.as_bytes()[..];
    if let Some(key) = one(
        client,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1"),
        &[&bytes],
        key_row,
    )
    .await?
    {
        return Ok(Some(Credential::Key(key)));
    }
    Ok(one(
        client,
        &format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE hash = $1"),
        &[&bytes],
        session_row,
    )
    .await?
    .map(Credential::Session))
}
