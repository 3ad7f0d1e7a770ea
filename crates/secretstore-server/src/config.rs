//! The configuration of a server: every setting of `secretstore serve` in one type, with the
//! defaults the flags have.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use secretstore_api::audit::AuditLogTarget;
use secretstore_api::tls::TlsFiles;
use secretstore_api::HttpLimits;
use secretstore_core::Limits;
use secretstore_crypto::RootKey;
use secretstore_postgres::PostgresOptions;
use secretstore_sqlite::SqliteOptions;
use zeroize::Zeroizing;

/// Where secrets are stored.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// The embedded SQLite database in this data directory (created if missing).
    Sqlite {
        dir: PathBuf,
        options: SqliteOptions,
    },
    /// A PostgreSQL database that any number of servers share (its `Debug` hides the
    /// password).
    Postgres {
        config: Box<tokio_postgres::Config>,
        options: PostgresOptions,
    },
}

/// Where the root key comes from. Its `Debug` never shows key material.
#[derive(Clone)]
pub enum RootKeySource {
    /// A file only its owner may read.
    File(PathBuf),
    /// An environment variable's value (named, for messages; the value is never printed, and
    /// `App::build` wipes it once the root key is loaded).
    Env {
        variable: String,
        value: Zeroizing<String>,
    },
    /// Dev mode: this file, generated on first start.
    DevGenerated(PathBuf),
    /// A key already in memory (tests).
    Key(RootKey),
    /// An AES key in an HSM, used through PKCS#11; it never leaves the token.
    Pkcs11(Pkcs11Key),
}

/// Where a root key held in an HSM is: the PKCS#11 module (the vendor's library), the token
/// by label, the file holding the user PIN, and the key's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Key {
    pub module: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
    pub key_label: String,
}

impl std::fmt::Debug for RootKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootKeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            RootKeySource::Env { variable, .. } => f
                .debug_struct("Env")
                .field("variable", variable)
                .finish_non_exhaustive(),
            RootKeySource::DevGenerated(path) => f.debug_tuple("DevGenerated").field(path).finish(),
            RootKeySource::Key(key) => f.debug_tuple("Key").field(key).finish(),
            RootKeySource::Pkcs11(key) => f.debug_tuple("Pkcs11").field(key).finish(),
        }
    }
}

/// The admin API's listener and its token.
#[derive(Clone)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    /// SHA-256 of the admin token; the token itself is not kept.
    pub token_hash: [u8; 32],
    /// TLS for the admin listener.
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Every setting of a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub storage: StorageConfig,
    /// The root key versions: the first is the active one, which wraps new keys; the others
    /// only unwrap what they wrapped until `keys rotate-root` has moved it (contract §11).
    pub root_keys: Vec<RootKeySource>,
    /// Dev mode: no provisioning (docs/api.md §6). Without it, every credential is checked
    /// against the directory the admin API provisions.
    pub dev: bool,
    /// The admin API; required in production mode, optional in dev mode.
    pub admin: Option<AdminConfig>,
    /// TLS for the public listener.
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    pub http: HttpLimits,
    /// Requests a second per credential; `None` for no limit.
    pub rate_limit: Option<NonZeroU32>,
    /// Time between sweeps of expired secrets and stale kept answers.
    pub sweep_interval: Duration,
    /// Bytes of kept idempotent answers each credential may have stored on each account;
    /// `None` for no limit.
    pub idempotency_quota_bytes: Option<NonZeroU64>,
    pub audit: AuditConfig,
}

/// Whether requests are recorded in the audit log, and where its JSON-lines copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditConfig {
    On {
        log: Option<AuditLogTarget>,
    },
    /// `--no-audit`.
    Off,
}

impl Config {
    /// A dev-mode server over SQLite in `dir` with the root key `root_key`, every other
    /// setting at its default: what tests start from.
    pub fn dev(dir: PathBuf, root_key: RootKeySource) -> Self {
        Self {
            storage: StorageConfig::Sqlite {
                dir,
                options: SqliteOptions::default(),
            },
            root_keys: vec![root_key],
            dev: true,
            admin: None,
            tls: None,
            limits: Limits::default(),
            http: HttpLimits::default(),
            rate_limit: None,
            sweep_interval: Duration::from_secs(30),
            idempotency_quota_bytes: NonZeroU64::new(
                secretstore_api::idempotency::DEFAULT_QUOTA_BYTES,
            ),
            audit: AuditConfig::On { log: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_material() {
        let env = RootKeySource::Env {
            variable: "SECRETSTORE_ROOT_KEY".to_owned(),
            value: Zeroizing::new("k3y-material-in-the-environment".to_owned()),
        };
        let shown = format!("{env:?}");
        assert!(shown.contains("SECRETSTORE_ROOT_KEY"), "{shown}");
        assert!(!shown.contains("k3y-material"), "{shown}");
    }
}
