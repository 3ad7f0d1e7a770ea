//! Secrets in PostgreSQL: each operation of `SecretStore` (and each write of `commit`) as one
//! function of a connection or transaction, with every statement prepared once per connection.
//!
//! Several servers write to one table, so the rules of the `store` module's "rules across
//! processes" are kept by the database, not by a process. A put that creates takes a
//! transaction-scoped advisory lock on its scope, so creates into one scope run one after the
//! other wherever they come from, and each sees what the one before it committed (READ
//! COMMITTED takes a fresh snapshot per statement, after the lock was granted). That makes the
//! live count and the create-or-replace decision exact; the unique constraint on (scope, name)
//! backs it up. A replace of a live secret locks only its row, and deletes and sweeps only ever
//! lower a scope's count, so they need no scope lock.

use deadpool_postgres::GenericClient;
use secretstore_core::{
    is_live, seal_once, ListCursor, ListQuery, Namespace, PutRequest, Scope, Seal, SealedSecret,
    SecretAddress, SecretId, SecretName, StoreError, StoredList, Write, Written,
};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::errors::{damaged, pg_failure};

/// The condition that a row of `secrets` belongs to the scope bound as `$1`..`$5`.
macro_rules! in_scope {
    () => {
        "app = $1 AND account = $2 AND livemode = $3 AND scope_type = $4 AND scope_user = $5"
    };
}

/// The condition that a row is live (not expired) at the instant bound as `$now`
/// (`secretstore_core::is_live`).
macro_rules! live_at {
    ($now:literal) => {
        concat!("(expires_at IS NULL OR expires_at > ", $now, ")")
    };
}

/// The columns `secret_from_row` reads, in its order.
macro_rules! secret_columns {
    () => {
        "id, name, created, expires_at, sealed"
    };
}

pub(crate) use secret_columns;

/// The columns that locate one scope of one namespace, bound as `$1`..`$5` of `in_scope!()`.
struct ScopeColumns<'a> {
    app: &'a str,
    account: &'a str,
    livemode: bool,
    scope_type: &'a str,
    /// '' for the account scope (see the schema).
    scope_user: &'a str,
}

impl<'a> ScopeColumns<'a> {
    fn new(namespace: &'a Namespace, scope: &'a Scope) -> Self {
        Self {
            app: namespace.app.as_str(),
            account: namespace.account.as_str(),
            livemode: namespace.mode.livemode(),
            scope_type: scope.type_str(),
            scope_user: scope.user().map(|u| u.as_str()).unwrap_or(""),
        }
    }

    /// `$1`..`$5`, followed by `more`.
    fn with<'b>(&'b self, more: &[&'b (dyn ToSql + Sync)]) -> Vec<&'b (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.app,
            &self.account,
            &self.livemode,
            &self.scope_type,
            &self.scope_user,
        ];
        params.extend_from_slice(more);
        params
    }

    /// A SHA-256 of the scope's columns and, for a secret's address, its name: length-prefixed
    /// parts, so that no two different addresses hash the same bytes.
    fn digest(&self, name: Option<&str>) -> [u8; 32] {
        let mut hash = Sha256::new();
        let parts = [self.app, self.account, self.scope_type, self.scope_user];
        for part in parts.into_iter().chain(name) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hash.update([u8::from(self.livemode)]);
        hash.finalize().into()
    }

    /// The advisory lock key of this scope: the first 8 bytes of its digest, a number every
    /// server computes alike. Two scopes that share a key (one chance in 2^64) only wait for
    /// each other.
    fn lock_key(&self) -> i64 {
        let digest = self.digest(None);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// The `address` column of a secret: its scope and name as one 32-byte key, so that a point
/// look-up (find, delete, a put's check) is one equality on one unique index. Were it the six
/// columns themselves, the planner could take the scope's list index for it while the table's
/// statistics are young (a fresh database), and read the whole scope for every find.
fn address_key(address: &SecretAddress) -> Vec<u8> {
    ScopeColumns::new(&address.namespace, &address.scope)
        .digest(Some(address.name.as_str()))
        .to_vec()
}

/// The statement for `sql`, prepared once per connection and kept (deadpool's cache).
pub async fn prepared<C: GenericClient>(client: &C, sql: &str) -> Result<Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(|e| pg_failure(&e))
}

/// Runs one statement, prepared once per connection, and maps its failure.
pub async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = prepared(client, sql).await?;
    client
        .query(&statement, params)
        .await
        .map_err(|e| pg_failure(&e))
}

pub async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let statement = prepared(client, sql).await?;
    client
        .query_opt(&statement, params)
        .await
        .map_err(|e| pg_failure(&e))
}

pub async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = prepared(client, sql).await?;
    client
        .execute(&statement, params)
        .await
        .map_err(|e| pg_failure(&e))
}

/// A row that starts with `secret_columns!()`, in the given namespace and scope.
pub(crate) fn secret_from_row(
    row: &Row,
    namespace: &Namespace,
    scope: &Scope,
) -> Result<SealedSecret, StoreError> {
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let id: String = row.try_get(0).map_err(get)?;
    let name: String = row.try_get(1).map_err(get)?;
    Ok(SealedSecret {
        id: parse_id(&id)?,
        address: SecretAddress {
            namespace: namespace.clone(),
            scope: scope.clone(),
            name: SecretName::parse(&name).map_err(|_| damaged("secrets.name"))?,
        },
        created: row.try_get(2).map_err(get)?,
        expires_at: row.try_get(3).map_err(get)?,
        sealed: row.try_get(4).map_err(get)?,
    })
}

/// A row found by its address key, checked against the address asked for: the key is a hash,
/// and a row whose name is not the one asked for (a hand-edited row) is damage, not an answer.
fn secret_at(row: &Row, address: &SecretAddress) -> Result<SealedSecret, StoreError> {
    let secret = secret_from_row(row, &address.namespace, &address.scope)?;
    if secret.address.name != address.name {
        return Err(damaged("secrets.address"));
    }
    Ok(secret)
}

fn parse_id(id: &str) -> Result<SecretId, StoreError> {
    SecretId::parse(id).map_err(|_| damaged("secrets.id"))
}

/// Takes the scope's advisory lock for the rest of the transaction.
async fn lock_scope<C: GenericClient>(tx: &C, key: i64) -> Result<(), StoreError> {
    query(tx, "SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
    Ok(())
}

/// The lock keys of every scope `writes` puts into, in one order (ascending), so two commits
/// that share scopes never wait for each other in a cycle. Computed before the first await: the
/// writes hold seal closures, which must not be borrowed across one.
pub fn scope_lock_keys(writes: &[Write]) -> Vec<i64> {
    let mut keys: Vec<i64> = writes
        .iter()
        .filter_map(|write| match write {
            Write::PutSecret(request) => Some(
                ScopeColumns::new(&request.address.namespace, &request.address.scope).lock_key(),
            ),
            Write::DeleteSecret { .. }
            | Write::DeleteLive { .. }
            | Write::Audit(_)
            | Write::AddKey(_) => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Takes the locks `scope_lock_keys` gave, for the rest of the transaction.
pub async fn lock_scopes<C: GenericClient>(tx: &C, keys: &[i64]) -> Result<(), StoreError> {
    for key in keys {
        lock_scope(tx, *key).await?;
    }
    Ok(())
}

/// Create or replace; see `SecretStore::put`. Runs inside the caller's transaction.
///
/// A replace of a live secret changes no scope's count, so it locks only its own row (`FOR
/// UPDATE`): replaces, the common write, run side by side and their commits share the
/// database's flushes. Only a create counts the scope, so only a create takes the scope's
/// advisory lock, and then looks again, since another server may have created the name
/// meanwhile (its create then becomes a replace).
pub async fn put<C: GenericClient>(
    tx: &C,
    request: PutRequest,
) -> Result<SealedSecret, StoreError> {
    const LIVE_LOCKED: &str = concat!(
        "SELECT seq, id, created, expires_at FROM secrets WHERE address = $1 AND ",
        live_at!("$2"),
        " FOR UPDATE"
    );
    const EXISTING: &str = "SELECT seq, id, created, expires_at FROM secrets WHERE address = $1";
    // Counts no further than the limit, as the embedded store does (whether the scope is full
    // is all a put needs).
    const COUNT_LIVE: &str = concat!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("$6"),
        " LIMIT $7) AS live"
    );
    const INSERT: &str = "INSERT INTO secrets (id, app, account, livemode, scope_type, \
                          scope_user, name, created, expires_at, sealed, address) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    let PutRequest {
        address,
        new_id,
        now,
        expires_at,
        max_per_scope,
        seal,
    } = request;
    let cols = ScopeColumns::new(&address.namespace, &address.scope);
    let name = address.name.as_str();
    let key = address_key(&address);
    if let Some(row) = query_opt(tx, LIVE_LOCKED, &[&key, &now]).await? {
        let found = Found::of(&row)?;
        return replace(tx, found, address, expires_at, seal).await;
    }
    lock_scope(tx, cols.lock_key()).await?;
    if let Some(row) = query_opt(tx, EXISTING, &[&key]).await? {
        let found = Found::of(&row)?;
        if is_live(found.expires_at, now) {
            return replace(tx, found, address, expires_at, seal).await;
        }
        // Expired: as good as absent. The transaction restores it if this put then fails.
        execute(tx, "DELETE FROM secrets WHERE seq = $1", &[&found.seq]).await?;
    }
    let limit = i64::from(max_per_scope);
    let live: i64 = query_opt(tx, COUNT_LIVE, &cols.with(&[&now, &limit]))
        .await?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(|e| pg_failure(&e))?
        .unwrap_or(0);
    if live >= limit {
        return Err(StoreError::ScopeFull { max: max_per_scope });
    }
    let sealed = seal_once(seal, &new_id)?;
    let id = new_id.as_str();
    execute(
        tx,
        INSERT,
        &[
            &id,
            &cols.app,
            &cols.account,
            &cols.livemode,
            &cols.scope_type,
            &cols.scope_user,
            &name,
            &now,
            &expires_at,
            &sealed,
            &key,
        ],
    )
    .await?;
    Ok(SealedSecret {
        id: new_id,
        address,
        created: now,
        expires_at,
        sealed,
    })
}

/// A row a put found at its address.
struct Found {
    seq: i64,
    id: SecretId,
    created: i64,
    expires_at: Option<i64>,
}

impl Found {
    /// `seq, id, created, expires_at`.
    fn of(row: &Row) -> Result<Self, StoreError> {
        let get = |e: tokio_postgres::Error| pg_failure(&e);
        Ok(Self {
            seq: row.try_get(0).map_err(get)?,
            id: parse_id(&row.try_get::<_, String>(1).map_err(get)?)?,
            created: row.try_get(2).map_err(get)?,
            expires_at: row.try_get(3).map_err(get)?,
        })
    }
}

/// Replace in place: same row, so same id, `created` and place in lists.
async fn replace<C: GenericClient>(
    tx: &C,
    found: Found,
    address: SecretAddress,
    expires_at: Option<i64>,
    seal: Seal,
) -> Result<SealedSecret, StoreError> {
    let sealed = seal_once(seal, &found.id)?;
    execute(
        tx,
        "UPDATE secrets SET sealed = $1, expires_at = $2 WHERE seq = $3",
        &[&sealed, &expires_at, &found.seq],
    )
    .await?;
    Ok(SealedSecret {
        id: found.id,
        address,
        created: found.created,
        expires_at,
        sealed,
    })
}

/// The live secret at this address.
pub async fn get<C: GenericClient>(
    client: &C,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE address = $1 AND ",
        live_at!("$2")
    );
    query_opt(client, SQL, &[&address_key(address), &now])
        .await?
        .map(|row| secret_at(&row, address))
        .transpose()
}

/// Every row of `secrets`, expired or not. A read of its own: under MVCC it waits for no
/// write and holds none up.
pub async fn count<C: GenericClient>(client: &C) -> Result<u64, StoreError> {
    let rows = query(client, "SELECT COUNT(*) FROM secrets", &[]).await?;
    let count: i64 = rows
        .first()
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(|e| pg_failure(&e))?
        .unwrap_or(0);
    Ok(count.max(0) as u64)
}

/// Removes the live secret at this address in one statement; an expired one stays for the
/// sweep.
pub async fn delete<C: GenericClient>(
    client: &C,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "DELETE FROM secrets WHERE address = $1 AND ",
        live_at!("$2"),
        " RETURNING ",
        secret_columns!()
    );
    query_opt(client, SQL, &[&address_key(address), &now])
        .await?
        .map(|row| secret_at(&row, address))
        .transpose()
}

/// Several writes in order, in the caller's transaction (which holds their scopes' locks).
pub async fn commit<C: GenericClient>(
    tx: &C,
    writes: Vec<Write>,
) -> Result<Vec<Written>, StoreError> {
    let mut done = Vec::with_capacity(writes.len());
    for write in writes {
        done.push(match write {
            Write::PutSecret(request) => Written::PutSecret(put(tx, request).await?),
            Write::DeleteSecret { address, now } => {
                Written::DeleteSecret(delete(tx, &address, now).await?)
            }
            Write::DeleteLive { address, now } => match delete(tx, &address, now).await? {
                Some(secret) => Written::DeleteSecret(Some(secret)),
                None => {
                    return Err(StoreError::Missing(format!(
                        "secret {}",
                        address.name.as_str()
                    )))
                }
            },
            Write::Audit(append) => Written::Audit(crate::audit::append(tx, append).await?),
            Write::AddKey(key) => Written::AddKey(crate::keys::add_new_key(tx, key).await?),
        });
    }
    Ok(done)
}

/// Newest first by `seq`, as the embedded store pages: `starting_after` towards older rows,
/// `ending_before` the rows just newer than the cursor. With a cursor, the cursor's look-up and
/// the page run in one REPEATABLE READ transaction, so they come from one snapshot.
pub async fn list(
    client: &mut deadpool_postgres::Object,
    query_: &ListQuery,
) -> Result<StoredList, StoreError> {
    const CURSOR: &str = concat!(
        "SELECT seq FROM secrets WHERE ",
        in_scope!(),
        " AND id = $6 AND ",
        live_at!("$7")
    );
    const OLDER: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("$6"),
        " AND seq < $7 ORDER BY seq DESC LIMIT $8"
    );
    const NEWER: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("$6"),
        " AND seq > $7 ORDER BY seq ASC LIMIT $8"
    );
    let cols = ScopeColumns::new(&query_.namespace, &query_.scope);
    // One row past the page says whether there is more.
    let fetch = i64::from(query_.limit) + 1;
    let now = query_.now;
    let rows = match &query_.cursor {
        None => query(client, OLDER, &cols.with(&[&now, &i64::MAX, &fetch])).await?,
        Some(cursor) => {
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| pg_failure(&e))?;
            let id = cursor.id().as_str();
            let Some(found) = query_opt(&tx, CURSOR, &cols.with(&[&id, &now])).await? else {
                return Err(StoreError::CursorNotFound {
                    kind: cursor.kind(),
                    id: cursor.id().to_string(),
                });
            };
            let seq: i64 = found.try_get(0).map_err(|e| pg_failure(&e))?;
            let sql = match cursor {
                ListCursor::StartingAfter(_) => OLDER,
                ListCursor::EndingBefore(_) => NEWER,
            };
            let rows = query(&tx, sql, &cols.with(&[&now, &seq, &fetch])).await?;
            tx.commit().await.map_err(|e| pg_failure(&e))?;
            rows
        }
    };
    let limit = query_.limit as usize;
    let mut items = rows
        .iter()
        .map(|row| secret_from_row(row, &query_.namespace, &query_.scope))
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    if matches!(query_.cursor, Some(ListCursor::EndingBefore(_))) {
        items.reverse();
    }
    Ok(StoredList { items, has_more })
}

/// Deletes up to `$2` secrets expired at `$1`. Rows another server's sweep is deleting right
/// now are skipped, not waited for, so sweeps on every server share the work without doing it
/// twice.
pub const PURGE: &str = "DELETE FROM secrets WHERE seq IN (SELECT seq FROM secrets \
                         WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
