//! The key hierarchy's SQL (`KeyStore`): the wrapped keys of `keys`, and what a rotation walks
//! over `secrets` (the namespaces that hold secrets, a namespace's secrets still sealed under
//! an older key, and the compare-and-set that re-seals them). Writes are functions of the write
//! connection like those of `writes.rs`, run by the writer; reads run on the readers.

use std::collections::HashMap;

use rusqlite::{params, Connection, Row, ToSql};
use secretstore_core::{
    AccountId, KeyOwner, Namespace, Reseal, RootUse, SealedSecret, SecretAddress, SecretId,
    SecretName, StoreError, StoredKey, UserId,
};
use secretstore_crypto::KeyId;

use crate::errors::{damaged, sql_failure};
use crate::rows::{namespace_from_columns, scope_from_columns, secret_columns, secret_from_row};

fn failure(e: rusqlite::Error) -> StoreError {
    sql_failure(&e)
}

/// The columns of a key as `key_row` reads them, in its order.
macro_rules! key_columns {
    () => {
        "kind, app, account, mode, scope_user, version, root, wrapped, created"
    };
}

/// The condition that a row of `keys` belongs to the owner bound as `?1`..`?5`
/// (`KeyOwner::stored_columns`).
macro_rules! of_owner {
    () => {
        "kind = ?1 AND app = ?2 AND account = ?3 AND mode = ?4 AND scope_user = ?5"
    };
}

/// Runs `sql` with the owner and version of `key` bound as `?1`..`?6` (`of_owner!()` and the
/// version) and `more` after them; answers how many rows it changed.
fn execute_for(
    conn: &Connection,
    sql: &str,
    key: &StoredKey,
    more: &[&dyn ToSql],
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(failure)?;
    for (at, column) in key.owner.stored_columns().into_iter().enumerate() {
        stmt.raw_bind_parameter(at + 1, column).map_err(failure)?;
    }
    stmt.raw_bind_parameter(6, key.version).map_err(failure)?;
    for (at, value) in more.iter().enumerate() {
        stmt.raw_bind_parameter(at + 7, value).map_err(failure)?;
    }
    stmt.raw_execute().map_err(failure)
}

/// A row of `key_columns!()` (an owner this version cannot read is an error:
/// `KeyOwner::from_stored`).
fn key_row(row: &Row<'_>) -> Result<StoredKey, StoreError> {
    let text = |i: usize| row.get::<_, String>(i).map_err(failure);
    let owner = KeyOwner::from_stored([&text(0)?, &text(1)?, &text(2)?, &text(3)?, &text(4)?])?;
    let version: i64 = row.get(5).map_err(failure)?;
    Ok(StoredKey {
        owner,
        version: u32::try_from(version).map_err(|_| damaged("keys.version"))?,
        root: root_of(row.get(6).map_err(failure)?)?,
        wrapped: row.get(7).map_err(failure)?,
        created: row.get(8).map_err(failure)?,
    })
}

fn root_of(bytes: Vec<u8>) -> Result<KeyId, StoreError> {
    Ok(KeyId(bytes.try_into().map_err(|_| damaged("keys.root"))?))
}

/// Every row `sql` answers for `params`, each read by `row`.
fn rows_of<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(failure)?;
    let mut rows = stmt.query(params).map_err(failure)?;
    let mut found = Vec::new();
    while let Some(r) = rows.next().map_err(failure)? {
        found.push(row(r)?);
    }
    Ok(found)
}

pub fn keys_of(conn: &Connection, owner: &KeyOwner) -> Result<Vec<StoredKey>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE ",
        of_owner!(),
        " ORDER BY version"
    );
    rows_of(conn, SQL, owner.stored_columns(), key_row)
}

/// Inserts `key` unless its owner has that version already; answers whether it did.
fn insert_key(conn: &Connection, key: &StoredKey) -> Result<bool, StoreError> {
    const INSERT: &str = concat!(
        "INSERT INTO keys (",
        key_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"
    );
    let inserted = execute_for(
        conn,
        INSERT,
        key,
        &[&key.root.0, &key.wrapped, &key.created],
    )?;
    Ok(inserted == 1)
}

/// Fails with `AlreadyExists`, as `add_new_key` would, if `key`'s owner has its version
/// already; changes nothing (`writes::commit` asks before any write of a commit changes
/// anything).
pub fn check_new_key(conn: &Connection, key: &StoredKey) -> Result<(), StoreError> {
    const SELECT: &str = concat!(
        "SELECT 1 FROM keys WHERE ",
        of_owner!(),
        " AND version = ?6"
    );
    let [kind, app, account, mode, user] = &key.owner.stored_columns();
    let taken = rows_of(
        conn,
        SELECT,
        params![kind, app, account, mode, user, key.version],
        |_| Ok(()),
    )?;
    match taken.is_empty() {
        true => Ok(()),
        false => Err(key.taken()),
    }
}

/// `Write::AddKey`: inserts `key`, or fails with `AlreadyExists` if its owner has that version
/// already, which undoes the commit it is part of.
pub fn add_new_key(conn: &Connection, key: StoredKey) -> Result<StoredKey, StoreError> {
    match insert_key(conn, &key)? {
        true => Ok(key),
        false => Err(key.taken()),
    }
}

/// Inserts `key` unless its owner has that version already, and answers the stored one. The
/// writer runs one job at a time, so nothing comes between the insert and the look-up.
pub fn add_key(conn: &Connection, key: &StoredKey) -> Result<StoredKey, StoreError> {
    const SELECT: &str = concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE ",
        of_owner!(),
        " AND version = ?6"
    );
    insert_key(conn, key)?;
    let [kind, app, account, mode, user] = &key.owner.stored_columns();
    rows_of(
        conn,
        SELECT,
        params![kind, app, account, mode, user, key.version],
        key_row,
    )?
    .pop()
    .ok_or_else(|| StoreError::Internal("a key just stored cannot be read back".into()))
}

/// `keys_not_under`'s walk: ordered by root key version, then by when the row was stored. It
/// reads the two ranges of `keys_root` on either side of `?1`, from their start, so a call reads
/// only the keys it answers, however many a rotation already re-wrapped (they left both ranges).
/// Ordered by the primary key and filtered, as before, each call read again every key already
/// re-wrapped: a rotation of n keys by pages of 100 read about n²/200 of them.
pub(crate) const NOT_UNDER: &str = concat!(
    "SELECT ",
    key_columns!(),
    ", rowid AS position FROM keys WHERE root < ?1
     UNION ALL SELECT ",
    key_columns!(),
    ", rowid AS position FROM keys WHERE root > ?1
     ORDER BY root, position LIMIT ?2"
);

pub fn keys_not_under(
    conn: &Connection,
    root: KeyId,
    limit: u32,
) -> Result<Vec<StoredKey>, StoreError> {
    rows_of(conn, NOT_UNDER, params![&root.0, limit], key_row)
}

/// Users with a key of their own, each once, in (account, user) order byte by byte (SQLite's
/// default collation). A user's key is kept with `app` and `mode` empty, so the primary key
/// (kind, app, account, mode, scope_user, version) serves the order.
pub fn users_with_keys(
    conn: &Connection,
    after: Option<&(AccountId, UserId)>,
    limit: u32,
) -> Result<Vec<(AccountId, UserId)>, StoreError> {
    const FIRST: &str = "SELECT DISTINCT account, scope_user FROM keys
                         WHERE kind = ?1 AND app = '' AND mode = ''
                         ORDER BY account, scope_user LIMIT ?2";
    const AFTER: &str = "SELECT DISTINCT account, scope_user FROM keys
                         WHERE kind = ?1 AND app = '' AND mode = ''
                             AND (account, scope_user) > (?3, ?4)
                         ORDER BY account, scope_user LIMIT ?2";
    let kind = KeyOwner::USER_KIND;
    let user_row = |row: &Row<'_>| {
        let text = |i: usize| row.get::<_, String>(i).map_err(failure);
        let account = AccountId::parse(&text(0)?).map_err(|_| damaged("keys.account"))?;
        let user = UserId::parse(&text(1)?).map_err(|_| damaged("keys.scope_user"))?;
        Ok((account, user))
    };
    match after {
        None => rows_of(conn, FIRST, params![kind, limit], user_row),
        Some((account, user)) => {
            let params = params![kind, limit, account.as_str(), user.as_str()];
            rows_of(conn, AFTER, params, user_row)
        }
    }
}

pub fn rewrap_key(
    conn: &Connection,
    key: &StoredKey,
    to: &(KeyId, Vec<u8>),
) -> Result<bool, StoreError> {
    const SQL: &str = concat!(
        "UPDATE keys SET root = ?7, wrapped = ?8 WHERE ",
        of_owner!(),
        " AND version = ?6 AND root = ?9 AND wrapped = ?10"
    );
    let (root, wrapped) = to;
    let more: [&dyn ToSql; 4] = [&root.0, wrapped, &key.root.0, &key.wrapped];
    let changed = execute_for(conn, SQL, key, &more)?;
    Ok(changed > 0)
}

/// Ordered by root id; the index on `root` serves the grouping.
pub fn keys_by_root(conn: &Connection) -> Result<Vec<RootUse>, StoreError> {
    const SQL: &str = "SELECT root, COUNT(*) FROM keys GROUP BY root ORDER BY root";
    rows_of(conn, SQL, [], |row| {
        Ok(RootUse {
            root: root_of(row.get(0).map_err(failure)?)?,
            keys: row.get::<_, i64>(1).map_err(failure)?.max(0) as u64,
        })
    })
}

/// The namespace's secrets, expired ones included, whose sealed bytes do not start with
/// `current[0]` (an account's) or `current[1]` (a user's), in id order after `after`. SQLite compares blobs byte by byte, and `substr` and
/// `length` of a blob count bytes. Each page sorts the namespace's rows: an index that orders a
/// namespace's secrets by id would cost every put, for a walk only rotations make.
pub fn stale_sealed(
    conn: &Connection,
    namespace: &Namespace,
    current: [&[u8]; 2],
    after: Option<&SecretId>,
    limit: u32,
) -> Result<Vec<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        secret_columns!(),
        ", scope_type, scope_user FROM secrets
         WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND id > ?4
             AND CASE scope_type WHEN 'user' THEN substr(sealed, 1, length(?7)) <> ?7
                 ELSE substr(sealed, 1, length(?5)) <> ?5 END
         ORDER BY id LIMIT ?6"
    );
    // Every id is longer than '', so no cursor is the start.
    let after = after.map_or("", SecretId::as_str);
    let params = params![
        namespace.app.as_str(),
        namespace.account.as_str(),
        namespace.mode.livemode(),
        after,
        current[0],
        limit,
        current[1]
    ];
    rows_of(conn, SQL, params, |row| {
        let text = |i: usize| row.get::<_, String>(i).map_err(failure);
        let scope = scope_from_columns(&text(5)?, &text(6)?)?;
        secret_from_row(row, namespace, &scope).map_err(failure)?
    })
}

/// A row that starts with `app, account, livemode`.
fn namespace_row(row: &Row<'_>) -> Result<Namespace, StoreError> {
    let text = |i: usize| row.get::<_, String>(i).map_err(failure);
    namespace_from_columns(&text(0)?, &text(1)?, row.get(2).map_err(failure)?)
}

/// The addresses of the secrets with these ids that exist, by id.
pub fn addresses(
    conn: &Connection,
    ids: &[SecretId],
) -> Result<HashMap<SecretId, SecretAddress>, StoreError> {
    const SQL: &str = "SELECT app, account, livemode, scope_type, scope_user, name FROM secrets
                       WHERE id = ?1";
    let address = |row: &Row<'_>| {
        let text = |i: usize| row.get::<_, String>(i).map_err(failure);
        Ok(SecretAddress {
            namespace: namespace_row(row)?,
            scope: scope_from_columns(&text(3)?, &text(4)?)?,
            name: SecretName::parse(&text(5)?).map_err(|_| damaged("secrets.name"))?,
        })
    };
    let mut found = HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(at) = rows_of(conn, SQL, [id.as_str()], address)?.pop() {
            found.insert(id.clone(), at);
        }
    }
    Ok(found)
}

/// Each reseal whose secret still holds its `from`, in the order given; answers how many.
pub fn reseal(conn: &Connection, reseals: &[Reseal]) -> Result<u64, StoreError> {
    let mut stmt = conn
        .prepare_cached("UPDATE secrets SET sealed = ?1 WHERE id = ?2 AND sealed = ?3")
        .map_err(failure)?;
    let mut applied = 0;
    for reseal in reseals {
        applied += stmt
            .execute(params![reseal.to, reseal.id.as_str(), reseal.from])
            .map_err(failure)? as u64;
    }
    Ok(applied)
}

/// Namespaces in `Namespace`'s order: app and account byte by byte (SQLite's default
/// collation), then test before live (`livemode` 0, 1). The index `secrets_by_scope` starts
/// with these three columns, so a page walks it from `after` instead of sorting the table.
pub fn namespaces(
    conn: &Connection,
    after: Option<&Namespace>,
    limit: u32,
) -> Result<Vec<Namespace>, StoreError> {
    const FIRST: &str = "SELECT DISTINCT app, account, livemode FROM secrets
                         ORDER BY app, account, livemode LIMIT ?1";
    const AFTER: &str = "SELECT DISTINCT app, account, livemode FROM secrets
                         WHERE (app, account, livemode) > (?1, ?2, ?3)
                         ORDER BY app, account, livemode LIMIT ?4";
    match after {
        None => rows_of(conn, FIRST, params![limit], namespace_row),
        Some(after) => {
            let params = params![
                after.app.as_str(),
                after.account.as_str(),
                after.mode.livemode(),
                limit
            ];
            rows_of(conn, AFTER, params, namespace_row)
        }
    }
}
