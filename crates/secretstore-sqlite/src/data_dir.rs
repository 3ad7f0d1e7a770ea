//! The data directory: created private (mode 0700) when missing, its files created readable by
//! the owner only (0600), an existing one refused unless it and its files are private to this
//! user (`check_private`), and held by one process at a time through an exclusive `flock` on its
//! `LOCK` file. The lock matters beyond tidiness: idempotency claims in flight live in this
//! process's memory, so a second server on the same files could run a request twice. And
//! whether the directory's filesystem can take writes at all (`check_room`), for the readiness
//! check.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use secretstore_core::StoreError;
use secretstore_crypto::{ensure_private, NotPrivate};

/// Name of the database file inside the data directory (SQLite adds `-wal` and `-shm`).
pub const DATABASE_FILE: &str = "secretstore.db";

/// Name of the file whose `flock` marks the directory as taken.
pub const LOCK_FILE: &str = "LOCK";

/// Owner read and write only: sealed secrets are still nobody else's business.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The exclusive hold on a data directory; released when dropped (or when the process dies,
/// which is why `flock` and not a pid file).
#[derive(Debug)]
pub struct DirLock {
    // Kept open only for its lock.
    _file: File,
}

/// The files of a data directory, each with how a message names it.
fn files(dir: &Path) -> [(PathBuf, &'static str); 4] {
    [
        (dir.join(DATABASE_FILE), "the database file"),
        (
            dir.join(format!("{DATABASE_FILE}-wal")),
            "the database's write-ahead log",
        ),
        (
            dir.join(format!("{DATABASE_FILE}-shm")),
            "the database's shared-memory index",
        ),
        (dir.join(LOCK_FILE), "the lock file"),
    ]
}

/// Below this many free bytes, a data directory's filesystem is too full to count on a write
/// landing: a set's row, its index entries and the write-ahead log's frames for them can take
/// hundreds of kilobytes, and SQLite needs room to grow its files by whole pages.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Whether the filesystem holding `dir` can take writes: not mounted read-only (or forced
/// read-only by the kernel after an error), and with at least `MIN_FREE_BYTES` free to this
/// process (root may use the blocks a filesystem reserves for it; others may not).
pub fn check_room(dir: &Path) -> Result<(), StoreError> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot examine the data directory's filesystem: {e}"
        ))
    })?;
    if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Err(StoreError::Unavailable(
            "the data directory's filesystem is read-only".into(),
        ));
    }
    let blocks = if rustix::process::geteuid().is_root() {
        stat.f_bfree
    } else {
        stat.f_bavail
    };
    let free = blocks.saturating_mul(stat.f_frsize);
    if free < MIN_FREE_BYTES {
        return Err(StoreError::Unavailable(format!(
            "disk full: {free} bytes free for the data directory, under the {MIN_FREE_BYTES} a \
             write needs"
        )));
    }
    Ok(())
}

/// Refuses a data directory, or a file of it, that another user owns or that group or others
/// may read or write (`secretstore_crypto::private_path`): its database holds every sealed
/// secret, and SQLite gives new `-wal` and `-shm` files the database file's permissions. What
/// does not exist yet passes; it is created private.
pub fn check_private(dir: &Path) -> Result<(), NotPrivate> {
    if !dir.exists() {
        return Ok(());
    }
    ensure_private(dir, "the data directory")?;
    for (file, what) in files(dir) {
        if file.exists() {
            ensure_private(&file, what)?;
        }
    }
    Ok(())
}

/// Creates the directory if needed, refuses it unless it is private, takes its lock and makes
/// sure the database file exists with owner-only permissions. Returns the lock and the database
/// path.
pub fn prepare(dir: &Path) -> Result<(DirLock, PathBuf), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_failure(format!("cannot create data directory {}", dir.display()), e))?;
    check_private(dir).map_err(|err| StoreError::Unavailable(err.to_string()))?;
    let lock = lock(dir)?;
    let database = dir.join(DATABASE_FILE);
    // SQLite would create the file with the process umask (often 0644); creating it first makes
    // it 0600, and SQLite gives its -wal and -shm files the database file's permissions.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&database)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io_failure(
                format!("cannot create database file {}", database.display()),
                e,
            ))
        }
    }
    Ok((lock, database))
}

/// What the name of a snapshot file (`crate::backup::snapshot`) begins and ends with.
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".db";

/// A new, empty, owner-only file in `dir` for a snapshot, under a name no other file has (a
/// second backup taken at the same time gets its own): its path. Inside the data directory,
/// because that is private and on a filesystem known to have room for the database.
pub fn new_snapshot_file(dir: &Path) -> Result<PathBuf, StoreError> {
    loop {
        let name = secretstore_core::ids::random_id(SNAPSHOT_PREFIX, 16) + SNAPSHOT_SUFFIX;
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io_failure(
                    format!("cannot create a snapshot file in {}", dir.display()),
                    e,
                ))
            }
        }
    }
}

/// Removes the snapshot files a process that died in the middle of a snapshot left behind. Only
/// with the directory's lock held: then no snapshot of a living process can be among them.
pub fn remove_stale_snapshots(dir: &Path, _held: &DirLock) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(SNAPSHOT_SUFFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %name, "removed a snapshot a stopped process left"),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a stale snapshot")
                }
            }
        }
    }
}

/// The database file in `dir`, if it holds data: it, or its write-ahead log, is not empty. A
/// database file that `prepare` made but SQLite never wrote to holds nothing.
pub fn database_with_data(dir: &Path) -> Option<PathBuf> {
    let database = dir.join(DATABASE_FILE);
    let wal = dir.join(format!("{DATABASE_FILE}-wal"));
    let not_empty = |path: &Path| std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0);
    (not_empty(&database) || not_empty(&wal)).then_some(database)
}

fn lock(dir: &Path) -> Result<DirLock, StoreError> {
    try_lock(dir)?.ok_or_else(|| {
        let holder = read_holder(&dir.join(LOCK_FILE))
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        StoreError::Unavailable(format!(
            "data directory {} is in use by another secretstore process{holder}",
            dir.display()
        ))
    })
}

/// Takes the lock of the data directory `dir` (which must exist) if no other process holds
/// it: `Ok(None)` when one does, a running server say. `secretstore backup` asks this to
/// choose between copying the files itself and asking the server that holds them.
pub fn try_lock(dir: &Path) -> Result<Option<DirLock>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| io_failure(format!("cannot open lock file {}", path.display()), e))?;
    match try_lock_exclusive(&file) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => {
            return Err(io_failure(
                format!("cannot lock data directory {}", dir.display()),
                e,
            ))
        }
    }
    // The pid is only a courtesy for the message above; the lock is what counts, so failing to
    // write it is not an error.
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(Some(DirLock { _file: file }))
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file description holds it. A
/// second `open` in this same process counts as another holder, which the tests rely on.
#[allow(unsafe_code)]
fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` reads no memory of ours; the descriptor is valid while `file` lives.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK => return Ok(false),
            _ => return Err(err),
        }
    }
}

fn read_holder(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

fn io_failure(what: String, err: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {err}"))
}
