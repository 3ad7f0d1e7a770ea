//! The storage conformance suite against `MemoryStore`, the checks of two handles on one
//! database included (a second handle shares the data, as a second server would).

use std::sync::Arc;

use secretstore_core::Store;
use secretstore_testkit::MemoryStore;

async fn fresh() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

async fn fresh_pair() -> Option<(Arc<dyn Store>, Arc<dyn Store>, ())> {
    let one = MemoryStore::new();
    let two = one.handle();
    Some((Arc::new(one), Arc::new(two), ()))
}

secretstore_store_tests::conformance_tests!(fresh, fresh_pair);
