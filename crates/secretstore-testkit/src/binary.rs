//! Starting the real `secretstore` binary as an operator would: `serve --dev` on a free port
//! over a data directory that outlives each process (restarts reuse it), with the root key in
//! the environment. `serve_command` is the one description of that command line, shared by the
//! end-to-end and CLI tests (through `Site`) and the crash and soak harnesses (which run it
//! with tokio); `listening_url` reads the line every start prints first.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What `secretstore serve` prints first on standard output, before the URL.
pub const LISTENING: &str = "secretstore listening on ";

/// The URL in the first line a server printed, if it is the "listening" line.
pub fn listening_url(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING)
}

/// How a server runs: dev mode, or production mode with the admin API on a free port.
#[derive(Debug, Clone)]
pub enum Mode {
    Dev,
    /// The admin token is in this file (owner-only).
    Production {
        token_file: PathBuf,
    },
}

/// `BIN serve` over `data` in `mode`, on a free port unless `extra` gives `--listen`, with the
/// root key in the environment. Every environment twin the test does not set is removed, so one
/// left set by the caller cannot quietly change what is tested.
pub fn serve_command(
    bin: &Path,
    data: &Path,
    root_key: &str,
    mode: &Mode,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(bin);
    command.arg("serve");
    match mode {
        Mode::Dev => {
            command.arg("--dev");
        }
        Mode::Production { token_file } => {
            command.arg("--admin-token-file").arg(token_file);
            if !extra.contains(&"--admin-listen") {
                command.arg("--admin-listen").arg("127.0.0.1:0");
            }
        }
    }
    if !extra.contains(&"--listen") {
        command.arg("--listen").arg("127.0.0.1:0");
    }
    command
        .arg("--data")
        .arg(data)
        .args(extra)
        .env("SECRETSTORE_ROOT_KEY", root_key);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("SECRETSTORE_") && text != "SECRETSTORE_ROOT_KEY" {
            command.env_remove(&name);
        }
    }
    command
}

/// 32 random bytes from the kernel as 64 hex digits: a root key.
pub fn random_root_key() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `secretstore admin listening on ...` says, the second line of a server with one.
pub const ADMIN_LISTENING: &str = "secretstore admin listening on ";

/// A data directory and a root key shared by successive server processes.
#[derive(Debug)]
pub struct Site {
    pub bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub root_key: String,
    pub mode: Mode,
    /// The admin token, in production mode.
    pub admin_token: Option<String>,
    /// More environment for every server started (`SOFTHSM2_CONF` for an HSM's module).
    pub env: Vec<(String, String)>,
    starts: usize,
}

/// One server process over a site's data; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// The admin API's URL, in production mode.
    pub admin_url: Option<String>,
    pub log: PathBuf,
}

impl Site {
    /// A fresh site for the binary at `bin` (`env!("CARGO_BIN_EXE_secretstore")` in the
    /// binary's own tests).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            dir: tempfile::tempdir().unwrap(),
            root_key: random_root_key(),
            mode: Mode::Dev,
            admin_token: None,
            env: Vec::new(),
            starts: 0,
        }
    }

    /// A production-mode site: an admin token in an owner-only file beside the data, and the
    /// admin API on a free port.
    pub fn production(bin: impl Into<PathBuf>) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let mut site = Self::new(bin);
        let token = random_root_key();
        let token_file = site.dir.path().join("admin.token");
        std::fs::write(&token_file, &token).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        site.mode = Mode::Production { token_file };
        site.admin_token = Some(token);
        site
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.data().join(secretstore_sqlite::DATABASE_FILE)
    }

    /// Writes `count` secrets of `app` and `account` (test mode) straight into the database of
    /// this site's stopped server, in one transaction: far faster than the API, for tests that
    /// need a large store and never open a payload (each one's sealed bytes are a single zero,
    /// which no key opens). `row(n)` gives the n-th one's user (`None`: the account scope), name
    /// and expiry; its id is `appsecret_` and n on 30 digits.
    pub fn insert_bare_secrets(
        &self,
        app: &str,
        account: &str,
        count: u64,
        row: impl Fn(u64) -> (Option<String>, String, Option<i64>),
    ) {
        let mut conn = rusqlite::Connection::open(self.db()).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO secrets (id, app, account, livemode, scope_type, scope_user, name,
                                          created, expires_at, sealed)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, 1, ?7, x'00')",
                )
                .unwrap();
            for n in 0..count {
                let (user, name, expires_at) = row(n);
                let scope_type = if user.is_some() { "user" } else { "account" };
                insert
                    .execute(rusqlite::params![
                        format!("appsecret_{n:030}"),
                        app,
                        account,
                        scope_type,
                        user.unwrap_or_default(),
                        name,
                        expires_at
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    /// The command that starts a server over this site (see `serve_command`).
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut command = serve_command(&self.bin, &self.data(), &self.root_key, &self.mode, extra);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Starts a server and waits for its "listening" line.
    pub fn start(&mut self, extra: &[&str]) -> Server {
        let starting = self.spawn(extra);
        self.wait_listening(starting, extra)
    }

    /// Starts `n` servers at the same instant (all processes spawned before any is waited
    /// for), as an orchestrator starting replicas on one database would, and waits for each
    /// one's "listening" line.
    pub fn start_together(&mut self, n: usize, extra: &[&str]) -> Vec<Server> {
        let starting: Vec<_> = (0..n).map(|_| self.spawn(extra)).collect();
        starting
            .into_iter()
            .map(|one| self.wait_listening(one, extra))
            .collect()
    }

    /// Starts a server under another program (`prlimit --nofile=256:256 --`, say), which
    /// runs the server's command line as its own, and waits for its "listening" line.
    pub fn start_under(&mut self, wrapper: &[&str], extra: &[&str]) -> Server {
        let starting = self.spawn_under(wrapper, extra);
        self.wait_listening(starting, extra)
    }

    /// A server process just spawned, and its log.
    fn spawn(&mut self, extra: &[&str]) -> (Child, PathBuf) {
        self.spawn_under(&[], extra)
    }

    fn spawn_under(&mut self, wrapper: &[&str], extra: &[&str]) -> (Child, PathBuf) {
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let mut command = self.command(extra);
        if !wrapper.is_empty() {
            command = wrap(&command, wrapper);
        }
        command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        (command.spawn().expect("start the secretstore binary"), log)
    }

    fn wait_listening(&self, (mut child, log): (Child, PathBuf), extra: &[&str]) -> Server {
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines =
            if matches!(self.mode, Mode::Production { .. }) || extra.contains(&"--admin-listen") {
                2
            } else {
                1
            };
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            for _ in 0..lines {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                first.push_str(&line);
            }
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log_text())
            }
        };
        let Some(url) = listening_url(line.lines().next().unwrap_or("")).map(str::to_owned) else {
            let _ = child.kill();
            panic!("unexpected first line {line:?}; log:\n{}", log_text())
        };
        let admin_url = line
            .lines()
            .nth(1)
            .and_then(|l| l.trim().strip_prefix(ADMIN_LISTENING))
            .map(str::to_owned);
        Server {
            child: Some(child),
            url,
            admin_url,
            log,
        }
    }
}

impl Server {
    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the process to exit on its own.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        signal_term(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `command` run under another program (`setpriv ...`, `prlimit ...`), which takes its command
/// line as its own arguments; the environment `command` sets and removes goes with it.
pub fn wrap(command: &Command, wrapper: &[&str]) -> Command {
    let (program, args) = wrapper.split_first().expect("a wrapper program");
    let mut wrapped = Command::new(program);
    wrapped
        .args(args)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

/// SIGTERM through kill(1), which keeps the workspace free of unsafe code.
pub fn signal_term(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}
