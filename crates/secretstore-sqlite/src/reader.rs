//! The reader threads: a small pool, each with its own read-only connection, fed from one
//! channel. In WAL mode readers never wait for the writer, so finds and lists keep flowing while
//! a batch commits; and since the writer replies only after COMMIT, a read started after a write
//! returned always sees it.
//!
//! A read is any function of a read connection (`ReadJob`); the functions are below.

use crossbeam_channel::Receiver;
use rusqlite::{params, Connection, OptionalExtension};
use secretstore_core::{
    IdempotencyKey, KeptAnswer, ListCursor, ListQuery, SealedSecret, SecretAddress, StoreError,
    StoredList,
};

use crate::errors::sql_failure;
use crate::rows::{in_scope, kept_answer, live_at, secret_columns, secret_from_row, ScopeColumns};

/// One read: it runs on a reader's connection and sends its own answer.
pub type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// A reader thread's body: returns when every sender is gone and the queue is drained.
pub fn run(mut conn: Connection, jobs: Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
    }
}

pub fn get(
    conn: &mut Connection,
    address: &SecretAddress,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    Ok(crate::rows::live_secret(conn, address, now)?.map(|(secret, _)| secret))
}

/// Newest first by `seq`. `starting_after` pages towards older rows; `ending_before` takes the
/// rows just newer than the cursor (read oldest first, closest to the cursor, then reversed).
/// A page of `query`, and the expiry of the first live secret past it, if there is one.
pub fn list(
    conn: &mut Connection,
    query: &ListQuery,
) -> Result<(StoredList, Option<Option<i64>>), StoreError> {
    const CURSOR: &str = concat!(
        "SELECT seq FROM secrets WHERE ",
        in_scope!(),
        " AND id = ?6 AND ",
        live_at!("?7")
    );
    const OLDER: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("?6"),
        " AND seq < ?7 ORDER BY seq DESC LIMIT ?8"
    );
    const NEWER: &str = concat!(
        "SELECT ",
        secret_columns!(),
        " FROM secrets WHERE ",
        in_scope!(),
        " AND ",
        live_at!("?6"),
        " AND seq > ?7 ORDER BY seq ASC LIMIT ?8"
    );
    // One read transaction, so the cursor and the page come from the same snapshot.
    let tx = conn.transaction().map_err(|e| sql_failure(&e))?;
    let cols = ScopeColumns::new(&query.namespace, &query.scope);
    let (bound, towards_newer) = match &query.cursor {
        None => (i64::MAX, false),
        Some(cursor) => {
            // The cursor must be a live secret of this very namespace and scope; anything else
            // (another tenant's id included) is "not found", revealing nothing.
            let seq = (|| -> rusqlite::Result<Option<i64>> {
                let mut stmt = tx.prepare_cached(CURSOR)?;
                cols.bind(&mut stmt)?;
                stmt.raw_bind_parameter(6, cursor.id().as_str())?;
                stmt.raw_bind_parameter(7, query.now)?;
                let mut rows = stmt.raw_query();
                rows.next()?.map(|row| row.get(0)).transpose()
            })()
            .map_err(|e| sql_failure(&e))?;
            let Some(seq) = seq else {
                return Err(StoreError::CursorNotFound {
                    kind: cursor.kind(),
                    id: cursor.id().to_string(),
                });
            };
            (seq, matches!(cursor, ListCursor::EndingBefore(_)))
        }
    };
    let limit = query.limit as usize;
    // One row past the page says whether there is more.
    let fetch = i64::from(query.limit) + 1;
    let mut items = Vec::with_capacity(limit.min(101) + 1);
    (|| -> rusqlite::Result<()> {
        let mut stmt = tx.prepare_cached(if towards_newer { NEWER } else { OLDER })?;
        cols.bind(&mut stmt)?;
        stmt.raw_bind_parameter(6, query.now)?;
        stmt.raw_bind_parameter(7, bound)?;
        stmt.raw_bind_parameter(8, fetch)?;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            items.push(secret_from_row(row, &query.namespace, &query.scope)?);
        }
        Ok(())
    })()
    .map_err(|e| sql_failure(&e))?;
    tx.finish().map_err(|e| sql_failure(&e))?;
    let mut items = items.into_iter().collect::<Result<Vec<_>, _>>()?;
    // The row past the page (fetched only to say there is more): its expiry, for the list
    // cache (`list_cache`), which serves the page only while that row too is live.
    let past = items.get(limit).map(|next| next.expires_at);
    let has_more = items.len() > limit;
    items.truncate(limit);
    if towards_newer {
        items.reverse();
    }
    Ok((StoredList { items, has_more }, past))
}

/// The kept answer of a key, if one was created after `kept_after`.
pub fn kept(
    conn: &mut Connection,
    key: &IdempotencyKey,
    kept_after: i64,
) -> Result<Option<KeptAnswer>, StoreError> {
    conn.prepare_cached(
        "SELECT fingerprint, sealed, created FROM idempotency
         WHERE credential = ?1 AND key = ?2 AND created > ?3",
    )
    .and_then(|mut stmt| {
        stmt.query_row(
            params![&key.credential.as_bytes()[..], key.key, kept_after],
            |row| Ok(kept_answer(row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
    })
    .map_err(|e| sql_failure(&e))?
    .transpose()
}

pub fn meta_get(conn: &mut Connection, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let value: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(|e| sql_failure(&e))?;
    Ok(value.flatten())
}

/// Every row of `secrets`, expired or not. SQLite counts the pages of the table's smallest
/// index, without reading rows; on a reader's connection it never holds up the writer.
pub fn count_secrets(conn: &mut Connection) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM secrets")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(|e| sql_failure(&e))?;
    Ok(count.max(0) as u64)
}

/// Touches the database file, not just the connection, so a vanished or unreadable file shows.
pub fn ping(conn: &mut Connection) -> Result<(), StoreError> {
    conn.prepare_cached("SELECT COUNT(*) FROM meta")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
        .map_err(|e| sql_failure(&e))?;
    Ok(())
}
