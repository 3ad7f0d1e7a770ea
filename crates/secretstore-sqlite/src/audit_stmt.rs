//! The writer thread's own prepared INSERT of an audit record, bound without copies: every
//! request appends a record, so this one statement runs more often than any other.
//!
//! Through rusqlite's statement cache each append hashed the statement's text twice (to take
//! it from the cache and to put it back) and had SQLite copy each of the record's texts
//! (rusqlite binds text as `SQLITE_TRANSIENT`). Here the writer prepares the statement once,
//! for as long as its connection lives (`Prepared::on`), and binds the record's own bytes
//! (`SQLITE_STATIC`), which outlive the one step that reads them; the bindings are cleared
//! after it, so that the idle statement points at nothing freed. Any other connection (a
//! test's, a tool's) goes the general way (`insert` answers `None`).
//!
//! The statement lives in a thread-local, as the chain's head does (`audit::HEAD`); `Prepared`
//! borrows the connection and finalizes the statement when dropped, so the statement cannot
//! outlive its connection (SQLite refuses to close a connection with a statement left).

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_int, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::{ffi, Connection};
use secretstore_core::AuditEntry;

/// A statement prepared on the connection `db`.
struct Statement {
    db: *mut ffi::sqlite3,
    stmt: NonNull<ffi::sqlite3_stmt>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: `stmt` was prepared by `sqlite3_prepare_v3` and is finalized only here; its
        // connection is still open (`Prepared` borrows it, and drops this first).
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

thread_local! {
    static STATEMENT: RefCell<Option<Statement>> = const { RefCell::new(None) };
}

/// The statement, prepared on a connection for this thread until it is dropped. One at a time
/// on a thread: the writer's.
pub struct Prepared<'c> {
    _conn: PhantomData<&'c Connection>,
}

impl<'c> Prepared<'c> {
    /// Prepares the INSERT on `conn` for this thread. If it cannot be prepared (no audit table
    /// yet), appends go the general way, which reports the failure.
    pub fn on(conn: &'c Connection) -> Self {
        // SAFETY: the handle is only compared and used for calls on this thread while `conn`,
        // which `Self` borrows, is open.
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        let sql = crate::audit::INSERT;
        // SAFETY: `db` is an open connection; SQLite reads `sql.len()` bytes of `sql`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                c_int::try_from(sql.len()).unwrap_or(c_int::MAX),
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        // On failure SQLite leaves `stmt` null.
        if let (ffi::SQLITE_OK, Some(stmt)) = (rc, NonNull::new(stmt)) {
            STATEMENT.with(|slot| *slot.borrow_mut() = Some(Statement { db, stmt }));
        }
        Self { _conn: PhantomData }
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        STATEMENT.with(|slot| slot.borrow_mut().take());
    }
}

/// Inserts `entry` in `conn`'s transaction with the statement prepared on it, or answers
/// `None` if none was (on this thread).
pub fn insert(conn: &Connection, entry: &AuditEntry) -> Option<rusqlite::Result<()>> {
    STATEMENT.with(|slot| {
        let slot = slot.borrow();
        let statement = slot.as_ref()?;
        // SAFETY: only compared.
        if unsafe { conn.handle() } != statement.db {
            return None;
        }
        // SAFETY: the statement is prepared on `conn`, open and used by this thread alone; the
        // bound bytes belong to `entry`, which outlives the step that reads them, and the
        // bindings are cleared before returning.
        Some(unsafe { run(statement, entry) })
    })
}

/// # Safety
/// `statement` is prepared on an open connection used by this thread only.
unsafe fn run(statement: &Statement, entry: &AuditEntry) -> rusqlite::Result<()> {
    let stmt = statement.stmt.as_ptr();
    let e = &entry.event;
    // SAFETY (whole function): see the function's contract.
    unsafe {
        let bound = [
            ffi::sqlite3_bind_int64(stmt, 1, entry.seq),
            ffi::sqlite3_bind_int64(stmt, 2, e.time_ms),
            text(stmt, 3, Some(&e.request_id)),
            text(stmt, 4, e.credential_kind.as_deref()),
            text(stmt, 5, e.credential.as_deref()),
            text(stmt, 6, e.app.as_deref()),
            text(stmt, 7, e.account.as_deref()),
            text(stmt, 8, e.mode.as_deref()),
            text(stmt, 9, e.scope_type.as_deref()),
            text(stmt, 10, e.user.as_deref()),
            text(stmt, 11, Some(&e.operation)),
            text(stmt, 12, e.secret_name.as_deref()),
            text(stmt, 13, e.client.as_deref()),
            ffi::sqlite3_bind_int64(stmt, 14, i64::from(e.status)),
            text(stmt, 15, e.code.as_deref()),
            blob(stmt, 16, &entry.prev),
            blob(stmt, 17, &entry.hash),
        ];
        let result = match bound.into_iter().find(|&rc| rc != ffi::SQLITE_OK) {
            Some(rc) => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
            None => match ffi::sqlite3_step(stmt) {
                ffi::SQLITE_DONE => Ok(()),
                rc => Err(failure(statement.db, rc)),
            },
        };
        ffi::sqlite3_reset(stmt);
        ffi::sqlite3_clear_bindings(stmt);
        result
    }
}

/// # Safety
/// `stmt` is a prepared statement; `value` lives until the statement's bindings are cleared.
unsafe fn text(stmt: *mut ffi::sqlite3_stmt, index: c_int, value: Option<&str>) -> c_int {
    // SAFETY: see the function's contract; SQLITE_STATIC makes SQLite read `value` in place.
    unsafe {
        match value {
            None => ffi::sqlite3_bind_null(stmt, index),
            Some(value) => match c_int::try_from(value.len()) {
                Ok(len) => ffi::sqlite3_bind_text(
                    stmt,
                    index,
                    value.as_ptr().cast(),
                    len,
                    ffi::SQLITE_STATIC(),
                ),
                Err(_) => ffi::SQLITE_TOOBIG,
            },
        }
    }
}

/// # Safety
/// As `text`.
unsafe fn blob(stmt: *mut ffi::sqlite3_stmt, index: c_int, value: &[u8; 32]) -> c_int {
    // SAFETY: see the function's contract.
    unsafe { ffi::sqlite3_bind_blob(stmt, index, value.as_ptr().cast(), 32, ffi::SQLITE_STATIC()) }
}

/// The error of the failed step that answered `rc`, as rusqlite shows one.
///
/// # Safety
/// `db` is an open connection.
unsafe fn failure(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: see the function's contract; the message is copied before any other call.
    let (code, message) = unsafe {
        let code = match ffi::sqlite3_extended_errcode(db) {
            ffi::SQLITE_OK => rc,
            code => code,
        };
        let message = ffi::sqlite3_errmsg(db);
        let message =
            (!message.is_null()).then(|| CStr::from_ptr(message).to_string_lossy().into_owned());
        (code, message)
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::Connection;
    use secretstore_core::{AuditAppend, AuditChain, AuditEntry, AuditEvent};
    use secretstore_crypto::DigestKey;

    use super::Prepared;
    use crate::audit;

    fn store(dir: &tempfile::TempDir) -> Connection {
        let mut conn = Connection::open(dir.path().join("audit.db")).unwrap();
        crate::schema::migrate(&mut conn, "audit.db").unwrap();
        conn
    }

    /// Every field set, with texts a copy or a length could get wrong.
    fn full(n: i64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_796_476_347_823 + n,
            request_id: format!("req_{n:020}"),
            credential_kind: Some("secret_key".into()),
            credential: Some("sk_test_****abcd".to_owned()),
            app: Some("app".to_owned()),
            account: Some("acct_1".to_owned()),
            mode: Some("test".into()),
            scope_type: Some("user".into()),
            user: Some(String::new()),
            operation: "secrets.set".into(),
            secret_name: Some("ünïcödé 'quoted' \"key\" a\0b 🔑".to_owned()),
            client: Some("::1".to_owned()),
            status: 200,
            code: None,
        }
    }

    /// A refusal before authentication: most fields absent.
    fn sparse(n: i64) -> AuditEvent {
        AuditEvent {
            time_ms: n,
            request_id: format!("req_{n}"),
            operation: "unknown".into(),
            status: 401,
            code: Some("api_key_invalid".to_owned()),
            ..AuditEvent::default()
        }
    }

    fn append(conn: &Connection, chain: &Arc<AuditChain>, event: AuditEvent) -> AuditEntry {
        audit::append(conn, AuditAppend::new(Arc::new(event), Arc::clone(chain))).unwrap()
    }

    /// Each column's SQLite type, row by row.
    fn types(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT typeof(seq) || typeof(time_ms) || typeof(request_id)
                     || typeof(credential_kind) || typeof(credential) || typeof(app)
                     || typeof(account) || typeof(mode) || typeof(scope_type) || typeof(user_id)
                     || typeof(operation) || typeof(secret_name) || typeof(client)
                     || typeof(status) || typeof(code) || typeof(prev) || typeof(hash)
                 FROM audit ORDER BY seq",
            )
            .unwrap();
        let rows = stmt.query_map([], |row| row.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn records_read_back_whole_and_typed_as_the_general_insert_writes_them() {
        let dir = crate::tests::private_tempdir();
        let conn = store(&dir);
        let chain = Arc::new(AuditChain::new(DigestKey::from_bytes([7; 32])));
        audit::forget_head();
        // Without the writer's statement: rusqlite's cached one.
        assert!(super::insert(
            &conn,
            &AuditEntry {
                seq: 99,
                event: Arc::new(sparse(0)),
                prev: [0; 32],
                hash: [0; 32],
            }
        )
        .is_none());
        let mut written = vec![
            append(&conn, &chain, full(1)),
            append(&conn, &chain, sparse(2)),
        ];
        let prepared = Prepared::on(&conn);
        written.push(append(&conn, &chain, full(3)));
        written.push(append(&conn, &chain, sparse(4)));
        assert_eq!(audit::scan(&conn, 0, 10).unwrap(), written);
        let types = types(&conn);
        assert_eq!(types.len(), 4);
        assert_eq!(types[0], types[2], "a full record, each way");
        assert_eq!(types[1], types[3], "a sparse record, each way");

        // A seq taken by hand: the constraint's error, as through rusqlite, so that `append`
        // links to the rows that are there.
        conn.execute(
            "INSERT INTO audit (seq, time_ms, request_id, operation, status, prev, hash)
             VALUES (5, 0, 'req_byhand', 'unknown', 400, x'00', x'00')",
            [],
        )
        .unwrap();
        let taken = AuditEntry {
            seq: 5,
            ..written[3].clone()
        };
        match super::insert(&conn, &taken) {
            Some(Err(rusqlite::Error::SqliteFailure(e, Some(message)))) => {
                assert_eq!(e.code, rusqlite::ErrorCode::ConstraintViolation);
                assert!(message.contains("UNIQUE"), "{message}");
            }
            other => panic!("expected a constraint violation, got {other:?}"),
        }
        assert_eq!(append(&conn, &chain, full(6)).seq, 6);

        // Another connection on this thread goes the general way.
        let other_dir = crate::tests::private_tempdir();
        let other = store(&other_dir);
        assert!(super::insert(&other, &written[0]).is_none());

        // Dropped, the statement is finalized: the connection then closes cleanly (rusqlite
        // panics on a connection that cannot close for a statement left).
        drop(prepared);
        assert!(super::insert(&conn, &written[0]).is_none());
        conn.close().map_err(|(_, e)| e).unwrap();
    }
}
