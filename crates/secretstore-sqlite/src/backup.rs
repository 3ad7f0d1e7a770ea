//! Backups of the embedded store (contract §11). A backup is an SQLite database file made by
//! `VACUUM INTO`, which copies the whole database from one read transaction: the copy is
//! consistent, and since the database is in WAL mode that read never holds up the writer, so a
//! server keeps taking writes while it is made (the write-ahead log grows meanwhile: SQLite's
//! automatic checkpoints, which never wait, cannot start the log over while a read uses it). It
//! holds what the database holds (sealed secrets, the wrapped keys of the key hierarchy, the
//! tenant directory, the audit log, the store's own values) and nothing else: payloads only as
//! ciphertext, and no root key, so it opens only with the root key the server had (a dev-mode
//! `root.key` beside the database is not in it).
//!
//! `snapshot` makes one for a running store (what `GET /v1/backup` streams), `snapshot_stopped`
//! one of a directory no server holds, `inspect` tells whether a file is a whole secretstore
//! database, and `restore` fills an empty data directory from one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use secretstore_core::StoreError;
use secretstore_crypto::KeyId;

use crate::data_dir::{self, DirLock, DATABASE_FILE, LOCK_FILE};
use crate::errors::sql_failure;
use crate::schema::SCHEMA_VERSION;

/// Why a backup or a restore could not be made, as a sentence for the person who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupError(pub String);

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackupError {}

/// What a backup file holds, as far as it can be told without the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The file's size.
    pub bytes: u64,
    /// Its `PRAGMA user_version`: how many of `MIGRATIONS` it has.
    pub schema_version: u32,
    /// Rows of its `secrets` table, expired ones not yet swept included.
    pub secrets: u64,
    /// The root key versions that wrap its stored keys: the ones a server restored from it
    /// must be given. Empty for a database made before the key hierarchy (its root key is
    /// checked by a sealed value instead, which names no key).
    pub roots: Vec<KeyId>,
}

/// A consistent copy of the database of the store running on `dir`, as an open file already
/// unlinked: the copy is made into a new file of the data directory (owner-only, a name of its
/// own), opened, and its name removed before anything is read from it, whether the copy worked
/// or not. Its own read-only connection rather than one of the reader pool's: a large database
/// takes a while to copy, and the pool's readers (one, with `--readers 1`) keep serving finds
/// meanwhile.
pub(crate) fn snapshot(dir: &Path, busy_timeout: Duration) -> Result<File, StoreError> {
    let path = data_dir::new_snapshot_file(dir)?;
    let copied = crate::open_reader(&dir.join(DATABASE_FILE), busy_timeout).and_then(|conn| {
        vacuum_into(&conn, &path)?;
        File::open(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open the snapshot {}: {e}", path.display()))
        })
    });
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove a snapshot file");
    }
    copied
}

/// Copies the database of the data directory `dir`, whose lock the caller holds (so no server
/// is running on it), into `output`, which must exist and be empty (the caller creates it, with
/// the permissions it wants: SQLite keeps those of an existing file). The connection may write,
/// though it only reads: a read-only one would leave behind the `-wal` and `-shm` files it
/// needs for a database in WAL mode (only a writer may remove them), and could not finish what
/// a crashed server left in its log. With the lock held, that is no more than a server's start
/// would do.
pub fn snapshot_stopped(dir: &Path, _held: &DirLock, output: &Path) -> Result<(), BackupError> {
    let database = dir.join(DATABASE_FILE);
    let conn = Connection::open_with_flags(
        &database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError(format!("cannot open {}: {e}", database.display())))?;
    vacuum_into(&conn, output).map_err(|e| {
        BackupError(format!(
            "cannot copy {} into {}: {}",
            database.display(),
            output.display(),
            reason(e)
        ))
    })
}

/// `VACUUM INTO`: the whole database, from one read transaction, into the empty file `into`.
fn vacuum_into(conn: &Connection, into: &Path) -> Result<(), StoreError> {
    let target = into.to_str().ok_or_else(|| {
        StoreError::Unavailable(format!(
            "the path {} is not UTF-8, which SQLite cannot be given",
            into.display()
        ))
    })?;
    conn.execute("VACUUM INTO ?1", [target])
        .map(|_| ())
        .map_err(|e| sql_failure(&e))
}

/// The sentence inside a `StoreError`, without its "storage is unavailable" preamble: a backup
/// is not a request a client retries.
fn reason(err: StoreError) -> String {
    match err {
        StoreError::Unavailable(why) | StoreError::Internal(why) => why,
        other => other.to_string(),
    }
}

/// Whether `path` is a whole secretstore database, and what it holds: it must be an SQLite
/// database that passes `PRAGMA integrity_check` and has secretstore's schema (a
/// `user_version` and a `secrets` table). It is opened read-only; nothing is written beside it.
pub fn inspect(path: &Path) -> Result<BackupInfo, BackupError> {
    let shown = path.display();
    let refused = |why: &str| BackupError(format!("{shown} is not a secretstore backup: {why}"));
    let meta =
        std::fs::metadata(path).map_err(|e| BackupError(format!("cannot read {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(refused("it is not a file"));
    }
    if meta.len() == 0 {
        return Err(refused("it is empty"));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError(format!("cannot open {shown}: {e}")))?;
    let not_sqlite = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => refused("it is not an SQLite database"),
        _ => BackupError(format!("cannot read {shown}: {e}")),
    };
    // The first few problems are enough to say it is damaged; all of them could be thousands.
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(5)")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(not_sqlite)?;
    if problems != ["ok"] {
        return Err(refused(&format!(
            "it is damaged (SQLite's integrity check: {})",
            problems.join("; ")
        )));
    }
    let schema_version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(not_sqlite)?;
    let has_table = |name: &str| {
        conn.query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
        .map_err(not_sqlite)
    };
    if schema_version == 0 || !has_table("secrets")? {
        return Err(refused(
            "it is an SQLite database without secretstore's tables",
        ));
    }
    let secrets: i64 = conn
        .query_row("SELECT COUNT(*) FROM secrets", [], |row| row.get(0))
        .map_err(not_sqlite)?;
    let roots = if has_table("keys")? {
        crate::keys::keys_by_root(&conn)
            .map_err(|e| refused(&reason(e)))?
            .into_iter()
            .map(|uses| uses.root)
            .collect()
    } else {
        Vec::new()
    };
    Ok(BackupInfo {
        bytes: meta.len(),
        schema_version,
        secrets: secrets.max(0) as u64,
        roots,
    })
}

/// Fills the data directory `dir` from the backup `input`: `dir` must not exist, or hold
/// nothing (but perhaps the lock file of a start that failed), so that two stores' files are
/// never mixed; `input` must pass `inspect` and have a schema this binary knows. The database
/// is written under a temporary name and renamed into place once it is on disk, so a restore
/// cut short leaves no database a server would start on. Needs no server, and refuses a
/// directory one holds.
pub fn restore(dir: &Path, input: &Path) -> Result<BackupInfo, BackupError> {
    let shown = dir.display();
    let not_empty = || {
        BackupError(format!(
            "{shown} is not empty: restore fills only a new or empty data directory, so that \
             it never mixes two stores' files; choose another directory"
        ))
    };
    if dir.exists() && !only_a_lock_file(dir)? {
        return Err(not_empty());
    }
    let info = inspect(input)?;
    if info.schema_version > SCHEMA_VERSION {
        return Err(BackupError(format!(
            "{} has schema version {}, newer than the {SCHEMA_VERSION} this secretstore knows: \
             it was made by a newer secretstore; restore it with that version (or newer)",
            input.display(),
            info.schema_version
        )));
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BackupError(format!("cannot create the data directory {shown}: {e}")))?;
    data_dir::check_private(dir).map_err(|e| BackupError(e.to_string()))?;
    let held = data_dir::try_lock(dir)
        .map_err(|e| BackupError(reason(e)))?
        .ok_or_else(|| {
            BackupError(format!(
                "data directory {shown} is in use by a secretstore process; stop it first"
            ))
        })?;
    // Checked again with the lock held: another restore may have filled it meanwhile.
    if !only_a_lock_file(dir)? {
        return Err(not_empty());
    }
    let partial = dir.join(format!("{DATABASE_FILE}.restoring"));
    let written = copy_private(input, &partial).and_then(|()| {
        std::fs::rename(&partial, dir.join(DATABASE_FILE))?;
        File::open(dir)?.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError(format!(
            "cannot write the database into {shown}: {e}"
        )));
    }
    drop(held);
    Ok(info)
}

/// Whether the directory `dir` holds no entry but perhaps `LOCK`.
fn only_a_lock_file(dir: &Path) -> Result<bool, BackupError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BackupError(format!("cannot read the directory {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            BackupError(format!("cannot read the directory {}: {e}", dir.display()))
        })?;
        if entry.file_name() != LOCK_FILE {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies `from` into the new owner-only file `to`, synced to disk.
fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_that_fails_leaves_no_file_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        snapshot(dir.path(), Duration::from_secs(1)).expect_err("there is no database to copy");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read_dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
