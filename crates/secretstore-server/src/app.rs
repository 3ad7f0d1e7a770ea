//! `App`: a configuration made into a service, and `run`, which serves it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use secretstore_api::admin::AdminState;
use secretstore_api::audit::Auditor;
use secretstore_api::auth::DirectoryAuthenticator;
use secretstore_api::extract::BodyBudget;
use secretstore_api::metrics::Exposition;
use secretstore_api::tls::{ReloadingCert, TlsError};
use secretstore_api::{
    AppParts, AppState, Authenticator, DevAuthenticator, Idempotency, RateLimit, Shutdown,
};
use secretstore_core::{
    metrics, AuditChain, Clock, KeyError, KeyManager, SecretService, StoreError, SystemClock,
};
use secretstore_crypto::{CryptoError, NotPrivate, RootKey};
use tokio::net::TcpListener;

use crate::config::{AuditConfig, Config, RootKeySource, StorageConfig};
use crate::keys::load_keyring;
use crate::storage::{check_private, open_store, Storage};

/// Why a server could not start; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "production mode needs the admin API's token, which provisions apps, keys and sessions: \
         give --admin-token-file PATH or set SECRETSTORE_ADMIN_TOKEN (`secretstore admin \
         token-generate` makes one), or start with --dev for local development"
    )]
    AdminTokenMissing,
    #[error(
        "the admin listener ({admin}) must not be the public listener's address; give \
         --admin-listen another address (the default is 127.0.0.1:12112)"
    )]
    AdminOnPublicAddress { admin: std::net::SocketAddr },
    #[error(transparent)]
    NotPrivate(#[from] NotPrivate),
    #[error(transparent)]
    RootKey(#[from] CryptoError),
    #[error(
        "dev mode: the root key file {} is missing, but {} holds data sealed under a root key, \
         which a new key could not open; so none was generated. Put the root key back at {}, or \
         give it with --root-key-file or SECRETSTORE_ROOT_KEY; to start afresh instead, choose \
         an empty --data directory",
        key.display(), database.display(), key.display()
    )]
    DevRootKeyMissing {
        key: std::path::PathBuf,
        database: std::path::PathBuf,
    },
    /// The cause is part of the message, not an error `source`: a chain printed whole
    /// (`{:#}`) would say it twice.
    #[error("cannot open {what}: {cause}")]
    Storage { what: String, cause: StoreError },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("no root key was given")]
    NoRootKey,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "cannot open the audit log copy {target}: {cause}; give --audit-log a file this user \
         can append to, or - for standard output"
    )]
    AuditLog {
        target: String,
        cause: std::io::Error,
    },
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
    /// The admin API's state, when the configuration has an admin listener.
    pub admin: Option<AdminState>,
    /// The certificates of the public and admin listeners, when they serve TLS.
    pub certs: Certs,
    /// The key hierarchy; SIGHUP reads its root key sources again.
    pub keys: Arc<KeyManager>,
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

    /// The admin API's service, when configured.
    pub fn admin_router(&self) -> Option<Router> {
        self.admin.clone().map(secretstore_api::admin::router)
    }
}

impl Config {
    /// Refuses what cannot run, before anything is opened or created: production mode without
    /// an admin token, or an admin listener on the public address.
    pub fn check(&self, public: Option<std::net::SocketAddr>) -> Result<(), StartError> {
        if !self.dev && self.admin.is_none() {
            return Err(StartError::AdminTokenMissing);
        }
        if let (Some(admin), Some(public)) = (&self.admin, public) {
            let same_port = admin.listen.port() == public.port() && admin.listen.port() != 0;
            let overlapping = admin.listen.ip() == public.ip()
                || admin.listen.ip().is_unspecified()
                || public.ip().is_unspecified();
            if same_port && overlapping {
                return Err(StartError::AdminOnPublicAddress {
                    admin: admin.listen,
                });
            }
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
            mut config,
            clock,
            storage,
        } = self;
        config.check(None)?;
        if storage.is_none() {
            // Before the root key: a dev key is never generated into a directory that is not
            // private.
            check_private(&config.storage)?;
        }
        let ring = load_keyring(&config.root_keys, &config.storage, true)?;
        // A key from the environment is kept as the key itself, for a reload (SIGHUP) to use
        // again, and its text is wiped now (the variable is gone from the environment already),
        // rather than at exit.
        for source in &mut config.root_keys {
            if let RootKeySource::Env { variable, value } = source {
                let key = RootKey::parse(value, &format!("environment variable {variable}"))?;
                *source = RootKeySource::Key(key);
            }
        }
        let storage = match storage {
            Some(storage) => storage,
            None => Storage::of(open_store(&config.storage).await.map_err(|cause| {
                StartError::Storage {
                    what: describe(&config.storage),
                    cause,
                }
            })?),
        };
        let keys = Arc::new(
            KeyManager::start(
                ring,
                Arc::clone(&storage.keys),
                &*storage.meta,
                Arc::clone(&clock),
            )
            .await?,
        );
        // Which users have a key, read while the server serves: until then a user's first
        // secret reads the user's keys first, as it always could.
        tokio::spawn({
            let keys = Arc::clone(&keys);
            async move {
                let started = std::time::Instant::now();
                match keys.learn_users().await {
                    Ok(users) => tracing::info!(
                        users,
                        ms = started.elapsed().as_millis() as u64,
                        "learnt which users have a key"
                    ),
                    Err(error) => tracing::warn!(
                        %error,
                        "cannot learn which users have a key; every user's first secret reads first"
                    ),
                }
            }
        });
        let digest_key = keys.digest_key().clone();
        let auditor = match &config.audit {
            AuditConfig::Off => {
                tracing::warn!("auditing is off (--no-audit): no request is recorded");
                None
            }
            AuditConfig::On { log } => Some(Arc::new(
                Auditor::new(
                    Arc::clone(&storage.audit),
                    Arc::new(AuditChain::new(digest_key)),
                    Arc::clone(&clock),
                    log.clone(),
                )
                .map_err(|cause| StartError::AuditLog {
                    target: log
                        .as_ref()
                        .map_or_else(String::new, |target| target.to_string()),
                    cause,
                })?,
            )),
        };
        let service = SecretService::new(
            Arc::clone(&storage.secrets),
            Arc::clone(&storage.writes),
            Arc::clone(&keys),
            Arc::clone(&clock),
            config.limits,
        );
        let auth: Arc<dyn Authenticator> = if config.dev {
            Arc::new(DevAuthenticator)
        } else {
            Arc::new(DirectoryAuthenticator::new(
                Arc::clone(&storage.directory),
                Arc::clone(&clock),
            ))
        };
        // Metrics are recorded only where they can be read: on the admin listener.
        let admin = config.admin.as_ref().map(|admin| AdminState {
            directory: Arc::clone(&storage.directory),
            token_hash: admin.token_hash,
            clock: Arc::clone(&clock),
            limits: config.http,
            auditor: auditor.clone(),
            metrics: Exposition::new(
                secretstore_api::metrics::install(),
                Arc::clone(&storage.secrets),
                Arc::clone(&storage.lifecycle),
            ),
            keys: Arc::clone(&keys),
            service: service.clone(),
            storage: Arc::clone(&storage.lifecycle),
        });
        let state = AppState::from(AppParts {
            service,
            idempotency: Idempotency::new(
                Arc::clone(&storage.idempotency),
                Arc::clone(&keys),
                clock,
                config.idempotency_quota_bytes.map_or(u64::MAX, u64::from),
            ),
            storage: Arc::clone(&storage.lifecycle),
            auth,
            limits: config.http,
            rate_limit: config.rate_limit.map(RateLimit::per_second),
            bodies: BodyBudget::new(config.http.max_body_bytes_in_flight),
            auditor,
        });
        let certs = Certs {
            public: config.tls.clone().map(ReloadingCert::load).transpose()?,
            admin: config
                .admin
                .as_ref()
                .and_then(|a| a.tls.clone())
                .map(ReloadingCert::load)
                .transpose()?,
        };
        Ok(App {
            state,
            admin,
            certs,
            keys,
            storage,
            config,
        })
    }
}

fn describe(storage: &StorageConfig) -> String {
    match storage {
        StorageConfig::Sqlite { dir, .. } => format!("the data directory {}", dir.display()),
        StorageConfig::Postgres { config, .. } => format!(
            "the database {} (--database-url)",
            describe_database(config)
        ),
    }
}

/// A database as an operator recognises it, without the password: `host:port/dbname`.
pub fn describe_database(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("(the user's database)");
    format!("{host}:{port}/{dbname}")
}

/// The certificates a server's listeners serve, replaced by `reload` (SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct Certs {
    pub public: Option<Arc<ReloadingCert>>,
    pub admin: Option<Arc<ReloadingCert>>,
}

impl Certs {
    /// Reads every certificate again; one that fails keeps being served, and says why.
    pub fn reload(&self) {
        for (which, cert) in [("public", &self.public), ("admin", &self.admin)] {
            let Some(cert) = cert else { continue };
            match cert.reload() {
                Ok(()) => {
                    tracing::info!(listener = which, cert = %cert.files().cert.display(), "TLS certificate reloaded")
                }
                Err(err) => {
                    tracing::error!(listener = which, error = %err, "TLS certificate not reloaded; the previous one is still served")
                }
            }
        }
    }

    fn any(&self) -> bool {
        self.public.is_some() || self.admin.is_some()
    }
}

/// The listeners a server serves on: the public one, and the admin API's when configured.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Serves `app` on its listeners with the background sweep until `shutdown`, then finishes
/// in-flight requests and closes storage (flushing queued writes).
pub async fn run(app: App, listeners: Listeners, shutdown: Shutdown) -> Result<(), RunError> {
    let sweeper = tokio::spawn(sweep(app.state.clone(), app.config.sweep_interval));
    let upkeep = app
        .admin
        .as_ref()
        .map(|a| tokio::spawn(upkeep(a.metrics.clone())));
    // Always: SIGHUP's default would end the process, which an operator's reload must not.
    let reloader = tokio::spawn(reload_on_sighup(app.certs.clone(), app.reload_keys()));
    let acceptor =
        |cert: &Option<Arc<ReloadingCert>>| cert.as_ref().map(|c| c.acceptor()).transpose();
    let public_tls =
        acceptor(&app.certs.public).map_err(|e| RunError::Serve(std::io::Error::other(e)))?;
    let admin_tls =
        acceptor(&app.certs.admin).map_err(|e| RunError::Serve(std::io::Error::other(e)))?;
    let admin = match (listeners.admin, app.admin_router()) {
        (Some(listener), Some(router)) => Some(tokio::spawn(secretstore_api::serve(
            listener,
            router,
            app.config.http,
            shutdown.clone(),
            admin_tls,
        ))),
        _ => None,
    };
    let served = secretstore_api::serve(
        listeners.public,
        app.router(),
        app.config.http,
        shutdown,
        public_tls,
    )
    .await;
    reloader.abort();
    if let Some(admin) = admin {
        match admin.await {
            Ok(result) => result?,
            Err(err) => tracing::error!(error = %err, "the admin listener's task failed"),
        }
    }
    sweeper.abort();
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    served?;
    tracing::info!("in-flight requests finished; flushing storage");
    app.storage.lifecycle.close().await.map_err(RunError::Close)
}

/// Reads the certificates and the root key sources again on every SIGHUP.
async fn reload_on_sighup(certs: Certs, keys: impl Fn()) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!(
            "cannot listen for SIGHUP; TLS certificates and root keys will not be reloaded"
        );
        return;
    };
    while hangups.recv().await.is_some() {
        if certs.any() {
            certs.reload();
        }
        keys();
    }
}

impl App {
    /// What SIGHUP does to the root keys: loads the configured sources again (a new active
    /// version first, the old ones after it) and gives the ring to the key hierarchy. A source
    /// that fails keeps the previous ring, and says why.
    fn reload_keys(&self) -> impl Fn() + Send + 'static {
        let keys = Arc::clone(&self.keys);
        let sources = self.config.root_keys.clone();
        let storage = self.config.storage.clone();
        move || {
            let reloaded = load_keyring(&sources, &storage, false).and_then(|ring| {
                let active = ring.active().id();
                keys.reload_ring(ring)?;
                Ok(active)
            });
            match reloaded {
                Ok(active) => tracing::info!(%active, "root keys reloaded"),
                Err(err) => tracing::error!(
                    error = %err,
                    "root keys not reloaded; the previous ones stay in use"
                ),
            }
        }
    }
}

/// Folds the metrics' histogram samples into their buckets now and then, so they take bounded
/// memory however long nobody scrapes.
async fn upkeep(metrics: Exposition) {
    let mut ticks = tokio::time::interval(secretstore_api::metrics::UPKEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        metrics.run_upkeep();
    }
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
            Ok(removed) => {
                metrics::expired_secrets_purged(removed);
                tracing::info!(removed, "swept expired secrets");
            }
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
