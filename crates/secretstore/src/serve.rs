//! `secretstore serve`: first, while it is the process's only thread, forbids core dumps, makes
//! what it creates private (umask) and takes the secrets it may find in its environment out of
//! it (`secretstore_server::process`); then turns the flags into a `secretstore_server::Config`,
//! checks what can be checked before anything is created (the listener, the data directory),
//! builds the app, says where it listens, and serves until SIGTERM or SIGINT, then shuts down in
//! order (stop accepting, finish in-flight requests, flush the writer).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use secretstore_core::Limits;
use secretstore_postgres::PostgresOptions;
use secretstore_server::{
    process, AdminConfig, App, AuditConfig, AuditLogTarget, Config, HttpLimits, Listeners,
    Pkcs11Key, RootKeySource, Shutdown, StorageConfig, TlsFiles,
};
use secretstore_sqlite::SqliteOptions;
use tokio::net::{TcpListener, TcpSocket};
use zeroize::Zeroizing;

use crate::cli::{LogFormat, ServeArgs};

const ROOT_KEY_ENV: &str = "SECRETSTORE_ROOT_KEY";
const ADMIN_TOKEN_ENV: &str = "SECRETSTORE_ADMIN_TOKEN";

/// Where the admin API listens in production mode unless told otherwise.
const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 12112);

/// The secrets `serve` may be given in its environment, taken out of it at start.
struct EnvSecrets {
    root_key: Option<Zeroizing<String>>,
    admin_token: Option<Zeroizing<String>>,
}

impl EnvSecrets {
    /// Reads and removes them; see `process::take_env` for when that may be called.
    fn take() -> Self {
        // The database URL may hold a password: clap has read it into the flags already, and
        // it leaves the environment with the others.
        drop(process::take_env("SECRETSTORE_DATABASE_URL"));
        Self {
            root_key: process::take_env(ROOT_KEY_ENV),
            admin_token: process::take_env(ADMIN_TOKEN_ENV),
        }
    }
}

/// The admin token, from the file (owner-only) or the environment: kept only as its SHA-256.
fn admin_token_hash(
    args: &ServeArgs,
    from_env: Option<Zeroizing<String>>,
) -> anyhow::Result<Option<[u8; 32]>> {
    let token = if let Some(path) = &args.admin_token_file {
        crate::admin::read_token_file(path)?
    } else if let Some(value) = from_env {
        value
    } else {
        return Ok(None);
    };
    let token = token.trim();
    if token.chars().count() < secretstore_api::admin::MIN_TOKEN_CHARS {
        bail!(
            "the admin token is shorter than {} characters; make one with `secretstore admin \
             token-generate`",
            secretstore_api::admin::MIN_TOKEN_CHARS
        );
    }
    Ok(Some(secretstore_api::admin::token_hash(token)))
}

pub fn main(args: ServeArgs) -> ExitCode {
    // While this is the process's only thread: the async runtime, SQLite's threads and the log
    // writer all start later (`process::take_env` says why that matters).
    if let Err(err) = process::forbid_core_dumps() {
        eprintln!(
            "secretstore: cannot forbid core dumps ({err}), which would hold the root key and \
             payloads; not starting"
        );
        return ExitCode::FAILURE;
    }
    process::restrict_umask();
    if args.mlock {
        if let Err(err) = process::lock_memory() {
            eprintln!(
                "secretstore: --mlock: cannot lock the process's memory ({err}); raise the \
                 locked-memory limit (ulimit -l, or LimitMEMLOCK= in a systemd unit) to at least \
                 the server's memory, or start without --mlock"
            );
            return ExitCode::FAILURE;
        }
    }
    let open_files = process::raise_open_files_limit();
    let secrets = EnvSecrets::take();
    init_logging(args.log_format, &args.log);
    let runtime = match crate::runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(args, secrets, open_files)) {
        Ok(()) => ExitCode::SUCCESS,
        // Once, on standard error: a log line as well would say it twice on a terminal.
        Err(err) => {
            eprintln!("secretstore: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The root key versions, the active one first: the HSM's keys (--pkcs11-key-label), then the
/// key files, else the environment's key, else (dev mode only) a key generated into the data
/// directory.
fn root_key_sources(
    args: &ServeArgs,
    from_env: Option<Zeroizing<String>>,
) -> anyhow::Result<Vec<RootKeySource>> {
    let mut sources = Vec::new();
    if let (Some(module), Some(token_label), Some(pin_file)) = (
        &args.pkcs11_module,
        &args.pkcs11_token_label,
        &args.pkcs11_pin_file,
    ) {
        sources.extend(args.pkcs11_key_label.iter().map(|key_label| {
            RootKeySource::Pkcs11(Pkcs11Key {
                module: module.clone(),
                token_label: token_label.clone(),
                pin_file: pin_file.clone(),
                key_label: key_label.clone(),
            })
        }));
    }
    sources.extend(args.root_key_file.iter().cloned().map(RootKeySource::File));
    if !sources.is_empty() {
        return Ok(sources);
    }
    if let Some(value) = from_env {
        return Ok(vec![RootKeySource::Env {
            variable: ROOT_KEY_ENV.to_owned(),
            value,
        }]);
    }
    if args.database_url.is_some() {
        bail!(
            "with --database-url the root key must come from --root-key-file PATH, \
             {ROOT_KEY_ENV} or an HSM (--pkcs11-module ...), the same key on every server of the \
             database (--dev generates one only into a data directory)"
        );
    }
    if args.dev {
        return Ok(vec![RootKeySource::DevGenerated(
            args.data.join("root.key"),
        )]);
    }
    bail!(
        "no root key: give --root-key-file PATH, set {ROOT_KEY_ENV}, or name an HSM key \
         (--pkcs11-module, --pkcs11-token-label, --pkcs11-pin-file, --pkcs11-key-label); or \
         start with --dev to generate one for local use"
    )
}

/// The server's configuration, from the flags and the secrets taken from the environment.
fn config(
    args: &ServeArgs,
    secrets: EnvSecrets,
    open_files: Option<u64>,
) -> anyhow::Result<Config> {
    let admin_listen = match (args.admin_listen, args.dev) {
        (Some(addr), _) => Some(addr),
        (None, false) => Some(SocketAddr::from(DEFAULT_ADMIN_LISTEN)),
        (None, true) => None,
    };
    let tls_files = |cert: &Option<std::path::PathBuf>, key: &Option<std::path::PathBuf>| {
        cert.clone()
            .zip(key.clone())
            .map(|(cert, key)| TlsFiles { cert, key })
    };
    let admin = match (admin_listen, admin_token_hash(args, secrets.admin_token)?) {
        (Some(listen), Some(token_hash)) => Some(AdminConfig {
            listen,
            token_hash,
            tls: tls_files(&args.admin_tls_cert, &args.admin_tls_key),
        }),
        (Some(_), None) if args.dev => bail!(
            "--admin-listen needs the admin token: give --admin-token-file PATH or set \
             {ADMIN_TOKEN_ENV} (`secretstore admin token-generate` makes one)"
        ),
        _ => None,
    };
    let rate_limit = args.rate_limit.unwrap_or(if args.dev { 0 } else { 100 });
    Ok(Config {
        admin,
        tls: tls_files(&args.tls_cert, &args.tls_key),
        storage: storage_config(args)?,
        root_keys: root_key_sources(args, secrets.root_key)?,
        dev: args.dev,
        limits: Limits {
            max_secrets_per_scope: args.max_secrets_per_scope,
        },
        http: HttpLimits {
            max_body_bytes: args.max_body_bytes,
            body_timeout: Duration::from_secs(args.body_timeout),
            header_timeout: Duration::from_secs(args.header_timeout),
            max_header_bytes: args.max_header_bytes,
            max_connections: connections_within(args.max_connections, open_files),
            max_connections_per_client: args.max_connections_per_client,
            max_body_bytes_in_flight: args.max_body_bytes_in_flight,
            ..HttpLimits::default()
        },
        rate_limit: std::num::NonZeroU32::new(rate_limit),
        sweep_interval: Duration::from_secs(args.sweep_interval),
        idempotency_quota_bytes: std::num::NonZeroU64::new(args.idempotency_quota_bytes),
        audit: match (args.no_audit, args.audit_log.as_deref()) {
            (true, Some(_)) => {
                bail!("--no-audit and --audit-log contradict each other: give one or the other")
            }
            (true, None) => AuditConfig::Off,
            (false, None) => AuditConfig::On { log: None },
            (false, Some("-")) => AuditConfig::On {
                log: Some(AuditLogTarget::Stdout),
            },
            (false, Some(path)) => AuditConfig::On {
                log: Some(AuditLogTarget::File(path.into())),
            },
        },
    })
}

/// Descriptors kept for everything but connections: storage (SQLite's files, a database
/// pool), listeners, TLS certificates read again, logs (64), and the connections lingering
/// after they closed.
const RESERVED_DESCRIPTORS: u64 = 64 + secretstore_api::MAX_LINGERING as u64;

/// `--max-connections`, or fewer when the open-files limit cannot hold that many beside what
/// storage needs: a server that let connections take its last descriptor could not open the
/// file a request needs, and every request would fail. With connections capped below the
/// limit, a full server closes its longest-idle connection to take a new one instead.
fn connections_within(asked: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return asked;
    };
    let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if (asked as u64) <= room {
        return asked;
    }
    tracing::warn!(
        open_files = limit,
        max_connections = asked,
        serving = room,
        "the open-files limit holds fewer connections than --max-connections asks; serving \
         fewer (raise `ulimit -Hn` to serve more)"
    );
    room as usize
}

/// The embedded store in `--data`, or the PostgreSQL database of `--database-url`.
fn storage_config(args: &ServeArgs) -> anyhow::Result<StorageConfig> {
    let Some(url) = &args.database_url else {
        return Ok(StorageConfig::Sqlite {
            dir: args.data.clone(),
            options: SqliteOptions {
                readers: usize::from(args.readers),
                cache_bytes: args.cache_bytes,
                ..SqliteOptions::default()
            },
        });
    };
    // Parsed here rather than by clap, whose error would repeat the URL and its password.
    let config = secretstore_postgres::parse_url(url).map_err(|why| {
        anyhow::anyhow!(
            "--database-url (or SECRETSTORE_DATABASE_URL): {why}; it looks like \
             postgres://USER:PASSWORD@HOST:5432/DBNAME"
        )
    })?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        bail!(
            "--database-url asks for TLS (sslmode=require), which this secretstore cannot speak \
             to the database yet; reach the database over a private network or a TLS tunnel \
             and drop sslmode (or set sslmode=disable)"
        );
    }
    Ok(StorageConfig::Postgres {
        config: Box::new(config),
        options: PostgresOptions {
            pool_size: usize::from(args.database_pool_size),
            statement_timeout: Duration::from_secs(args.database_statement_timeout),
            connect_timeout: Duration::from_secs(args.database_connect_timeout),
            ..PostgresOptions::default()
        },
    })
}

/// Says what is wrong with `--data` before anything else touches it, so a file or an
/// unreadable directory is not reported later as a root-key or database problem.
fn check_data_dir(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => bail!(
            "the data directory {shown} (--data) is a file, not a directory; give --data the \
             path of a directory (it is created if missing)"
        ),
        Ok(_) => {
            std::fs::read_dir(path).map_err(|err| {
                anyhow::anyhow!(
                    "cannot read the data directory {shown} (--data): {}; it must be a directory \
                     this user can read and write (run as its owner, or choose another with --data)",
                    io_reason(&err)
                )
            })?;
            let probe = path.join(format!(".secretstore-write-test-{}", std::process::id()));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|err| {
                    anyhow::anyhow!(
                        "cannot write into the data directory {shown} (--data): {}; it must be a \
                         directory this user can read and write (run as its owner, or choose \
                         another with --data)",
                        io_reason(&err)
                    )
                })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => bail!(
            "cannot use the data directory {shown} (--data): {}",
            io_reason(&err)
        ),
    }
}

/// An I/O error as a short phrase, without Rust's "(os error 13)" suffix.
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        _ => err.to_string(),
    }
}

fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    #[cfg(unix)]
    let created = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    };
    #[cfg(not(unix))]
    let created = std::fs::create_dir_all(path);
    created.map_err(|err| {
        anyhow::anyhow!(
            "cannot create the data directory {} (--data): {}",
            path.display(),
            io_reason(&err)
        )
    })
}

/// Why the listener could not be opened, and what to do about it.
fn listen_failure(addr: SocketAddr, err: &std::io::Error, flag: &str) -> anyhow::Error {
    let advice = format!(
        "choose another address with {flag} (or its SECRETSTORE_ variable), for example {flag} \
         127.0.0.1:12113"
    );
    match err.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {addr}: another process is already listening there (perhaps \
             another secretstore); stop it, or {advice}"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges); \
             {advice}"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow::anyhow!(
            "cannot listen on {addr}: it is not an address of this machine; {advice}"
        ),
        _ => anyhow::anyhow!("cannot listen on {addr}: {err}; {advice}"),
    }
}

async fn run(args: ServeArgs, secrets: EnvSecrets, open_files: Option<u64>) -> anyhow::Result<()> {
    let config = config(&args, secrets, open_files)?;
    config.check(Some(args.listen))?;
    // The listeners first: a port in use is the likeliest start-up failure, and nothing should
    // be created (data directory, dev root key) by a start that cannot serve.
    let listener =
        listen(args.listen).map_err(|err| listen_failure(args.listen, &err, "--listen"))?;
    let admin_listener = match &config.admin {
        Some(admin) => Some(
            listen(admin.listen)
                .map_err(|err| listen_failure(admin.listen, &err, "--admin-listen"))?,
        ),
        None => None,
    };
    if args.database_url.is_none() {
        check_data_dir(&args.data)?;
        create_data_dir(&args.data)?;
    }
    let app = App::builder(config).build().await?;
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let public_scheme = if app.certs.public.is_some() {
        "https"
    } else {
        "http"
    };
    let admin_scheme = if app.certs.admin.is_some() {
        "https"
    } else {
        "http"
    };
    announce(
        (public_scheme, addr),
        admin_addr.map(|a| (admin_scheme, a)),
        &args,
    );
    let shutdown = Shutdown::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.trigger();
        }
    });
    let listeners = Listeners {
        public: listener,
        admin: admin_listener,
    };
    secretstore_server::run(app, listeners, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds with a deep accept queue: a burst of thousands of connections then waits in the kernel
/// instead of having its SYNs dropped and retried a second later.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The one line tests and scripts wait for, then (dev mode) a banner with a first call.
fn announce(
    (scheme, addr): (&str, SocketAddr),
    admin: Option<(&str, SocketAddr)>,
    args: &ServeArgs,
) {
    let shown_of = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), addr.port())
        } else {
            addr
        }
    };
    let shown = shown_of(addr);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "secretstore listening on {scheme}://{shown}");
    if let Some((admin_scheme, admin)) = admin {
        let _ = writeln!(
            out,
            "secretstore admin listening on {admin_scheme}://{}",
            shown_of(admin)
        );
    }
    if args.dev {
        let _ = writeln!(
            out,
            "\nDEV MODE: any well-formed key is accepted (sk_test_<app>, sk_live_<app>, rk_...).\n\
             Do not keep real secrets here. Data: {data}\n\n\
             Store a secret:\n  \
             curl -u sk_test_myapp: {scheme}://{shown}/v1/apps/secrets -d name=my-api-key -d payload=s3cr3t -d 'scope[type]=account'\n\
             Read it back:\n  \
             curl -G -u sk_test_myapp: {scheme}://{shown}/v1/apps/secrets/find -d name=my-api-key -d 'scope[type]=account' -d 'expand[]=payload'\n",
            data = match &args.database_url {
                None => args.data.display().to_string(),
                Some(url) => secretstore_postgres::parse_url(url)
                    .map(|config| format!("the database {}", secretstore_server::describe_database(&config)))
                    .unwrap_or_default(),
            }
        );
    }
    let _ = out.flush();
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
