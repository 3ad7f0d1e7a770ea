//! The writer's companion thread (`sqlite-syncer`), which takes the two slow waits on the disk
//! off the writer's path: syncing the write-ahead log after commits made without a sync (reads'
//! audit records, `Job::lazy`, which must reach the disk within `AUDIT_SYNC_WITHIN_MS`), and
//! checkpoints (copying the log back into the database, which syncs both files). Done by the
//! writer, as SQLite does by default, each made every request waiting on the writer wait as
//! long as an fsync takes, several times a second; moved here, audited finds answered 7-20%
//! more per second (`scripts/profile find`). They run on a connection of their own: syncing the
//! log's file never blocks a commit, and a passive checkpoint never takes the write lock nor
//! waits for a reader.
//!
//! The writer reports each commit (`committed`). The log is synced `SYNC_AFTER` after the first
//! commit it must cover, so that even a slow sync keeps the promise; a checkpoint runs every
//! `CHECKPOINT_EVERY` while commits come fast (`BUSY_COMMITS` of them), else every
//! `QUIET_CHECKPOINT_EVERY`, so that a quiet server does not sync its database file for every
//! few commits. SQLite's automatic checkpoint stays on the writer, at `BACKSTOP_PAGES`, only to
//! bound the log should this thread fall behind. Closing: the writer stops this thread and
//! waits for its connection to close (`stop_and_wait`), syncs what is left itself, and empties
//! the log.

use std::path::Path;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use secretstore_core::AUDIT_SYNC_WITHIN_MS;

/// How long after the first unsynced commit the log is synced: half of how long it may stay
/// unsynced (`AUDIT_SYNC_WITHIN_MS`, the promise of docs/audit.md), so that a sync that takes
/// long still ends within it.
const SYNC_AFTER: Duration = Duration::from_millis(AUDIT_SYNC_WITHIN_MS / 2);

/// How often, at most, the log is checkpointed while commits come. Often enough that the log
/// stays a few megabytes under any load this machine can make, rarely enough that a page
/// written again and again (the audit log's last one) is copied once per period.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Commits since the last checkpoint that make the log worth checkpointing at the busy pace.
const BUSY_COMMITS: u64 = 64;

/// How often, at most, the log is checkpointed while commits are few.
const QUIET_CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// The writer's own automatic checkpoint, in pages of log (4 KiB each): reached only if this
/// thread cannot keep up (or has stopped).
pub const BACKSTOP_PAGES: u32 = 8_192;

/// How long to wait before trying a failed sync again.
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// What the writer and this thread share.
#[derive(Debug, Default)]
pub struct Syncer {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// When the oldest commit not yet known to be on disk was made: a commit without a sync
    /// sets it, a synced commit clears it (its sync covered every frame before it).
    unsynced_since: Option<Instant>,
    /// Commits since open, so a sync can tell whether any came while it ran.
    commits: u64,
    /// Commits since the last checkpoint started.
    uncheckpointed: u64,
    /// The writer has asked this thread to end; `stopped` once its connection is closed.
    stop: bool,
    stopped: bool,
}

impl Syncer {
    /// The writer committed a batch, synced to disk or not.
    pub fn committed(&self, synced: bool) {
        let mut state = self.state.lock();
        state.commits += 1;
        state.uncheckpointed += 1;
        let mut news = matches!(state.uncheckpointed, 1 | BUSY_COMMITS);
        if synced {
            state.unsynced_since = None;
        } else if state.unsynced_since.is_none() {
            state.unsynced_since = Some(Instant::now());
            news = true;
        }
        drop(state);
        // Only a change of what the thread waits for needs to wake it.
        if news {
            self.changed.notify_one();
        }
    }

    /// Whether a commit is not yet known to be on disk.
    pub fn unsynced(&self) -> bool {
        self.state.lock().unsynced_since.is_some()
    }

    /// Asks the thread to end and waits until its connection is closed.
    pub fn stop_and_wait(&self) {
        let mut state = self.state.lock();
        state.stop = true;
        self.changed.notify_all();
        while !state.stopped {
            self.changed.wait(&mut state);
        }
    }

    /// Asks the thread to end, without waiting (the writer could not start, or is unwinding).
    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.changed.notify_all();
    }
}

/// Says the thread has stopped when dropped, after its connection (declared after it) has
/// closed, and also if it panicked: the writer's `stop_and_wait` then never waits forever.
struct Stopped<'a>(&'a Syncer);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.state.lock().stopped = true;
        self.0.changed.notify_all();
    }
}

/// The thread's body: returns when the writer stops it. `wal` is the write-ahead log's path.
pub fn run(syncer: &Syncer, conn: Connection, wal: &Path) {
    let _stopped = Stopped(syncer);
    // Moved below `_stopped`, so that it closes first (a parameter would outlive it).
    let conn = conn;
    let mut last_checkpoint = Instant::now();
    let mut retry_sync_at = Instant::now();
    let mut state = syncer.state.lock();
    while !state.stop {
        let sync_at = state
            .unsynced_since
            .map(|since| (since + SYNC_AFTER).max(retry_sync_at));
        let checkpoint_at = match state.uncheckpointed {
            0 => None,
            n if n < BUSY_COMMITS => Some(last_checkpoint + QUIET_CHECKPOINT_EVERY),
            _ => Some(last_checkpoint + CHECKPOINT_EVERY),
        };
        let now = Instant::now();
        match sync_at.into_iter().chain(checkpoint_at).min() {
            None => {
                syncer.changed.wait(&mut state);
                continue;
            }
            Some(at) if at > now => {
                syncer.changed.wait_until(&mut state, at);
                continue;
            }
            Some(_) => {}
        }
        let sync = sync_at.is_some_and(|at| at <= now);
        let checkpoint = checkpoint_at.is_some_and(|at| at <= now);
        let seen = state.commits;
        if checkpoint {
            state.uncheckpointed = 0;
            last_checkpoint = now;
        }
        // The disk is waited for unlocked: the writer goes on committing meanwhile.
        let synced = parking_lot::MutexGuard::unlocked(&mut state, || {
            let synced = sync && sync_wal(wal);
            if checkpoint {
                checkpoint_passive(&conn);
            }
            synced
        });
        if synced {
            // Commits made while the sync ran may have missed it: they are no older than
            // `now`, which keeps their deadline (a synced commit since then cleared it).
            state.unsynced_since = if state.commits == seen {
                None
            } else {
                state.unsynced_since.map(|since| since.max(now))
            };
        } else if sync {
            retry_sync_at = Instant::now() + RETRY_AFTER;
        }
    }
}

/// Syncs the write-ahead log's file (its data: the frames); whether it is on disk now.
pub fn sync_wal(wal: &Path) -> bool {
    match std::fs::File::open(wal).and_then(|file| file.sync_data()) {
        Ok(()) => true,
        // No log: everything was checkpointed into the database, which syncs it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot sync the write-ahead log");
            false
        }
    }
}

/// Copies what it can of the log into the database without waiting for anyone; what a reader
/// still uses is left for the next one.
fn checkpoint_passive(conn: &Connection) {
    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    match outcome {
        Ok((_, log, done)) => tracing::trace!(log, done, "checkpoint"),
        Err(e) => tracing::warn!(error = %e, "cannot checkpoint the write-ahead log"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use super::*;

    /// A database in WAL mode with one commit in its log, its syncer running on it.
    fn started(dir: &Path) -> (Arc<Syncer>, JoinHandle<()>) {
        let path = dir.join("db.sqlite");
        let conn = Connection::open(&path).expect("open");
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        })
        .expect("wal");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("a commit");
        let syncer = Arc::new(Syncer::default());
        let thread = Arc::clone(&syncer);
        let wal = dir.join("db.sqlite-wal");
        let handle = std::thread::spawn(move || run(&thread, conn, &wal));
        (syncer, handle)
    }

    #[test]
    fn a_commit_without_a_sync_is_synced_after_a_pause_that_gathers_the_next_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (syncer, handle) = started(tmp.path());
        let committed = Instant::now();
        syncer.committed(false);
        assert!(syncer.unsynced());
        syncer.committed(false);
        while syncer.unsynced() {
            assert!(
                committed.elapsed() < Duration::from_secs(10),
                "the log was never synced"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Not before the pause: the syncs of a busy log are one per SYNC_AFTER, not one per
        // commit.
        assert!(committed.elapsed() >= SYNC_AFTER);
        syncer.stop_and_wait();
        handle.join().expect("the thread ends");
    }

    #[test]
    fn a_synced_commit_covers_every_commit_before_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (syncer, handle) = started(tmp.path());
        syncer.committed(false);
        assert!(syncer.unsynced());
        syncer.committed(true);
        assert!(!syncer.unsynced());
        syncer.stop_and_wait();
        handle.join().expect("the thread ends");
    }

    #[test]
    fn stopping_waits_for_the_thread_and_its_connection_even_mid_wait() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (syncer, handle) = started(tmp.path());
        // The thread is waiting for its next checkpoint when it is stopped.
        syncer.committed(true);
        syncer.stop_and_wait();
        assert!(syncer.state.lock().stopped);
        handle.join().expect("the thread ends");
    }
}
