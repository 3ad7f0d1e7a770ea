//! The storage conformance suite against `SqliteStore`, each check on a fresh data directory.

use std::sync::Arc;

use secretstore_core::Store;
use secretstore_sqlite::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// A fresh store in its own temporary directory, removed once the check is done.
async fn fresh() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("data"), SqliteOptions::default())
        .expect("open a fresh store");
    (Arc::new(store), dir)
}

/// The directory lock allows one handle per data directory (a second open is refused, which
/// `tests/sqlite.rs` checks), so the checks of two handles are skipped.
async fn fresh_pair() -> Option<(Arc<dyn Store>, Arc<dyn Store>, TempDir)> {
    None
}

secretstore_store_tests::conformance_tests!(fresh, fresh_pair);

/// The sequential runner works too (backends may prefer it), and the list names each check once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_runs_every_check() {
    let mut names: Vec<&str> = secretstore_store_tests::CHECKS
        .iter()
        .map(|c| c.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), secretstore_store_tests::CHECKS.len());
    secretstore_store_tests::run_all(fresh, fresh_pair).await;
}
