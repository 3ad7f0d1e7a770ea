//! How PostgreSQL failures become `StoreError`s. What an operator fixes and a client can retry
//! (the database unreachable, restarting, failing over, out of connections or disk, a statement
//! cut off by its timeout, two transactions in conflict) is `Unavailable` with a short reason, so
//! the client gets 503 with `Stripe-Should-Retry: true`; anything else means a bug or a damaged
//! database and is `Internal`. Only the SQLSTATE and the server's primary message are kept,
//! never its detail line, which can quote the values of a row.

use deadpool_postgres::PoolError;
use secretstore_core::StoreError;
use tokio_postgres::error::SqlState;

/// Maps a tokio-postgres error.
pub fn pg_failure(err: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2];
        return match class {
            // Connection exception; insufficient resources (disk full, too many connections);
            // operator intervention (shutdown, restart, statement timeout); system error.
            "08" | "53" | "57" | "58" => {
                StoreError::Unavailable(format!("database: {}", db.message()))
            }
            // Serialization failure, deadlock: the transaction was undone and may be retried.
            "40" => StoreError::Unavailable("database: transaction conflict, retry".into()),
            _ if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
                StoreError::Unavailable("database is read-only (a standby, or failing over)".into())
            }
            _ => StoreError::Internal(format!("postgres {}: {}", code.code(), db.message())),
        };
    }
    // No answer from the server at all: the connection broke, timed out or never opened.
    let source = std::error::Error::source(err);
    let io = source.is_some_and(|e| e.is::<std::io::Error>());
    if err.is_closed() || io || err.to_string().contains("timeout") {
        // "error connecting to server: Connection refused (os error 111)"
        let why = match source {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        };
        return StoreError::Unavailable(format!("database connection: {why}"));
    }
    StoreError::Internal(format!("postgres: {err}"))
}

/// Maps a failure to get a connection from the pool.
pub fn pool_failure(err: &PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => match pg_failure(e) {
            StoreError::Internal(why) => {
                StoreError::Unavailable(format!("cannot connect to the database: {why}"))
            }
            other => other,
        },
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no database connection became free in time".into())
        }
        PoolError::Closed => shutting_down(),
        other => StoreError::Internal(format!("database pool: {other}")),
    }
}

/// Whether an error is a unique-constraint violation (a create that lost a race).
pub fn is_unique_violation(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
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
