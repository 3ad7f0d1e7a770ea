//! The storage conformance suite against `PostgresStore`, each check in a scratch schema of its
//! own on the test server (`secretstore_testkit::postgres`), the checks of two handles on one
//! database included: two handles are two pools on the same schema, as two servers would be.

use std::sync::Arc;

use secretstore_core::Store;
use secretstore_postgres::{PostgresOptions, PostgresStore};
use secretstore_testkit::postgres::{available, ScratchSchema};

/// Options for tests: small pools, and a cache that believes nothing for long.
fn options() -> PostgresOptions {
    PostgresOptions {
        pool_size: 8,
        ..PostgresOptions::default()
    }
}

async fn open(schema: &ScratchSchema) -> Arc<dyn Store> {
    Arc::new(
        PostgresStore::open(schema.config(), options())
            .await
            .expect("open a store in the scratch schema"),
    )
}

/// A fresh store in its own schema, dropped once the check is done. Without PostgreSQL (and
/// SECRETSTORE_SKIP_POSTGRES_TESTS=1), a memory store stands in so the check still runs its
/// course; the skip is printed.
async fn fresh() -> (Arc<dyn Store>, Option<ScratchSchema>) {
    if !available() {
        return (Arc::new(secretstore_testkit::MemoryStore::new()), None);
    }
    let schema = ScratchSchema::create();
    (open(&schema).await, Some(schema))
}

async fn fresh_pair() -> Option<(Arc<dyn Store>, Arc<dyn Store>, ScratchSchema)> {
    if !available() {
        return None;
    }
    let schema = ScratchSchema::create();
    let one = open(&schema).await;
    let two = open(&schema).await;
    Some((one, two, schema))
}

secretstore_store_tests::conformance_tests!(fresh, fresh_pair);
