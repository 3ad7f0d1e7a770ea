//! `secretstore serve`: wires the root key, storage, service and HTTP together, runs the
//! background sweep of expired secrets, and shuts down in order (stop accepting, finish
//! in-flight requests, flush the writer) on SIGTERM or SIGINT.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use secretstore_api::{router, ApiConfig, AppState, DevAuthenticator, RateLimit, ServerLimits};
use secretstore_core::{Limits, SecretService, Store, SystemClock};
use secretstore_crypto::{EnvRootKey, Envelope, FileRootKey, RootKey, RootKeySource};
use secretstore_sqlite::{SqliteOptions, SqliteStore};
use tokio::net::{TcpListener, TcpSocket};

use crate::cli::{LogFormat, ServeArgs};

const ROOT_KEY_ENV: &str = "SECRETSTORE_ROOT_KEY";

pub fn main(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format, &args.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("secretstore: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
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

/// The root key, from the first source given: the key file, the environment, or (dev mode
/// only) a key generated into the data directory.
fn load_root_key(args: &ServeArgs) -> anyhow::Result<RootKey> {
    if let Some(path) = &args.root_key_file {
        let source = FileRootKey::new(path);
        tracing::info!(source = %source.describe(), "loading the root key");
        return Ok(source.load()?);
    }
    if let Ok(value) = std::env::var(ROOT_KEY_ENV) {
        let source = EnvRootKey::new(ROOT_KEY_ENV, value);
        tracing::info!(source = %source.describe(), "loading the root key");
        return Ok(source.load()?);
    }
    if args.dev {
        let path = args.data.join("root.key");
        let (key, created) = FileRootKey::load_or_generate(&path)?;
        if created {
            tracing::warn!(
                path = %path.display(),
                "dev mode generated a root key into the data directory; anyone who can read \
                 that file can read every secret. Production keeps the key outside the data \
                 (--root-key-file or SECRETSTORE_ROOT_KEY)"
            );
        }
        return Ok(key);
    }
    bail!(
        "no root key: give --root-key-file PATH or set {ROOT_KEY_ENV} (or start with --dev to \
         generate one for local use)"
    )
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
fn listen_failure(addr: SocketAddr, err: &std::io::Error) -> anyhow::Error {
    let advice = "choose another address with --listen (or SECRETSTORE_LISTEN), for example \
                  --listen 127.0.0.1:12113";
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

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !args.dev {
        bail!(
            "this version authenticates only in dev mode: provisioning of apps, accounts, keys \
             and user sessions is not available yet. Start with --dev (or SECRETSTORE_DEV=true) \
             for local development"
        );
    }
    // The listener first: a port in use is the likeliest start-up failure, and nothing should
    // be created (data directory, dev root key) by a start that cannot serve.
    let listener = listen(args.listen).map_err(|err| listen_failure(args.listen, &err))?;
    check_data_dir(&args.data)?;
    create_data_dir(&args.data)?;
    let root_key = load_root_key(&args)?;
    let envelope = Arc::new(Envelope::new(&root_key));
    drop(root_key);

    let data = args.data.clone();
    let options = SqliteOptions {
        readers: usize::from(args.readers),
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&data, options))
            .await
            .context("opening storage panicked")?
            .with_context(|| format!("cannot open the data directory {}", args.data.display()))?,
    );
    let limits = Limits {
        max_secrets_per_scope: args.max_secrets_per_scope,
    };
    let service = SecretService::new(Arc::clone(&store), envelope, Arc::new(SystemClock), limits);
    service.verify_root_key().await?;

    let addr = listener.local_addr()?;
    announce(addr, &args);

    let rate_limit = std::num::NonZeroU32::new(args.rate_limit).map(RateLimit::per_second);
    let limits = ServerLimits {
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        max_header_bytes: args.max_header_bytes,
        ..ServerLimits::default()
    };
    let sweeper = tokio::spawn(sweep(
        service.clone(),
        rate_limit.clone(),
        Duration::from_secs(args.sweep_interval),
    ));
    let state = AppState {
        service,
        auth: Arc::new(DevAuthenticator),
        config: ApiConfig {
            max_body_bytes: args.max_body_bytes,
            body_timeout: limits.body_timeout,
            max_header_bytes: limits.max_header_bytes,
        },
        rate_limit,
    };
    secretstore_api::serve(listener, router(state), limits, shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    sweeper.abort();
    tracing::info!("in-flight requests finished; flushing storage");
    store
        .close()
        .await
        .context("flushing storage at shutdown failed")?;
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
fn announce(addr: SocketAddr, args: &ServeArgs) {
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "secretstore listening on http://{shown}");
    if args.dev {
        let _ = writeln!(
            out,
            "\nDEV MODE: any well-formed key is accepted (sk_test_<app>, sk_live_<app>, rk_...).\n\
             Do not keep real secrets here. Data: {data}\n\n\
             Store a secret:\n  \
             curl -u sk_test_myapp: http://{shown}/v1/apps/secrets -d name=my-api-key -d payload=s3cr3t -d 'scope[type]=account'\n\
             Read it back:\n  \
             curl -G -u sk_test_myapp: http://{shown}/v1/apps/secrets/find -d name=my-api-key -d 'scope[type]=account' -d 'expand[]=payload'\n",
            data = args.data.display()
        );
    }
    let _ = out.flush();
}

/// Deletes expired secrets from storage on a fixed interval (they are already invisible to every
/// request from the second they expire; the sweep reclaims the space), and lets the rate
/// limiter forget idle keys.
async fn sweep(service: SecretService, rate_limit: Option<RateLimit>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match service.purge_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept expired secrets"),
            Err(err) => tracing::warn!(error = %err, "sweeping expired secrets failed"),
        }
        if let Some(limit) = &rate_limit {
            limit.forget_idle();
        }
    }
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
