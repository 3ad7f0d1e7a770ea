//! Starts, kills and stops the real `secretstore` binary the way an operator would: `serve
//! --dev` on a free port over a data directory that outlives each process, with the root key
//! in the environment so every restart opens the same data (the command line is
//! `secretstore_testkit::binary::serve_command`, shared with the tests; this side adds tokio and
//! the kill loop's needs). Also the pieces of a run around
//! it: finding the binary, the run's work directory and random key, and the server's resident
//! memory and the machine's load average from /proc for the soak.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use secretstore_testkit::binary::{listening_url, serve_command, Mode};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to print its "listening" line (a cold start after a crash
/// replays the write-ahead log first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary to run: `--bin` if given, else `release/secretstore` beside this harness's own
/// target directory if it exists, else `debug/secretstore`. Looking beside the harness (not in
/// the working directory) makes the default right however the harness is invoked.
pub fn resolve_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = given {
        if !bin.is_file() {
            bail!("--bin {}: no such file", bin.display());
        }
        return Ok(bin);
    }
    let mut targets = Vec::new();
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        targets.push(PathBuf::from(dir));
    }
    // The harness lives in target/<profile>/; its parent is the target directory.
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        targets.push(target);
    }
    targets.push(PathBuf::from("target"));
    for target in &targets {
        for profile in ["release", "debug"] {
            let bin = target.join(profile).join("secretstore");
            if bin.is_file() {
                return Ok(bin);
            }
        }
    }
    bail!(
        "no secretstore binary under {}; build it (cargo build --release --bin secretstore) or \
         pass --bin PATH",
        targets
            .iter()
            .map(|t| t.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

/// A fresh directory for one run's data and logs, in `parent` or the system's temporary
/// directory; removed when dropped unless the run keeps it (`TempDir::keep`).
pub fn work_dir(prefix: &str, parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    match parent {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("cannot create the work directory")
}

/// `bytes` random bytes from the kernel as hex: a root key (32 bytes), a run's app name.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("open /dev/urandom")?,
        &mut buf,
    )
    .context("read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Everything needed to start the same server again: binary, data directory, root key, extra
/// flags.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub root_key: String,
    pub extra_args: Vec<String>,
}

/// One running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub log: PathBuf,
    /// From spawn to the "listening" line.
    pub start_time: Duration,
}

impl ServerSpec {
    /// Spawns `serve`, waits for `secretstore listening on http://ADDR` on standard output,
    /// and keeps draining standard output so the server never blocks on a full pipe. Standard
    /// error goes to `log`.
    pub async fn start(&self, log: &Path) -> anyhow::Result<ServerProcess> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create the log file {}", log.display()))?;
        let began = Instant::now();
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        // The one command line every test and harness starts the server with.
        let mut child = Command::from(serve_command(
            &self.bin,
            &self.data,
            &self.root_key,
            &Mode::Dev,
            &extra,
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // A harness that fails half-way must not leave servers behind.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut first)).await;
        let log_tail = || tail(log);
        match read {
            Err(_) => bail!(
                "the server printed nothing within {START_TIMEOUT:?}; its log {}:\n{}",
                log.display(),
                log_tail()
            ),
            Ok(Err(err)) => bail!("reading the server's stdout: {err}"),
            Ok(Ok(0)) => bail!(
                "the server exited before listening; its log {}:\n{}",
                log.display(),
                log_tail()
            ),
            Ok(Ok(_)) => {}
        }
        let Some(url) = listening_url(&first) else {
            bail!("unexpected first line from the server: {first:?}");
        };
        let url = url.to_owned();
        tokio::spawn(async move {
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        Ok(ServerProcess {
            child,
            pid,
            url,
            log: log.to_path_buf(),
            start_time: began.elapsed(),
        })
    }
}

impl ServerProcess {
    /// SIGKILL (what `Child::kill` sends on Unix): the process gets no chance to finish a
    /// request, flush a buffer or run a destructor. (Unlike a power cut, what it already handed
    /// to the kernel survives; this tests the server's commit protocol, not the disk's.)
    pub async fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("SIGKILL the server")
    }

    /// SIGTERM, then waits (at most 30 s) for the server to finish in-flight requests and exit.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        // kill(1) rather than libc::kill keeps the workspace free of unsafe code.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .context("run kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the server did not exit within 30 s of SIGTERM")
            }
        }
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        read_rss_kib(self.pid).context("no VmRSS in /proc/PID/status")
    }
}

/// Resident set size of a process in KiB (VmRSS in /proc/PID/status); None once it is gone.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The load average (1, 5, 15 minutes) from /proc/loadavg: the machine is shared, so every
/// figure is reported beside it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
