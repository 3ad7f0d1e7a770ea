//! Secrets in PostgreSQL: each operation of `SecretStore` (and each write of `commit`) as one
//! function of a connection or transaction, with every statement prepared once per connection.
//!
//! Several servers write to one table, so the rules of the `store` module's "rules across
//! processes" are kept by the database, not by a process: a put first takes a
//! transaction-scoped advisory lock on its scope, so puts into one scope run one after the other
//! wherever they come from, and each sees what the one before it committed (READ COMMITTED takes
//! a fresh snapshot per statement, after the lock was granted). That makes the live count and
//! the create-or-replace decision exact; the unique constraint on (scope, name) backs it up.
//! Deletes and sweeps only ever lower a scope's count, so they need no lock.

use deadpool_postgres::GenericClient;
use secretstore_core::{
    is_live, seal_once, ListCursor, ListQuery, Namespace, PutRequest, Scope, SealedSecret,
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

    /// The advisory lock key of this scope: the first 8 bytes of a SHA-256 of its columns, a
    /// number every server computes alike. Two scopes that share a key (one chance in 2^64)
    /// only wait for each other.
    fn lock_key(&self) -> i64 {
        let mut hash = Sha256::new();
        for part in [self.app, self.account, self.scope_type, self.scope_user] {
            // Length-prefixed, so that no two different scopes hash the same bytes.
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hash.update([u8::from(self.livemode)]);
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
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
fn secret_from_row(
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

fn parse_id(id: &str) -> Result<SecretId, StoreError> {
    SecretId::parse(id).map_err(|_| damaged("secrets.id"))
}

/// Takes the scope's advisory lock for the rest of the transaction.
async fn lock_scope<C: GenericClient>(tx: &C, key: i64) -> Result<(), StoreError> {
    query(tx, "SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
    Ok(())
}

/// Takes the lock of the scope of `address` for the rest of the transaction.
pub async fn lock_scope_of<C: GenericClient>(
    tx: &C,
    address: &SecretAddress,
) -> Result<(), StoreError> {
    lock_scope(
        tx,
        ScopeColumns::new(&address.namespace, &address.scope).lock_key(),
    )
    .await
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
            Write::DeleteSecret { .. } => None,
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

/// Create or replace; see `SecretStore::put`. Runs inside the caller's transaction, which must
/// already hold the scope's lock (`lock_scope_of`, `lock_scopes`).
pub async fn put<C: GenericClient>(
    tx: &C,
    request: PutRequest,
) -> Result<SealedSecret, StoreError> {
    const EXISTING: &str = concat!(
        "SELECT seq, id, created, expires_at FROM secrets WHERE ",
        in_scope!(),
        " AND name = $6"
    );
    const COUNT_LIVE: &str = concat!(
        "SELECT COUNT(*) FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("$6")
    );
    const INSERT: &str = "INSERT INTO secrets (id, app, account, livemode, scope_type, \
                          scope_user, name, created, expires_at, sealed) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
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
    let existing = query_opt(tx, EXISTING, &cols.with(&[&name])).await?;
    if let Some(row) = existing {
        let get = |e: tokio_postgres::Error| pg_failure(&e);
        let seq: i64 = row.try_get(0).map_err(get)?;
        let id: String = row.try_get(1).map_err(get)?;
        let created: i64 = row.try_get(2).map_err(get)?;
        let old_expiry: Option<i64> = row.try_get(3).map_err(get)?;
        if is_live(old_expiry, now) {
            // Replace in place: same row, so same id, `created` and place in lists.
            let id = parse_id(&id)?;
            let sealed = seal_once(seal, &id)?;
            execute(
                tx,
                "UPDATE secrets SET sealed = $1, expires_at = $2 WHERE seq = $3",
                &[&sealed, &expires_at, &seq],
            )
            .await?;
            return Ok(SealedSecret {
                id,
                address,
                created,
                expires_at,
                sealed,
            });
        }
        // Expired: as good as absent. The transaction restores it if this put then fails.
        execute(tx, "DELETE FROM secrets WHERE seq = $1", &[&seq]).await?;
    }
    let live: i64 = query_opt(tx, COUNT_LIVE, &cols.with(&[&now]))
        .await?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(|e| pg_failure(&e))?
        .unwrap_or(0);
    if live >= i64::from(max_per_scope) {
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

/// The live secret at this address.
pub async fn get<C: GenericClient>(
    client: &C,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE ",
        in_scope!(),
        " AND name = $6 AND ",
        live_at!("$7")
    );
    let cols = ScopeColumns::new(&address.namespace, &address.scope);
    let name = address.name.as_str();
    query_opt(client, SQL, &cols.with(&[&name, &now]))
        .await?
        .map(|row| secret_from_row(&row, &address.namespace, &address.scope))
        .transpose()
}

/// Removes the live secret at this address in one statement; an expired one stays for the
/// sweep.
pub async fn delete<C: GenericClient>(
    client: &C,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    const SQL: &str = concat!(
        "DELETE FROM secrets WHERE ",
        in_scope!(),
        " AND name = $6 AND ",
        live_at!("$7"),
        " RETURNING ",
        secret_columns!()
    );
    let cols = ScopeColumns::new(&address.namespace, &address.scope);
    let name = address.name.as_str();
    query_opt(client, SQL, &cols.with(&[&name, &now]))
        .await?
        .map(|row| secret_from_row(&row, &address.namespace, &address.scope))
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
