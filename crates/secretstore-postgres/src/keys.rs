//! The key hierarchy in PostgreSQL (`KeyStore`): the wrapped keys of `keys`, and what a
//! rotation walks over `secrets` (the namespaces that hold secrets, a namespace's secrets still
//! sealed under an older key, and the compare-and-set that re-seals them), each as one
//! function of a connection or transaction.
//!
//! Several servers may make an owner's first key at once: the primary key decides, and every
//! one of them reads back the key that won (`add_key`). A re-wrap and a re-seal are
//! compare-and-set updates, so one that lost a race with another server (or with a put that
//! replaced the secret) changes nothing. Orders that a cursor pages through compare text
//! byte by byte (`COLLATE "C"`, the order of `Namespace` and `SecretId` and of the other
//! backends), whatever collation the database was created with.

use deadpool_postgres::GenericClient;
use secretstore_core::{
    AccountId, AppId, KeyOwner, Namespace, Reseal, RootUse, Scope, SealedSecret, SecretId,
    StoreError, StoredKey, UserId,
};
use secretstore_crypto::KeyId;
use tokio_postgres::Row;

use crate::directory::{col, mode};
use crate::errors::damaged;
use crate::secrets::{execute, query, secret_columns, secret_from_row};

/// The columns of a key as `key_row` reads them, in its order.
macro_rules! key_columns {
    () => {
        "kind, app, account, mode, scope_user, version, root, wrapped, created"
    };
}

/// The condition that a row of `keys` belongs to the owner bound as `$1`..`$5`
/// (`KeyOwner::stored_columns`).
macro_rules! of_owner {
    () => {
        "kind = $1 AND app = $2 AND account = $3 AND mode = $4 AND scope_user = $5"
    };
}

/// A row of `key_columns!()` (an owner this version cannot read is an error:
/// `KeyOwner::from_stored`).
fn key_row(row: &Row) -> Result<StoredKey, StoreError> {
    let text = |i: usize| col::<String>(row, i);
    Ok(StoredKey {
        owner: KeyOwner::from_stored([&text(0)?, &text(1)?, &text(2)?, &text(3)?, &text(4)?])?,
        version: u32::try_from(col::<i64>(row, 5)?).map_err(|_| damaged("keys.version"))?,
        root: root_of(col(row, 6)?)?,
        wrapped: col(row, 7)?,
        created: col(row, 8)?,
    })
}

fn root_of(bytes: Vec<u8>) -> Result<KeyId, StoreError> {
    Ok(KeyId(bytes.try_into().map_err(|_| damaged("keys.root"))?))
}

fn key_rows(rows: &[Row]) -> Result<Vec<StoredKey>, StoreError> {
    rows.iter().map(key_row).collect()
}

pub async fn keys_of<C: GenericClient>(
    client: &C,
    owner: &KeyOwner,
) -> Result<Vec<StoredKey>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE ",
        of_owner!(),
        " ORDER BY version"
    );
    let [kind, app, account, mode, user] = owner.stored_columns();
    key_rows(&query(client, SQL, &[&kind, &app, &account, &mode, &user]).await?)
}

/// Inserts `key` unless its owner has that version already; answers whether it did. An insert
/// that meets another server's uncommitted insert of the same version waits for it, and
/// inserts nothing if that one commits.
async fn insert_key<C: GenericClient>(tx: &C, key: &StoredKey) -> Result<bool, StoreError> {
    const INSERT: &str = concat!(
        "INSERT INTO keys (",
        key_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
    );
    let [kind, app, account, mode, user] = &key.owner.stored_columns();
    let version = i64::from(key.version);
    let root = &key.root.0[..];
    let inserted = execute(
        tx,
        INSERT,
        &[
            &kind,
            &app,
            &account,
            &mode,
            &user,
            &version,
            &root,
            &key.wrapped,
            &key.created,
        ],
    )
    .await?;
    Ok(inserted == 1)
}

/// `Write::AddKey`: inserts `key`, or fails with `AlreadyExists` if its owner has that version
/// already, which rolls back the transaction it is part of.
pub async fn add_new_key<C: GenericClient>(
    tx: &C,
    key: StoredKey,
) -> Result<StoredKey, StoreError> {
    match insert_key(tx, &key).await? {
        true => Ok(key),
        false => Err(key.taken()),
    }
}

/// Inserts `key` unless its owner has that version already, and answers the stored one. The
/// look-up after the insert (a statement of its own, so a snapshot of its own) sees whichever
/// insert won.
pub async fn add_key<C: GenericClient>(tx: &C, key: &StoredKey) -> Result<StoredKey, StoreError> {
    const SELECT: &str = concat!(
        "SELECT ",
        key_columns!(),
        " FROM keys WHERE ",
        of_owner!(),
        " AND version = $6"
    );
    insert_key(tx, key).await?;
    let [kind, app, account, mode, user] = &key.owner.stored_columns();
    let version = i64::from(key.version);
    key_rows(&query(tx, SELECT, &[&kind, &app, &account, &mode, &user, &version]).await?)?
        .pop()
        .ok_or_else(|| StoreError::Internal("a key just stored cannot be read back".into()))
}

/// Ordered by root key version, then owner (its text columns are `COLLATE "C"`).
pub async fn keys_not_under<C: GenericClient>(
    client: &C,
    root: KeyId,
    limit: u32,
) -> Result<Vec<StoredKey>, StoreError> {
    // Two ranges of `keys_by_root_owner` (schema migration 6), each read from its start: the
    // keys a rotation re-wrapped have left both, so a page reads only the keys it answers.
    const SQL: &str = concat!(
        "(SELECT ",
        key_columns!(),
        " FROM keys WHERE root < $1 \
          ORDER BY root, kind, app, account, mode, scope_user, version LIMIT $2) \
         UNION ALL (SELECT ",
        key_columns!(),
        " FROM keys WHERE root > $1 \
          ORDER BY root, kind, app, account, mode, scope_user, version LIMIT $2) \
         ORDER BY root, kind, app, account, mode, scope_user, version LIMIT $2"
    );
    let root = &root.0[..];
    key_rows(&query(client, SQL, &[&root, &i64::from(limit)]).await?)
}

pub async fn rewrap_key<C: GenericClient>(
    client: &C,
    key: &StoredKey,
    to: &(KeyId, Vec<u8>),
) -> Result<bool, StoreError> {
    const SQL: &str = concat!(
        "UPDATE keys SET root = $7, wrapped = $8 WHERE ",
        of_owner!(),
        " AND version = $6 AND root = $9 AND wrapped = $10"
    );
    let [kind, app, account, mode, user] = &key.owner.stored_columns();
    let (new_root, old_root) = (&to.0 .0[..], &key.root.0[..]);
    let changed = execute(
        client,
        SQL,
        &[
            &kind,
            &app,
            &account,
            &mode,
            &user,
            &i64::from(key.version),
            &new_root,
            &to.1,
            &old_root,
            &key.wrapped,
        ],
    )
    .await?;
    Ok(changed > 0)
}

/// Ordered by root id; the index on `root` serves the grouping.
pub async fn keys_by_root<C: GenericClient>(client: &C) -> Result<Vec<RootUse>, StoreError> {
    let rows = query(
        client,
        "SELECT root, COUNT(*) FROM keys GROUP BY root ORDER BY root",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RootUse {
                root: root_of(col(row, 0)?)?,
                keys: col::<i64>(row, 1)?.max(0) as u64,
            })
        })
        .collect()
}

/// The namespace's secrets, expired ones included, whose sealed bytes do not start with
/// `current[0]` (an account's) or `current[1]` (a user's), in id order after `after`. Each page sorts the namespace's rows: an index that
/// orders a namespace's secrets by id would cost every put, for a walk only rotations make.
pub async fn stale_sealed<C: GenericClient>(
    client: &C,
    namespace: &Namespace,
    current: [&[u8]; 2],
    after: Option<&SecretId>,
    limit: u32,
) -> Result<Vec<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        secret_columns!(),
        ", scope_type, scope_user FROM secrets \
         WHERE app = $1 AND account = $2 AND livemode = $3 AND id COLLATE \"C\" > $4 \
             AND CASE WHEN scope_type = 'user' \
                 THEN substring(sealed FROM 1 FOR length($7::bytea)) <> $7::bytea \
                 ELSE substring(sealed FROM 1 FOR length($5::bytea)) <> $5::bytea END \
         ORDER BY id COLLATE \"C\" LIMIT $6"
    );
    // Every id is longer than '', so no cursor is the start.
    let after = after.map_or("", SecretId::as_str);
    let (app, account) = (namespace.app.as_str(), namespace.account.as_str());
    let rows = query(
        client,
        SQL,
        &[
            &app,
            &account,
            &namespace.mode.livemode(),
            &after,
            &current[0],
            &i64::from(limit),
            &current[1],
        ],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let scope = Scope::from_columns(&col::<String>(row, 5)?, &col::<String>(row, 6)?)
                .ok_or_else(|| damaged("secrets.scope_type, scope_user"))?;
            secret_from_row(row, namespace, &scope)
        })
        .collect()
}

/// Each reseal whose secret still holds its `from`, in the caller's transaction; answers how
/// many. Rows are updated in id order (reseals of one secret keep theirs), so two reseals
/// through different servers that share secrets lock them in one order and never deadlock.
pub async fn reseal<C: GenericClient>(tx: &C, mut reseals: Vec<Reseal>) -> Result<u64, StoreError> {
    reseals.sort_by(|a, b| a.id.cmp(&b.id));
    let mut applied = 0;
    for reseal in &reseals {
        applied += execute(
            tx,
            "UPDATE secrets SET sealed = $1 WHERE id = $2 AND sealed = $3",
            &[&reseal.to, &reseal.id.as_str(), &reseal.from],
        )
        .await?;
    }
    Ok(applied)
}

/// Users with a key of their own, each once, in (account, user) order byte by byte (the
/// columns are `COLLATE "C"`). A user's key is kept with `app` and `mode` empty, so the
/// primary key (kind, app, account, mode, scope_user, version) serves the order.
pub async fn users_with_keys<C: GenericClient>(
    client: &C,
    after: Option<&(AccountId, UserId)>,
    limit: u32,
) -> Result<Vec<(AccountId, UserId)>, StoreError> {
    const FIRST: &str = "SELECT DISTINCT account, scope_user FROM keys \
                         WHERE kind = $1 AND app = '' AND mode = '' \
                         ORDER BY account, scope_user LIMIT $2";
    const AFTER: &str = "SELECT DISTINCT account, scope_user FROM keys \
                         WHERE kind = $1 AND app = '' AND mode = '' \
                             AND (account, scope_user) > ($3, $4) \
                         ORDER BY account, scope_user LIMIT $2";
    let (kind, limit) = (KeyOwner::USER_KIND, i64::from(limit));
    let rows = match after {
        None => query(client, FIRST, &[&kind, &limit]).await?,
        Some((account, user)) => {
            let (account, user) = (account.as_str(), user.as_str());
            query(client, AFTER, &[&kind, &limit, &account, &user]).await?
        }
    };
    rows.iter()
        .map(|row| {
            let account =
                AccountId::parse(&col::<String>(row, 0)?).map_err(|_| damaged("keys.account"))?;
            let user =
                UserId::parse(&col::<String>(row, 1)?).map_err(|_| damaged("keys.scope_user"))?;
            Ok((account, user))
        })
        .collect()
}

/// Namespaces in `Namespace`'s order: app and account byte by byte, then test before live
/// (`livemode` false, true).
pub async fn namespaces<C: GenericClient>(
    client: &C,
    after: Option<&Namespace>,
    limit: u32,
) -> Result<Vec<Namespace>, StoreError> {
    const FIRST: &str = "SELECT DISTINCT app COLLATE \"C\", account COLLATE \"C\", livemode \
                         FROM secrets ORDER BY 1, 2, 3 LIMIT $1";
    const AFTER: &str = "SELECT DISTINCT app COLLATE \"C\", account COLLATE \"C\", livemode \
                         FROM secrets \
                         WHERE (app COLLATE \"C\", account COLLATE \"C\", livemode) > ($1, $2, $3) \
                         ORDER BY 1, 2, 3 LIMIT $4";
    let limit = i64::from(limit);
    let rows = match after {
        None => query(client, FIRST, &[&limit]).await?,
        Some(after) => {
            let (app, account) = (after.app.as_str(), after.account.as_str());
            let livemode = after.mode.livemode();
            query(client, AFTER, &[&app, &account, &livemode, &limit]).await?
        }
    };
    rows.iter()
        .map(|row| {
            Ok(Namespace {
                app: AppId::parse(&col::<String>(row, 0)?).map_err(|_| damaged("secrets.app"))?,
                account: AccountId::parse(&col::<String>(row, 1)?)
                    .map_err(|_| damaged("secrets.account"))?,
                mode: mode(col(row, 2)?),
            })
        })
        .collect()
}
