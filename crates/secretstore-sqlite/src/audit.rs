//! The audit log's SQL: appending a record to the chain (on the writer, so the single writer
//! thread orders the chain), reading it back for verification and search (on the readers), and
//! pruning it behind an anchor.

use std::cell::Cell;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension as _, Row};
use secretstore_core::audit::{AuditAnchor, ChainHash, Outcome, Text, GENESIS};
use secretstore_core::{AuditAppend, AuditEntry, AuditEvent, AuditFilter, StoreError};

use crate::errors::sql_failure;

const COLUMNS: &str = "seq, time_ms, request_id, credential_kind, credential, app, account, \
                       mode, scope_type, user_id, operation, secret_name, client, status, code, \
                       prev, hash";

/// A record's insert, with its 17 values in `COLUMNS`' order.
pub(crate) const INSERT: &str = "INSERT INTO audit (seq, time_ms, request_id, credential_kind,
        credential, app, account, mode, scope_type, user_id, operation, secret_name, client,
        status, code, prev, hash)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

thread_local! {
    /// The chain's head as the writer last left it (only the writer thread appends). It spares
    /// every append a look-up; `forget_head` drops it whenever a write of the writer is undone,
    /// and an append that finds its seq taken (the table changed under the server, by hand)
    /// reads the head again.
    static HEAD: Cell<Option<(i64, ChainHash)>> = const { Cell::new(None) };
}

/// Drops the remembered head: the writer calls it when a job or a batch is rolled back, since
/// an append it undid may have moved the head.
pub fn forget_head() {
    HEAD.with(|head| head.set(None));
}

/// The seq and hash the next record follows: the newest record's, else the anchor's, else the
/// beginning.
fn head(conn: &Connection) -> Result<(i64, ChainHash), StoreError> {
    if let Some(head) = HEAD.with(Cell::get) {
        return Ok(head);
    }
    let found = read_head(conn)?;
    HEAD.with(|head| head.set(Some(found)));
    Ok(found)
}

fn read_head(conn: &Connection) -> Result<(i64, ChainHash), StoreError> {
    let newest = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()
        })
        .map_err(|e| sql_failure(&e))?;
    let (seq, hash) = match newest {
        Some(found) => found,
        None => match anchor(conn)? {
            Some(anchor) => return Ok((anchor.seq, anchor.hash)),
            None => return Ok((0, GENESIS)),
        },
    };
    Ok((seq, hash_of(hash)))
}

fn hash_of(bytes: Vec<u8>) -> ChainHash {
    // A hash of another length was written by hand; verification names the record, and a
    // new record still links to what is there.
    let mut hash = [0u8; 32];
    let n = bytes.len().min(32);
    hash[..n].copy_from_slice(&bytes[..n]);
    hash
}

/// Appends one record after the chain's head, in the caller's transaction.
pub fn append(conn: &Connection, append: AuditAppend) -> Result<AuditEntry, StoreError> {
    let entry = append.entry_after(head(conn)?);
    match insert(conn, &entry) {
        Ok(()) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            // The seq is taken: rows were added by hand. Link to what is there now.
            forget_head();
            let entry = append.entry_after(head(conn)?);
            insert(conn, &entry).map_err(|e| {
                forget_head();
                sql_failure(&e)
            })?;
            HEAD.with(|head| head.set(Some((entry.seq, entry.hash))));
            return Ok(entry);
        }
        Err(e) => {
            forget_head();
            return Err(sql_failure(&e));
        }
    }
    HEAD.with(|head| head.set(Some((entry.seq, entry.hash))));
    Ok(entry)
}

fn insert(conn: &Connection, entry: &AuditEntry) -> rusqlite::Result<()> {
    // The writer's own statement when this is its connection (`audit_stmt`).
    if let Some(inserted) = crate::audit_stmt::insert(conn, entry) {
        return inserted;
    }
    // Bound one by one with their own types rather than through `params!`'s slice of
    // `dyn ToSql`: a record is 17 values, and this spares about 1,000 of an insert's 13,400
    // instructions (callgrind, one set's record).
    let mut stmt = conn.prepare_cached(INSERT)?;
    let e = &entry.event;
    stmt.raw_bind_parameter(1, entry.seq)?;
    stmt.raw_bind_parameter(2, e.time_ms)?;
    stmt.raw_bind_parameter(3, &e.request_id)?;
    stmt.raw_bind_parameter(4, &e.credential_kind)?;
    stmt.raw_bind_parameter(5, &e.credential)?;
    stmt.raw_bind_parameter(6, &e.app)?;
    stmt.raw_bind_parameter(7, &e.account)?;
    stmt.raw_bind_parameter(8, &e.mode)?;
    stmt.raw_bind_parameter(9, &e.scope_type)?;
    stmt.raw_bind_parameter(10, &e.user)?;
    stmt.raw_bind_parameter(11, &e.operation)?;
    stmt.raw_bind_parameter(12, &e.secret_name)?;
    stmt.raw_bind_parameter(13, &e.client)?;
    stmt.raw_bind_parameter(14, e.status)?;
    stmt.raw_bind_parameter(15, &e.code)?;
    stmt.raw_bind_parameter(16, &entry.prev[..])?;
    stmt.raw_bind_parameter(17, &entry.hash[..])?;
    stmt.raw_execute().map(|_| ())
}

fn text(row: &Row<'_>, column: usize) -> rusqlite::Result<Option<Text>> {
    Ok(row.get::<_, Option<String>>(column)?.map(Text::from))
}

fn entry(row: &Row<'_>) -> rusqlite::Result<(i64, AuditEvent, Vec<u8>, Vec<u8>)> {
    Ok((
        row.get(0)?,
        AuditEvent {
            time_ms: row.get(1)?,
            request_id: row.get(2)?,
            credential_kind: text(row, 3)?,
            credential: row.get(4)?,
            app: row.get(5)?,
            account: row.get(6)?,
            mode: text(row, 7)?,
            scope_type: text(row, 8)?,
            user: row.get(9)?,
            operation: row.get::<_, String>(10)?.into(),
            secret_name: row.get(11)?,
            client: row.get(12)?,
            status: row.get(13)?,
            code: row.get(14)?,
        },
        row.get(15)?,
        row.get(16)?,
    ))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<(i64, AuditEvent, Vec<u8>, Vec<u8>)>>,
) -> Result<Vec<AuditEntry>, StoreError> {
    rows.map(|row| {
        let (seq, event, prev, hash) = row.map_err(|e| sql_failure(&e))?;
        Ok(AuditEntry {
            seq,
            event: std::sync::Arc::new(event),
            prev: hash_of(prev),
            hash: hash_of(hash),
        })
    })
    .collect()
}

/// Records after `after`, oldest first.
pub fn scan(conn: &Connection, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_failure(&e))?;
    let rows = stmt
        .query_map(params![after, limit], entry)
        .map_err(|e| sql_failure(&e))?;
    collect(rows)
}

/// Records matching `filter`, newest first.
pub fn search(conn: &Connection, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |clause: &str, value: Value| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    };
    if let Some(t) = filter.since_ms {
        add("time_ms >= ?", Value::Integer(t));
    }
    if let Some(t) = filter.until_ms {
        add("time_ms < ?", Value::Integer(t));
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
            add(&format!("{column} = ?"), Value::Text(want.clone()));
        }
    }
    match &filter.outcome {
        None => {}
        Some(Outcome::Success) => add("status < ?", Value::Integer(400)),
        Some(Outcome::Failure) => add("status >= ?", Value::Integer(400)),
        Some(Outcome::Status(status)) => add("status = ?", Value::Integer(i64::from(*status))),
        Some(Outcome::Code(code)) => add("code = ?", Value::Text(code.clone())),
    }
    if let Some(before) = filter.before_seq {
        add("seq < ?", Value::Integer(before));
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
    let mut stmt = conn.prepare(&sql).map_err(|e| sql_failure(&e))?;
    let rows = stmt
        .query_map(params_from_iter(values), entry)
        .map_err(|e| sql_failure(&e))?;
    collect(rows)
}

pub fn anchor(conn: &Connection) -> Result<Option<AuditAnchor>, StoreError> {
    let found = conn
        .prepare_cached("SELECT seq, hash, pruned_at_ms, mac FROM audit_anchor WHERE id = 1")
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            })
            .optional()
        })
        .map_err(|e| sql_failure(&e))?;
    found
        .map(|(seq, hash, pruned_at_ms, mac)| {
            Ok(AuditAnchor {
                seq,
                hash: hash_of(hash),
                pruned_at_ms,
                mac: hash_of(mac),
            })
        })
        .transpose()
}

/// Deletes records older than `before_ms` (never the newest) and moves the anchor to the last
/// one deleted.
pub fn prune(
    conn: &Connection,
    before_ms: i64,
    now_ms: i64,
    chain: &secretstore_core::AuditChain,
) -> Result<u64, StoreError> {
    // The last record to go: the newest older than the limit, short of the head.
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seq, hash FROM audit
             WHERE time_ms < ?1 AND seq < (SELECT MAX(seq) FROM audit)
             ORDER BY seq DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([before_ms], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|e| sql_failure(&e))?;
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    forget_head();
    let anchor = chain.anchor(seq, hash_of(hash), now_ms);
    let removed = conn
        .prepare_cached("DELETE FROM audit WHERE seq <= ?1")
        .and_then(|mut stmt| stmt.execute([seq]))
        .map_err(|e| sql_failure(&e))?;
    conn.prepare_cached(
        "INSERT INTO audit_anchor (id, seq, hash, pruned_at_ms, mac) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
             pruned_at_ms = excluded.pruned_at_ms, mac = excluded.mac",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            anchor.seq,
            &anchor.hash[..],
            anchor.pruned_at_ms,
            &anchor.mac[..]
        ])
    })
    .map_err(|e| sql_failure(&e))?;
    Ok(removed as u64)
}
