//! The audit log's SQL on PostgreSQL: appending a record to the chain, reading it back for
//! verification and search, and pruning it behind an anchor. Every append and prune locks the
//! chain's head row first, in the caller's transaction, so the chain has one order however many
//! servers append; the lock is held until that transaction commits.

use deadpool_postgres::GenericClient;
use secretstore_core::audit::{AuditAnchor, ChainHash, Outcome};
use secretstore_core::{AuditAppend, AuditChain, AuditEntry, AuditEvent, AuditFilter, StoreError};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::errors::pg_failure;
use crate::secrets::{execute, query, query_opt};

const COLUMNS: &str = "seq, time_ms, request_id, credential_kind, credential, app, account, \
                       mode, scope_type, user_id, operation, secret_name, client, status, code, \
                       prev, hash";

fn hash_of(bytes: &[u8]) -> ChainHash {
    // A hash of another length was written by hand; verification names the record.
    let mut hash = [0u8; 32];
    let n = bytes.len().min(32);
    hash[..n].copy_from_slice(&bytes[..n]);
    hash
}

/// Locks the chain's head and answers it: the seq and hash the next record follows.
async fn lock_head<C: GenericClient>(tx: &C) -> Result<(i64, ChainHash), StoreError> {
    let row = query_opt(
        tx,
        "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Internal("the audit chain's head row is missing".into()))?;
    let seq: i64 = row.try_get(0).map_err(|e| pg_failure(&e))?;
    let hash: Vec<u8> = row.try_get(1).map_err(|e| pg_failure(&e))?;
    Ok((seq, hash_of(&hash)))
}

/// Appends one record in the caller's transaction.
pub async fn append<C: GenericClient>(
    tx: &C,
    append: AuditAppend,
) -> Result<AuditEntry, StoreError> {
    let AuditAppend { event, chain } = append;
    let entry = chain.entry(lock_head(tx).await?, event);
    let e = &entry.event;
    let status = i32::from(e.status);
    let (prev, hash) = (&entry.prev[..], &entry.hash[..]);
    execute(
        tx,
        "WITH appended AS (
             INSERT INTO audit (seq, time_ms, request_id, credential_kind, credential, app,
                 account, mode, scope_type, user_id, operation, secret_name, client, status,
                 code, prev, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         )
         UPDATE audit_head SET seq = $1, hash = $17 WHERE id = 1",
        &[
            &entry.seq,
            &e.time_ms,
            &e.request_id,
            &e.credential_kind,
            &e.credential,
            &e.app,
            &e.account,
            &e.mode,
            &e.scope_type,
            &e.user,
            &e.operation,
            &e.secret_name,
            &e.client,
            &status,
            &e.code,
            &prev,
            &hash,
        ],
    )
    .await?;
    Ok(entry)
}

fn entry(row: &Row) -> Result<AuditEntry, StoreError> {
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let status: i32 = row.try_get(13).map_err(get)?;
    let prev: Vec<u8> = row.try_get(15).map_err(get)?;
    let hash: Vec<u8> = row.try_get(16).map_err(get)?;
    Ok(AuditEntry {
        seq: row.try_get(0).map_err(get)?,
        event: AuditEvent {
            time_ms: row.try_get(1).map_err(get)?,
            request_id: row.try_get(2).map_err(get)?,
            credential_kind: row.try_get(3).map_err(get)?,
            credential: row.try_get(4).map_err(get)?,
            app: row.try_get(5).map_err(get)?,
            account: row.try_get(6).map_err(get)?,
            mode: row.try_get(7).map_err(get)?,
            scope_type: row.try_get(8).map_err(get)?,
            user: row.try_get(9).map_err(get)?,
            operation: row.try_get(10).map_err(get)?,
            secret_name: row.try_get(11).map_err(get)?,
            client: row.try_get(12).map_err(get)?,
            // A status outside u16 was written by hand; it cannot verify either way.
            status: u16::try_from(status).unwrap_or(u16::MAX),
            code: row.try_get(14).map_err(get)?,
        },
        prev: hash_of(&prev),
        hash: hash_of(&hash),
    })
}

/// Records after `after`, oldest first.
pub async fn scan<C: GenericClient>(
    client: &C,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2");
    query(client, &sql, &[&after, &i64::from(limit)])
        .await?
        .iter()
        .map(entry)
        .collect()
}

/// Records matching `filter`, newest first.
pub async fn search<C: GenericClient>(
    client: &C,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(t) = filter.since_ms {
        add("time_ms >= ?", Box::new(t));
    }
    if let Some(t) = filter.until_ms {
        add("time_ms < ?", Box::new(t));
    }
    for (column, want) in [
        ("app", &filter.app),
        ("account", &filter.account),
        ("user_id", &filter.user),
        ("secret_name", &filter.secret_name),
        ("operation", &filter.operation),
        ("credential", &filter.credential),
    ] {
        if let Some(want) = want {
            add(&format!("{column} = ?"), Box::new(want.clone()));
        }
    }
    match &filter.outcome {
        None => {}
        Some(Outcome::Success) => add("status < ?", Box::new(400i32)),
        Some(Outcome::Failure) => add("status >= ?", Box::new(400i32)),
        Some(Outcome::Status(status)) => add("status = ?", Box::new(i32::from(*status))),
        Some(Outcome::Code(code)) => add("code = ?", Box::new(code.clone())),
    }
    if let Some(before) = filter.before_seq {
        add("seq < ?", Box::new(before));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit {filter_sql} ORDER BY seq DESC LIMIT {}",
        filter.limit
    );
    let params: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
    query(client, &sql, &params)
        .await?
        .iter()
        .map(entry)
        .collect()
}

pub async fn anchor<C: GenericClient>(client: &C) -> Result<Option<AuditAnchor>, StoreError> {
    let Some(row) = query_opt(
        client,
        "SELECT seq, hash, pruned_at_ms, mac FROM audit_anchor WHERE id = 1",
        &[],
    )
    .await?
    else {
        return Ok(None);
    };
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let hash: Vec<u8> = row.try_get(1).map_err(get)?;
    let mac: Vec<u8> = row.try_get(3).map_err(get)?;
    Ok(Some(AuditAnchor {
        seq: row.try_get(0).map_err(get)?,
        hash: hash_of(&hash),
        pruned_at_ms: row.try_get(2).map_err(get)?,
        mac: hash_of(&mac),
    }))
}

/// Deletes records older than `before_ms` (never the newest) and moves the anchor to the last
/// one deleted, holding the head's lock so no append interleaves.
pub async fn prune<C: GenericClient>(
    tx: &C,
    before_ms: i64,
    now_ms: i64,
    chain: &AuditChain,
) -> Result<u64, StoreError> {
    let (head, _) = lock_head(tx).await?;
    let Some(row) = query_opt(
        tx,
        "SELECT seq, hash FROM audit WHERE time_ms < $1 AND seq < $2 ORDER BY seq DESC LIMIT 1",
        &[&before_ms, &head],
    )
    .await?
    else {
        return Ok(0);
    };
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let seq: i64 = row.try_get(0).map_err(get)?;
    let hash: Vec<u8> = row.try_get(1).map_err(get)?;
    let anchor = chain.anchor(seq, hash_of(&hash), now_ms);
    let removed = execute(tx, "DELETE FROM audit WHERE seq <= $1", &[&seq]).await?;
    execute(
        tx,
        "INSERT INTO audit_anchor (id, seq, hash, pruned_at_ms, mac) VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
             pruned_at_ms = excluded.pruned_at_ms, mac = excluded.mac",
        &[
            &anchor.seq,
            &&anchor.hash[..],
            &anchor.pruned_at_ms,
            &&anchor.mac[..],
        ],
    )
    .await?;
    Ok(removed)
}
