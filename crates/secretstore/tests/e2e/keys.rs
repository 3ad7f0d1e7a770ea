//! The key hierarchy as an operator runs it: a root key held in a real PKCS#11 token (SoftHSM2)
//! that serves, survives a restart and refuses a wrong PIN or a missing key with one sentence;
//! a root key rotated while the server serves (a key file overwritten, SIGHUP, `keys
//! rotate-root`, `keys status`), after which the old key is no longer needed; and a namespace's
//! key rotated with `keys rotate-namespace`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::{client, find, set, site, Site, BIN};
use crate::startup::run_to_exit;

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "secretstore-e2e";

/// A SoftHSM2 token of its own under `dir`: its configuration (passed to every process as
/// `SOFTHSM2_CONF`), the token initialised with a user PIN, and the PIN in an owner-only file.
struct Token {
    conf: PathBuf,
    pin_file: PathBuf,
}

impl Token {
    fn new(dir: &Path) -> Self {
        assert!(
            Path::new(SOFTHSM_MODULE).exists(),
            "this test needs SoftHSM2 ({SOFTHSM_MODULE}): apt-get install softhsm2"
        );
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--pin", "1234", "--so-pin", "5678"])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(init.status.success(), "{init:?}");
        let pin_file = dir.join("pin");
        write_private(&pin_file, "1234\n");
        Self { conf, pin_file }
    }

    fn env(&self) -> (String, String) {
        ("SOFTHSM2_CONF".to_owned(), self.conf.display().to_string())
    }

    /// `secretstore keys hsm-generate`: a new non-extractable AES key labelled `label`.
    fn generate(&self, label: &str) -> String {
        let out = Command::new(BIN)
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["keys", "hsm-generate", "--pkcs11-module", SOFTHSM_MODULE])
            .args(["--pkcs11-token-label", TOKEN, "--pkcs11-pin-file"])
            .arg(&self.pin_file)
            .args(["--pkcs11-key-label", label])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn flags(&self, pin_file: &Path, label: &str) -> Vec<String> {
        vec![
            "--pkcs11-module".into(),
            SOFTHSM_MODULE.into(),
            "--pkcs11-token-label".into(),
            TOKEN.into(),
            "--pkcs11-pin-file".into(),
            pin_file.display().to_string(),
            "--pkcs11-key-label".into(),
            label.into(),
        ]
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn refs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

const KEY: &str = "sk_test_hsmapp";
/// The account a dev-mode request without `Stripe-Account` acts on.
const DEV_ACCOUNT: &str = "acct_dev_hsmapp";

async fn set_one(url: &str, name: &str, payload: &str) {
    let (status, body) = set(
        &client(),
        url,
        KEY,
        &[
            ("name", name),
            ("payload", payload),
            ("scope[type]", "account"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

async fn find_one(url: &str, name: &str) -> (u16, serde_json::Value) {
    find(
        &client(),
        url,
        KEY,
        &[
            ("name", name),
            ("scope[type]", "account"),
            ("expand[]", "payload"),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_hsm_root_key_serves_survives_a_restart_and_never_leaves_the_token() {
    let mut site = site();
    let token = Token::new(site.dir.path());
    site.env.push(token.env());
    let made = token.generate("root-1");
    assert!(made.contains("made root key"), "{made}");
    let flags = token.flags(&token.pin_file, "root-1");

    let mut server = site.start(&refs(&flags));
    let payload = "zqxPLAINTEXTzqx-hsm-payload";
    set_one(&server.url, "hsm-secret", payload).await;
    let log = server.log_text();
    assert!(
        log.contains("PKCS#11"),
        "the start names the HSM key it loaded: {log}"
    );
    server.terminate();

    let server = site.start(&refs(&flags));
    let (status, body) = find_one(&server.url, "hsm-secret").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"], payload);
    // Nothing the server wrote holds the payload, and no file under the data directory holds
    // anything the token would not give out.
    assert!(
        crate::server::files_under(&site.data())
            .iter()
            .all(|(_, bytes)| !crate::server::contains(bytes, payload.as_bytes())),
        "plaintext found under the data directory"
    );
}

#[tokio::test]
async fn a_wrong_pin_or_a_missing_key_label_stops_the_start_with_one_sentence() {
    let mut site = site();
    let token = Token::new(site.dir.path());
    site.env.push(token.env());
    token.generate("root-1");

    let wrong_pin = site.dir.path().join("wrong-pin");
    write_private(&wrong_pin, "9999\n");
    let (started, text) = run_to_exit(site.command(&refs(&token.flags(&wrong_pin, "root-1"))));
    assert!(!started, "a wrong PIN must stop the start: {text}");
    let said = text.trim();
    assert_eq!(said.lines().count(), 1, "one sentence: {said}");
    assert!(
        said.contains("PIN") && said.contains(&wrong_pin.display().to_string()),
        "{said}"
    );

    let (started, text) =
        run_to_exit(site.command(&refs(&token.flags(&token.pin_file, "no-such-key"))));
    assert!(!started, "a missing key label must stop the start: {text}");
    let said = text.trim();
    assert_eq!(said.lines().count(), 1, "one sentence: {said}");
    assert!(said.contains("no-such-key"), "{said}");
}

/// `secretstore keys ARGS --json` against `admin_url` with the admin token `token`.
fn keys(token: &str, admin_url: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .args(["--json", "--admin-url", admin_url])
        .env("SECRETSTORE_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keys {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("keys {args:?}: {e}: {text}"))
}

/// A dev-mode site whose root key is in a file, with the admin API on: the flags and the token.
fn keyed_site(site: &Site) -> (PathBuf, Vec<String>, String) {
    let key_file = site.dir.path().join("root.key");
    write_private(&key_file, &secretstore_testkit::binary::random_root_key());
    let token = secretstore_testkit::binary::random_root_key();
    let token_file = site.dir.path().join("admin.token");
    write_private(&token_file, &token);
    let flags = vec![
        "--root-key-file".to_owned(),
        key_file.display().to_string(),
        "--admin-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--admin-token-file".to_owned(),
        token_file.display().to_string(),
        "--max-secrets-per-scope".to_owned(),
        "1000".to_owned(),
    ];
    (key_file, flags, token)
}

async fn assert_all_found(url: &str, count: usize) {
    for n in 0..count {
        let (status, body) = find_one(url, &format!("rot-{n}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["payload"], format!("payload-{n}"));
    }
}

#[tokio::test]
async fn a_root_key_rotated_while_serving_leaves_the_old_key_unneeded() {
    let mut site = site();
    let (key_file, flags, token) = keyed_site(&site);
    let server = site.start(&refs(&flags));
    let admin = server.admin_url.clone().unwrap();
    for n in 0..20 {
        set_one(&server.url, &format!("rot-{n}"), &format!("payload-{n}")).await;
    }
    let before = keys(&token, &admin, &["status"]);
    let old_id = before["roots"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(before["roots"][0]["active"], true, "{before}");
    assert_eq!(before["format_1_secrets"], 0, "{before}");

    // The operator writes the new key over the file and sends SIGHUP: the old key stays in
    // memory, as an older version, until the rotation has moved what it wrapped.
    write_private(&key_file, &secretstore_testkit::binary::random_root_key());
    let reloads = server.log_text().matches("root keys reloaded").count();
    crate::server::sighup(&server);
    crate::server::wait_until(|| server.log_text().matches("root keys reloaded").count() > reloads);
    let rotated = keys(&token, &admin, &["rotate-root"]);
    // The namespace's key, the service key and the digest key.
    assert_eq!(rotated["rewrapped"], 3, "{rotated}");
    let status = keys(&token, &admin, &["status"]);
    let roots = status["roots"].as_array().unwrap();
    let old = roots.iter().find(|r| r["id"] == old_id.as_str()).unwrap();
    assert_eq!(
        (old["keys"].as_u64(), old["active"].as_bool()),
        (Some(0), Some(false)),
        "{status}"
    );
    let new = roots.iter().find(|r| r["active"] == true).unwrap();
    assert_eq!(new["keys"], 3, "{status}");
    assert_all_found(&server.url, 20).await;
    drop(server);

    // A restart with only the new key serves everything: the old one is no longer needed.
    let server = site.start(&refs(&flags));
    assert_all_found(&server.url, 20).await;
}

#[tokio::test]
async fn a_namespace_key_rotated_re_wraps_its_secrets_and_they_still_open() {
    let mut site = site();
    let (_, flags, token) = keyed_site(&site);
    let server = site.start(&refs(&flags));
    let admin = server.admin_url.clone().unwrap();
    for n in 0..450 {
        set_one(&server.url, &format!("rot-{n}"), &format!("payload-{n}")).await;
    }
    let rotated = keys(
        &token,
        &admin,
        &[
            "rotate-namespace",
            "--app",
            "hsmapp",
            "--account",
            DEV_ACCOUNT,
            "--mode",
            "test",
        ],
    );
    let done = &rotated["namespaces"][0];
    assert_eq!(
        (done["version"].as_u64(), done["rewrapped"].as_u64()),
        (Some(2), Some(450)),
        "{rotated}"
    );
    assert_all_found(&server.url, 450).await;
    // Every payload's data key is now wrapped by version 2: a second rotation moves all of
    // them again to version 3, none left behind.
    let all = keys(&token, &admin, &["rotate-namespace", "--all"]);
    let done = &all["namespaces"][0];
    assert_eq!(
        (done["version"].as_u64(), done["rewrapped"].as_u64()),
        (Some(3), Some(450)),
        "{all}"
    );
    drop(server);
    let server = site.start(&refs(&flags));
    assert_all_found(&server.url, 450).await;
}

#[tokio::test]
async fn with_mlock_the_servers_memory_is_locked_out_of_swap() {
    let mut site = site();
    let server = site.start(&["--mlock"]);
    set_one(&server.url, "locked", "zqxPLAINTEXTzqx-locked").await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid().unwrap())).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmLck:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // The pages the server has touched (its heap, its stacks, SQLite's cache) are locked.
    assert!(locked_kib > 1024, "VmLck is {locked_kib} kB:\n{status}");
}
