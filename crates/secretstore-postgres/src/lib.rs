//! secretstore's `Store` on PostgreSQL, for when one machine is not enough: any number of
//! stateless `secretstore serve` processes share one database, and together they behave as one
//! store (the `store` module's "rules across processes").
//!
//! Each handle has a pool of connections (deadpool) with every statement prepared once per
//! connection. Nothing a request reads is answered from this process's memory except the three
//! directory look-ups of `DirectoryCache`, which is cleared whenever any server changes the
//! directory: directory writes `NOTIFY` in their transaction, and a listener connection of each
//! handle clears the cache on every notification (and while it is not connected, the cache is
//! not used at all). Secrets are never cached: a replace or delete through one server is never
//! answered stale by another.
//!
//! Every statement runs under `statement_timeout`, every connection under
//! `synchronous_commit = on` (an acknowledged write is on the database's disk, whatever the
//! server's default), and a database that cannot be reached, is restarting or failing over is
//! `StoreError::Unavailable` (503 with `Stripe-Should-Retry`) until it is back; the pool then
//! replaces its broken connections by itself. It implements every storage trait of
//! `secretstore_core::store` and passes the conformance suite, the checks of two handles on one
//! database included (`tests/conformance.rs`).

mod audit;
mod directory;
mod errors;
mod idempotency;
mod keys;
mod listener;
mod schema;
mod secrets;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secretstore_core::audit::Changed;
use secretstore_core::write_health::PROBE_NAME;
use secretstore_core::{
    Account, AccountId, ApiKeyId, ApiKeyRecord, App, AppId, AtomicWrites, AuditAnchor, AuditAppend,
    AuditChain, AuditEntry, AuditFilter, AuditStore, ClaimTimes, Completed, Credential,
    CredentialId, Directory, DirectoryCache, DirectoryPage, IdempotencyClaim, IdempotencyKey,
    IdempotencyStore, Installation, InstallationFilter, InstallationId, KeptAnswer, KeyOwner,
    KeyStore, Lifecycle, ListQuery, Listed, MetaStore, Namespace, PutRequest, Removed, Reseal,
    RootUse, SealedSecret, SecretAddress, SecretId, SecretStore, SessionId, StoreError, StoredKey,
    StoredList, User, UserId, UserSession, Write, WriteHealth, Written,
};
use secretstore_crypto::KeyId;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

pub use schema::{MIGRATIONS, SCHEMA_VERSION};

use crate::errors::{pg_failure, pool_failure, shutting_down};
use crate::idempotency::Claims;

/// How to run the store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections this handle opens at once.
    pub pool_size: usize,
    /// Longest any one statement may run before the database cancels it (answered 503).
    pub statement_timeout: Duration,
    /// Longest a request waits for a connection, or for a new one to open.
    pub connect_timeout: Duration,
    /// Most expired rows one purge step deletes.
    pub purge_batch: u32,
    /// How long a cached directory look-up is believed even without a notification: the bound
    /// on staleness should a notification ever be lost.
    pub directory_cache_max_age: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            purge_batch: 500,
            directory_cache_max_age: Duration::from_secs(1),
        }
    }
}

/// The PostgreSQL-backed store: every storage trait of `secretstore_core::store`. See the crate
/// documentation.
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    /// Off while the listener is not connected (see `listener`).
    cache: Arc<DirectoryCache>,
    /// Moved on by the listener when a removal through any server destroyed keys
    /// (`KeyStore::destroyed_generation`).
    keys_destroyed: Arc<AtomicU64>,
    claims: Claims,
    /// Whether the latest writes succeeded, for the readiness check.
    health: WriteHealth,
    listener: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Records appended alone go to `audit::group_commit`, which appends everything queued in
    /// one transaction: the chain's head is locked once for many records.
    audit_queue: tokio::sync::mpsc::UnboundedSender<audit::Queued>,
    closed: AtomicBool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's configuration holds the password: not shown.
        f.debug_struct("PostgresStore")
            .field("options", &self.options)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Reads a database URL (`postgres://user@host:port/db?...`, or libpq's `key=value` form) into
/// a connection configuration with this store's session settings. The error never repeats the
/// URL, which may hold a password.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("the database URL is not valid: {e}"))
}

impl PostgresStore {
    /// Connects, applies pending migrations (safely, whatever other servers do at the same
    /// time) and starts the directory listener. Must run inside a tokio runtime.
    pub async fn open(
        mut config: tokio_postgres::Config,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        session_settings(&mut config, &options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection whose socket closed (the database restarted) is dropped on its
                // way out of the pool; one that broke unseen fails its first statement, which
                // is answered 503, and is then closed too.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the database pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| pool_failure(&e))?;
        schema::migrate(&mut client).await?;
        drop(client);

        let cache = Arc::new(DirectoryCache::with_max_age(Some(
            options.directory_cache_max_age,
        )));
        // Off until the listener is connected.
        cache.set_enabled(false);
        let keys_destroyed = Arc::new(AtomicU64::new(0));
        let listener = tokio::spawn(listener::run(
            config,
            Arc::clone(&cache),
            Arc::clone(&keys_destroyed),
        ));
        let (audit_queue, queued) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(audit::group_commit(pool.clone(), queued));
        tracing::info!(pool_size = options.pool_size, "postgres store open");
        Ok(PostgresStore {
            pool,
            options,
            cache,
            keys_destroyed,
            claims: Claims::default(),
            health: WriteHealth::default(),
            listener: parking_lot::Mutex::new(Some(listener)),
            audit_queue,
            closed: AtomicBool::new(false),
        })
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<Object, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        self.pool.get().await.map_err(|e| pool_failure(&e))
    }

    /// Notes a write's outcome for the readiness check, and passes it on.
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.health.note(&result);
        result
    }

    /// Runs a purge statement (`$1`: the instant, `$2`: the most rows a step deletes) until a
    /// step deletes less than a full step, each step its own short transaction.
    async fn purge_in_steps(
        &self,
        what: &'static str,
        sql: &'static str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let limit = i64::from(self.options.purge_batch.max(1));
        let mut total = 0;
        loop {
            let client = self.client().await?;
            let removed = secrets::execute(&client, sql, &[&before, &limit]).await?;
            total += removed;
            if removed < limit as u64 {
                if total > 0 {
                    tracing::debug!(removed = total, what, "purged");
                }
                return Ok(total);
            }
        }
    }
}

/// This store's session settings, added to whatever the URL sets: the statement timeout, a
/// durable commit, no notices in the log (`CREATE ... IF NOT EXISTS` says it skipped), a name the operator sees in `pg_stat_activity`, a connect timeout, and TCP
/// keepalives short enough to notice a database that vanished without closing its sockets.
fn session_settings(config: &mut tokio_postgres::Config, options: &PostgresOptions) {
    let ours = format!(
        "-c statement_timeout={} -c synchronous_commit=on -c idle_in_transaction_session_timeout={} \
         -c client_min_messages=warning",
        options.statement_timeout.as_millis(),
        options.statement_timeout.as_millis().saturating_mul(2).max(1),
    );
    let merged = match config.get_options() {
        Some(theirs) if !theirs.is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    config.options(merged);
    if config.get_application_name().is_none() {
        config.application_name("secretstore");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    config.keepalives_interval(Duration::from_secs(5));
    config.keepalives_retries(3);
}

/// Runs `$body` (a `Result`, using `$tx`: the transaction) in a transaction of its own on a
/// connection of the pool, and commits it if the body succeeded. On failure the transaction is
/// dropped, which rolls it back.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let transaction = client.transaction().await.map_err(|e| pg_failure(&e))?;
        let $tx = &transaction;
        let value = $body?;
        transaction.commit().await.map_err(|e| pg_failure(&e))?;
        Ok(value)
    }};
}

/// A directory write: `in_tx!` with a notification to every server, sent on commit. This
/// handle's own cache is cleared before the answer, whether the commit went through or not.
/// The admin request's audit record goes in the same transaction, when the write changed
/// something (`audit::directory_record`).
macro_rules! dir_write {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let record = secretstore_core::audit::directory_record();
        let result: Result<_, StoreError> = async {
            in_tx!($self, |$tx| {
                let value = $body;
                match value {
                    Ok(value) => {
                        let entry = match record {
                            Some((append, slot)) if Changed::changed(&value) => {
                                Some((audit::append($tx, append).await?, slot))
                            }
                            _ => None,
                        };
                        directory::notify_changed($tx)
                            .await
                            .map(|()| (value, entry))
                    }
                    Err(e) => Err(e),
                }
            })
        }
        .await;
        $self.cache.clear();
        $self.noted(result).map(|(value, entry)| {
            if let Some((entry, slot)) = entry {
                slot.mark_written(entry);
            }
            value
        })
    }};
}

#[async_trait]
impl SecretStore for PostgresStore {
    async fn put(&self, request: PutRequest) -> Result<SealedSecret, StoreError> {
        let result = async { in_tx!(self, |tx| secrets::put(tx, request).await) }.await;
        self.noted(result)
    }

    async fn get(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let client = self.client().await?;
        secrets::get(&client, address, now).await
    }

    async fn delete(
        &self,
        address: &SecretAddress,
        now: i64,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let result = async {
            let client = self.client().await?;
            secrets::delete(&client, address, now).await
        }
        .await;
        self.noted(result)
    }

    async fn list(&self, query: &ListQuery) -> Result<StoredList, StoreError> {
        let mut client = self.client().await?;
        secrets::list(&mut client, query).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.purge_in_steps("expired secrets", secrets::PURGE, now)
            .await
    }

    async fn count_secrets(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        secrets::count(&client).await
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn idempotency_claim(
        &self,
        key: &IdempotencyKey,
        at: ClaimTimes,
    ) -> Result<IdempotencyClaim, StoreError> {
        let result = async {
            let client = self.client().await?;
            idempotency::claim(&client, &self.claims, key, at).await
        }
        .await;
        self.noted(result)
    }

    async fn idempotency_complete(
        &self,
        key: &IdempotencyKey,
        answer: KeptAnswer,
        quota: u64,
    ) -> Result<Completed, StoreError> {
        let result = async {
            let mut client = self.client().await?;
            idempotency::complete(&mut client, &self.claims, key, &answer, quota).await
        }
        .await;
        self.noted(result)
    }

    async fn idempotency_release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let client = self.client().await?;
        idempotency::release(&client, &self.claims, key).await
    }

    async fn idempotency_purge(&self, kept_after: i64) -> Result<u64, StoreError> {
        let limit = i64::from(self.options.purge_batch.max(1));
        let mut total = 0;
        loop {
            let mut client = self.client().await?;
            match idempotency::purge_step(&mut client, kept_after, limit).await? {
                Some(removed) if removed == limit as u64 => total += removed,
                Some(removed) => return Ok(total + removed),
                // Another server is purging: it finishes the work.
                None => return Ok(total),
            }
        }
    }
}

#[async_trait]
impl MetaStore for PostgresStore {
    async fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row =
            secrets::query_opt(&client, "SELECT value FROM meta WHERE name = $1", &[&name]).await?;
        row.map(|r| r.try_get::<_, Option<Vec<u8>>>(0))
            .transpose()
            .map(Option::flatten)
            .map_err(|e| pg_failure(&e))
    }

    async fn meta_put(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let result = async {
            let client = self.client().await?;
            secrets::execute(
                &client,
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&name, &value],
            )
            .await
        }
        .await;
        self.noted(result).map(|_| ())
    }
}

/// A directory read on a connection of the pool.
macro_rules! read_dir {
    ($self:ident, $f:ident($($arg:expr),*)) => {{
        let client = $self.client().await?;
        directory::$f(&client, $($arg),*).await
    }};
}

#[async_trait]
impl Directory for PostgresStore {
    async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_account(tx, &account).await)
    }
    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        read_dir!(self, account(id))
    }
    async fn accounts(&self, page: &DirectoryPage) -> Result<Listed<Account>, StoreError> {
        read_dir!(self, accounts(page))
    }
    async fn remove_account(&self, id: &AccountId) -> Result<Option<Removed>, StoreError> {
        dir_write!(self, |tx| directory::remove_account(tx, id).await)
    }

    async fn create_app(&self, app: App) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_app(tx, &app).await)
    }
    async fn app(&self, id: &AppId) -> Result<Option<App>, StoreError> {
        self.cache
            .app_or(id, || async { read_dir!(self, app(id)) })
            .await
    }
    async fn apps(&self, page: &DirectoryPage) -> Result<Listed<App>, StoreError> {
        read_dir!(self, apps(page))
    }
    async fn remove_app(&self, id: &AppId) -> Result<Option<Removed>, StoreError> {
        dir_write!(self, |tx| directory::remove_app(tx, id).await)
    }

    async fn create_installation(&self, installation: Installation) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_installation(tx, &installation)
            .await)
    }
    async fn installation(&self, id: &InstallationId) -> Result<Option<Installation>, StoreError> {
        read_dir!(self, installation(id))
    }
    async fn installations(
        &self,
        filter: &InstallationFilter,
        page: &DirectoryPage,
    ) -> Result<Listed<Installation>, StoreError> {
        read_dir!(self, installations(filter, page))
    }
    async fn remove_installation(
        &self,
        id: &InstallationId,
    ) -> Result<Option<Removed>, StoreError> {
        dir_write!(self, |tx| directory::remove_installation(tx, id).await)
    }
    async fn installed(&self, app: &AppId, account: &AccountId) -> Result<bool, StoreError> {
        self.cache
            .installed_or(app, account, || async {
                read_dir!(self, installed(app, account))
            })
            .await
    }

    async fn create_user(&self, user: User) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_user(tx, &user).await)
    }
    async fn user(&self, account: &AccountId, id: &UserId) -> Result<Option<User>, StoreError> {
        read_dir!(self, user(account, id))
    }
    async fn users(
        &self,
        account: &AccountId,
        page: &DirectoryPage,
    ) -> Result<Listed<User>, StoreError> {
        read_dir!(self, users(account, page))
    }
    async fn remove_user(
        &self,
        account: &AccountId,
        id: &UserId,
    ) -> Result<Option<Removed>, StoreError> {
        dir_write!(self, |tx| directory::remove_user(tx, account, id).await)
    }

    async fn create_key(&self, key: ApiKeyRecord) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_key(tx, &key).await)
    }
    async fn key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        read_dir!(self, key(id))
    }
    async fn keys(
        &self,
        app: &AppId,
        page: &DirectoryPage,
    ) -> Result<Listed<ApiKeyRecord>, StoreError> {
        read_dir!(self, keys(app, page))
    }
    async fn roll_key(
        &self,
        id: &ApiKeyId,
        expires_at: i64,
        new: ApiKeyRecord,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        dir_write!(self, |tx| directory::roll_key(tx, id, expires_at, &new)
            .await)
    }
    async fn revoke_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        dir_write!(self, |tx| directory::revoke_key(tx, id).await)
    }

    async fn create_session(&self, session: UserSession) -> Result<(), StoreError> {
        dir_write!(self, |tx| directory::create_session(tx, &session).await)
    }
    async fn session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        read_dir!(self, session(id))
    }
    async fn remove_session(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        dir_write!(self, |tx| directory::remove_session(tx, id).await)
    }

    async fn credential(&self, hash: &CredentialId) -> Result<Option<Credential>, StoreError> {
        self.cache
            .credential_or(hash, || async { read_dir!(self, credential(hash)) })
            .await
    }
}

#[async_trait]
impl AtomicWrites for PostgresStore {
    async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        let keys = secrets::scope_lock_keys(&writes);
        let result = async {
            in_tx!(self, |tx| {
                secrets::lock_scopes(tx, &keys).await?;
                secrets::commit(tx, writes).await
            })
        }
        .await;
        self.noted(result)
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn keys_of(&self, owner: &KeyOwner) -> Result<Vec<StoredKey>, StoreError> {
        let client = self.client().await?;
        keys::keys_of(&client, owner).await
    }

    async fn add_key(&self, key: StoredKey) -> Result<StoredKey, StoreError> {
        let result = async { in_tx!(self, |tx| keys::add_key(tx, &key).await) }.await;
        self.noted(result)
    }

    async fn keys_not_under(&self, root: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        let client = self.client().await?;
        keys::keys_not_under(&client, root, limit).await
    }

    async fn rewrap_key(&self, key: &StoredKey, to: (KeyId, Vec<u8>)) -> Result<bool, StoreError> {
        let result = async {
            let client = self.client().await?;
            keys::rewrap_key(&client, key, &to).await
        }
        .await;
        self.noted(result)
    }

    async fn keys_by_root(&self) -> Result<Vec<RootUse>, StoreError> {
        let client = self.client().await?;
        keys::keys_by_root(&client).await
    }

    async fn stale_sealed(
        &self,
        namespace: &Namespace,
        current: [&[u8]; 2],
        after: Option<&SecretId>,
        limit: u32,
    ) -> Result<Vec<SealedSecret>, StoreError> {
        let client = self.client().await?;
        keys::stale_sealed(&client, namespace, current, after, limit).await
    }

    /// Secrets are never cached (see the crate documentation), so a reseal, like any other
    /// write of a secret, has no cache to clear on this server or another.
    async fn reseal(&self, reseals: Vec<Reseal>) -> Result<u64, StoreError> {
        if reseals.is_empty() {
            return Ok(0);
        }
        let result = async { in_tx!(self, |tx| keys::reseal(tx, reseals).await) }.await;
        self.noted(result)
    }

    async fn namespaces(
        &self,
        after: Option<&Namespace>,
        limit: u32,
    ) -> Result<Vec<Namespace>, StoreError> {
        let client = self.client().await?;
        keys::namespaces(&client, after, limit).await
    }

    async fn users_with_keys(
        &self,
        after: Option<&(AccountId, UserId)>,
        limit: u32,
    ) -> Result<Vec<(AccountId, UserId)>, StoreError> {
        let client = self.client().await?;
        keys::users_with_keys(&client, after, limit).await
    }

    /// Any number of servers share one database, each caching namespace keys.
    fn shared(&self) -> bool {
        true
    }

    fn destroyed_generation(&self) -> u64 {
        self.keys_destroyed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit_append(&self, append: AuditAppend) -> Result<AuditEntry, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.audit_queue
            .send((append, reply))
            .map_err(|_| shutting_down())?;
        let result = answer.await.unwrap_or_else(|_| Err(shutting_down()));
        self.noted(result)
    }

    async fn audit_scan(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client().await?;
        audit::scan(&client, after, limit).await
    }

    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.client().await?;
        audit::search(&client, filter).await
    }

    async fn audit_anchor(&self) -> Result<Option<AuditAnchor>, StoreError> {
        let client = self.client().await?;
        audit::anchor(&client).await
    }

    async fn audit_prune(
        &self,
        before_ms: i64,
        now_ms: i64,
        chain: Arc<AuditChain>,
    ) -> Result<u64, StoreError> {
        let result =
            async { in_tx!(self, |tx| audit::prune(tx, before_ms, now_ms, &chain).await) }.await;
        self.noted(result)
    }
}

#[async_trait]
impl Lifecycle for PostgresStore {
    /// Ready when a connection answers and the database takes writes: not a standby (during a
    /// failover, say), not read-only for this server's sessions, and writes succeeding
    /// (`WriteHealth::check`: this server's latest write if recent, else a write of its own).
    async fn check_ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = secrets::query_opt(
            &client,
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .await?;
        let get = |e: tokio_postgres::Error| pg_failure(&e);
        let (standby, read_only) = match row {
            Some(row) => (
                row.try_get::<_, bool>(0).map_err(get)?,
                row.try_get::<_, bool>(1).map_err(get)?,
            ),
            None => (false, false),
        };
        if standby {
            return Err(StoreError::Unavailable(
                "the database is a read-only standby".into(),
            ));
        }
        if read_only {
            return Err(StoreError::Unavailable(
                "the database is read-only (default_transaction_read_only)".into(),
            ));
        }
        drop(client);
        self.health
            .check(|| self.meta_put(PROBE_NAME, Vec::new()))
            .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.close();
        if let Some(listener) = self.listener.lock().take() {
            listener.abort();
        }
        tracing::info!("postgres store closed");
        Ok(())
    }

    /// The pool as deadpool sees it: connections open and waiting in it (idle), open and
    /// taken (in use), and the most it opens (the directory listener's own connection is not
    /// one of them).
    fn record_gauges(&self) {
        let status = self.pool.status();
        let idle = status.available;
        secretstore_core::metrics::pg_pool(idle, status.size.saturating_sub(idle), status.max_size);
    }

    /// The database is PostgreSQL's to copy: pg_dump takes a consistent copy of it while the
    /// servers run, and no server could stream one more cheaply than that.
    async fn snapshot(&self) -> Result<std::fs::File, StoreError> {
        Err(StoreError::Unsupported(
            "this server keeps its data in PostgreSQL, whose backups are taken with pg_dump \
             (see the README's Backups): restore the dump and start with the same root key"
                .into(),
        ))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.lock().take() {
            listener.abort();
        }
    }
}
