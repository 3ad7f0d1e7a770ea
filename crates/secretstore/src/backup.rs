//! `secretstore backup` and `secretstore restore` (contract §11): a consistent copy of an
//! embedded (SQLite) store, taken while its server serves, and a new data directory filled from
//! one. `backup` asks the server holding the data directory for the copy over the admin API
//! (`GET /v1/backup`), or, when no server holds it, takes the directory's lock and makes the copy
//! itself; either way the file is checked before it is reported written. `restore` needs no
//! server. A backup holds ciphertext and wrapped keys only, so it opens only with the root key
//! the server had, which is never in it; with PostgreSQL, pg_dump takes the backup instead.

use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use secretstore_sqlite::{BackupInfo, DirLock};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::admin::{block_on, client, Connection, Failure};
use crate::stdout::outln;

/// Where a dev-mode server keeps the root key it generated (`serve --dev` without a key).
const DEV_ROOT_KEY: &str = "root.key";

#[derive(Debug, Args)]
#[command(
    after_help = "While a server runs on DIR, the copy comes from it over the admin API \
(it must have an admin listener: --admin-listen, and the token for --admin-token-file or \
SECRETSTORE_ADMIN_TOKEN; the URL from --admin-url, else SECRETSTORE_ADMIN_URL, else \
http://127.0.0.1:12112), and writes go on meanwhile. When none does, the copy is made directly, \
holding DIR's lock so no server starts on it meanwhile.\n\n\
The backup holds ciphertext and wrapped keys only: it opens only with the same root key, which \
is not in it (nor is a dev-mode DIR/root.key: keep that separately). For a server on PostgreSQL \
(--database-url), back up the database with pg_dump instead.\n\nExample:\n  \
secretstore backup --data /var/lib/secretstore --output secretstore-$(date +%F).db"
)]
pub struct BackupArgs {
    #[command(flatten)]
    data: DataDir,

    /// The backup file to write: a new file (an existing one is never overwritten), readable
    /// by its owner only.
    #[arg(long, value_name = "FILE")]
    output: PathBuf,

    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Then start the server on DIR with the root key the backup was made \
under (`secretstore backup` names it); any other root key is refused at start, naming the one \
needed.\n\nExample:\n  \
secretstore restore --data /var/lib/secretstore --input secretstore-2026-12-01.db\n  \
secretstore serve --data /var/lib/secretstore --root-key-file root.key --admin-token-file admin.token"
)]
pub struct RestoreArgs {
    #[command(flatten)]
    data: DataDir,

    /// The backup file, as `secretstore backup` wrote it.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
}

/// `--data`, as `serve` takes it.
#[derive(Debug, Args)]
struct DataDir {
    /// The data directory (the server's --data): `backup` copies it; `restore` fills it, and
    /// then it must not exist, or be empty (it is created with mode 0700).
    #[arg(
        long = "data",
        env = "SECRETSTORE_DATA",
        default_value = "./secretstore-data",
        value_name = "DIR"
    )]
    path: PathBuf,
}

pub fn backup(args: BackupArgs) -> ExitCode {
    block_on(run_backup(args))
}

pub fn restore(args: RestoreArgs) -> ExitCode {
    match secretstore_sqlite::restore(&args.data.path, &args.input) {
        Ok(info) => {
            outln!(
                "restored {} into {}: {} ({} secrets, schema {}). Start the server on it with \
                 the root key it was made under{}; another root key is refused at start.",
                args.input.display(),
                args.data.path.display(),
                size(info.bytes),
                info.secrets,
                info.schema_version,
                roots_named(&info),
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("secretstore: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Says why, on standard error; the failure is then only an exit status.
fn refuse(why: impl std::fmt::Display) -> Failure {
    eprintln!("secretstore: {why}");
    Failure::Reported
}

/// Where the copy comes from.
enum Source {
    /// No server holds the directory: its lock, held until the copy is made.
    Stopped(DirLock),
    /// A server holds it: its admin API.
    Server(secretstore_client::AdminClient),
}

async fn run_backup(args: BackupArgs) -> Result<(), Failure> {
    let dir = &args.data.path;
    if secretstore_sqlite::database_with_data(dir).is_none() {
        return Err(refuse(format!(
            "{} holds no secretstore database (no {} with data in it): give the server's \
             --data (a server on PostgreSQL is backed up with pg_dump instead)",
            dir.display(),
            secretstore_sqlite::DATABASE_FILE
        )));
    }
    // Chosen before the output is created, so that a missing admin token leaves no file.
    let source = match secretstore_sqlite::try_lock(dir).map_err(refuse)? {
        Some(held) => Source::Stopped(held),
        None => Source::Server(client(&args.connection).map_err(|failure| match failure {
            Failure::Usage(why) => Failure::Usage(format!("{}: {why}", held_by_server(dir))),
            other => other,
        })?),
    };
    let output = create_new_private(&args.output)?;
    let copied = match &source {
        Source::Stopped(held) => {
            drop(output);
            secretstore_sqlite::snapshot_stopped(dir, held, &args.output).map_err(refuse)
        }
        Source::Server(admin) => copy_from_server(admin, dir, output, &args.output).await,
    };
    let from_server = matches!(source, Source::Server(_));
    drop(source);
    let checked = copied.and_then(|()| {
        sync_file_and_directory(&args.output)
            .map_err(|e| refuse(format!("cannot sync {}: {e}", args.output.display())))?;
        secretstore_sqlite::inspect(&args.output).map_err(refuse)
    });
    let info = match checked {
        Ok(info) => info,
        Err(failure) => {
            // A file that is not a whole backup must not pass for one.
            let _ = std::fs::remove_file(&args.output);
            return Err(failure);
        }
    };
    if args.connection.json {
        let roots: Vec<String> = info.roots.iter().map(ToString::to_string).collect();
        outln!(
            "{:#}",
            json!({
                "object": "backup",
                "file": args.output.display().to_string(),
                "bytes": info.bytes,
                "secrets": info.secrets,
                "schema_version": info.schema_version,
                "root_keys": roots,
                "from_server": from_server,
            })
        );
        return Ok(());
    }
    let dev_key = dir.join(DEV_ROOT_KEY);
    let dev_note = if dev_key.exists() {
        format!(
            "; {} (the dev-mode root key) is not in it: keep a copy of that file apart from \
             the backup",
            dev_key.display()
        )
    } else {
        String::new()
    };
    outln!(
        "wrote {}: {}, {} secrets, schema {} ({}). It holds ciphertext and wrapped keys only \
         and opens only with the same root key{}{dev_note}.",
        args.output.display(),
        size(info.bytes),
        info.secrets,
        info.schema_version,
        if from_server {
            "copied by the running server"
        } else {
            "no server was running"
        },
        roots_named(&info),
    );
    Ok(())
}

/// The new file `path`, owner-only; an existing file is refused, never overwritten.
fn create_new_private(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => refuse(format!(
                "{} exists: a backup never overwrites a file; choose a new name or remove it",
                path.display()
            )),
            _ => refuse(format!("cannot create {}: {e}", path.display())),
        })
}

/// Streams `GET /v1/backup` into `file`, refusing an answer shorter than announced.
async fn copy_from_server(
    admin: &secretstore_client::AdminClient,
    dir: &Path,
    file: std::fs::File,
    path: &Path,
) -> Result<(), Failure> {
    let explain = |err: secretstore_client::Error| {
        if err.is_transport() {
            refuse(format!(
                "{}: {err}. Give --admin-url (the server's --admin-listen; a server without one \
                 cannot be backed up while it runs)",
                held_by_server(dir)
            ))
        } else {
            Failure::Request(err)
        }
    };
    let mut download = admin.download("/v1/backup").await.map_err(explain)?;
    let announced = download.announced_len();
    let mut file = tokio::fs::File::from_std(file);
    let mut written: u64 = 0;
    let write_failed = |e: io::Error| refuse(format!("cannot write {}: {e}", path.display()));
    while let Some(chunk) = download.chunk().await? {
        file.write_all(&chunk).await.map_err(write_failed)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(write_failed)?;
    match announced {
        Some(announced) if announced != written => Err(refuse(format!(
            "the server announced {announced} bytes but sent {written}: the copy is incomplete"
        ))),
        _ => Ok(()),
    }
}

/// Why `backup` needs the admin API.
fn held_by_server(dir: &Path) -> String {
    format!(
        "{} is held by a running server, so the copy comes from its admin API",
        dir.display()
    )
}

/// Makes the file, and its name in its directory, durable before it is reported written.
fn sync_file_and_directory(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// " (root key ID)" or " (root keys ID, ID)" for the keys a restored server must be given.
fn roots_named(info: &BackupInfo) -> String {
    let ids: Vec<String> = info.roots.iter().map(ToString::to_string).collect();
    match ids.len() {
        0 => String::new(),
        1 => format!(" (root key {})", ids[0]),
        _ => format!(" (root keys {})", ids.join(", ")),
    }
}

/// A size as a person reads it: 512 bytes, 3.4 KiB, 12.0 MiB, 1.5 GiB.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(3482), "3.4 KiB");
        assert_eq!(size(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
