//! secretstore's composition root: the one place that wires a configuration into a running
//! service. `Config` holds every setting of `secretstore serve` (the binary builds it from its
//! flags; tests build it directly and change what they need); `open_store` chooses the storage
//! backend the configuration names; `App::builder(config)` loads the root key, opens storage,
//! checks the key against the data and assembles the service and its router; `run` serves it
//! until a shared `Shutdown`, with the background sweep, then closes storage.
//!
//! The binary, the router tests and the client's test server all build their app here, so
//! there is one wiring, not one per caller. `process` is what the binary's server process does
//! to itself at start.

mod app;
mod config;
mod keys;
pub mod process;
mod storage;

pub use app::{describe_database, run, App, AppBuilder, Certs, Listeners, RunError, StartError};
pub use config::{AdminConfig, AuditConfig, Config, Pkcs11Key, RootKeySource, StorageConfig};
pub use secretstore_api::audit::AuditLogTarget;
pub use secretstore_api::tls::TlsFiles;
pub use secretstore_api::{HttpLimits, Shutdown};
pub use storage::{open_store, Storage};
