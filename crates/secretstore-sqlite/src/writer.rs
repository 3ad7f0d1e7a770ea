//! The single writer thread and its group commit. Every change goes through here, one at a time,
//! on the only read-write connection: that is what makes the per-scope maximum exact (no two
//! puts ever count at once) without retry loops on SQLite's lock.
//!
//! Throughput comes from batching: the thread blocks for one job, then takes whatever else is
//! already queued (up to `max_batch`), runs them all in ONE transaction, and commits once: one
//! fsync for the whole batch. A job that fails (a full scope, a seal error) must leave nothing
//! behind: it runs inside its own savepoint, undone alone, unless it is written to fail only
//! before its first change (`Job::fails_before_changing`: the secrets API's puts, deletes and
//! commits, whose savepoints cost a fifth of the writer's time on a create). Replies go out
//! only after COMMIT returned, so `Ok` means durable; if the commit fails, every job of the
//! batch that had succeeded is answered with that failure instead. The thread survives any
//! error and keeps serving, so a disk that fills up and then frees space needs no restart.
//!
//! The outcome of every batch is noted in `WriterState::health` (a job that failed because
//! storage did, or a batch that could not commit, says writes fail; otherwise a committed
//! success says they succeed), which the readiness check reads.
//!
//! A job is any function of the connection (`Job::new`): a new kind of write is one function in
//! `writes.rs`, not a new variant to spell in five places. What a job may change in the read
//! cache or in the in-flight claims is declared with it (`Touches`), so the writer can settle
//! both before it answers.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use rusqlite::Connection;
use secretstore_core::{DirectoryCache, IdempotencyKey, SecretAddress, StoreError, WriteHealth};
use tokio::sync::oneshot;

use crate::cache::SecretCache;
use crate::errors::sql_failure;
use crate::list_cache::ListCache;
use crate::syncer::{self, Syncer};

/// Where a job's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The read caches' budget (`--cache-bytes`) goes to the sealed secrets of finds, but for this
/// share (one eighth) given to the first pages of lists: a page of ten secrets costs about what
/// ten finds' entries do, and one scope's page serves every list of that scope.
const LIST_SHARE: usize = 8;

/// What the writer thread and the store handle share.
#[derive(Debug)]
pub struct WriterState {
    /// Idempotency keys claimed by requests still running. In memory because a claim only means
    /// something while its request runs; the data directory lock keeps it to one process.
    pub inflight: Mutex<HashSet<IdempotencyKey>>,
    /// Transactions committed, and jobs run; for tests and metrics of the group commit.
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    /// Read jobs handed to the readers (counted by the store; kept here beside the others).
    pub reads: AtomicU64,
    /// Sealed secrets recently read; the writer invalidates what it changes.
    pub cache: SecretCache,
    /// First pages of lists recently read; the writer forgets the scopes it changes.
    pub lists: ListCache,
    /// Credentials and installations recently looked up; cleared by every directory write.
    pub directory: DirectoryCache,
    /// Whether the latest batches could write; for the readiness check.
    pub health: WriteHealth,
}

impl WriterState {
    pub fn new(cache_bytes: usize) -> Self {
        Self {
            inflight: Mutex::default(),
            commits: AtomicU64::default(),
            ops: AtomicU64::default(),
            reads: AtomicU64::default(),
            cache: SecretCache::new(cache_bytes - cache_bytes / LIST_SHARE),
            lists: ListCache::new(cache_bytes / LIST_SHARE),
            directory: DirectoryCache::default(),
            health: WriteHealth::default(),
        }
    }
}

/// What a job may change beyond its own answer, settled once its batch has committed or failed
/// and before any answer goes out.
#[derive(Debug, Default)]
pub struct Touches {
    /// Secrets to drop from the read cache: once a write is acknowledged, no read may see what
    /// it replaced. (On a failed batch nothing changed, and forgetting is harmless.)
    pub secrets: Vec<SecretAddress>,
    /// An idempotency claim the job ends, whatever happens to the write: a claim left behind
    /// would block the key until restart, while a released one only lets a retry run again.
    pub releases: Option<IdempotencyKey>,
    /// The job writes the tenant directory: every cached credential and installation goes.
    pub directory: bool,
    /// The job may delete any number of secrets (a tenant's removal): the whole cache goes.
    pub all_secrets: bool,
}

impl Touches {
    /// A directory write that may also remove secrets.
    pub fn directory() -> Self {
        Self {
            directory: true,
            all_secrets: true,
            ..Self::default()
        }
    }
}

/// How the writer calls a job: to run it in the batch's transaction, or to answer it without
/// running because the batch was already abandoned.
enum Step<'a> {
    /// Run on this connection; inside a savepoint of its own if `true`.
    Run(&'a Connection, bool),
    Refuse(&'a StoreError),
}

/// An answer, and the failure that makes the rest of the batch stop (the transaction is lost).
type Ran = (Box<dyn Pending>, Option<StoreError>);

/// One write, with the channel its answer goes back on.
pub struct Job {
    name: &'static str,
    touches: Touches,
    /// Whether its answer waits for the batch to be synced to disk. A batch of jobs that do
    /// not (audit records of reads) commits without a sync, and the WAL is synced within
    /// `AUDIT_SYNC_WITHIN_MS` after, by the syncer thread (or by the next batch that does sync).
    durable: bool,
    /// Whether it runs inside a savepoint of its own (see `fails_before_changing`).
    savepoint: bool,
    step: Box<dyn for<'a> FnOnce(Step<'a>) -> Ran + Send>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("touches", &self.touches)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// `work` runs on the write connection inside its own savepoint; its result is answered on
    /// `reply` once the batch has committed (or with the batch's failure if it did not).
    pub fn new<T, F>(name: &'static str, touches: Touches, work: F, reply: Reply<T>) -> Self
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self {
            name,
            touches,
            durable: true,
            savepoint: true,
            step: Box::new(move |step| match step {
                Step::Run(conn, savepoint) => {
                    let (result, abort) = run_job(conn, savepoint, work);
                    (Box::new(Done { reply, result }), abort)
                }
                Step::Refuse(err) => (
                    Box::new(Done {
                        reply,
                        result: Err(err.clone()),
                    }),
                    None,
                ),
            }),
        }
    }
}

impl Job {
    /// This job's answer need not wait for a sync to disk (see `durable`). A lazy job runs
    /// without a savepoint of its own, as `fails_before_changing`: it must be one change that
    /// fails whole (an insert), so that its failure leaves nothing to undo.
    pub fn lazy(mut self) -> Self {
        self.durable = false;
        self.savepoint = false;
        self
    }

    /// This job runs without a savepoint of its own, which spares SQLite a copy of every page
    /// the job changes (a fifth of the writer's time on a create, which changes a page of
    /// each of the tables' B-trees). Its expected failures (a full scope, a secret missing, a
    /// key that exists) must all come before its first change. Should it fail after changing
    /// something all the same (SQLite's count of changed rows moved), its batch is rolled back
    /// whole: the job keeps its own error, and every other job of the batch is answered with
    /// `BATCH_UNDONE`, which says to retry.
    pub fn fails_before_changing(mut self) -> Self {
        self.savepoint = false;
        self
    }
}

/// What the other jobs of a batch are answered when a job without a savepoint fails after it
/// changed something (`Job::fails_before_changing`): nothing of the batch was written.
pub const BATCH_UNDONE: &str =
    "a write of the same batch failed part-way, so none of the batch was written; retry";

/// The writer thread's body: returns when every sender is gone and the queue is drained, which
/// is how `close` lets queued writes finish. `syncer` is its companion thread's handle, told of
/// every commit (it syncs the log after commits made without a sync, and checkpoints); the
/// writer stops it at the end. `wal` is the database's write-ahead log.
pub fn run(
    conn: Connection,
    jobs: Receiver<Job>,
    max_batch: usize,
    state: &WriterState,
    syncer: &Syncer,
    wal: &Path,
) {
    let max_batch = max_batch.max(1);
    let mut lazy = false;
    // Dropped before `conn`, as it must be: it finalizes the statement it prepared on it.
    let audit_insert = crate::audit_stmt::Prepared::on(&conn);
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(max_batch.min(64));
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|job| job.durable);
        set_sync_mode(&conn, &mut lazy, durable);
        if run_batch(&conn, batch, state, !lazy) {
            syncer.committed(!lazy);
        }
    }
    drop(audit_insert);
    // The syncer's connection closes before the log is emptied below, which it could hold up.
    syncer.stop_and_wait();
    if syncer.unsynced() {
        syncer::sync_wal(wal);
    }
    // Every write is in the WAL and durable already; moving it into the database file leaves a
    // closed store as one file. SQLite does this by itself when the last connection closes,
    // but that may be a reader's, which cannot. Busy (a reader still finishing) is harmless:
    // the next open replays the WAL.
    let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    if !matches!(checkpoint, Ok(0)) {
        tracing::debug!(?checkpoint, "the WAL was not checkpointed at close");
    }
}

/// Makes the next batch commit with a sync (`synchronous = FULL`) if it is `durable`, else
/// without (`NORMAL`, which in WAL mode still never corrupts: an unsynced commit is lost only
/// with the machine, never with the process); `lazy` is the mode the connection is in.
fn set_sync_mode(conn: &Connection, lazy: &mut bool, durable: bool) {
    if *lazy != durable {
        return;
    }
    let mode = if durable {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    };
    match exec(conn, mode) {
        Ok(()) => *lazy = !durable,
        // Staying in FULL only costs time; staying in NORMAL for a durable batch is not
        // allowed: `run_batch` refuses it, and the next batch tries the switch again.
        Err(e) => tracing::warn!(error = %e, mode, "cannot switch the sync mode"),
    }
}

/// Runs one batch, committing with a sync if `synced`; answers whether it committed.
fn run_batch(conn: &Connection, batch: Vec<Job>, state: &WriterState, synced: bool) -> bool {
    let durable = batch.iter().any(|job| job.durable);
    if durable && !synced {
        // Never answer a durable job from a commit that did not sync.
        let err = StoreError::Unavailable("cannot make the write durable".into());
        let mut answers = Vec::with_capacity(batch.len());
        let mut touched = Vec::with_capacity(batch.len());
        for job in batch {
            touched.push(job.touches);
            answers.push((job.step)(Step::Refuse(&err)).0);
        }
        settle(&touched, state);
        for answer in answers {
            answer.send();
        }
        return false;
    }
    state.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
    secretstore_core::metrics::group_commit(batch.len());
    let mut touched = Vec::with_capacity(batch.len());
    let mut answers: Vec<Box<dyn Pending>> = Vec::with_capacity(batch.len());
    let failure = match exec(conn, "BEGIN IMMEDIATE") {
        Err(e) => {
            let err = sql_failure(&e);
            tracing::warn!(error = %err, "cannot begin a write transaction");
            for job in batch {
                touched.push(job.touches);
                answers.push((job.step)(Step::Refuse(&err)).0);
            }
            None
        }
        Ok(()) => {
            let mut abort: Option<StoreError> = None;
            for job in batch {
                touched.push(job.touches);
                let (answer, batch_failure) = match &abort {
                    Some(err) => (job.step)(Step::Refuse(err)),
                    None => (job.step)(Step::Run(conn, job.savepoint)),
                };
                answers.push(answer);
                if abort.is_none() {
                    abort = batch_failure;
                }
            }
            let outcome = match abort {
                Some(err) => Err(err),
                None => exec(conn, "COMMIT").map_err(|e| sql_failure(&e)),
            };
            match outcome {
                Ok(()) => {
                    state.commits.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(err) => {
                    crate::audit::forget_head();
                    // Whatever SQLite has not rolled back already goes now.
                    if !conn.is_autocommit() {
                        if let Err(e) = exec(conn, "ROLLBACK") {
                            tracing::warn!(error = %e, "cannot roll back a failed write batch");
                        }
                    }
                    Some(err)
                }
            }
        }
    };
    if let Some(err) = &failure {
        tracing::warn!(error = %err, jobs = answers.len(), "write batch failed");
    }
    settle(&touched, state);
    if let Some(err) = &failure {
        for answer in &mut answers {
            answer.fail(err);
        }
    }
    // A batch undone for one job's sake says nothing about whether storage takes writes.
    if !matches!(&failure, Some(StoreError::Unavailable(why)) if why == BATCH_UNDONE) {
        note_health(&answers, state);
    }
    for answer in answers {
        answer.send();
    }
    failure.is_none()
}

/// Notes whether the batch could write: any job refused by storage (disk full, read-only, I/O)
/// says writes fail, even beside jobs that succeeded, since the next write may be the one that
/// does not fit; otherwise a success says they succeed.
fn note_health(answers: &[Box<dyn Pending>], state: &WriterState) {
    if let Some(why) = answers.iter().find_map(|answer| answer.storage_failure()) {
        state.health.failed(why);
    } else if answers.iter().any(|answer| answer.succeeded()) {
        state.health.succeeded();
    }
}

/// Applies what the batch's jobs touched, before any of them is answered.
fn settle(touched: &[Touches], state: &WriterState) {
    for touches in touched {
        for address in &touches.secrets {
            state.cache.invalidate(address);
            state.lists.invalidate(&address.namespace, &address.scope);
        }
        if touches.all_secrets {
            state.cache.clear();
            state.lists.clear();
        }
        if touches.directory {
            state.directory.clear();
        }
    }
    if touched.iter().any(|t| t.releases.is_some()) {
        let mut inflight = state.inflight.lock();
        for key in touched.iter().filter_map(|t| t.releases.as_ref()) {
            inflight.remove(key);
        }
    }
}

/// A job's result waiting for the batch to commit.
trait Pending: Send {
    /// The batch did not commit: a success becomes this failure (a job that failed on its own
    /// keeps its own, more precise, error; it changed nothing either way).
    fn fail(&mut self, err: &StoreError);
    /// Why storage refused the job, if it did.
    fn storage_failure(&self) -> Option<&str>;
    fn succeeded(&self) -> bool;
    fn send(self: Box<Self>);
}

struct Done<T> {
    reply: Reply<T>,
    result: Result<T, StoreError>,
}

impl<T: Send> Pending for Done<T> {
    fn fail(&mut self, err: &StoreError) {
        if self.result.is_ok() {
            self.result = Err(err.clone());
        }
    }

    fn storage_failure(&self) -> Option<&str> {
        match &self.result {
            Err(StoreError::Unavailable(why)) => Some(why),
            _ => None,
        }
    }

    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn send(self: Box<Self>) {
        let Done { reply, result } = *self;
        // The caller may have gone (its request was cancelled); the write stands regardless.
        let _ = reply.send(result);
    }
}

/// Runs one of the writer's fixed statements (transaction and savepoint commands, the sync
/// mode) from the connection's statement cache: parsed every time, as rusqlite's
/// `Transaction` and `Savepoint` do, they cost more than the insert of an audit record.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// Runs one job, inside its own savepoint if `savepoint`: kept if it succeeded, undone alone if
/// it failed. Returns the job's result, and `Some` when the batch must stop and be rolled back:
/// the transaction itself is lost, or a job without a savepoint failed after a change.
fn run_job<T>(
    conn: &Connection,
    savepoint: bool,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> (Result<T, StoreError>, Option<StoreError>) {
    if !savepoint {
        let changes = conn.total_changes();
        let result = work(conn);
        if result.is_err() {
            crate::audit::forget_head();
        }
        let stop = if conn.is_autocommit() {
            Some(lost_transaction(&result))
        } else if result.is_err() && conn.total_changes() != changes {
            Some(StoreError::Unavailable(BATCH_UNDONE.into()))
        } else {
            None
        };
        return (result, stop);
    }
    if let Err(e) = exec(conn, "SAVEPOINT job") {
        let err = sql_failure(&e);
        return (Err(err.clone()), Some(err));
    }
    let result = work(conn);
    // On some errors (disk full, I/O) SQLite rolls back the whole transaction by itself;
    // running later jobs now would autocommit them one by one, so the batch stops here.
    if conn.is_autocommit() {
        crate::audit::forget_head();
        let lost = lost_transaction(&result);
        return (result, Some(lost));
    }
    let closed = match &result {
        Ok(_) => exec(conn, "RELEASE job"),
        Err(_) => {
            crate::audit::forget_head();
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        }
    };
    (result, closed.err().map(|e| sql_failure(&e)))
}

/// Why a batch stops when SQLite rolled its transaction back by itself: the job's own failure
/// if storage refused it, else a generic one.
fn lost_transaction<T>(result: &Result<T, StoreError>) -> StoreError {
    match result {
        Err(err @ StoreError::Unavailable(_)) => err.clone(),
        _ => StoreError::Unavailable("the write transaction was rolled back".into()),
    }
}
