//! Tests that need the store's insides: the write connection's own settings, which no other
//! connection can see, and the writer's recovery from a full disk (simulated with
//! `max_page_count`, which SQLite reports exactly as SQLITE_FULL).

use std::sync::Arc;

use rusqlite::Connection;
use secretstore_core::{Scope, SecretId, SecretStore, StoreError};
use secretstore_store_tests::fixtures::{
    address, assert_scope_full, home, put_bytes, put_request, user, NOW,
};

use crate::errors::sql_failure;
use crate::writer::Touches;
use crate::{SqliteOptions, SqliteStore};

/// A temporary directory private to this user (0700), as a data directory must be: the
/// default temporary directory follows the umask (often 0755), which the store refuses.
pub(crate) fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("tempdir")
}

impl SqliteStore {
    /// Runs `run` on the write connection, inside a batch like any write.
    async fn inspect(
        &self,
        run: impl FnOnce(&Connection) -> rusqlite::Result<String> + Send + 'static,
    ) -> Result<String, StoreError> {
        self.write("inspect", Touches::default(), move |conn| {
            run(conn).map_err(|e| sql_failure(&e))
        })
        .await
    }
}

fn pragma(name: &'static str) -> impl FnOnce(&Connection) -> rusqlite::Result<String> {
    move |conn| {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(|value| match value {
            rusqlite::types::Value::Integer(n) => n.to_string(),
            rusqlite::types::Value::Text(text) => text,
            other => format!("{other:?}"),
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_write_connection_uses_wal_full_sync_foreign_keys_and_memory_temp_store() {
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    assert_eq!(
        store.inspect(pragma("journal_mode")).await.expect("pragma"),
        "wal"
    );
    assert_eq!(
        store.inspect(pragma("synchronous")).await.expect("pragma"),
        "2",
        "synchronous = FULL"
    );
    assert_eq!(
        store.inspect(pragma("foreign_keys")).await.expect("pragma"),
        "1"
    );
    assert_ne!(
        store.inspect(pragma("busy_timeout")).await.expect("pragma"),
        "0"
    );
    // The syncer thread checkpoints; the writer's own is a backstop far off.
    assert_eq!(
        store
            .inspect(pragma("wal_autocheckpoint"))
            .await
            .expect("pragma"),
        crate::syncer::BACKSTOP_PAGES.to_string()
    );
    // Jobs' savepoints keep their undo records in memory, not in temporary files.
    assert_eq!(
        store.inspect(pragma("temp_store")).await.expect("pragma"),
        "2",
        "temp_store = MEMORY"
    );
}

/// Stores `n` account secrets of 1,000 bytes, `secret-0` to `secret-{n-1}`.
async fn put_secrets(store: &SqliteStore, n: usize) {
    for i in 0..n {
        let at = address(&home(), &Scope::Account, &format!("secret-{i}"));
        store
            .put(put_bytes(&at, NOW, vec![7; 1000]))
            .await
            .expect("put");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_reach_the_database_file_while_the_store_is_open() {
    use secretstore_core::Lifecycle as _;
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    put_secrets(&store, 200).await;
    // Far below the writer's backstop: only the syncer's checkpoints move them out of the log.
    let db = tmp.path().join(crate::data_dir::DATABASE_FILE);
    let waited = std::time::Instant::now();
    while std::fs::metadata(&db).expect("database file").len() < 200 * 1000 {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(10),
            "nothing was checkpointed into the database file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_unavailable_and_writes_resume_when_space_returns() {
    let tmp = private_tempdir();
    let store = Arc::new(SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open"));
    let ns = home();
    let small = address(&ns, &Scope::Account, "small");
    store
        .put(put_bytes(&small, NOW, vec![1; 100]))
        .await
        .expect("put before the disk fills");

    // The database may not grow any more: the next large write hits "disk full".
    let pages = store
        .inspect(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n.to_string())
        })
        .await
        .expect("limit the size");
    assert!(!pages.is_empty());
    let big = address(&ns, &Scope::Account, "big");
    match store.put(put_bytes(&big, NOW, vec![2; 256 * 1024])).await {
        Err(StoreError::Unavailable(why)) => assert_eq!(why, "disk full"),
        other => panic!("expected Unavailable(\"disk full\"), got {other:?}"),
    }
    assert_eq!(
        store.get(&big, NOW).await.expect("get"),
        None,
        "nothing half-written"
    );
    assert!(
        store.get(&small, NOW).await.expect("get").is_some(),
        "reads still work"
    );

    // Space returns: the same writer takes the same write, no restart.
    store
        .inspect(pragma("max_page_count = 1073741823"))
        .await
        .expect("lift the limit");
    let stored = store
        .put(put_bytes(&big, NOW, vec![2; 256 * 1024]))
        .await
        .expect("put after space returned");
    assert_eq!(stored.sealed.len(), 256 * 1024);
    assert_ne!(stored.id, SecretId::generate());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_store_leaves_its_writes_in_the_database_file_not_the_wal() {
    use secretstore_core::Lifecycle as _;
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    put_secrets(&store, 50).await;
    // A read, so that a reader connection is open too and may close after the writer.
    let first = address(&home(), &Scope::Account, "secret-0");
    assert!(store.get(&first, NOW).await.expect("get").is_some());
    store.close().await.expect("close");

    let wal = tmp
        .path()
        .join(format!("{}-wal", crate::data_dir::DATABASE_FILE));
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_bytes, 0, "the WAL is checkpointed and emptied at close");
    let db = tmp.path().join(crate::data_dir::DATABASE_FILE);
    assert!(std::fs::metadata(&db).expect("database file").len() > 50 * 1000);
}

/// SQLite's steps for the count of a refused create in `scope` under a limit of 10, measured
/// on the write connection's cached statement, the one `writes::put` runs.
async fn refused_create_count_steps(store: &SqliteStore, scope: &Scope) -> i32 {
    use rusqlite::StatementStatus::VmStep;
    let count_steps = |reset: bool| {
        move |conn: &Connection| {
            let stmt = conn.prepare_cached(crate::writes::COUNT_LIVE)?;
            let steps = if reset {
                stmt.reset_status(VmStep)
            } else {
                stmt.get_status(VmStep)
            };
            Ok(steps.to_string())
        }
    };
    store.inspect(count_steps(true)).await.expect("reset");
    let at = address(&home(), scope, "one-too-many");
    assert_scope_full(
        store.put(put_request(&at, NOW, None, 10, "refused")).await,
        10,
    );
    let steps = store.inspect(count_steps(false)).await.expect("steps");
    steps.parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creates_count_of_its_scope_stops_at_the_limit() {
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    let (full, crowded) = (user("at-the-limit"), user("crowded"));
    for (scope, n) in [(&full, 10), (&crowded, 400)] {
        for i in 0..n {
            let at = address(&home(), scope, &format!("secret-{i}"));
            store
                .put(put_bytes(&at, NOW, vec![7; 10]))
                .await
                .expect("put");
        }
    }
    let at_the_limit = refused_create_count_steps(&store, &full).await;
    let crowded = refused_create_count_steps(&store, &crowded).await;
    assert!(at_the_limit > 0, "the count ran");
    // Counting all 400 would take some 40 times the steps of counting 10.
    assert!(
        crowded < 2 * at_the_limit,
        "the count over 400 secrets took {crowded} steps against {at_the_limit} over 10"
    );
}

/// Pages one replace of `at` writes: the frames its commit adds to the write-ahead log of a
/// store just reopened (closing empties the log, and nothing else writes in between).
async fn pages_of_one_replace(
    dir: &std::path::Path,
    at: &secretstore_core::SecretAddress,
    expires_at: Option<i64>,
) -> u64 {
    use secretstore_core::Lifecycle as _;
    const WAL_HEADER: u64 = 32;
    const FRAME: u64 = 24 + 4096;
    let wal = dir.join(format!("{}-wal", crate::data_dir::DATABASE_FILE));
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let store = SqliteStore::open(dir, SqliteOptions::default()).expect("open");
    assert_eq!(wal_bytes(), 0, "the reopened store has written nothing yet");
    store
        .put(put_request(at, NOW + 1, expires_at, 1000, "replaced"))
        .await
        .expect("replace");
    let written = wal_bytes();
    store.close().await.expect("close");
    drop(store);
    (written - WAL_HEADER) / FRAME
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replace_that_keeps_its_expiry_writes_its_row_alone() {
    use secretstore_core::Lifecycle as _;
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    put_secrets(&store, 50).await;
    store.close().await.expect("close");
    drop(store);
    let at = address(&home(), &Scope::Account, "secret-7");

    // The row's page, and no index's: `expires_at` is in two indexes, which SQLite rewrites
    // whenever a statement assigns it, to the same value or not.
    let kept = pages_of_one_replace(tmp.path(), &at, None).await;
    assert_eq!(kept, 1, "a replace keeping its expiry wrote {kept} pages");
    // Given an expiry, the same replace moves the secret in both indexes as well.
    let moved = pages_of_one_replace(tmp.path(), &at, Some(NOW + 3_600_000)).await;
    assert_eq!(
        moved, 3,
        "a replace changing its expiry wrote {moved} pages"
    );
}

/// The removals of an account or a user walk the apps (no index leads with the account, to
/// spare every create an insert): each of their statements must search an index, never read
/// a whole table.
#[tokio::test(flavor = "multi_thread")]
async fn removals_search_indexes_and_never_scan_a_table() {
    use crate::directory::{
        APPS_WITH_SECRETS, DELETE_ACCOUNT_KEYS, DELETE_ACCOUNT_SECRETS, DELETE_USER_SECRETS,
        KEY_APPS_OF_KIND, KEY_KINDS,
    };
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    put_secrets(&store, 10).await;
    let [first_app, next_app] = APPS_WITH_SECRETS;
    let [first_kind, next_kind] = KEY_KINDS;
    let [first_key_app, next_key_app] = KEY_APPS_OF_KIND;
    // The first of each walk reads one entry of an index in its order (LIMIT 1).
    let firsts = [first_app, first_kind, first_key_app];
    let searches = [
        next_app,
        next_kind,
        next_key_app,
        DELETE_ACCOUNT_SECRETS,
        DELETE_USER_SECRETS,
        DELETE_ACCOUNT_KEYS,
    ];
    for (sql, search) in firsts
        .iter()
        .map(|sql| (*sql, false))
        .chain(searches.iter().map(|sql| (*sql, true)))
    {
        let plan = store
            .inspect(move |conn| {
                // Unbound parameters are NULL: the plan does not depend on their values.
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let mut rows = stmt.raw_query();
                let mut details = Vec::new();
                while let Some(row) = rows.next()? {
                    details.push(row.get::<_, String>(3)?);
                }
                Ok(details.join("; "))
            })
            .await
            .expect("plan");
        assert!(plan.contains("INDEX"), "{sql}: {plan}");
        if search {
            assert!(
                plan.starts_with("SEARCH") && !plan.contains("SCAN"),
                "{sql}: {plan}"
            );
        }
    }
}

/// SQLite's steps for one `keys_not_under(active, 10)` on the write connection's cached
/// statement.
async fn not_under_steps(store: &SqliteStore, active: [u8; 8]) -> i32 {
    use rusqlite::StatementStatus::VmStep;
    let steps = store
        .inspect(move |conn| {
            conn.prepare_cached(crate::keys::NOT_UNDER)?
                .reset_status(VmStep);
            let found = crate::keys::keys_not_under(conn, secretstore_crypto::KeyId(active), 10)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let steps = conn
                .prepare_cached(crate::keys::NOT_UNDER)?
                .get_status(VmStep);
            // Checked here, not on the writer thread, which an assertion would bring down.
            Ok(format!("{} {steps}", found.len()))
        })
        .await
        .expect("walk");
    let (found, steps) = steps.split_once(' ').expect("two numbers");
    assert_eq!(found, "10", "ten keys still to re-wrap");
    steps.parse().expect("a number")
}

/// A root key rotation re-wraps keys page by page (`keys_not_under`, then a re-wrap of each):
/// a page must cost the same whether few or most keys were re-wrapped already, or a rotation
/// over many keys reads the re-wrapped ones again on every page (quadratic in the keys).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotations_walk_reads_only_the_keys_it_answers() {
    let tmp = private_tempdir();
    let store = SqliteStore::open(tmp.path(), SqliteOptions::default()).expect("open");
    // Old root key versions on both sides of the active one, in byte order.
    let (below, active, above) = ([1u8; 8], [5u8; 8], [9u8; 8]);
    store
        .inspect(move |conn| {
            let mut insert = conn.prepare(
                "INSERT INTO keys (kind, app, account, mode, scope_user, version, root,
                     wrapped, created) VALUES ('user', '', 'acct_walk', '', ?1, 1, ?2, x'00', 0)",
            )?;
            for i in 0..2_000 {
                let root = if i % 2 == 0 { below } else { above };
                insert.execute(rusqlite::params![format!("usr_{i:05}"), &root[..]])?;
            }
            Ok(String::new())
        })
        .await
        .expect("keys");
    let fresh = not_under_steps(&store, active).await;
    // All but the last 20 (by owner) re-wrapped, as after most of a rotation that walks the
    // keys in their owners' order.
    store
        .inspect(move |conn| {
            conn.execute(
                "UPDATE keys SET root = ?1 WHERE scope_user < 'usr_01980'",
                [&active[..]],
            )?;
            Ok(String::new())
        })
        .await
        .expect("re-wrap");
    let late = not_under_steps(&store, active).await;
    assert!(
        late < 2 * fresh,
        "a page late in the rotation took {late} steps against {fresh} at its start"
    );
}
