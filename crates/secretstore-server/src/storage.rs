//! Storage selection: `open_store` opens the backend a configuration names, and `Storage` hands
//! each part of the app the one storage trait it needs (the service its secrets, the
//! idempotency protocol its records, the readiness check the backend as a whole), so a test can
//! wrap one trait without touching the others.

use std::path::PathBuf;
use std::sync::Arc;

use secretstore_core::{
    AtomicWrites, AuditStore, Directory, IdempotencyStore, KeyStore, Lifecycle, MetaStore,
    SecretStore, Store, StoreError,
};
use secretstore_crypto::NotPrivate;
use secretstore_postgres::PostgresStore;
use secretstore_sqlite::SqliteStore;

use crate::config::StorageConfig;

/// The storage traits of one backend.
#[derive(Debug, Clone)]
pub struct Storage {
    pub secrets: Arc<dyn SecretStore>,
    pub writes: Arc<dyn AtomicWrites>,
    pub audit: Arc<dyn AuditStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub meta: Arc<dyn MetaStore>,
    pub directory: Arc<dyn Directory>,
    pub keys: Arc<dyn KeyStore>,
    pub lifecycle: Arc<dyn Lifecycle>,
}

impl Storage {
    pub fn of(store: Arc<dyn Store>) -> Self {
        Self {
            secrets: store.clone(),
            writes: store.clone(),
            audit: store.clone(),
            idempotency: store.clone(),
            meta: store.clone(),
            directory: store.clone(),
            keys: store.clone(),
            lifecycle: store,
        }
    }
}

/// Where the backend `config` names already holds data (for SQLite: its database file), if it
/// does; nothing is opened or created to find out.
pub fn existing_data(config: &StorageConfig) -> Option<PathBuf> {
    match config {
        StorageConfig::Sqlite { dir, .. } => secretstore_sqlite::database_with_data(dir),
        // Its root key never comes from a generated file (serve refuses that), so there is no
        // file to check the data against.
        StorageConfig::Postgres { .. } => None,
    }
}

/// Refuses storage `config` names whose files are not private to this user (for SQLite: the
/// data directory and its files), before anything is opened or created.
pub fn check_private(config: &StorageConfig) -> Result<(), NotPrivate> {
    match config {
        StorageConfig::Sqlite { dir, .. } => secretstore_sqlite::check_private(dir),
        // Nothing of the store is on this machine's disk.
        StorageConfig::Postgres { .. } => Ok(()),
    }
}

/// Opens the backend `config` names. Blocking work runs off the async runtime.
pub async fn open_store(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StorageConfig::Sqlite { dir, options } => {
            let (dir, options) = (dir.clone(), options.clone());
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, options))
                .await
                .map_err(|e| StoreError::Internal(format!("opening storage panicked: {e}")))??;
            Ok(Arc::new(store))
        }
        StorageConfig::Postgres { config, options } => Ok(Arc::new(
            PostgresStore::open((**config).clone(), options.clone()).await?,
        )),
    }
}
