//! secretstore's embedded default `Store`: one data directory holding a SQLite database in WAL
//! mode with `synchronous=FULL`, so nothing else needs to run beside the server.
//!
//! The shape is one writer thread owning the only read-write connection that writes rows (group
//! commit: many queued writes share one transaction and one fsync, and answer only once it is on
//! disk), its syncer thread (which syncs and checkpoints the log beside it, `syncer.rs`), plus a
//! small pool of reader threads with read-only connections. Async callers hand jobs to those
//! threads over channels and await a oneshot answer, so no tokio worker ever blocks on SQLite.
//! Idempotency claims in flight are kept in memory; an exclusive lock on the data directory
//! makes sure no second process shares the files without sharing that memory. It implements
//! every storage trait of `secretstore_core::store` and passes the conformance suite
//! (`tests/conformance.rs`); the checks that need two handles on one database are skipped, since
//! the lock allows only one.

mod audit;
mod audit_stmt;
mod backup;
mod cache;
mod data_dir;
mod directory;
mod errors;
mod keys;
mod list_cache;
mod reader;
mod rows;
mod sched;
mod schema;
mod syncer;
mod wal_vfs;
mod writer;
mod writes;

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
use secretstore_core::audit::{self as audit_record, Changed};
use secretstore_core::write_health::PROBE_NAME;
use secretstore_core::{
    Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, AtomicWrites, AuditAnchor, AuditAppend,
    AuditChain, AuditEntry, AuditFilter, AuditStore, ClaimTimes, Completed, Credential,
    CredentialId, Directory, DirectoryPage, IdempotencyClaim, IdempotencyKey, IdempotencyStore,
    Installation, InstallationFilter, InstallationId, KeptAnswer, KeyOwner, KeyStore, Lifecycle,
    ListQuery, Listed, MetaStore, Namespace, PutRequest, Removed, Reseal, RootUse, SealedSecret,
    SecretAddress, SecretId, SecretStore, SessionId, StoreError, StoredKey, StoredList, User,
    UserId, UserSession, Write, Written,
};
use secretstore_crypto::KeyId;
use tokio::sync::oneshot;

pub use backup::{inspect, restore, snapshot_stopped, BackupError, BackupInfo};
pub use data_dir::{
    check_private, database_with_data, try_lock, DirLock, DATABASE_FILE, LOCK_FILE,
};
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::errors::{shutting_down, sql_failure, thread_stopped};
use crate::reader::ReadJob;
use crate::syncer::Syncer;
use crate::writer::{Job, Touches, WriterState};

/// The read cache's default budget: 64 MiB, what a quarter of the 256 MiB a whole server may
/// use by default can spare, whatever the size of the secrets it holds.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

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
    /// Most expired rows one purge step deletes before letting other writes in.
    pub purge_batch: u32,
    /// Bytes the read caches may hold together: sealed secrets for finds (each entry's
    /// ciphertext, address and bookkeeping; see `cache::entry_bytes`), and in an eighth of it
    /// first pages of lists (`list_cache`); 0 turns both off.
    pub cache_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            readers: 4,
            max_batch: 512,
            busy_timeout: Duration::from_secs(5),
            purge_batch: 500,
            cache_bytes: DEFAULT_CACHE_BYTES,
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
    /// What they cost, in bytes, with the cached first pages of lists
    /// (`SqliteOptions::cache_bytes` bounds the two together).
    pub cached_bytes: usize,
    /// Read jobs handed to the reader threads (a find or a list a cache answers is not one).
    pub reads: u64,
}

/// The senders that feed the threads; `None` once the store is closed.
#[derive(Debug)]
struct Channels {
    writer: Sender<Job>,
    readers: Sender<ReadJob>,
}

/// A storage thread, and a channel that closes when it ends (however it ends), so `close` can
/// wait without blocking a tokio worker on `join`.
#[derive(Debug)]
struct Worker {
    handle: JoinHandle<()>,
    ended: oneshot::Receiver<()>,
}

/// The SQLite-backed store: every storage trait of `secretstore_core::store`. See the crate
/// documentation.
pub struct SqliteStore {
    dir: PathBuf,
    options: SqliteOptions,
    channels: RwLock<Option<Channels>>,
    workers: Mutex<Vec<Worker>>,
    state: Arc<WriterState>,
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
        data_dir::remove_stale_snapshots(dir, &lock);
        let shown = database.display().to_string();
        let mut writer_conn = open_writer(&database, options.busy_timeout)?;
        schema::migrate(&mut writer_conn, &shown)?;
        // The syncer checkpoints; the writer's own automatic checkpoint is only a backstop.
        writer_conn
            .pragma_update(None, "wal_autocheckpoint", syncer::BACKSTOP_PAGES)
            .map_err(|e| open_failure(&database, &e))?;
        // Each job runs in a savepoint, whose undo record (the statement journal) SQLite
        // keeps in memory only up to 64 KiB, then in a temporary file. A job that creates a
        // user's first secret with the user's key touches enough pages to pass that: its
        // writes to the temporary file were two thirds of the bytes the writer wrote, and a
        // tenth of its time (`scripts/profile create`). In memory it costs a few pages a job.
        // Set after the migrations, whose sorts of whole tables may stay in temporary files.
        writer_conn
            .pragma_update(None, "temp_store", "MEMORY")
            .map_err(|e| open_failure(&database, &e))?;
        let syncer_conn = open_writer(&database, options.busy_timeout)?;
        // Readers open after the writer so the WAL and its index already exist: a read-only
        // connection cannot create them.
        let readers = (0..options.readers.max(1))
            .map(|_| open_reader(&database, options.busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;

        let state = Arc::new(WriterState::new(options.cache_bytes));
        let (write_tx, write_rx) = crossbeam_channel::unbounded::<Job>();
        let (read_tx, read_rx) = crossbeam_channel::unbounded::<ReadJob>();
        let mut workers = Vec::with_capacity(readers.len() + 1);
        let syncer = Arc::new(Syncer::default());
        let mut wal = database.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let started = (|| -> std::io::Result<()> {
            let thread_syncer = Arc::clone(&syncer);
            let syncer_wal = wal.clone();
            workers.push(spawn("sqlite-syncer".into(), move || {
                syncer::run(&thread_syncer, syncer_conn, &syncer_wal);
            })?);
            let thread_state = Arc::clone(&state);
            let thread_syncer = Arc::clone(&syncer);
            let max_batch = options.max_batch;
            workers.push(spawn("sqlite-writer".into(), move || {
                // However the writer ends, its syncer ends too (else `close` would wait on it).
                let _stop = StopSyncer(&thread_syncer);
                if let Err(e) = sched::ask_for_slice(sched::WRITER_SLICE) {
                    tracing::debug!(error = %e, "the writer keeps the default time slice");
                }
                writer::run(
                    writer_conn,
                    write_rx,
                    max_batch,
                    &thread_state,
                    &thread_syncer,
                    &wal,
                );
            })?);
            for (n, conn) in readers.into_iter().enumerate() {
                let jobs = read_rx.clone();
                workers.push(spawn(format!("sqlite-reader-{n}"), move || {
                    reader::run(conn, jobs)
                })?);
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
            state,
            _lock: lock,
        };
        // On failure, dropping the store stops and joins whatever did start.
        if started.is_err() {
            syncer.stop();
        }
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
            commits: self.state.commits.load(Ordering::Relaxed),
            ops: self.state.ops.load(Ordering::Relaxed),
            cached_secrets: self.state.cache.len(),
            cached_bytes: self.state.cache.bytes() + self.state.lists.bytes(),
            reads: self.state.reads.load(Ordering::Relaxed),
            queued_writes: self
                .channels
                .read()
                .as_ref()
                .map_or(0, |channels| channels.writer.len()),
        }
    }

    /// Queues `work` for the writer and awaits its answer, which comes only after its batch
    /// committed and was synced to disk.
    async fn write<T, F>(
        &self,
        name: &'static str,
        touches: Touches,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(|reply| Job::new(name, touches, work, reply))
            .await
    }

    /// As `write`, but answered once committed, before the sync (`writer::Job::lazy`).
    async fn write_lazy<T, F>(&self, name: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(|reply| Job::new(name, Touches::default(), work, reply).lazy())
            .await
    }

    /// Queues the job `job` makes with the channel of its answer, and awaits that answer.
    async fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(writer::Reply<T>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue(job(reply))?;
        answer.await.map_err(|_| thread_stopped())?
    }

    fn queue(&self, job: Job) -> Result<(), StoreError> {
        let channels = self.channels.read();
        let channels = channels.as_ref().ok_or_else(shutting_down)?;
        channels.writer.send(job).map_err(|_| thread_stopped())
    }

    /// Queues `work` for the reader pool and awaits its answer.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.state.reads.fetch_add(1, Ordering::Relaxed);
        {
            let channels = self.channels.read();
            let channels = channels.as_ref().ok_or_else(shutting_down)?;
            let job: ReadJob = Box::new(move |conn| {
                // A caller that went away (cancelled request) is no error.
                let _ = reply.send(work(conn));
            });
            channels.readers.send(job).map_err(|_| thread_stopped())?;
        }
        answer.await.map_err(|_| thread_stopped())?
    }

    /// Runs a purge step until one deletes less than a full step, each step its own job, so
    /// writes queued meanwhile wait for one short step at most, never for the whole backlog.
    async fn purge_in_steps(
        &self,
        name: &'static str,
        step: fn(&Connection, i64, u32) -> Result<u64, StoreError>,
        before: i64,
    ) -> Result<u64, StoreError> {
        let limit = self.options.purge_batch.max(1);
        let mut total = 0;
        loop {
            let removed = self
                .write(name, Touches::default(), move |conn| {
                    step(conn, before, limit)
                })
                .await?;
            total += removed;
            if removed < u64::from(limit) {
                return Ok(total);
            }
        }
    }

    /// Stops accepting jobs: the threads finish what is queued and end.
    fn stop_accepting(&self) -> Vec<Worker> {
        self.channels.write().take();
        std::mem::take(&mut *self.workers.lock())
    }
}

/// Stops the syncer thread when the writer's thread ends, by returning or by unwinding.
struct StopSyncer<'a>(&'a Syncer);

impl Drop for StopSyncer<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Starts one of the store's threads. Names stay within the 15 characters the kernel keeps
/// (`sqlite-writer`, `sqlite-reader-N`), so that `top -H`, perf and `scripts/profile` tell
/// the writer from the readers.
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
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Through the layer that writes a commit's frames of the log in one call (`wal_vfs`).
    let conn = match wal_vfs::vfs_name() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
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
    conn.set_prepared_statement_cache_capacity(64);
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
    conn.set_prepared_statement_cache_capacity(64);
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
impl SecretStore for SqliteStore {
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        let touches = Touches {
            secrets: vec![request.address.clone()],
            ..Touches::default()
        };
        // Its expected failures come before its first change (`writes`): no savepoint.
        let work = move |conn: &Connection| writes::put(conn, request);
        self.submit(|reply| Job::new("put", touches, work, reply).fails_before_changing())
            .await
    }

    async fn get(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let ticket = match self.state.cache.get(address, now) {
            Ok(hit) => return Ok(hit),
            Err(ticket) => ticket,
        };
        let owned = address.clone();
        let found = self
            .read(move |conn| reader::get(conn, &owned, now))
            .await?;
        if let Some(secret) = &found {
            self.state.cache.fill(ticket, secret);
        }
        Ok(found)
    }

    async fn delete(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let touches = Touches {
            secrets: vec![address.clone()],
            ..Touches::default()
        };
        let address = address.clone();
        let work = move |conn: &Connection| writes::delete(conn, &address, now);
        self.submit(|reply| Job::new("delete", touches, work, reply).fails_before_changing())
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError> {
        // Only first pages are cached: a cursor names a secret, and a page after it is asked
        // for far less often than the newest one.
        let ticket = match query.cursor {
            None => match self.state.lists.get(query) {
                Ok(hit) => return Ok(hit),
                Err(ticket) => Some(ticket),
            },
            Some(_) => None,
        };
        let owned = query.clone();
        let (list, past) = self.read(move |conn| reader::list(conn, &owned)).await?;
        if let Some(ticket) = ticket {
            self.state.lists.fill(ticket, query, &list, past);
        }
        Ok(list)
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let removed = self
            .purge_in_steps("purge secrets", writes::purge_secrets, now)
            .await?;
        // Once, after the steps, not with each: cached secrets expired at `now` are never
        // answered anyway (the cache checks), so this only gives their memory back, and a walk
        // of the whole cache per step would slow the very writes the steps make room for.
        self.state.cache.purge(now);
        self.state.lists.purge(now);
        if removed > 0 {
            tracing::debug!(removed, "purged expired secrets");
        }
        Ok(removed)
    }

    async fn count_secrets(&self) -> Result<u64, StoreError> {
        self.read(reader::count_secrets).await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    /// Claims live in this process's memory, so they die with it and no lease is needed:
    /// `at.held_after` is not consulted (the directory lock keeps other processes out).
    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        at: ClaimTimes,
    ) -> Result<IdempotencyClaim, StoreError> {
        // Claim in memory first, then look for a kept answer: a competing request can only
        // claim after this one's answer is committed (the writer releases the claim after the
        // commit), so it finds that answer rather than running the request a second time.
        if !self.state.inflight.lock().insert(key.clone()) {
            // Someone holds the key. If an answer is already kept, that is the better reply:
            // the holder is then only another replay between its claim and its look-up (a claim
            // that runs a request is only ever granted when no live answer exists).
            return Ok(match self.kept(key, at.kept_after).await? {
                Some(answer) => IdempotencyClaim::Kept(answer),
                None => IdempotencyClaim::InFlight,
            });
        }
        let guard = ClaimGuard {
            inflight: &self.state.inflight,
            key: Some(key),
        };
        match self.kept(key, at.kept_after).await? {
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
        quota: u64,
    ) -> Result<Completed, StoreError> {
        let touches = Touches {
            releases: Some(key.clone()),
            ..Touches::default()
        };
        let job_key = key.clone();
        let result = self
            .write("keep answer", touches, move |conn| {
                writes::keep_answer(conn, &job_key, &answer, quota)
            })
            .await;
        if result.is_err() {
            // The writer releases the claim after its commit; if the job never reached it
            // (store closed), nothing else will.
            self.state.inflight.lock().remove(key);
        }
        result
    }

    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        self.state.inflight.lock().remove(key);
        Ok(())
    }

    async fn idempotency_purge(&self, kept_after: i64) -> Result<u64, StoreError> {
        let removed = self
            .purge_in_steps("purge kept answers", writes::purge_kept_answers, kept_after)
            .await?;
        if removed > 0 {
            self.write(
                "forget idle owners",
                Touches::default(),
                writes::forget_idle_owners,
            )
            .await?;
        }
        Ok(removed)
    }
}

impl SqliteStore {
    async fn kept(
        &self,
        key: &IdempotencyKey,
        kept_after: i64,
    ) -> Result<Option<KeptAnswer>, StoreError> {
        let key = key.clone();
        self.read(move |conn| reader::kept(conn, &key, kept_after))
            .await
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| reader::meta_get(conn, &name)).await
    }

    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write("meta put", Touches::default(), move |conn| {
            writes::meta_put(conn, &name, &value)
        })
        .await
    }
}

/// A directory read on the reader pool.
macro_rules! read_dir {
    ($self:ident, $f:ident($($arg:ident),*)) => {{
        $(let $arg = $arg.clone();)*
        $self.read(move |conn| directory::$f(conn, $(&$arg),*)).await
    }};
}

/// A directory write on the writer (`SqliteStore::write_directory`).
macro_rules! write_dir {
    ($self:ident, $name:literal, $f:ident($($arg:ident),*)) => {{
        $(let $arg = $arg.clone();)*
        $self
            .write_directory($name, move |conn| directory::$f(conn, $(&$arg),*))
            .await
    }};
}

impl SqliteStore {
    /// A directory write, clearing the directory cache (and, since removals delete secrets,
    /// the secret cache) once it has committed; with the admin request's audit record in the
    /// same savepoint when it changed something (`audit::directory_record`).
    async fn write_directory<T, F>(&self, name: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Changed + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (append, slot) = match audit_record::directory_record() {
            Some((append, slot)) => (Some(append), Some(slot)),
            None => (None, None),
        };
        let (value, entry) = self
            .write(name, Touches::directory(), move |conn| {
                let value = work(conn)?;
                let entry = match append {
                    Some(append) if value.changed() => Some(audit::append(conn, append)?),
                    _ => None,
                };
                Ok((value, entry))
            })
            .await?;
        if let (Some(slot), Some(entry)) = (slot, entry) {
            slot.mark_written(entry);
        }
        Ok(value)
    }
}

#[async_trait]
impl Directory for SqliteStore {
    async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        write_dir!(self, "create account", create_account(account))
    }
    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        read_dir!(self, account(id))
    }
    async fn accounts(&self, page: &DirectoryPage) -> Result<Listed<Account>, StoreError> {
        read_dir!(self, accounts(page))
    }
    async fn remove_account(&self, id: &AccountId) -> Result<Option<Removed>, StoreError> {
        write_dir!(self, "remove account", remove_account(id))
    }

    async fn create_app(&self, app: App) -> Result<(), StoreError> {
        write_dir!(self, "create app", create_app(app))
    }
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        let cache = &self.state.directory;
        cache
            .app_or(id, || async { read_dir!(self, app(id)) })
            .await
    }
    async fn apps(&self, page: &DirectoryPage) -> Result<Listed<App>, StoreError> {
        read_dir!(self, apps(page))
    }
    async fn remove_app(&self, id: &AppId) -> Result<Option<Removed>, StoreError> {
        write_dir!(self, "remove app", remove_app(id))
    }

    async fn create_installation(&self, installation: Installation) -> Result<(), StoreError> {
        write_dir!(
            self,
            "create installation",
            create_installation(installation)
        )
    }
    async fn installation(&self, id: &InstallationId) -> Result<Option<Installation>, StoreError> {
        read_dir!(self, installation(id))
    }
    async fn installations(
        &self,
        filter: &InstallationFilter,
        page: &DirectoryPage,
    ) -> Result<Listed<Installation>, StoreError> {
        read_dir!(self, installations(filter, page))
    }
    async fn remove_installation(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Removed>, StoreError> {
        write_dir!(self, "remove installation", remove_installation(id))
    }
    async fn installed(&self, app: &AppId, account: &AccountId) -> Result<bool, StoreError> {
        let cache = &self.state.directory;
        cache
            .installed_or(app, account, || async {
                read_dir!(self, installed(app, account))
            })
            .await
    }

    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        write_dir!(self, "create user", create_user(user))
    }
    async fn user(&self, account: &AccountId, id: &UserId) -> Result<Option<User>, StoreError> {
        read_dir!(self, user(account, id))
    }
    async fn users(
        &self,
        account: &AccountId,
        page: &DirectoryPage,
    ) -> Result<Listed<User>, StoreError> {
        read_dir!(self, users(account, page))
    }
    async fn remove_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<Removed>, StoreError> {
        write_dir!(self, "remove user", remove_user(account, id))
    }

    async fn create_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        write_dir!(self, "create key", create_key(key))
    }
    async fn key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        read_dir!(self, key(id))
    }
    async fn keys(
        &self,
        app: &AppId,
        page: &DirectoryPage,
    ) -> Result<Listed<ApiKeyRecord>, StoreError> {
        read_dir!(self, keys(app, page))
    }
    async fn roll_key(
        &self,
        id: &ApiKeyId,
        expires_at: i64,
        new: ApiKeyRecord,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = id.clone();
        self.write_directory("roll key", move |conn| {
            directory::roll_key(conn, &id, expires_at, &new)
        })
        .await
    }
    async fn revoke_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        write_dir!(self, "revoke key", revoke_key(id))
    }

    async fn create_session(&self, session: UserSession) -> Result<(), StoreError> {
        write_dir!(self, "create session", create_session(session))
    }
    async fn session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        read_dir!(self, session(id))
    }
    async fn remove_session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        write_dir!(self, "remove session", remove_session(id))
    }

    async fn credential(&self, hash: &CredentialId) -> Result<Option<Credential>, StoreError> {
        let cache = &self.state.directory;
        cache
            .credential_or(hash, || async { read_dir!(self, credential(hash)) })
            .await
    }
}

#[async_trait]
impl AtomicWrites for SqliteStore {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        let touches = Touches {
            secrets: writes
                .iter()
                .filter_map(|write| match write {
                    Write::PutSecret(request) => Some(request.address.clone()),
                    Write::DeleteSecret { address, .. } | Write::DeleteLive { address, .. } => {
                        Some(address.clone())
                    }
                    Write::Audit(_) | Write::AddKey(_) => None,
                })
                .collect(),
            ..Touches::default()
        };
        let work = move |conn: &Connection| writes::commit(conn, writes);
        self.submit(|reply| Job::new("commit", touches, work, reply).fails_before_changing())
            .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<StoredKey>, StoreError> {
        let owner = owner.clone();
        self.read(move |conn| keys::keys_of(conn, &owner)).await
    }

    async fn add_key(&self, key: StoredKey) -> Result<StoredKey, StoreError> {
        self.write("add key", Touches::default(), move |conn| {
            keys::add_key(conn, &key)
        })
        .await
    }

    async fn keys_not_under(&self, root: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        self.read(move |conn| keys::keys_not_under(conn, root, limit))
            .await
    }

    async fn rewrap_key(&self, key: &StoredKey, to: (KeyId, Vec<u8>)) -> Result<bool, StoreError> {
        let key = key.clone();
        self.write("rewrap key", Touches::default(), move |conn| {
            keys::rewrap_key(conn, &key, &to)
        })
        .await
    }

    async fn keys_by_root(&self) -> Result<Vec<RootUse>, StoreError> {
        self.read(|conn| keys::keys_by_root(conn)).await
    }

    async fn users_with_keys(
        &self,
        after: Option<&(AccountId, UserId)>,
        limit: u32,
    ) -> Result<Vec<(AccountId, UserId)>, StoreError> {
        let after = after.cloned();
        self.read(move |conn| keys::users_with_keys(conn, after.as_ref(), limit))
            .await
    }

    async fn stale_sealed(
        &self,
        namespace: &Namespace,
        current: [&[u8]; 2],
        after: Option<&SecretId>,
        limit: u32,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        let (namespace, after) = (namespace.clone(), after.cloned());
        let current = current.map(<[u8]>::to_vec);
        self.read(move |conn| {
            let current = [current[0].as_slice(), current[1].as_slice()];
            keys::stale_sealed(conn, &namespace, current, after.as_ref(), limit)
        })
        .await
    }

    /// The read cache is keyed by address, which a reseal does not carry, so the addresses are
    /// read first: the writer then drops exactly the entries the reseal changes, after its
    /// commit and before it answers, as for any other write (`Touches`). A secret keeps its
    /// address for life (a replace keeps its row; a new secret gets a new id), so these are
    /// the addresses of whatever the reseal updates; an id not found is left out, since it
    /// has nothing to reseal.
    async fn reseal(&self, reseals: Vec<Reseal>) -> Result<u64, StoreError> {
        if reseals.is_empty() {
            return Ok(0);
        }
        let ids: Vec<SecretId> = reseals.iter().map(|r| r.id.clone()).collect();
        let found = self.read(move |conn| keys::addresses(conn, &ids)).await?;
        let (reseals, secrets): (Vec<Reseal>, Vec<SecretAddress>) = reseals
            .into_iter()
            .filter_map(|r| found.get(&r.id).cloned().map(|address| (r, address)))
            .unzip();
        if reseals.is_empty() {
            return Ok(0);
        }
        let touches = Touches {
            secrets,
            ..Touches::default()
        };
        self.write("reseal", touches, move |conn| keys::reseal(conn, &reseals))
            .await
    }

    async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, StoreError> {
        let after = after.cloned();
        self.read(move |conn| keys::namespaces(conn, after.as_ref(), limit))
            .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_append(&self, append: AuditAppend) -> Result<AuditEntry, StoreError> {
        self.write_lazy("audit", move |conn| audit::append(conn, append))
            .await
    }

    async fn audit_scan(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| audit::scan(conn, after, limit)).await
    }

    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| audit::search(conn, &filter)).await
    }

    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        self.read(|conn| audit::anchor(conn)).await
    }

    async fn audit_prune(
        &self,
        before_ms: i64,
        now_ms: i64,
        chain: Arc<AuditChain>,
    ) -> Result<u64, StoreError> {
        self.write("audit prune", Touches::default(), move |conn| {
            audit::prune(conn, before_ms, now_ms, &chain)
        })
        .await
    }
}

#[async_trait]
impl Lifecycle for SqliteStore {
    /// Reads alone could succeed while writes cannot, so besides a read this checks the writer
    /// thread, the filesystem of the data directory (read-only, or too full for a write to
    /// land: `data_dir::check_room`), and whether writes succeed (`WriteHealth::check`: the
    /// latest batch's outcome if recent, else a write of its own). Both are needed: a full
    /// disk can still take a small write into space the write-ahead log already holds, and a
    /// filesystem the kernel stopped writing to after an error (ext4's `emergency_ro`) may not
    /// say it is read-only.
    async fn check_ready(&self) -> Result<(), StoreError> {
        // The writer is spawned first, so it is the first worker.
        let writer_gone = self
            .workers
            .lock()
            .first()
            .is_some_and(|writer| writer.handle.is_finished());
        if writer_gone {
            return Err(thread_stopped());
        }
        self.read(reader::ping).await?;
        data_dir::check_room(&self.dir)?;
        self.state
            .health
            .check(|| {
                self.write("readiness probe", Touches::default(), |conn| {
                    writes::meta_put(conn, PROBE_NAME, &[])
                })
            })
            .await
    }

    /// `backup::snapshot`, off the async runtime.
    async fn snapshot(&self) -> Result<std::fs::File, StoreError> {
        if self.channels.read().is_none() {
            return Err(shutting_down());
        }
        let (dir, busy_timeout) = (self.dir.clone(), self.options.busy_timeout);
        tokio::task::spawn_blocking(move || backup::snapshot(&dir, busy_timeout))
            .await
            .map_err(|e| StoreError::Internal(format!("the snapshot panicked: {e}")))?
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
