//! secretstore's embedded default `Store`: one data directory holding a SQLite database in WAL
//! mode with `synchronous=FULL`, so nothing else needs to run beside the server.
//!
//! The shape is one writer thread owning the only read-write connection (group commit: many
//! queued writes share one transaction and one fsync, and answer only once it is on disk) plus a
//! small pool of reader threads with read-only connections. Async callers hand jobs to those
//! threads over channels and await a oneshot answer, so no tokio worker ever blocks on SQLite.
//! Idempotency claims in flight are kept in memory; an exclusive lock on the data directory
//! makes sure no second process shares the files without sharing that memory.

mod cache;
mod data_dir;
mod errors;
mod reader;
mod rows;
mod schema;
mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OpenFlags};
use secretstore_core::limits::IDEMPOTENCY_TTL_SECS;
use secretstore_core::{
    IdempotencyClaim, IdempotencyKey, KeptAnswer, ListQuery, PutRequest, SealedSecret, SecretKey,
    Store, StoreError, StoredList,
};
use tokio::sync::oneshot;

pub use data_dir::{DATABASE_FILE, LOCK_FILE};
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::data_dir::DirLock;
use crate::errors::{shutting_down, sql_failure, thread_stopped};
use crate::reader::ReadJob;
use crate::writer::{Purged, Reply, Shared, WriteJob};

/// How to run the store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Reader threads, each with its own connection (at least one is used).
    pub readers: usize,
    /// Most writes one transaction (one fsync) takes.
    pub max_batch: usize,
    /// How long a connection waits on a lock held by another connection (an operator's sqlite3
    /// shell, say) before answering "database is busy".
    pub busy_timeout: Duration,
    /// Most expired rows one purge step deletes per table before letting other writes in.
    pub purge_batch: u32,
    /// Secrets kept in the read cache (sealed, as stored); 0 turns it off.
    pub cache_capacity: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            readers: 4,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
            purge_batch: 500,
            cache_capacity: 100_000,
        }
    }
}

/// Counters of the group commit since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SqliteStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Write jobs run (puts, deletes, purge steps, kept answers, meta writes), committed or not.
    pub ops: u64,
    /// Write jobs waiting for the writer right now.
    pub queued_writes: usize,
    /// Secrets in the read cache right now.
    pub cached_secrets: usize,
}

/// The senders that feed the threads; `None` once the store is closed.
#[derive(Debug)]
struct Channels {
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
}

/// A storage thread, and a channel that closes when it ends (however it ends), so `close` can
/// wait without blocking a tokio worker on `join`.
#[derive(Debug)]
struct Worker {
    handle: JoinHandle<()>,
    ended: oneshot::Receiver<()>,
}

/// The SQLite-backed `Store`. See the crate documentation.
pub struct SqliteStore {
    dir: PathBuf,
    options: SqliteOptions,
    channels: RwLock<Option<Channels>>,
    workers: Mutex<Vec<Worker>>,
    shared: Arc<Shared>,
    // Declared last: fields drop in order, so the directory is released only after `Drop` has
    // joined the threads and their connections are closed.
    _lock: DirLock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("open", &self.channels.read().is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`: takes the directory's lock, opens the
    /// connections, applies pending migrations and starts the threads. Blocking; meant to be
    /// called once at start-up.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let (lock, database) = data_dir::prepare(dir)?;
        let shown = database.display().to_string();
        let mut writer_conn = open_writer(&database, options.busy_timeout)?;
        schema::migrate(&mut writer_conn, &shown)?;
        // Readers open after the writer so the WAL and its index already exist: a read-only
        // connection cannot create them.
        let readers = (0..options.readers.max(1))
            .map(|_| open_reader(&database, options.busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;

        let shared = Arc::new(Shared::new(options.cache_capacity));
        let (write_tx, write_rx) = crossbeam_channel::unbounded::<WriteJob>();
        let (read_tx, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
        let mut workers = Vec::with_capacity(readers.len() + 1);
        let started = (|| -> std::io::Result<()> {
            let thread_shared = Arc::clone(&shared);
            let max_batch = options.max_batch;
            workers.push(spawn("secretstore-sqlite-writer".into(), move || {
                writer::run(writer_conn, write_rx, max_batch, &thread_shared)
            })?);
            for (n, conn) in readers.into_iter().enumerate() {
                let jobs = read_rx.clone();
                workers.push(spawn(
                    format!("secretstore-sqlite-reader-{n}"),
                    move || reader::run(conn, jobs),
                )?);
            }
            Ok(())
        })();
        let store = SqliteStore {
            dir: dir.to_path_buf(),
            options,
            channels: RwLock::new(Some(Channels {
                writer: write_tx,
                readers: read_tx,
            })),
            workers: Mutex::new(workers),
            shared,
            _lock: lock,
        };
        // On failure, dropping the store stops and joins whatever did start.
        started
            .map_err(|e| StoreError::Unavailable(format!("cannot start a storage thread: {e}")))?;
        tracing::info!(dir = %store.dir.display(), "sqlite store open");
        Ok(store)
    }

    /// The data directory this store holds.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Group commit counters since open, and the read cache's size.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            ops: self.shared.ops.load(Ordering::Relaxed),
            cached_secrets: self.shared.cache.len(),
            queued_writes: self
                .channels
                .read()
                .as_ref()
                .map_or(0, |channels| channels.writer.len()),
        }
    }

    /// Queues a write and awaits its answer, which comes only after its batch committed.
    async fn write<T>(&self, job: impl FnOnce(Reply<T>) -> WriteJob) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let channels = self.channels.read();
            let channels = channels.as_ref().ok_or_else(shutting_down)?;
            channels
                .writer
                .send(job(reply))
                .map_err(|_| thread_stopped())?;
        }
        answer.await.map_err(|_| thread_stopped())?
    }

    /// Queues a read for the reader pool and awaits its answer.
    async fn read<T>(&self, job: impl FnOnce(Reply<T>) -> ReadJob) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let channels = self.channels.read();
            let channels = channels.as_ref().ok_or_else(shutting_down)?;
            channels
                .readers
                .send(job(reply))
                .map_err(|_| thread_stopped())?;
        }
        answer.await.map_err(|_| thread_stopped())?
    }

    /// The answer kept for `key`, if younger than its time to live at `now`.
    async fn kept_answer(
        &self,
        key: &IdempotencyKey,
        now: i64,
    ) -> Result<Option<KeptAnswer>, StoreError> {
        let key = key.clone();
        let kept = self
            .read(|reply| ReadJob::IdempotencyLookup { key, reply })
            .await?;
        Ok(kept.filter(|answer| answer.created.saturating_add(IDEMPOTENCY_TTL_SECS) > now))
    }

    /// Stops accepting jobs: the threads finish what is queued and end.
    fn stop_accepting(&self) -> Vec<Worker> {
        self.channels.write().take();
        std::mem::take(&mut *self.workers.lock())
    }
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<Worker> {
    let (ended_tx, ended) = oneshot::channel::<()>();
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        // Dropped when the body returns or unwinds: either way `close` stops waiting.
        let _ended = ended_tx;
        body();
    })?;
    Ok(Worker { handle, ended })
}

fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_failure(path, &e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| open_failure(path, &e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| open_failure(path, &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "database {} cannot use write-ahead logging (journal mode stays {mode:?})",
            path.display()
        )));
    }
    // FULL: the WAL is synced at every commit, so a commit that returned survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_failure(path, &e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| open_failure(path, &e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_failure(path, &e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| open_failure(path, &e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn open_failure(path: &Path, err: &rusqlite::Error) -> StoreError {
    let reason = match sql_failure(err) {
        StoreError::Unavailable(why) | StoreError::Internal(why) => why,
        other => other.to_string(),
    };
    StoreError::Unavailable(format!("cannot open database {}: {reason}", path.display()))
}

/// Removes a key from the in-flight set if the claim is abandoned before it is handed to the
/// caller (an error, a kept answer, or the claiming future being dropped mid-way).
struct ClaimGuard<'a> {
    inflight: &'a Mutex<HashSet<IdempotencyKey>>,
    key: Option<&'a IdempotencyKey>,
}

impl ClaimGuard<'_> {
    /// The caller now owns the claim and must complete or release it.
    fn hand_over(mut self) {
        self.key = None;
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.inflight.lock().remove(key);
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        self.write(|reply| WriteJob::Put { request, reply }).await
    }

    async fn get(&self, key: &SecretKey, now: i64) -> Result<Option<SealedSecret>, StoreError> {
        let ticket = match self.shared.cache.get(key, now) {
            Ok(hit) => return Ok(hit),
            Err(ticket) => ticket,
        };
        let owned = key.clone();
        let found = self
            .read(|reply| ReadJob::Get {
                key: owned,
                now,
                reply,
            })
            .await?;
        if let Some(secret) = &found {
            self.shared.cache.fill(ticket, secret);
        }
        Ok(found)
    }

    async fn delete(&self, key: &SecretKey, now: i64) -> Result<Option<SealedSecret>, StoreError> {
        let key = key.clone();
        self.write(|reply| WriteJob::Delete { key, now, reply })
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError> {
        let query = query.clone();
        self.read(|reply| ReadJob::List { query, reply }).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        // Step by step, each step its own job, so writes queued meanwhile are not held up
        // behind one long delete.
        let limit = self.options.purge_batch.max(1);
        let mut secrets = 0;
        loop {
            let step: Purged = self
                .write(|reply| WriteJob::Purge { now, limit, reply })
                .await?;
            secrets += step.secrets;
            if step.secrets < u64::from(limit) && step.idempotency < u64::from(limit) {
                break;
            }
        }
        if secrets > 0 {
            tracing::debug!(secrets, "purged expired secrets");
        }
        Ok(secrets)
    }

    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        now: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        // Claim in memory first, then look for a kept answer: a competing request can only
        // claim after this one's answer is committed (the writer releases the claim after the
        // commit), so it finds that answer rather than running the request a second time.
        if !self.shared.inflight.lock().insert(key.clone()) {
            // Someone holds the key. If an answer is already kept, that is the better reply:
            // the holder is then only another replay between its claim and its look-up (a claim
            // that runs a request is only ever granted when no live answer exists).
            return Ok(match self.kept_answer(key, now).await? {
                Some(answer) => IdempotencyClaim::Kept(answer),
                None => IdempotencyClaim::InFlight,
            });
        }
        let guard = ClaimGuard {
            inflight: &self.shared.inflight,
            key: Some(key),
        };
        match self.kept_answer(key, now).await? {
            Some(answer) => {
                drop(guard);
                Ok(IdempotencyClaim::Kept(answer))
            }
            None => {
                guard.hand_over();
                Ok(IdempotencyClaim::Claimed)
            }
        }
    }

    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        answer: KeptAnswer,
        _now: i64,
    ) -> Result<(), StoreError> {
        // The record's age is counted from `answer.created`, which the service sets to `now`.
        let job_key = key.clone();
        let result = self
            .write(|reply| WriteJob::IdempotencyComplete {
                key: job_key,
                answer,
                reply,
            })
            .await;
        if result.is_err() {
            // The writer releases the claim after its commit; if the job never reached it
            // (store closed), nothing else will.
            self.shared.inflight.lock().remove(key);
        }
        result
    }

    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        self.shared.inflight.lock().remove(key);
        Ok(())
    }

    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.read(|reply| ReadJob::MetaGet { name, reply }).await
    }

    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(|reply| WriteJob::MetaPut { name, value, reply })
            .await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        // Reads alone could succeed while writes cannot: the writer is spawned first, so it is
        // the first worker.
        let writer_gone = self
            .workers
            .lock()
            .first()
            .is_some_and(|writer| writer.handle.is_finished());
        if writer_gone {
            return Err(thread_stopped());
        }
        self.read(|reply| ReadJob::Ping { reply }).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let workers = self.stop_accepting();
        let mut panicked = false;
        for worker in workers {
            // Wait without blocking the runtime; the join after it is then immediate.
            let _ = worker.ended.await;
            panicked |= worker.handle.join().is_err();
        }
        if panicked {
            return Err(StoreError::Internal(
                "a storage thread panicked before close".into(),
            ));
        }
        tracing::info!(dir = %self.dir.display(), "sqlite store closed");
        Ok(())
    }
}

impl Drop for SqliteStore {
    /// Like `close`, but blocking: queued writes still finish and the connections close before
    /// the directory lock is released, so the same directory can be opened again at once.
    fn drop(&mut self) {
        for worker in self.stop_accepting() {
            let _ = worker.handle.join();
        }
    }
}

#[cfg(test)]
mod tests;
