//! Readiness against a database that stops taking writes: made read-only for new sessions
//! (`default_transaction_read_only`, what a standby or an operator's freeze looks like to a
//! client) and its sessions ended, the store is not ready and its writes are refused as
//! unavailable; made writable again, it is ready again by itself, without a restart.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use secretstore_core::{Lifecycle as _, Scope, SecretStore as _, StoreError};
use secretstore_postgres::{PostgresOptions, PostgresStore};
use secretstore_store_tests::fixtures::{address, home, put_request, NOW, ROOMY};
use secretstore_testkit::postgres::{available, ScratchDatabase};
use tokio_postgres::NoTls;

/// Sets the database's default for new sessions and ends every other session on it, so the
/// store's pool opens new ones under the new default.
async fn set_read_only(control: &tokio_postgres::Client, database: &str, on: bool) {
    control
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET default_transaction_read_only = {on}; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
}

/// Asks `check_ready` until it answers as `want` says, for up to 10 seconds (the pool first
/// finds out that its connections were ended); answers the last answer.
async fn ready_until(
    store: &PostgresStore,
    want: impl Fn(&Result<(), StoreError>) -> bool,
) -> Result<(), StoreError> {
    let mut last = store.check_ready().await;
    for _ in 0..100 {
        if want(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = store.check_ready().await;
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_refuses_writes_is_not_ready_until_it_takes_them_again() {
    if !available() {
        return;
    }
    let database = ScratchDatabase::create();
    let config: tokio_postgres::Config = database.url().parse().unwrap();
    let options = PostgresOptions {
        pool_size: 2,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::open(config.clone(), options).await.unwrap();
    store.check_ready().await.expect("ready at first");
    let (control, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);

    set_read_only(&control, database.name(), true).await;
    let answer = ready_until(
        &store,
        |r| matches!(r, Err(StoreError::Unavailable(why)) if why.contains("read-only")),
    )
    .await;
    assert!(
        matches!(&answer, Err(StoreError::Unavailable(why)) if why.contains("read-only")),
        "{answer:?}"
    );
    let k = address(&home(), &Scope::Account, "refused");
    let put = store.put(put_request(&k, NOW, None, ROOMY, "x")).await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");

    set_read_only(&control, database.name(), false).await;
    let answer = ready_until(&store, Result::is_ok).await;
    assert!(answer.is_ok(), "ready again by itself: {answer:?}");
    store
        .put(put_request(&k, NOW, None, ROOMY, "x"))
        .await
        .expect("writes work again");
    store.close().await.unwrap();
}
