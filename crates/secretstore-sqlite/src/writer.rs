//! The single writer thread and its group commit. Every change goes through here, one at a time,
//! on the only read-write connection: that is what makes the per-scope maximum exact (no two
//! puts ever count at once) without retry loops on SQLite's lock.
//!
//! Throughput comes from batching: the thread blocks for one job, then takes whatever else is
//! already queued (up to `max_batch`), runs them all in ONE transaction, each inside its own
//! savepoint so a job that fails (a full scope, a seal error) is undone alone, and commits once:
//! one fsync for the whole batch. Replies go out only after COMMIT returned, so `Ok` means
//! durable; if the commit fails, every job of the batch that had succeeded is answered with
//! that failure instead. The thread survives any error and keeps serving, so a disk that fills
//! up and then frees space needs no restart.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use secretstore_core::limits::IDEMPOTENCY_TTL_SECS;
use secretstore_core::{
    is_live, IdempotencyKey, KeptAnswer, PutRequest, Seal, SealedSecret, SecretId, SecretKey,
    StoreError,
};
use tokio::sync::oneshot;

use crate::cache::SecretCache;
use crate::errors::{copy, sql_failure};
use crate::rows::{credential, live_secret, parse_id, ScopeColumns};

/// Where a job's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the writer thread and the store handle share.
#[derive(Debug)]
pub struct Shared {
    /// Idempotency keys claimed by requests still running. In memory because a claim only means
    /// something while its request runs; the data directory lock keeps it to one process.
    pub inflight: Mutex<HashSet<IdempotencyKey>>,
    /// Transactions committed, and jobs run; for tests and metrics of the group commit.
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    /// Sealed secrets recently read; the writer invalidates what it changes.
    pub cache: SecretCache,
}

impl Shared {
    pub fn new(cache_capacity: usize) -> Self {
        Self {
            inflight: Mutex::default(),
            commits: AtomicU64::default(),
            ops: AtomicU64::default(),
            cache: SecretCache::new(cache_capacity),
        }
    }
}

/// How many rows one purge job deleted, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub secrets: u64,
    pub idempotency: u64,
}

/// Code for `WriteJob::Inspect`.
#[cfg(test)]
pub type Inspection = Box<dyn FnOnce(&Connection) -> rusqlite::Result<String> + Send>;

/// One change, with the channel its answer goes back on.
pub enum WriteJob {
    Put {
        request: PutRequest,
        reply: Reply<SealedSecret>,
    },
    Delete {
        key: SecretKey,
        now: i64,
        reply: Reply<Option<SealedSecret>>,
    },
    /// Deletes up to `limit` expired secrets and up to `limit` stale idempotency records; the
    /// caller repeats until less than a full batch went, so one sweep never holds the writer long.
    Purge {
        now: i64,
        limit: u32,
        reply: Reply<Purged>,
    },
    IdempotencyComplete {
        key: IdempotencyKey,
        answer: KeptAnswer,
        reply: Reply<()>,
    },
    MetaPut {
        name: String,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    /// Runs arbitrary code on the write connection, inside the batch's transaction.
    #[cfg(test)]
    Inspect {
        run: Inspection,
        reply: Reply<String>,
    },
}

impl std::fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            WriteJob::Put { .. } => "Put",
            WriteJob::Delete { .. } => "Delete",
            WriteJob::Purge { .. } => "Purge",
            WriteJob::IdempotencyComplete { .. } => "IdempotencyComplete",
            WriteJob::MetaPut { .. } => "MetaPut",
            #[cfg(test)]
            WriteJob::Inspect { .. } => "Inspect",
        };
        f.write_str(name)
    }
}

/// The writer thread's body: returns when every sender is gone and the queue is drained, which
/// is how `close` lets queued writes finish.
pub fn run(mut conn: Connection, jobs: Receiver<WriteJob>, max_batch: usize, shared: &Shared) {
    let max_batch = max_batch.max(1);
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(max_batch.min(64));
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch, shared);
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<WriteJob>, shared: &Shared) {
    shared.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
    // Completing an idempotency key releases its claim whatever happens to the write: a claim
    // left behind would block the key until restart, while a released one only lets a retry
    // run again.
    let released: Vec<IdempotencyKey> = batch
        .iter()
        .filter_map(|job| match job {
            WriteJob::IdempotencyComplete { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    // The secrets this batch may change, to drop from the read cache once it is settled.
    let mut touched: Vec<SecretKey> = Vec::new();
    let mut purged_at: Option<i64> = None;
    for job in &batch {
        match job {
            WriteJob::Put { request, .. } => touched.push(request.key.clone()),
            WriteJob::Delete { key, .. } => touched.push(key.clone()),
            WriteJob::Purge { now, .. } => purged_at = Some(*now),
            _ => {}
        }
    }
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(batch.len());
    let failure = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Err(e) => {
            let err = sql_failure(&e);
            tracing::warn!(error = %err, "cannot begin a write transaction");
            answers.extend(batch.into_iter().map(|job| job.refuse(&err)));
            None
        }
        Ok(mut tx) => {
            let mut abort: Option<StoreError> = None;
            for job in batch {
                if let Some(err) = &abort {
                    answers.push(job.refuse(err));
                    continue;
                }
                let (answer, batch_failure) = job.run(&mut tx);
                answers.push(answer);
                abort = batch_failure;
            }
            match abort {
                // Dropping the transaction rolls back whatever SQLite has not already.
                Some(err) => Some(err),
                None => match tx.commit() {
                    Ok(()) => {
                        shared.commits.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Err(e) => Some(sql_failure(&e)),
                },
            }
        }
    };
    if let Some(err) = &failure {
        tracing::warn!(error = %err, jobs = answers.len(), "write batch failed");
    }
    // Before any answer goes out: once a write is acknowledged, no read may see what it
    // replaced. (On a failed batch nothing changed, and forgetting is harmless.)
    for key in &touched {
        shared.cache.invalidate(key);
    }
    if let Some(now) = purged_at {
        shared.cache.purge(now);
    }
    if !released.is_empty() {
        let mut inflight = shared.inflight.lock();
        for key in &released {
            inflight.remove(key);
        }
    }
    for mut answer in answers {
        if let Some(err) = &failure {
            answer.fail(err);
        }
        answer.send();
    }
}

/// A job's result waiting for the batch to commit.
trait Answer: Send {
    /// The batch did not commit: a success becomes this failure (a job that failed on its own
    /// keeps its own, more precise, error; it changed nothing either way).
    fn fail(&mut self, err: &StoreError);
    fn send(self: Box<Self>);
}

struct Done<T> {
    reply: Reply<T>,
    result: Result<T, StoreError>,
}

impl<T: Send> Answer for Done<T> {
    fn fail(&mut self, err: &StoreError) {
        if self.result.is_ok() {
            self.result = Err(copy(err));
        }
    }

    fn send(self: Box<Self>) {
        let Done { reply, result } = *self;
        // The caller may have gone (its request was cancelled); the write stands regardless.
        let _ = reply.send(result);
    }
}

/// An answer, and whether the whole batch must be abandoned.
type Ran = (Box<dyn Answer>, Option<StoreError>);

fn done<T: Send + 'static>(reply: Reply<T>, (result, abort): Outcome<T>) -> Ran {
    (Box::new(Done { reply, result }), abort)
}

impl WriteJob {
    fn run(self, tx: &mut Transaction<'_>) -> Ran {
        match self {
            WriteJob::Put { request, reply } => done(reply, in_savepoint(tx, |c| put(c, request))),
            WriteJob::Delete { key, now, reply } => {
                done(reply, in_savepoint(tx, |c| delete(c, &key, now)))
            }
            WriteJob::Purge { now, limit, reply } => {
                done(reply, in_savepoint(tx, |c| purge(c, now, limit)))
            }
            WriteJob::IdempotencyComplete { key, answer, reply } => {
                done(reply, in_savepoint(tx, |c| keep_answer(c, &key, &answer)))
            }
            WriteJob::MetaPut { name, value, reply } => {
                done(reply, in_savepoint(tx, |c| meta_put(c, &name, &value)))
            }
            #[cfg(test)]
            WriteJob::Inspect { run, reply } => done(
                reply,
                in_savepoint(tx, |c| run(c).map_err(|e| sql_failure(&e))),
            ),
        }
    }

    /// Answers without running: the batch was already abandoned.
    fn refuse(self, err: &StoreError) -> Box<dyn Answer> {
        fn no<T: Send + 'static>(reply: Reply<T>, err: &StoreError) -> Box<dyn Answer> {
            Box::new(Done {
                reply,
                result: Err(copy(err)),
            })
        }
        match self {
            WriteJob::Put { reply, .. } => no(reply, err),
            WriteJob::Delete { reply, .. } => no(reply, err),
            WriteJob::Purge { reply, .. } => no(reply, err),
            WriteJob::IdempotencyComplete { reply, .. } => no(reply, err),
            WriteJob::MetaPut { reply, .. } => no(reply, err),
            #[cfg(test)]
            WriteJob::Inspect { reply, .. } => no(reply, err),
        }
    }
}

/// A job's own result, and `Some` when the transaction itself is lost and the batch must stop.
type Outcome<T> = (Result<T, StoreError>, Option<StoreError>);

/// Runs one job inside its own savepoint: kept if it succeeded, undone alone if it failed.
fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Outcome<T> {
    let savepoint = match tx.savepoint() {
        Ok(savepoint) => savepoint,
        Err(e) => {
            let err = sql_failure(&e);
            return (Err(copy(&err)), Some(err));
        }
    };
    let result = op(&savepoint);
    // `finish` on a fresh savepoint rolls it back (its default drop behaviour) and reports
    // whether that worked.
    let closed = match &result {
        Ok(_) => savepoint.commit(),
        Err(_) => savepoint.finish(),
    };
    let abort = match closed {
        Err(e) => Some(sql_failure(&e)),
        // On some errors (disk full, I/O) SQLite rolls back the whole transaction by itself;
        // running later jobs now would autocommit them one by one, so the batch stops here.
        Ok(()) if tx.is_autocommit() => Some(match &result {
            Err(err @ StoreError::Unavailable(_)) => copy(err),
            _ => StoreError::Unavailable("the write transaction was rolled back".into()),
        }),
        Ok(()) => None,
    };
    (result, abort)
}

/// Create or replace; see `Store::put`.
fn put(conn: &Connection, request: PutRequest) -> Result<SealedSecret, StoreError> {
    let PutRequest {
        key,
        new_id,
        now,
        expires_at,
        max_per_scope,
        seal,
    } = request;
    let cols = ScopeColumns::new(&key.namespace, &key.scope);
    let existing = conn
        .prepare_cached(
            "SELECT seq, id, created, expires_at FROM secrets
             WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
               AND scope_user = ?5 AND name = ?6",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    cols.app,
                    cols.account,
                    cols.livemode,
                    cols.scope_type,
                    cols.scope_user,
                    key.name.as_str()
                ],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()
        })
        .map_err(|e| sql_failure(&e))?;

    if let Some((seq, id, created, old_expiry)) = existing {
        if is_live(old_expiry, now) {
            // Replace in place: same row, so same id, `created` and place in lists.
            let id = parse_id(&id)?;
            let sealed = seal_for(seal, &id)?;
            conn.prepare_cached("UPDATE secrets SET sealed = ?1, expires_at = ?2 WHERE seq = ?3")
                .and_then(|mut stmt| stmt.execute(params![sealed, expires_at, seq]))
                .map_err(|e| sql_failure(&e))?;
            return Ok(SealedSecret {
                id,
                key,
                created,
                expires_at,
                sealed,
            });
        }
        // Expired: as good as absent. The savepoint restores it if this put then fails.
        conn.prepare_cached("DELETE FROM secrets WHERE seq = ?1")
            .and_then(|mut stmt| stmt.execute([seq]))
            .map_err(|e| sql_failure(&e))?;
    }

    let live: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM secrets
             WHERE app = ?1 AND account = ?2 AND livemode = ?3 AND scope_type = ?4
               AND scope_user = ?5 AND (expires_at IS NULL OR expires_at > ?6)",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![
                    cols.app,
                    cols.account,
                    cols.livemode,
                    cols.scope_type,
                    cols.scope_user,
                    now
                ],
                |row| row.get(0),
            )
        })
        .map_err(|e| sql_failure(&e))?;
    if live >= i64::from(max_per_scope) {
        return Err(StoreError::ScopeFull { max: max_per_scope });
    }
    let sealed = seal_for(seal, &new_id)?;
    conn.prepare_cached(
        "INSERT INTO secrets
             (id, app, account, livemode, scope_type, scope_user, name, created, expires_at, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            new_id.as_str(),
            cols.app,
            cols.account,
            cols.livemode,
            cols.scope_type,
            cols.scope_user,
            key.name.as_str(),
            now,
            expires_at,
            sealed
        ])
    })
    .map_err(|e| sql_failure(&e))?;
    Ok(SealedSecret {
        id: new_id,
        key,
        created: now,
        expires_at,
        sealed,
    })
}

/// Calls the service's seal closure. A panic in it must not take the only writer down with it.
fn seal_for(seal: Seal, id: &SecretId) -> Result<Vec<u8>, StoreError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| seal(id))) {
        Ok(Ok(sealed)) => Ok(sealed),
        Ok(Err(e)) => Err(StoreError::Seal(e)),
        Err(_) => Err(StoreError::Internal("sealing the payload panicked".into())),
    }
}

/// Removes the live secret with this key; an expired one stays for the sweep.
fn delete(
    conn: &Connection,
    key: &SecretKey,
    now: i64,
) -> Result<Option<SealedSecret>, StoreError> {
    let Some((secret, seq)) = live_secret(conn, key, now)? else {
        return Ok(None);
    };
    conn.prepare_cached("DELETE FROM secrets WHERE seq = ?1")
        .and_then(|mut stmt| stmt.execute([seq]))
        .map_err(|e| sql_failure(&e))?;
    Ok(Some(secret))
}

fn purge(conn: &Connection, now: i64, limit: u32) -> Result<Purged, StoreError> {
    let secrets = conn
        .prepare_cached(
            "DELETE FROM secrets WHERE seq IN
                 (SELECT seq FROM secrets WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![now, limit]))
        .map_err(|e| sql_failure(&e))?;
    // A record is kept while created + TTL > now.
    let stale_from = now.saturating_sub(IDEMPOTENCY_TTL_SECS);
    let idempotency = conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE rowid IN
                 (SELECT rowid FROM idempotency WHERE created <= ?1 LIMIT ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![stale_from, limit]))
        .map_err(|e| sql_failure(&e))?;
    Ok(Purged {
        secrets: secrets as u64,
        idempotency: idempotency as u64,
    })
}

fn keep_answer(
    conn: &Connection,
    key: &IdempotencyKey,
    answer: &KeptAnswer,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO idempotency
             (credential, key, fingerprint, status, sealed_body, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            credential(key),
            key.key,
            &answer.fingerprint[..],
            answer.status,
            answer.sealed_body,
            answer.created
        ])
    })
    .map_err(|e| sql_failure(&e))?;
    Ok(())
}

fn meta_put(conn: &Connection, name: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute(params![name, value]))
    .map_err(|e| sql_failure(&e))?;
    Ok(())
}
