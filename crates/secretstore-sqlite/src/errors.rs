//! How SQLite failures become `StoreError`s. Conditions an operator can fix and a client can
//! retry (disk full, read-only or failing storage, lock contention) are `Unavailable` with a
//! short reason; anything else means a bug or a damaged database and is `Internal`. SQLite's
//! messages name tables and constraints, never values, so they are safe to log.

use rusqlite::ErrorCode;
use secretstore_core::StoreError;

/// Maps a rusqlite error.
pub fn sql_failure(err: &rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Unavailable("disk full".into()),
        Some(ErrorCode::ReadOnly) => StoreError::Unavailable("database is read-only".into()),
        Some(ErrorCode::SystemIoFailure) => StoreError::Unavailable("disk I/O error".into()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable("database is busy".into())
        }
        // A file SQLite needed (a temporary one, a reopened one) could not be opened: out of
        // file descriptors, most often, which passes.
        Some(ErrorCode::CannotOpen) => {
            StoreError::Unavailable("cannot open a database file (out of file descriptors?)".into())
        }
        _ => StoreError::Internal(format!("sqlite: {err}")),
    }
}

/// A stored value that does not have the shape this crate wrote: the database was damaged or
/// edited by hand. Names the table and column, never the value.
pub fn damaged(what: &str) -> StoreError {
    StoreError::Internal(format!("damaged database: {what}"))
}

/// What callers see once the store is closed.
pub fn shutting_down() -> StoreError {
    StoreError::Unavailable("shutting down".into())
}

/// A storage thread ended without answering: only a panic does that.
pub fn thread_stopped() -> StoreError {
    StoreError::Internal("a storage thread stopped without answering".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn environmental_failures_are_unavailable_with_a_short_reason() {
        let cases = [
            (ffi::SQLITE_FULL, "disk full"),
            (ffi::SQLITE_READONLY, "database is read-only"),
            (ffi::SQLITE_IOERR, "disk I/O error"),
            (ffi::SQLITE_IOERR_FSYNC, "disk I/O error"),
            (ffi::SQLITE_BUSY, "database is busy"),
            (ffi::SQLITE_LOCKED, "database is busy"),
            (
                ffi::SQLITE_CANTOPEN,
                "cannot open a database file (out of file descriptors?)",
            ),
        ];
        for (code, reason) in cases {
            match sql_failure(&failure(code)) {
                StoreError::Unavailable(why) => assert_eq!(why, reason, "code {code}"),
                other => panic!("code {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_failures_are_internal() {
        assert!(matches!(
            sql_failure(&failure(ffi::SQLITE_CONSTRAINT)),
            StoreError::Internal(_)
        ));
        assert!(matches!(
            sql_failure(&rusqlite::Error::QueryReturnedNoRows),
            StoreError::Internal(_)
        ));
    }
}
