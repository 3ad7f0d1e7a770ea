//! The audit log's SQL on PostgreSQL: appending a record to the chain, reading it back for
//! verification and search, and pruning it behind an anchor. Every append and prune locks the
//! chain's head row first, in the caller's transaction, so the chain has one order however many
//! servers append; the lock is held until that transaction commits.

use deadpool_postgres::GenericClient;
use secretstore_core::audit::{AuditAnchor, ChainHash, Outcome, Text};
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
    let mut entries = append_many(tx, vec![append]).await?;
    entries
        .pop()
        .ok_or_else(|| StoreError::Internal("an append answered no record".into()))
}

/// Appends records in order, in the caller's transaction: the head locked once, every row in
/// one statement.
pub async fn append_many<C: GenericClient>(
    tx: &C,
    appends: Vec<AuditAppend>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut head = lock_head(tx).await?;
    let entries: Vec<AuditEntry> = appends
        .into_iter()
        .map(|append| {
            let entry = append.entry_after(head);
            head = (entry.seq, entry.hash);
            entry
        })
        .collect();
    let column = |field: fn(&AuditEvent) -> Option<&str>| -> Vec<Option<&str>> {
        entries.iter().map(|e| field(&e.event)).collect()
    };
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let times: Vec<i64> = entries.iter().map(|e| e.event.time_ms).collect();
    let request_ids: Vec<&str> = entries
        .iter()
        .map(|e| e.event.request_id.as_str())
        .collect();
    let operations: Vec<&str> = entries.iter().map(|e| &*e.event.operation).collect();
    let statuses: Vec<i32> = entries.iter().map(|e| i32::from(e.event.status)).collect();
    let prevs: Vec<&[u8]> = entries.iter().map(|e| &e.prev[..]).collect();
    let hashes: Vec<&[u8]> = entries.iter().map(|e| &e.hash[..]).collect();
    let (kinds, credentials, apps) = (
        column(|e| e.credential_kind.as_deref()),
        column(|e| e.credential.as_deref()),
        column(|e| e.app.as_deref()),
    );
    let (accounts, modes, scopes) = (
        column(|e| e.account.as_deref()),
        column(|e| e.mode.as_deref()),
        column(|e| e.scope_type.as_deref()),
    );
    let (users, names, clients, codes) = (
        column(|e| e.user.as_deref()),
        column(|e| e.secret_name.as_deref()),
        column(|e| e.client.as_deref()),
        column(|e| e.code.as_deref()),
    );
    let head_hash = &head.1[..];
    execute(
        tx,
        "WITH appended AS (
             INSERT INTO audit (seq, time_ms, request_id, credential_kind, credential, app,
                 account, mode, scope_type, user_id, operation, secret_name, client, status,
                 code, prev, hash)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::text[], $13::text[], $14::integer[], $15::text[],
                 $16::bytea[], $17::bytea[])
         )
         UPDATE audit_head SET seq = $18, hash = $19 WHERE id = 1",
        &[
            &seqs,
            &times,
            &request_ids,
            &kinds,
            &credentials,
            &apps,
            &accounts,
            &modes,
            &scopes,
            &users,
            &operations,
            &names,
            &clients,
            &statuses,
            &codes,
            &prevs,
            &hashes,
            &head.0,
            &head_hash,
        ],
    )
    .await?;
    Ok(entries)
}

/// A record waiting to be appended, and where its answer goes.
pub type Queued = (
    AuditAppend,
    tokio::sync::oneshot::Sender<Result<AuditEntry, StoreError>>,
);

/// Most records one group commit appends.
const MAX_GROUP: usize = 512;

/// Appends the records queued by `AuditStore::audit_append`, everything waiting in one
/// transaction, until the queue's sender (the store) is gone. Each record is answered once its
/// transaction committed, or with its failure.
pub async fn group_commit(
    pool: deadpool_postgres::Pool,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (appends, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let result = async {
            let mut client = pool
                .get()
                .await
                .map_err(|e| crate::errors::pool_failure(&e))?;
            let tx = client.transaction().await.map_err(|e| pg_failure(&e))?;
            let entries = append_many(&tx, appends).await?;
            tx.commit().await.map_err(|e| pg_failure(&e))?;
            Ok::<_, StoreError>(entries)
        }
        .await;
        match result {
            Ok(entries) => {
                for (reply, entry) in replies.into_iter().zip(entries) {
                    // A caller that went away (its request was cancelled) is no error.
                    let _ = reply.send(Ok(entry));
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

fn text(row: &Row, column: usize) -> Result<Option<Text>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(|e| pg_failure(&e))?;
    Ok(text.map(Text::from))
}

fn entry(row: &Row) -> Result<AuditEntry, StoreError> {
    let get = |e: tokio_postgres::Error| pg_failure(&e);
    let status: i32 = row.try_get(13).map_err(get)?;
    let prev: Vec<u8> = row.try_get(15).map_err(get)?;
    let hash: Vec<u8> = row.try_get(16).map_err(get)?;
    Ok(AuditEntry {
        seq: row.try_get(0).map_err(get)?,
        event: std::sync::Arc::new(AuditEvent {
            time_ms: row.try_get(1).map_err(get)?,
            request_id: row.try_get(2).map_err(get)?,
            credential_kind: text(row, 3)?,
            credential: row.try_get(4).map_err(get)?,
            app: row.try_get(5).map_err(get)?,
            account: row.try_get(6).map_err(get)?,
            mode: text(row, 7)?,
            scope_type: text(row, 8)?,
            user: row.try_get(9).map_err(get)?,
            operation: row.try_get::<_, String>(10).map_err(get)?.into(),
            secret_name: row.try_get(11).map_err(get)?,
            client: row.try_get(12).map_err(get)?,
            // A status outside u16 was written by hand; it cannot verify either way.
            status: u16::try_from(status).unwrap_or(u16::MAX),
            code: row.try_get(14).map_err(get)?,
        }),
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
