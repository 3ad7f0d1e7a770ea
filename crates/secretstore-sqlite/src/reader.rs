//! The reader threads: a small pool, each with its own read-only connection, fed from one
//! channel. In WAL mode readers never wait for the writer, so finds and lists keep flowing while
//! a batch commits; and since the writer replies only after COMMIT, a read started after a write
//! returned always sees it.

use crossbeam_channel::Receiver;
use rusqlite::{params, Connection, OptionalExtension};
use secretstore_core::{
    IdempotencyKey, KeptAnswer, ListCursor, ListQuery, SealedSecret, SecretKey, StoreError,
    StoredList,
};

use crate::errors::sql_failure;
use crate::rows::{credential, kept_answer, secret_from_row, ScopeColumns};
use crate::writer::Reply;

/// One read, with the channel its answer goes back on.
pub enum ReadJob {
    Get {
        key: SecretKey,
        now: i64,
        reply: Reply<Option<SealedSecret>>,
    },
    List {
        query: ListQuery,
        reply: Reply<StoredList>,
    },
    IdempotencyLookup {
        key: IdempotencyKey,
        reply: Reply<Option<KeptAnswer>>,
    },
    MetaGet {
        name: String,
        reply: Reply<Option<Vec<u8>>>,
    },
    Ping {
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for ReadJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ReadJob::Get { .. } => "Get",
            ReadJob::List { .. } => "List",
            ReadJob::IdempotencyLookup { .. } => "IdempotencyLookup",
            ReadJob::MetaGet { .. } => "MetaGet",
            ReadJob::Ping { .. } => "Ping",
        };
        f.write_str(name)
    }
}

/// A reader thread's body: returns when every sender is gone and the queue is drained.
pub fn run(mut conn: Connection, jobs: Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        // A caller that went away (cancelled request) is no error: the send result is ignored.
        match job {
            ReadJob::Get { key, now, reply } => {
                let _ = reply.send(get(&conn, &key, now));
            }
            ReadJob::List { query, reply } => {
                let _ = reply.send(list(&mut conn, &query));
            }
            ReadJob::IdempotencyLookup { key, reply } => {
                let _ = reply.send(idempotency_lookup(&conn, &key));
            }
            ReadJob::MetaGet { name, reply } => {
                let _ = reply.send(meta_get(&conn, &name));
            }
            ReadJob::Ping { reply } => {
                let _ = reply.send(ping(&conn));
            }
        }
    }
}

fn get(conn: &Connection, key: &SecretKey, now: i64) -> Result<Option<SealedSecret>, StoreError> {
    Ok(crate::rows::live_secret(conn, key, now)?.map(|(secret, _)| secret))
}

/// Newest first by `seq`. `starting_after` pages towards older rows; `ending_before` takes the
/// rows just newer than the cursor (read oldest first, closest to the cursor, then reversed).
fn list(conn: &mut Connection, query: &ListQuery) -> Result<StoredList, StoreError> {
    // One read transaction, so the cursor and the page come from the same snapshot.
    let tx = conn.transaction().map_err(|e| sql_failure(&e))?;
    let cols = ScopeColumns::new(&query.namespace, &query.scope);
    let (bound, towards_newer) = match &query.cursor {
        None => (i64::MAX, false),
        Some(cursor) => {
            // The cursor must be a live secret of this very namespace and scope; anything else
            // (another tenant's id included) is "not found", revealing nothing.
            let seq: Option<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM secrets
                     WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
                       AND scope_user = ?5 AND id = ?6
                       AND (expires_at IS NULL OR expires_at > ?7)",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            cols.app,
                            cols.account,
                            cols.livemode,
                            cols.scope_type,
                            cols.scope_user,
                            cursor.id().as_str(),
                            query.now
                        ],
                        |row| row.get(0),
                    )
                    .optional()
                })
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
    let sql = if towards_newer {
        "SELECT id, name, created, expires_at, sealed FROM secrets
         WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
           AND scope_user = ?5 AND (expires_at IS NULL OR expires_at > ?6) AND seq > ?7
         ORDER BY seq ASC LIMIT ?8"
    } else {
        "SELECT id, name, created, expires_at, sealed FROM secrets
         WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
           AND scope_user = ?5 AND (expires_at IS NULL OR expires_at > ?6) AND seq < ?7
         ORDER BY seq DESC LIMIT ?8"
    };
    let limit = query.limit as usize;
    // One row past the page says whether there is more.
    let fetch = i64::from(query.limit) + 1;
    let mut items = Vec::with_capacity(limit.min(101) + 1);
    {
        let mut stmt = tx.prepare_cached(sql).map_err(|e| sql_failure(&e))?;
        let rows = stmt
            .query_map(
                params![
                    cols.app,
                    cols.account,
                    cols.livemode,
                    cols.scope_type,
                    cols.scope_user,
                    query.now,
                    bound,
                    fetch
                ],
                |row| secret_from_row(row, &query.namespace, &query.scope),
            )
            .map_err(|e| sql_failure(&e))?;
        for row in rows {
            items.push(row.map_err(|e| sql_failure(&e))??);
        }
    }
    tx.finish().map_err(|e| sql_failure(&e))?;
    let has_more = items.len() > limit;
    items.truncate(limit);
    if towards_newer {
        items.reverse();
    }
    Ok(StoredList { items, has_more })
}

fn idempotency_lookup(
    conn: &Connection,
    key: &IdempotencyKey,
) -> Result<Option<KeptAnswer>, StoreError> {
    conn.prepare_cached(
        "SELECT fingerprint, status, sealed_body, created FROM idempotency
         WHERE credential = ?1 AND key = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![credential(key), key.key], |row| {
            Ok(kept_answer(
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
            ))
        })
        .optional()
    })
    .map_err(|e| sql_failure(&e))?
    .transpose()
}

fn meta_get(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let value: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(|e| sql_failure(&e))?;
    Ok(value.flatten())
}

/// Touches the database file, not just the connection, so a vanished or unreadable file shows.
fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("SELECT COUNT(*) FROM meta")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
        .map_err(|e| sql_failure(&e))?;
    Ok(())
}
