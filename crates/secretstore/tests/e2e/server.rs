//! Starts and stops the real binary for tests, and talks to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_secretstore");

/// One server process over a data directory that outlives it (restarts reuse it).
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub log: PathBuf,
}

/// A data directory and a root key shared by successive server processes.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub root_key: String,
    starts: usize,
}

impl Site {
    pub fn new() -> Self {
        // A fixed-format key given through the environment, as production would.
        let mut bytes = [0u8; 32];
        getrandom(&mut bytes);
        let root_key = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            dir: tempfile::tempdir().unwrap(),
            root_key,
            starts: 0,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.data().join("secretstore.db")
    }

    /// `serve --dev` on a free port (unless `extra` gives `--listen`) over this site's data.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("serve").arg("--dev");
        if !extra.contains(&"--listen") {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        command
            .arg("--data")
            .arg(self.data())
            .args(extra)
            .env("SECRETSTORE_ROOT_KEY", &self.root_key)
            .env_remove("SECRETSTORE_ROOT_KEY_FILE")
            .env_remove("SECRETSTORE_MAX_SECRETS_PER_SCOPE");
        command
    }

    /// Starts a server and waits for its "listening" line.
    pub fn start(&mut self, extra: &[&str]) -> Server {
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let mut command = self.command(extra);
        command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().expect("start the secretstore binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        };
        let url = line
            .trim()
            .strip_prefix("secretstore listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "unexpected first line {line:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Server {
            child: Some(child),
            url,
            log,
        }
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
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
        signal(child.id() as i32, libc::SIGTERM);
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

pub fn signal(pid: i32, sig: i32) {
    // SAFETY-free: `kill(1)` from the shell keeps the tests free of unsafe code.
    let status = Command::new("kill")
        .arg(format!(
            "-{}",
            if sig == libc::SIGTERM { "TERM" } else { "KILL" }
        ))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// An HTTP client as an app backend would use it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn set(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    form: &[(&str, &str)],
) -> reqwest::Result<(u16, serde_json::Value)> {
    let response = client
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(key)
        .form(form)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub async fn find(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    query: &[(&str, &str)],
) -> reqwest::Result<(u16, serde_json::Value)> {
    let response = client
        .get(format!("{url}/v1/apps/secrets/find"))
        .bearer_auth(key)
        .query(query)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn integrity_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}
