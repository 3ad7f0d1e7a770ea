//! Storage faults against the real binary. Disk full: a data directory on a small tmpfs that
//! the test fills up. Read-only: a loop-mounted ext4 that the kernel forces read-only under the
//! running server (ext4's `trigger_fs_error` with `errors=remount-ro`, what a failing disk
//! does). In both, writes answer 503 api_error with `Stripe-Should-Retry: true`; reads keep
//! working with `--no-audit`, and with the audit log on (the default) each read is answered
//! only if its record could be written, else refused with 503 `audit_unavailable` (fail closed,
//! docs/audit.md); nothing stored is damaged, and `/readyz` says not ready (503) even before a client
//! write has failed. Once space returns, `/readyz` is ready again by itself and writes work
//! again, without a restart. A filesystem the kernel forced read-only stays so until it is
//! unmounted (ext4's emergency read-only state), so that recovery is a remount and a restart,
//! also checked here.
//!
//! Mounting needs root (CI runs as root). Set SECRETSTORE_SKIP_ROOT_TESTS=1 to skip these
//! where that is impossible; otherwise a missing privilege fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::{client, find, integrity_check, site};

const KEY: &str = "sk_test_faults";

/// A tmpfs mounted over a directory for the life of the value.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        if std::env::var_os("SECRETSTORE_SKIP_ROOT_TESTS").is_some() {
            eprintln!("SECRETSTORE_SKIP_ROOT_TESTS is set: skipping a test that mounts a tmpfs");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs failed: run as root, or set SECRETSTORE_SKIP_ROOT_TESTS=1"
        );
        Some(Self {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Sets a secret; answers the status and, for refusals, checks the contract's 503.
async fn try_set(http: &reqwest::Client, url: &str, name: &str, payload: &str) -> u16 {
    let response = http
        .post(format!("{url}/v1/apps/secrets"))
        .bearer_auth(KEY)
        .form(&[
            ("name", name),
            ("payload", payload),
            ("scope[type]", "user"),
            ("scope[user]", "usr_1"),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("stripe-should-retry")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body: serde_json::Value = response.json().await.unwrap();
    match status {
        200 => {}
        503 => {
            assert_eq!(body["error"]["type"], "api_error", "{body}");
            assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
            assert_eq!(retry.as_deref(), Some("true"));
        }
        other => panic!("a write answered {other}: {body}"),
    }
    status
}

/// `/readyz` answers 503 `storage_unavailable` within 5 seconds (the outcome of a write stands
/// for a second), with nothing but readiness checks sent meanwhile.
async fn wait_not_ready(http: &reqwest::Client, url: &str, when: &str) {
    for _ in 0..50 {
        let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
        let status = ready.status().as_u16();
        let body: serde_json::Value = ready.json().await.unwrap();
        if status == 503 {
            eprintln!("readyz {when}: {status} {body}");
            assert_eq!(
                body["error"]["code"], "storage_unavailable",
                "{when}: {body}"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/readyz stayed ready {when}");
}

/// Polls `/readyz` until it answers 200, for up to 10 seconds.
async fn wait_ready(http: &reqwest::Client, url: &str, when: &str) {
    for _ in 0..100 {
        let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
        if ready.status().as_u16() == 200 {
            eprintln!("readyz {when}: 200");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/readyz did not become ready {when}");
}

/// Finds `name` in usr_1's scope, with its payload.
async fn find_with_payload(
    http: &reqwest::Client,
    url: &str,
    name: &str,
) -> (u16, serde_json::Value) {
    let query = [
        ("name", name),
        ("scope[type]", "user"),
        ("scope[user]", "usr_1"),
        ("expand[]", "payload"),
    ];
    find(http, url, KEY, &query).await.unwrap()
}

async fn assert_all_readable(http: &reqwest::Client, url: &str, acked: &[(String, String)]) {
    for (name, payload) in acked {
        let (status, body) = find_with_payload(http, url, name).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["payload"].as_str(), Some(payload.as_str()), "{name}");
    }
}

/// Finds every secret of `acked` once; with `audit`, each must be answered with its payload or
/// refused with 503 `audit_unavailable` and no payload (its record could not be written);
/// without, answered. Returns how many were answered.
async fn assert_reads_fail_closed(
    http: &reqwest::Client,
    url: &str,
    acked: &[(String, String)],
    audit: bool,
) -> usize {
    if !audit {
        assert_all_readable(http, url, acked).await;
        return acked.len();
    }
    let mut answered = 0;
    for (name, payload) in acked {
        let (status, body) = find_with_payload(http, url, name).await;
        match status {
            200 => {
                assert_eq!(body["payload"].as_str(), Some(payload.as_str()), "{name}");
                answered += 1;
            }
            503 => {
                assert_eq!(body["error"]["code"], "audit_unavailable", "{name}: {body}");
                assert!(!body.to_string().contains(payload.as_str()), "{name}");
            }
            other => panic!("{name}: a read answered {other}: {body}"),
        }
    }
    answered
}

/// Audit records of successful finds, in the database of a stopped server.
fn finds_recorded(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM audit WHERE operation = 'secrets.find' AND status = 200",
        [],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as usize
}

#[tokio::test]
async fn disk_full_refuses_writes_fails_reads_closed_and_recovers_without_restart() {
    disk_full(true).await;
}

#[tokio::test]
async fn disk_full_without_audit_refuses_writes_keeps_reads_and_recovers_without_restart() {
    disk_full(false).await;
}

async fn disk_full(audit: bool) {
    let mut site = site();
    let Some(_fs) = Tmpfs::mount(&site.data(), "6m") else {
        return;
    };
    let mut args = vec!["--max-secrets-per-scope", "1000000"];
    if !audit {
        args.push("--no-audit");
    }
    let mut server = site.start(&args);
    let http = client();
    let mut acked = Vec::new();
    let big = "x".repeat(4990);
    for i in 0..20 {
        let name = format!("before-{i}");
        assert_eq!(
            try_set(&http, &server.url, &name, &format!("{i}{big}")).await,
            200
        );
        acked.push((name, format!("{i}{big}")));
    }

    // Fill the filesystem to the last byte.
    let filler = site.data().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
    let mut refused = 0;
    for i in 0..400 {
        let name = format!("during-{i}");
        let payload = format!("{i}{big}");
        match try_set(&http, &server.url, &name, &payload).await {
            200 => acked.push((name, payload)),
            _ => refused += 1,
        }
        if refused >= 20 {
            break;
        }
    }
    assert!(refused >= 20, "writes kept succeeding on a full disk");
    let mut reads = assert_reads_fail_closed(&http, &server.url, &acked, audit).await;
    wait_not_ready(&http, &server.url, "on a full disk").await;

    // Ready again by itself once space returns, before any write has to show it.
    std::fs::remove_file(&filler).unwrap();
    wait_ready(&http, &server.url, "once space returned").await;
    for i in 0..20 {
        let name = format!("after-{i}");
        assert_eq!(
            try_set(&http, &server.url, &name, "after").await,
            200,
            "writes resume once space returns"
        );
        acked.push((name, "after".to_owned()));
    }
    assert_all_readable(&http, &server.url, &acked).await;
    reads += acked.len();
    server.terminate();
    assert_eq!(integrity_check(&site.db()), "ok");
    if audit {
        assert_eq!(
            finds_recorded(&site.db()),
            reads,
            "every read answered has its record, and only those"
        );
    }
    let server = site.start(&args);
    assert_all_readable(&http, &server.url, &acked).await;
}

/// An ext4 filesystem in a file, loop-mounted over a directory, that can be made to fail.
struct LoopExt4 {
    dir: PathBuf,
    image: PathBuf,
    device: String,
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl LoopExt4 {
    fn create(dir: &Path, image: &Path) -> Option<Self> {
        if std::env::var_os("SECRETSTORE_SKIP_ROOT_TESTS").is_some() {
            eprintln!("SECRETSTORE_SKIP_ROOT_TESTS is set: skipping a test that loop-mounts ext4");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        run("truncate", &["-s", "32M", image.to_str().unwrap()]);
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let device = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
        let fs = Self {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
            device,
        };
        fs.mount();
        Some(fs)
    }

    fn mount(&self) {
        run(
            "mount",
            &[
                "-o",
                "errors=remount-ro",
                &self.device,
                self.dir.to_str().unwrap(),
            ],
        );
        run("chmod", &["700", self.dir.to_str().unwrap()]);
    }

    /// What a failing disk does: the kernel records an error and forces the filesystem
    /// read-only, under every open file.
    fn fail(&self) {
        let name = Path::new(&self.device)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        std::fs::write(
            format!("/sys/fs/ext4/{name}/trigger_fs_error"),
            "secretstore fault test\n",
        )
        .unwrap();
    }

    /// The operator's repair: unmount, check, mount again.
    fn repair(&self) {
        run("umount", &[self.dir.to_str().unwrap()]);
        let _ = Command::new("e2fsck")
            .args(["-f", "-y", &self.device])
            .output();
        self.mount();
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

#[tokio::test]
async fn storage_forced_read_only_refuses_writes_fails_reads_closed_and_damages_nothing() {
    storage_forced_read_only(true).await;
}

#[tokio::test]
async fn storage_forced_read_only_without_audit_keeps_reads() {
    storage_forced_read_only(false).await;
}

async fn storage_forced_read_only(audit: bool) {
    let mut site = site();
    let image = site.dir.path().join("disk.img");
    let Some(fs) = LoopExt4::create(&site.data(), &image) else {
        return;
    };
    let args: &[&str] = if audit { &[] } else { &["--no-audit"] };
    let mut server = site.start(args);
    let http = client();
    let mut acked = Vec::new();
    for i in 0..5 {
        let name = format!("rw-{i}");
        assert_eq!(try_set(&http, &server.url, &name, "payload").await, 200);
        acked.push((name, "payload".to_owned()));
    }
    fs.fail();
    wait_not_ready(&http, &server.url, "on a disk forced read-only").await;
    for i in 0..5 {
        assert_eq!(
            try_set(&http, &server.url, &format!("ro-{i}"), "payload").await,
            503
        );
    }
    let delete = http
        .post(format!("{}/v1/apps/secrets/delete", server.url))
        .bearer_auth(KEY)
        .form(&[
            ("name", "rw-0"),
            ("scope[type]", "user"),
            ("scope[user]", "usr_1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 503);
    let answered = assert_reads_fail_closed(&http, &server.url, &acked, audit).await;
    if audit {
        assert_eq!(answered, 0, "a read answered with no way to record it");
    }

    // Shutdown cannot flush to a read-only disk; it must still exit, not hang.
    let _ = server.terminate();
    fs.repair();
    let server = site.start(args);
    wait_ready(&http, &server.url, "after the repair").await;
    assert_all_readable(&http, &server.url, &acked).await;
    assert_eq!(
        try_set(&http, &server.url, "after-repair", "payload").await,
        200
    );
}
