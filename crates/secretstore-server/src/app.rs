//! `App`: a configuration made into a service, and `run`, which serves it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use secretstore_api::{AppState, DevAuthenticator, Idempotency, RateLimit, Shutdown};
use secretstore_core::{
    verify_root_key, Clock, KeyCheckError, SecretService, StoreError, SystemClock,
};
use secretstore_crypto::{CryptoError, Envelope};
use tokio::net::TcpListener;

use crate::config::{Config, StorageConfig};
use crate::keys::load_root_key;
use crate::storage::{open_store, Storage};

/// Why a server could not start; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "this version authenticates only in dev mode: provisioning of apps, accounts, keys and \
         user sessions is not available yet. Start with --dev (or SECRETSTORE_DEV=true) for local \
         development"
    )]
    ProductionUnavailable,
    #[error(transparent)]
    RootKey(#[from] CryptoError),
    #[error("cannot open {what}: {source}")]
    Storage { what: String, source: StoreError },
    #[error(transparent)]
    KeyCheck(#[from] KeyCheckError),
}

/// Why a running server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("flushing storage at shutdown failed: {0}")]
    Close(StoreError),
}

/// A built service: its state (service, idempotency, authenticator, limits) and storage.
#[derive(Debug, Clone)]
pub struct App {
    pub state: AppState,
    pub storage: Storage,
    pub config: Config,
}

/// Builds an `App` from a configuration; tests may give the clock and the storage.
#[derive(Debug)]
pub struct AppBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    storage: Option<Storage>,
}

impl App {
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            config,
            clock: Arc::new(SystemClock),
            storage: None,
        }
    }

    /// The HTTP service.
    pub fn router(&self) -> Router {
        secretstore_api::router(self.state.clone())
    }
}

impl Config {
    /// Refuses what this version cannot run, before anything is opened or created.
    pub fn check(&self) -> Result<(), StartError> {
        if !self.dev {
            return Err(StartError::ProductionUnavailable);
        }
        Ok(())
    }
}

impl AppBuilder {
    /// The clock expiry and idempotency are decided against (tests move a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Storage already open, instead of opening the configuration's.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }

    pub async fn build(self) -> Result<App, StartError> {
        let AppBuilder {
            config,
            clock,
            storage,
        } = self;
        config.check()?;
        let root_key = load_root_key(&config.root_key)?;
        let envelope = Arc::new(Envelope::new(&root_key));
        drop(root_key);
        let storage = match storage {
            Some(storage) => storage,
            None => Storage::of(open_store(&config.storage).await.map_err(|source| {
                StartError::Storage {
                    what: describe(&config.storage),
                    source,
                }
            })?),
        };
        verify_root_key(&*storage.meta, &envelope).await?;
        let service = SecretService::new(
            Arc::clone(&storage.secrets),
            Arc::clone(&envelope),
            Arc::clone(&clock),
            config.limits,
        );
        let state = AppState {
            service,
            idempotency: Idempotency::new(Arc::clone(&storage.idempotency), envelope, clock),
            storage: Arc::clone(&storage.lifecycle),
            auth: Arc::new(DevAuthenticator),
            limits: config.http,
            rate_limit: config.rate_limit.map(RateLimit::per_second),
        };
        Ok(App {
            state,
            storage,
            config,
        })
    }
}

fn describe(storage: &StorageConfig) -> String {
    match storage {
        StorageConfig::Sqlite { dir, .. } => format!("the data directory {}", dir.display()),
    }
}

/// Serves `app` on `listener` with the background sweep until `shutdown`, then finishes
/// in-flight requests and closes storage (flushing queued writes).
pub async fn run(app: App, listener: TcpListener, shutdown: Shutdown) -> Result<(), RunError> {
    let sweeper = tokio::spawn(sweep(app.state.clone(), app.config.sweep_interval));
    let served = secretstore_api::serve(listener, app.router(), app.config.http, shutdown).await;
    sweeper.abort();
    served?;
    tracing::info!("in-flight requests finished; flushing storage");
    app.storage.lifecycle.close().await.map_err(RunError::Close)
}

/// Deletes expired secrets and stale kept answers on a fixed interval (they are already
/// invisible to every request; the sweep reclaims the space), and lets the rate limiter forget
/// idle credentials.
async fn sweep(state: AppState, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match state.service.purge_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept expired secrets"),
            Err(err) => tracing::warn!(error = %err, "sweeping expired secrets failed"),
        }
        if let Err(err) = state.idempotency.purge_stale().await {
            tracing::warn!(error = %err, "sweeping stale idempotent answers failed");
        }
        if let Some(limit) = &state.rate_limit {
            limit.forget_idle();
        }
    }
}
