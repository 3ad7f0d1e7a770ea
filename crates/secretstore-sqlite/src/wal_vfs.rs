//! A thin layer over SQLite's own `unix` file system layer for the write connections: it gathers
//! the frames a commit appends to the write-ahead log and hands them to the kernel in one write.
//!
//! SQLite writes each frame of the log with two `pwrite` calls, its 24-byte header and then its
//! page, so a group commit of a dozen sets made some thirty system calls, each paying a virtual
//! machine's price for one. Through this layer a set run made 17,900 `pwrite` calls instead of
//! 82,700 (strace), and the writer spent 38.5 us of CPU per create instead of 42, for 7% more
//! creates per second (`scripts/profile create`, alternating runs).
//!
//! The frames are kept in memory while they arrive in order, and written at once when the
//! commit frame's page arrives (its header carries the database's size in pages, which only a
//! commit frame does). That write happens
//! inside the `xWrite` call of that last page, before SQLite syncs the log and before it
//! publishes the commit to other connections in the shared index, so no reader ever looks for a
//! frame that is not in the file yet, and an error (a full disk) is reported by the same call,
//! for the same commit, as it was without this layer. Whatever else touches the log first
//! (a read of a page spilled mid-transaction, a sync, a size, a truncation, a close, a write
//! that does not follow on) writes what is gathered before it goes on, and so does a commit
//! larger than `MAX_GATHERED`. Every other file, and every other call, goes straight to `unix`.
//!
//! Registered once, as `WAL_VFS`; where SQLite has no `unix` layer (Windows), the connections
//! open with the default one instead (`vfs_name`).

#![allow(unsafe_code)]

use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the layer is registered under.
const WAL_VFS: &CStr = c"secretstore-wal";

/// Gathered bytes beyond which they are written without waiting for the commit frame: a
/// transaction that changes many pages (a migration, a large purge) does not hold them all.
const MAX_GATHERED: usize = 1 << 20;

/// The most one call to `unix`'s `xWrite` is given: it writes at most 128 KiB less one byte
/// with each system call (`nBuf &= 0x1ffff` in `seekAndWriteFd`), and takes a call that wrote
/// nothing for a full disk, so a larger buffer goes in pieces below that.
const MAX_WRITE: usize = 124 << 10;

/// Size of a frame's header in the log (SQLite's file format, "WAL frame header").
const FRAME_HEADER: usize = 24;

/// The name to open a write connection with: this layer's, if it could be registered.
pub fn vfs_name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: `register` only reads SQLite's own `unix` layer and registers a copy of it
        // that lives for the rest of the process.
        unsafe { register() }
    });
    registered.then(|| WAL_VFS.to_str().ok()).flatten()
}

/// Copies the `unix` layer with our `xOpen` and file size, and registers the copy (not as the
/// default). Answers whether it is registered.
unsafe fn register() -> bool {
    // SAFETY (whole function): `sqlite3_vfs_find` answers a layer that lives as long as the
    // process, or null; the copy is leaked, so it does too, as SQLite requires.
    let inner = unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) };
    if inner.is_null() {
        return false;
    }
    let mut vfs = unsafe { *inner };
    let Ok(size) = c_int::try_from(std::mem::size_of::<GatheringFile>()) else {
        return false;
    };
    vfs.szOsFile = size + unsafe { (*inner).szOsFile };
    vfs.zName = WAL_VFS.as_ptr();
    vfs.pAppData = inner.cast();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(open);
    // The other methods stay `unix`'s own: none of them uses the layer it is called through
    // (they take it only to match the interface), so they work unchanged through the copy.
    let vfs = Box::leak(Box::new(vfs));
    unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
}

/// What SQLite allocates for each file opened through the layer: our part, then `unix`'s file
/// (`szOsFile` covers both).
#[repr(C)]
struct GatheringFile {
    /// First, as SQLite requires: its methods are `METHODS`.
    base: ffi::sqlite3_file,
    /// `unix`'s file, in the same allocation right after this struct.
    inner: *mut ffi::sqlite3_file,
    /// For the write-ahead log only: what is gathered; null for every other file.
    log: *mut Gathered,
}

#[derive(Default)]
struct Gathered {
    /// Where `bytes` go in the file.
    offset: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: its page ends the commit.
    commit_page_next: bool,
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY (whole function): SQLite gives `file` with `szOsFile` bytes, room for
    // `GatheringFile` and `unix`'s file after it; `pAppData` is `unix`'s layer (`register`).
    unsafe {
        let inner_vfs: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let ours: *mut GatheringFile = file.cast();
        let inner: *mut ffi::sqlite3_file = ours.add(1).cast();
        (*ours).base.pMethods = std::ptr::null();
        (*ours).inner = inner;
        (*ours).log = std::ptr::null_mut();
        (*inner).pMethods = std::ptr::null();
        let Some(inner_open) = (*inner_vfs).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = inner_open(inner_vfs, name, inner, flags, out_flags);
        // SQLite closes a file whose methods are set even when opening failed: ours then
        // closes `unix`'s, if it set its own.
        if !(*inner).pMethods.is_null() {
            (*ours).base.pMethods = &METHODS;
            if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
                (*ours).log = Box::into_raw(Box::default());
            }
        }
        rc
    }
}

/// `unix`'s file and its methods.
///
/// # Safety
/// `file` is a file opened by `open` whose methods are set.
unsafe fn inner(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: see the function's contract; `unix`'s methods are static.
    unsafe {
        let inner = (*file.cast::<GatheringFile>()).inner;
        (inner, &*(*inner).pMethods)
    }
}

/// Writes what is gathered for `file`, if anything.
///
/// # Safety
/// As `inner`.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see the function's contract; `log` is null or ours, used by one thread at a
    // time (SQLite serialises the calls on a file).
    unsafe {
        let log = (*file.cast::<GatheringFile>()).log;
        if log.is_null() || (*log).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (inner, methods) = inner(file);
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let log = &mut *log;
        log.commit_page_next = false;
        let mut rc = ffi::SQLITE_OK;
        let mut offset = log.offset;
        for piece in log.bytes.chunks(MAX_WRITE) {
            // A piece is at most `MAX_WRITE` bytes, so its length fits.
            let amount = piece.len() as c_int;
            rc = write(inner, piece.as_ptr().cast(), amount, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += i64::from(amount);
        }
        log.bytes.clear();
        rc
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY (whole function): SQLite gives `amount` readable bytes at `data`.
    unsafe {
        let log = (*file.cast::<GatheringFile>()).log;
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if log.is_null() {
            let (inner, methods) = inner(file);
            return match methods.xWrite {
                Some(write) => write(inner, data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let gathered = &mut *log;
        let follows = gathered.offset + gathered.bytes.len() as i64 == offset;
        if !gathered.bytes.is_empty() && !follows {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let gathered = &mut *log;
        if gathered.bytes.is_empty() {
            gathered.offset = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        gathered.bytes.extend_from_slice(bytes);
        let ends_commit = gathered.commit_page_next && len != FRAME_HEADER;
        // A frame's header gives, at bytes 4..8, the database's size after a commit, and 0 in
        // every frame but a commit's last.
        gathered.commit_page_next =
            len == FRAME_HEADER && bytes[4..8].iter().any(|&byte| byte != 0);
        if ends_commit || gathered.bytes.len() >= MAX_GATHERED {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` was opened by `open`; after this SQLite no longer uses it.
    unsafe {
        let flushed = flush(file);
        let ours = file.cast::<GatheringFile>();
        if !(*ours).log.is_null() {
            drop(Box::from_raw((*ours).log));
            (*ours).log = std::ptr::null_mut();
        }
        let (inner, methods) = inner(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(inner));
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Defines a method that writes what is gathered, then calls `unix`'s.
macro_rules! flushing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` was opened by `open`; the arguments are SQLite's, passed on.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (inner, methods) = inner(file);
                match methods.$method {
                    Some(method) => method(inner $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

/// Defines a method that only calls `unix`'s.
macro_rules! passing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: `file` was opened by `open`; the arguments are SQLite's, passed on.
            unsafe {
                let (inner, methods) = inner(file);
                match methods.$method {
                    Some(method) => method(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

flushing!(read, xRead, (data: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
flushing!(truncate, xTruncate, (size: ffi::sqlite3_int64));
flushing!(sync, xSync, (flags: c_int));
flushing!(file_size, xFileSize, (size: *mut ffi::sqlite3_int64));
flushing!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
passing!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(sector_size, xSectorSize, () -> c_int, 4096);
passing!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
passing!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
passing!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR);
passing!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
passing!(fetch, xFetch, (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void) -> c_int, {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
passing!(unfetch, xUnfetch, (offset: ffi::sqlite3_int64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` was opened by `open`.
    unsafe {
        let (inner, methods) = inner(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(inner);
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    /// A write connection as the store opens one (through the layer, WAL, synced commits),
    /// with a table of blobs.
    fn writer(path: &Path) -> Connection {
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            super::vfs_name().expect("the layer registers on Linux"),
        )
        .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, x BLOB NOT NULL);",
        )
        .unwrap();
        conn
    }

    /// Another connection, through SQLite's own layer, as the store's readers are.
    fn reader(path: &Path) -> Connection {
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    fn rows_and_bytes(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(x)), 0) FROM t",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
    }

    fn intact(path: &Path) {
        let conn = Connection::open(path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn each_commit_is_seen_by_other_connections_at_once_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        let other = reader(&path);
        for n in 1..=300_i64 {
            // Rows of a few hundred bytes to a few pages: commits of one frame and of several.
            let size = 100 + (n % 7) * 2_000;
            conn.execute(
                "INSERT INTO t (n, x) VALUES (?1, randomblob(?2))",
                rusqlite::params![n, size],
            )
            .unwrap();
            assert_eq!(rows_and_bytes(&other).0, n, "commit {n} not seen");
        }
        let before = rows_and_bytes(&conn);
        drop((conn, other));
        intact(&path);
        assert_eq!(rows_and_bytes(&Connection::open(&path).unwrap()), before);
    }

    #[test]
    fn a_commit_larger_than_what_is_gathered_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        // 4 MiB in one commit: past `MAX_GATHERED` and many times `MAX_WRITE`.
        conn.execute_batch(
            "BEGIN;
             WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 1024)
             INSERT INTO t (n, x) SELECT n, randomblob(4096) FROM k;
             COMMIT;",
        )
        .unwrap();
        assert_eq!(rows_and_bytes(&reader(&path)), (1024, 4 << 20));
        drop(conn);
        intact(&path);
    }

    #[test]
    fn pages_spilled_before_the_commit_are_read_back_and_a_rollback_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        // A cache of a few pages makes SQLite write changed pages to the log mid-transaction.
        conn.execute_batch("PRAGMA cache_size = 8").unwrap();
        conn.execute_batch(
            "BEGIN;
             WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 500)
             INSERT INTO t (n, x) SELECT n, randomblob(3000) FROM k;",
        )
        .unwrap();
        assert_eq!(rows_and_bytes(&conn), (500, 1_500_000));
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(rows_and_bytes(&conn), (0, 0));
        conn.execute("INSERT INTO t (n, x) VALUES (1, x'00ff')", [])
            .unwrap();
        assert_eq!(rows_and_bytes(&reader(&path)), (1, 2));
        drop(conn);
        intact(&path);
    }

    #[test]
    fn the_log_restarts_after_a_checkpoint_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = writer(&path);
        for round in 0..3_i64 {
            for n in 0..50 {
                conn.execute(
                    "INSERT INTO t (n, x) VALUES (?1, randomblob(5000))",
                    [round * 50 + n],
                )
                .unwrap();
            }
            // From another connection, as the store's syncer does: the log starts again
            // from its beginning at the next commit.
            let syncer = writer(&path);
            let busy: i64 = syncer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
                .unwrap();
            assert_eq!(busy, 0);
        }
        conn.execute("INSERT INTO t (n, x) VALUES (1000, x'01')", [])
            .unwrap();
        assert_eq!(rows_and_bytes(&reader(&path)), (151, 750_001));
        drop(conn);
        intact(&path);
    }
}
