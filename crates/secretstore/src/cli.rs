//! The command line: every flag has a `SECRETSTORE_*` environment twin, and `--help` explains
//! each one.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;

use clap::builder::{BoolishValueParser, TypedValueParser as _};
use clap::{ArgAction, CommandFactory as _, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "secretstore",
    version,
    about = "A self-hosted Secret Store that speaks Stripe's /v1/apps/secrets API.",
    long_about = "A self-hosted, multi-tenant Secret Store that speaks Stripe's Secret Store API \
                  (/v1/apps/secrets), so Stripe's official SDKs work against it with only their \
                  base URL changed. Secrets are encrypted at rest under a root key that never \
                  enters the database."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Set, find, list and delete secrets on a secretstore or on Stripe.
    Secrets(crate::secrets::SecretsArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell.
    Completions(crate::generate::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(crate::generate::ManArgs),
    /// Provision a production server over its admin API: accounts, apps, installations, users,
    /// API keys and user sessions; or make an admin token.
    Admin(crate::admin::AdminArgs),
    /// The audit log of a running server: verify its chain, search it, prune it.
    Audit(crate::audit::AuditArgs),
    /// The key hierarchy of a running server: root key status, root and namespace rotation.
    Keys(crate::keys::KeysArgs),
    /// Copy a data directory's store into a backup file, while its server runs or not.
    ///
    /// While a server runs, through its admin API. The file holds ciphertext and wrapped keys
    /// only: it opens only with the same root key.
    Backup(crate::backup::BackupArgs),
    /// Fill a new or empty data directory from a backup file; needs no server.
    Restore(crate::backup::RestoreArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Root key: --root-key-file PATH, or the key itself (64 hex digits or \
base64) in the environment variable SECRETSTORE_ROOT_KEY (never a flag, so it stays out of the \
process list). With --dev and neither, a key is generated into DATA/root.key on first start \
(never beside existing data: a DATA that holds a database but no root.key is refused). Or in an \
HSM, where it never leaves the token: --pkcs11-module, --pkcs11-token-label, --pkcs11-pin-file \
and --pkcs11-key-label (`secretstore keys hsm-generate` makes the key). The root key wraps one \
key per namespace, which wraps each secret's data key; SIGHUP reads the key sources again, and \
`secretstore keys` rotates them while the server serves.\n\n\
Production mode (without --dev) checks every credential against what the admin API \
provisions. It needs a root key from outside the data (--root-key-file or SECRETSTORE_ROOT_KEY) \
and an admin token (--admin-token-file, refused unless private to this user, or \
SECRETSTORE_ADMIN_TOKEN; at least 32 characters; `secretstore admin token-generate` prints one). \
The admin API listens on --admin-listen (default 127.0.0.1:12112), never on the public address; \
the server keeps only the token's SHA-256. Rate limiting is on by default (100 requests a second \
per credential and account).\n\n\
On start the server prints one line, `secretstore listening on http://ADDR`, on standard output, \
then (with an admin listener) `secretstore admin listening on http://ADDR`; logs go to standard \
error."
)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT (127.0.0.1:12111, localhost:12111, [::1]:12111,
    /// 0.0.0.0:12111 for every interface) or a bare port, which means 127.0.0.1. Port 0 picks a
    /// free port; the chosen address is printed.
    #[arg(long, env = "SECRETSTORE_LISTEN", default_value = "127.0.0.1:12111",
          value_parser = parse_listen, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Directory of the embedded database (created with mode 0700 if missing); not used with
    /// --database-url. An existing one, and its files, must belong to this user and give group
    /// and others nothing, or the start is refused with the chmod or chown that fixes it.
    #[arg(long, env = "SECRETSTORE_DATA", default_value = "./secretstore-data")]
    pub data: PathBuf,

    /// Keep everything in this PostgreSQL database instead of the data directory, so that any
    /// number of servers can share it: postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME (libpq's
    /// URL or key=value form). Its schema is created or migrated at start. All servers on one
    /// database must have the same root key, so it must then come from --root-key-file or
    /// SECRETSTORE_ROOT_KEY, with --dev too. The URL is never printed.
    #[arg(
        long,
        env = "SECRETSTORE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Most connections this server opens to the database (--database-url).
    #[arg(long, env = "SECRETSTORE_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub database_pool_size: u16,

    /// Seconds one database statement may run before the database cancels it; the request is
    /// then answered 503, which clients retry.
    #[arg(long, env = "SECRETSTORE_DATABASE_STATEMENT_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub database_statement_timeout: u64,

    /// Seconds a request waits for a database connection (or for a new one to open) before it
    /// is answered 503: what clients see while the database is restarting or failing over.
    #[arg(long, env = "SECRETSTORE_DATABASE_CONNECT_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub database_connect_timeout: u64,

    /// Development mode: no provisioning. Any well-formed key is accepted and the text after
    /// its mode prefix names the app (sk_test_abc and sk_live_abc are app "abc" in test and
    /// live mode); any acct_... in Stripe-Account is accepted. A root key is generated into the
    /// data directory if none is given. Never use it for real secrets. The environment twin
    /// takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "SECRETSTORE_DEV", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub dev: bool,

    /// Also copy every audit record, as one JSON line, to PATH (appended to), or to standard
    /// output with `-`, for a log pipeline. The database keeps the records either way
    /// (docs/audit.md).
    #[arg(long, env = "SECRETSTORE_AUDIT_LOG", value_name = "PATH|-")]
    pub audit_log: Option<String>,

    /// Keep no audit log: requests are not recorded, and `secretstore audit` has nothing to
    /// read. For benchmarks and throwaway experiments only; a store that holds real secrets
    /// should know who read them. The environment twin takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "SECRETSTORE_NO_AUDIT", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub no_audit: bool,

    /// File holding the 256-bit root key (64 hex digits or base64). Refused unless it belongs
    /// to this user and gives group and others nothing. Give it several times during a root
    /// key rotation: the first is the active version, which wraps new keys; the others only
    /// unwrap what they wrapped until `secretstore keys rotate-root` has moved it. With
    /// --pkcs11-key-label, these files follow the HSM's keys as older versions.
    #[arg(long, env = "SECRETSTORE_ROOT_KEY_FILE", value_name = "PATH", action = ArgAction::Append)]
    pub root_key_file: Vec<PathBuf>,

    /// PKCS#11 module (the HSM vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so) holding
    /// the root key, which then never leaves the token: wrapping happens inside it.
    #[arg(long, env = "SECRETSTORE_PKCS11_MODULE", value_name = "PATH",
          requires_all = ["pkcs11_token_label", "pkcs11_pin_file", "pkcs11_key_label"])]
    pub pkcs11_module: Option<PathBuf>,

    /// Label of the PKCS#11 token holding the root key.
    #[arg(
        long,
        env = "SECRETSTORE_PKCS11_TOKEN_LABEL",
        value_name = "LABEL",
        requires = "pkcs11_module"
    )]
    pub pkcs11_token_label: Option<String>,

    /// File holding the token's user PIN (owner-only, like the root key file).
    #[arg(
        long,
        env = "SECRETSTORE_PKCS11_PIN_FILE",
        value_name = "PATH",
        requires = "pkcs11_module"
    )]
    pub pkcs11_pin_file: Option<PathBuf>,

    /// Label of the AES-256 key on the token that is the root key. Give it several times during
    /// a rotation: the first is the active version, like --root-key-file.
    #[arg(long, env = "SECRETSTORE_PKCS11_KEY_LABEL", value_name = "LABEL",
          action = ArgAction::Append, requires = "pkcs11_module")]
    pub pkcs11_key_label: Vec<String>,

    /// Lock the server's memory into RAM (mlockall), so that keys and payloads are never
    /// written to swap. Needs a locked-memory limit (ulimit -l, LimitMEMLOCK=) at least the
    /// server's memory; the start is refused otherwise. The environment twin takes true/false.
    #[arg(long, env = "SECRETSTORE_MLOCK", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub mlock: bool,

    /// Most live secrets one scope (an account scope, or one user's scope) may hold.
    #[arg(long, env = "SECRETSTORE_MAX_SECRETS_PER_SCOPE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_secrets_per_scope: u32,

    /// Seconds between sweeps that delete expired secrets from storage.
    #[arg(long, env = "SECRETSTORE_SWEEP_INTERVAL", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sweep_interval: u64,

    /// Largest request body accepted, in bytes; larger ones are answered 413. The default
    /// admits the largest valid request (three 5,000-character fields of 4-byte characters,
    /// percent-encoded).
    #[arg(long, env = "SECRETSTORE_MAX_BODY_BYTES", default_value_t = secretstore_api::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Bytes of kept idempotent answers (the answers replayed, for 24 hours, to a retry with
    /// the same Idempotency-Key) each credential may have stored on each account, counted in
    /// storage (across restarts, and across servers on one database). Past it a request runs
    /// as usual, but its answer is not kept: it carries `Idempotent-Kept: false`, and a retry
    /// with its key runs it again. 0 turns the quota off.
    #[arg(long, env = "SECRETSTORE_IDEMPOTENCY_QUOTA_BYTES", value_name = "N",
          default_value_t = secretstore_api::idempotency::DEFAULT_QUOTA_BYTES)]
    pub idempotency_quota_bytes: u64,

    /// Requests a second each credential may make on each account (bursts of twice as many);
    /// over it, requests are answered 429 rate_limit with Retry-After. 0 turns the limit off.
    /// Default: 100 in production mode (Stripe's live-mode figure), off in dev mode.
    #[arg(long, env = "SECRETSTORE_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,

    /// Address of the admin API (provisioning, and Prometheus metrics at GET /metrics). Default
    /// 127.0.0.1:12112 in production mode; in dev mode the admin API is off unless this is
    /// given. Never the public listener's address.
    #[arg(long, env = "SECRETSTORE_ADMIN_LISTEN", value_parser = parse_listen, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// File holding the admin token (at least 32 characters). Refused unless it belongs to this
    /// user and gives group and others nothing. Or give the token itself in
    /// SECRETSTORE_ADMIN_TOKEN.
    #[arg(long, env = "SECRETSTORE_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// Serve the public API over TLS with this certificate chain (PEM); needs --tls-key. The
    /// files are read again on SIGHUP, so a renewed certificate needs no restart.
    #[arg(
        long,
        env = "SECRETSTORE_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "SECRETSTORE_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve the admin API over TLS with this certificate chain (PEM); needs --admin-tls-key.
    /// Read again on SIGHUP.
    #[arg(
        long,
        env = "SECRETSTORE_ADMIN_TLS_CERT",
        value_name = "PATH",
        requires = "admin_tls_key"
    )]
    pub admin_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --admin-tls-cert.
    #[arg(
        long,
        env = "SECRETSTORE_ADMIN_TLS_KEY",
        value_name = "PATH",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_key: Option<PathBuf>,

    /// Connections open at once. When all are taken, the connection idle the longest is closed
    /// to make room; only when none is idle is a new connection answered 503 and closed. The
    /// soft limit on open files is raised to the hard one at start; keep this below it.
    #[arg(long, env = "SECRETSTORE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,

    /// Connections one client address may hold open at once; a connection beyond it is
    /// answered 503 and closed, so one client cannot lock the others out. Behind a proxy or load
    /// balancer every connection comes from its address: raise it to what the proxy opens.
    #[arg(long, env = "SECRETSTORE_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 1_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections_per_client: usize,

    /// Bytes of request bodies received at once over every connection (each body counts what
    /// it declares, or --max-body-bytes without a length); a body beyond it is answered 503
    /// server_busy with Stripe-Should-Retry: true before it is read.
    #[arg(long, env = "SECRETSTORE_MAX_BODY_BYTES_IN_FLIGHT",
          default_value_t = secretstore_api::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT)]
    pub max_body_bytes_in_flight: usize,

    /// Seconds a client has to send a request's headers; also the longest an idle keep-alive
    /// connection is kept open. Slow-loris clients are cut off by it.
    #[arg(long, env = "SECRETSTORE_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Seconds a client has to send a request's body; slower ones are answered 408.
    #[arg(long, env = "SECRETSTORE_BODY_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,

    /// Largest total size of a request's headers, in bytes; larger ones are answered 431.
    #[arg(long, env = "SECRETSTORE_MAX_HEADER_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=1_048_576))]
    pub max_header_bytes: usize,

    /// Bytes of sealed secrets the embedded database keeps in memory for finds, and (an eighth
    /// of them) for the first pages of lists (ciphertext and metadata only, never a payload);
    /// 0 turns both caches off. The default, 64 MiB, keeps the whole server under 256 MiB
    /// whatever the size of the secrets asked for.
    #[arg(long, env = "SECRETSTORE_CACHE_BYTES", default_value_t = secretstore_sqlite::DEFAULT_CACHE_BYTES)]
    pub cache_bytes: usize,

    /// Reader threads for the embedded database.
    #[arg(long, env = "SECRETSTORE_READERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub readers: u16,

    /// Log format.
    #[arg(long, env = "SECRETSTORE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. "info", "secretstore=debug").
    #[arg(long, env = "SECRETSTORE_LOG", default_value = "info")]
    pub log: String,
}

/// `--listen`: HOST:PORT with a literal address or a host name (resolved now, preferring IPv4
/// as `localhost` usually should be), or a bare port on the loopback interface.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let expected = "expected HOST:PORT (such as 127.0.0.1:12111, localhost:12111 or \
                    [::1]:12111) or a port number (such as 12111)";
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(expected.to_owned());
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected.to_owned());
    }
    let found: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve the host name {host:?} ({err}); {expected}"))?
        .collect();
    found
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| format!("the host name {host:?} has no address; {expected}"))
}

/// The words a boolean environment twin may hold (clap's "boolish" values).
const BOOLEAN_WORDS: &str = "true or false (also 1 or 0, yes or no, on or off)";

/// Checks the boolean environment twins of the subcommand about to run before clap reads them,
/// so a refusal names the variable (clap would blame the flag, which the user never typed).
pub fn check_boolean_environment(args: &[std::ffi::OsString]) -> Result<(), String> {
    let command = Cli::command();
    let Some(sub) = args
        .get(1)
        .and_then(|name| name.to_str())
        .and_then(|name| command.find_subcommand(name))
    else {
        return Ok(());
    };
    for arg in sub.get_arguments() {
        let (Some(variable), ArgAction::SetTrue) = (arg.get_env(), arg.get_action()) else {
            continue;
        };
        let Some(value) = std::env::var_os(variable) else {
            continue;
        };
        let parser = BoolishValueParser::new();
        let fake = clap::Command::new("check");
        if parser.parse_ref(&fake, None, &value).is_err() {
            return Err(format!(
                "{}={} is not a boolean: set it to {BOOLEAN_WORDS}, or unset it",
                variable.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_addresses_host_names_and_bare_ports() {
        assert_eq!(
            parse_listen("12112").unwrap(),
            "127.0.0.1:12112".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        let local = parse_listen("localhost:12112").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 12112, "{local}");
        for bad in [
            "nonsense",
            "",
            ":80",
            "localhost:",
            "localhost:99999",
            "1.2.3.4",
        ] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }
}
