//! What the server counts and measures for Prometheus: the name and meaning of every metric
//! (`CATALOGUE`), and the functions every layer records through, from the HTTP edge down to a
//! storage backend's writer thread, which is why this lives in the core crate that all of them
//! reach. It records through the `metrics` facade only: which exporter renders the numbers (the
//! admin listener's `GET /metrics`, `secretstore_api::metrics`) is not known here.
//!
//! Recording sits on hot paths (a find is served in a few microseconds), so nothing here looks
//! a metric up by name or builds a label per event: `enable` registers every handle once, and
//! every label value is a `&'static str` of a fixed set. Until `enable` runs (in dev mode
//! without an admin listener it never does) every recording function is one atomic load and
//! a branch: a handle registered before the binary installs its recorder would stay bound to
//! the facade's no-op recorder for good, so none is.
//!
//! The HTTP request counters and latencies are kept by `secretstore_api::metrics`, whose labels
//! come from the API's route tables; their names are here with the others.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::error::StoreError;

/// Requests answered, by operation (the audit log's name, a probe's, or `unknown`) and status.
pub const HTTP_REQUESTS: &str = "secretstore_http_requests_total";
/// Time from a request's arrival to its answer, by operation.
pub const HTTP_REQUEST_DURATION: &str = "secretstore_http_request_duration_seconds";
/// Secrets in storage, expired ones not yet swept included; read at scrape time.
pub const SECRETS_STORED: &str = "secretstore_secrets_stored";
/// Expired secrets deleted by the background sweep.
pub const EXPIRED_SECRETS_PURGED: &str = "secretstore_expired_secrets_purged_total";
/// Writes that shared one transaction (one fsync) of the SQLite writer.
pub const GROUP_COMMIT_BATCH_SIZE: &str = "secretstore_group_commit_batch_size";
/// Requests answered with the answer kept for their `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYS: &str = "secretstore_idempotent_replays_total";
/// Requests refused by the per-credential rate limit.
pub const RATE_LIMITED: &str = "secretstore_rate_limited_total";
/// Requests refused for their credential, by reason (`AuthFailure`).
pub const AUTH_FAILURES: &str = "secretstore_auth_failures_total";
/// Audit records that could not be written.
pub const AUDIT_WRITE_FAILURES: &str = "secretstore_audit_write_failures_total";
/// Storage failures answered 5xx, by kind (`StorageFailure`).
pub const STORAGE_ERRORS: &str = "secretstore_storage_errors_total";
/// PostgreSQL connections of this server's pool, by state (`idle`, `in_use`); read at scrape
/// time.
pub const PG_POOL_CONNECTIONS: &str = "secretstore_pg_pool_connections";
/// The most connections this server's PostgreSQL pool opens; read at scrape time.
pub const PG_POOL_MAX: &str = "secretstore_pg_pool_max";

/// What a metric is, for the exposition's `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: name, kind, label names and the `# HELP` text.
pub const CATALOGUE: &[(&str, Kind, &[&str], &str)] = &[
    (
        HTTP_REQUESTS,
        Kind::Counter,
        &["operation", "status"],
        "Requests answered, by operation (as the audit log names it, healthz, readyz or unknown) and HTTP status.",
    ),
    (
        HTTP_REQUEST_DURATION,
        Kind::Histogram,
        &["operation"],
        "Seconds from a request's arrival to its answer, by operation.",
    ),
    (
        SECRETS_STORED,
        Kind::Gauge,
        &[],
        "Secrets in storage, expired ones the sweep has not yet deleted included.",
    ),
    (
        EXPIRED_SECRETS_PURGED,
        Kind::Counter,
        &[],
        "Expired secrets deleted by the background sweep.",
    ),
    (
        GROUP_COMMIT_BATCH_SIZE,
        Kind::Histogram,
        &[],
        "Writes committed together in one SQLite transaction (one fsync).",
    ),
    (
        IDEMPOTENT_REPLAYS,
        Kind::Counter,
        &[],
        "Requests answered with the answer kept for their Idempotency-Key.",
    ),
    (
        RATE_LIMITED,
        Kind::Counter,
        &[],
        "Requests refused by the per-credential rate limit (429).",
    ),
    (
        AUTH_FAILURES,
        Kind::Counter,
        &["reason"],
        "Requests refused for their credential or admin token, by reason.",
    ),
    (
        AUDIT_WRITE_FAILURES,
        Kind::Counter,
        &[],
        "Audit records that could not be written.",
    ),
    (
        STORAGE_ERRORS,
        Kind::Counter,
        &["kind"],
        "Storage failures answered with a 5xx, by kind.",
    ),
    (
        PG_POOL_CONNECTIONS,
        Kind::Gauge,
        &["state"],
        "Connections of this server's PostgreSQL pool, idle or in use.",
    ),
    (
        PG_POOL_MAX,
        Kind::Gauge,
        &[],
        "The most connections this server's PostgreSQL pool opens.",
    ),
];

/// Why a request was refused for its credential: the `reason` label of `AUTH_FAILURES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No API key given.
    Missing,
    /// Something that cannot be an API key.
    Malformed,
    /// A well-formed key this server did not issue (or whose app is gone).
    Unknown,
    /// A revoked key, a roll whose grace is over, or an ended session.
    Ended,
    /// `Stripe-Account` is not an account id.
    AccountInvalid,
    /// The credential may not act for the account it named.
    AccountDenied,
    /// An admin API request without the admin token, or with another.
    AdminToken,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 7] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Unknown,
        AuthFailure::Ended,
        AuthFailure::AccountInvalid,
        AuthFailure::AccountDenied,
        AuthFailure::AdminToken,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Ended => "ended",
            AuthFailure::AccountInvalid => "account_invalid",
            AuthFailure::AccountDenied => "account_denied",
            AuthFailure::AdminToken => "admin_token",
        }
    }
}

/// A storage failure that became a 5xx: the `kind` label of `STORAGE_ERRORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFailure {
    /// `StoreError::Unavailable`: a full or read-only disk, a database that is down (503).
    Unavailable,
    /// `StoreError::Internal`: a damaged database or a bug (500).
    Internal,
    /// `StoreError::Seal`: sealing a payload failed inside a write (500).
    Seal,
    /// A stored payload or kept idempotent answer failed to open: tampering, or another root
    /// key's data (500).
    Unsealable,
}

impl StorageFailure {
    pub const ALL: [StorageFailure; 4] = [
        StorageFailure::Unavailable,
        StorageFailure::Internal,
        StorageFailure::Seal,
        StorageFailure::Unsealable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StorageFailure::Unavailable => "unavailable",
            StorageFailure::Internal => "internal",
            StorageFailure::Seal => "seal",
            StorageFailure::Unsealable => "unsealable",
        }
    }

    /// The failure `err` is, if it is one of storage (rather than a refusal a client caused,
    /// such as a full scope).
    pub fn of(err: &StoreError) -> Option<Self> {
        match err {
            StoreError::Unavailable(_) => Some(StorageFailure::Unavailable),
            StoreError::Internal(_) => Some(StorageFailure::Internal),
            StoreError::Seal(_) => Some(StorageFailure::Seal),
            StoreError::ScopeFull { .. }
            | StoreError::CursorNotFound { .. }
            | StoreError::AlreadyExists(_)
            | StoreError::Missing(_)
            | StoreError::Unsupported(_) => None,
        }
    }
}

/// The size of a group commit, as the histogram's bucket bounds: powers of two up to the
/// writer's default batch of 512.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every handle, registered once.
#[derive(Debug)]
struct Handles {
    purged: Counter,
    batch_size: Histogram,
    replays: Counter,
    rate_limited: Counter,
    auth: [Counter; AuthFailure::ALL.len()],
    audit: Counter,
    storage: [Counter; StorageFailure::ALL.len()],
    secrets_stored: Gauge,
    /// Registered by the first report of a pool, so a server on SQLite shows no pool at all.
    pool: OnceLock<PoolGauges>,
}

#[derive(Debug)]
struct PoolGauges {
    idle: Gauge,
    in_use: Gauge,
    max: Gauge,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// Registers every handle with the recorder installed now, and describes every metric; the
/// recording functions do nothing before. Call it once the recorder is installed; later calls
/// change nothing.
pub fn enable() {
    HANDLES.get_or_init(|| {
        for &(name, kind, _, help) in CATALOGUE {
            let unit = (name == HTTP_REQUEST_DURATION).then_some(Unit::Seconds);
            match (kind, unit) {
                (Kind::Counter, _) => metrics::describe_counter!(name, help),
                (Kind::Gauge, _) => metrics::describe_gauge!(name, help),
                (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
                (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
            }
        }
        Handles {
            purged: metrics::counter!(EXPIRED_SECRETS_PURGED),
            batch_size: metrics::histogram!(GROUP_COMMIT_BATCH_SIZE),
            replays: metrics::counter!(IDEMPOTENT_REPLAYS),
            rate_limited: metrics::counter!(RATE_LIMITED),
            auth: AuthFailure::ALL.map(|r| metrics::counter!(AUTH_FAILURES, "reason" => r.label())),
            audit: metrics::counter!(AUDIT_WRITE_FAILURES),
            storage: StorageFailure::ALL
                .map(|k| metrics::counter!(STORAGE_ERRORS, "kind" => k.label())),
            secrets_stored: metrics::gauge!(SECRETS_STORED),
            pool: OnceLock::new(),
        }
    });
}

/// Whether `enable` has run.
pub fn enabled() -> bool {
    HANDLES.get().is_some()
}

fn handles() -> Option<&'static Handles> {
    HANDLES.get()
}

/// The background sweep deleted `count` expired secrets.
pub fn expired_secrets_purged(count: u64) {
    if let Some(h) = handles() {
        h.purged.increment(count);
    }
}

/// The SQLite writer ran `jobs` writes in one transaction.
pub fn group_commit(jobs: usize) {
    if let Some(h) = handles() {
        h.batch_size.record(jobs as f64);
    }
}

/// A request was answered with its key's kept answer.
pub fn idempotent_replay() {
    if let Some(h) = handles() {
        h.replays.increment(1);
    }
}

/// A request was refused by the rate limit.
pub fn rate_limited() {
    if let Some(h) = handles() {
        h.rate_limited.increment(1);
    }
}

/// A request was refused for its credential.
pub fn auth_failure(reason: AuthFailure) {
    if let Some(h) = handles() {
        h.auth[reason as usize].increment(1);
    }
}

/// An audit record could not be written.
pub fn audit_write_failed() {
    if let Some(h) = handles() {
        h.audit.increment(1);
    }
}

/// A storage error is becoming an answer: counted if it is a failure of storage (a 5xx), not a
/// refusal a client caused.
pub fn storage_error(err: &StoreError) {
    if let (Some(h), Some(kind)) = (handles(), StorageFailure::of(err)) {
        h.storage[kind as usize].increment(1);
    }
}

/// A stored payload or kept idempotent answer failed to open, and the request is answered 500.
pub fn payload_unsealable() {
    if let Some(h) = handles() {
        h.storage[StorageFailure::Unsealable as usize].increment(1);
    }
}

/// How many secrets storage holds, counted for a scrape.
pub fn secrets_stored(count: u64) {
    if let Some(h) = handles() {
        h.secrets_stored.set(count as f64);
    }
}

/// The state of a PostgreSQL connection pool, read for a scrape.
pub fn pg_pool(idle: usize, in_use: usize, max: usize) {
    if let Some(h) = handles() {
        let pool = h.pool.get_or_init(|| PoolGauges {
            idle: metrics::gauge!(PG_POOL_CONNECTIONS, "state" => "idle"),
            in_use: metrics::gauge!(PG_POOL_CONNECTIONS, "state" => "in_use"),
            max: metrics::gauge!(PG_POOL_MAX),
        });
        pool.idle.set(idle as f64);
        pool.in_use.set(in_use as f64);
        pool.max.set(max as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_prefixed_and_listed_once() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|m| m.0).collect();
        assert!(names.iter().all(|n| n.starts_with("secretstore_")));
        for &(name, kind, _, _) in CATALOGUE {
            assert_eq!(name.ends_with("_total"), kind == Kind::Counter, "{name}");
        }
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }

    #[test]
    fn labels_index_their_handles() {
        for (n, reason) in AuthFailure::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, n);
        }
        for (n, kind) in StorageFailure::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, n);
        }
    }

    #[test]
    fn only_failures_of_storage_count_as_storage_errors() {
        assert_eq!(
            StorageFailure::of(&StoreError::Unavailable("disk full".into())),
            Some(StorageFailure::Unavailable)
        );
        assert_eq!(
            StorageFailure::of(&StoreError::Internal("damaged".into())),
            Some(StorageFailure::Internal)
        );
        assert_eq!(StorageFailure::of(&StoreError::ScopeFull { max: 1 }), None);
        assert_eq!(StorageFailure::of(&StoreError::Missing("x".into())), None);
    }
}
