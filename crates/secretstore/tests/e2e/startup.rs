//! Start-up refuses what it must, with a message a person can act on, and the running server's
//! logs carry what an operator needs and nothing secret.

use std::process::Stdio;

use crate::server::{client, set, site, BIN};

/// Runs a start to its end: whether it succeeded, and what it printed. A start still running
/// after 30 s is serving: it is killed and counts as a success, so a test expecting a refusal
/// fails instead of waiting for ever.
pub(crate) fn run_to_exit(mut command: std::process::Command) -> (bool, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let (output, serving) = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(output) => (output.unwrap(), false),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            (rx.recv().unwrap().unwrap(), true)
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (serving || output.status.success(), text)
}

/// Starts a server over `site` (with the key from the environment), stores one secret, stops.
async fn write_some_data(site: &mut crate::server::Site) {
    let mut server = site.start(&[]);
    let (status, _) = set(
        &client(),
        &server.url,
        "sk_test_a",
        &[("name", "n"), ("payload", "p"), ("scope[type]", "account")],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    server.terminate();
}

#[tokio::test]
async fn wrong_root_key_is_refused_at_start_up() {
    let mut site = site();
    write_some_data(&mut site).await;

    let mut other = site.command(&[]);
    other.env("SECRETSTORE_ROOT_KEY", "ab".repeat(32));
    let (ok, text) = run_to_exit(other);
    assert!(!ok);
    assert!(
        text.contains("root key") && text.contains("different"),
        "{text}"
    );
    assert!(!text.contains(&"ab".repeat(32)), "the key is never printed");
    // The right key still works.
    site.start(&[]);
}

#[tokio::test]
async fn root_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let site = site();
    let key_file = site.dir.path().join("root.key");
    std::fs::write(&key_file, "cd".repeat(32)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut command = site.command(&["--root-key-file", key_file.to_str().unwrap()]);
    command.env_remove("SECRETSTORE_ROOT_KEY");
    let (ok, text) = run_to_exit(command);
    assert!(!ok);
    assert!(text.contains("chmod 600"), "{text}");
}

#[tokio::test]
async fn dev_mode_generates_a_private_root_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let mut site = site();
    let mut command = site.command(&[]);
    command.env_remove("SECRETSTORE_ROOT_KEY");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let key = site.data().join("root.key");
    for _ in 0..200 {
        if key.exists() && std::fs::metadata(&key).unwrap().len() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let data_mode = std::fs::metadata(site.data()).unwrap().permissions().mode() & 0o777;
    assert_eq!(data_mode, 0o700);
    let before = std::fs::read(&key).unwrap();
    site.root_key.clear();
    let mut again = site.command(&[]);
    again.env_remove("SECRETSTORE_ROOT_KEY");
    let mut child = again
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key is kept, not regenerated"
    );
}

#[tokio::test]
async fn dev_mode_without_root_key_beside_existing_data_generates_nothing_and_says_which_file() {
    let mut site = site();
    // Data written under the key from the environment: the data directory has no root.key.
    write_some_data(&mut site).await;
    let key = site.data().join("root.key");
    assert!(!key.exists());

    let mut without_key = site.command(&[]);
    without_key.env_remove("SECRETSTORE_ROOT_KEY");
    let text = failed_start(without_key);
    assert!(
        text.contains(&format!("the root key file {} is missing", key.display())),
        "{text}"
    );
    assert!(text.contains("secretstore.db"), "{text}");
    assert!(!key.exists(), "a key was generated and left behind");
    // With its key, the data is served as before.
    site.start(&[]);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_is_refused() {
    let mut site = site();
    let _first = site.start(&[]);
    let (ok, text) = run_to_exit(site.command(&[]));
    assert!(!ok);
    assert!(text.contains("in use"), "{text}");
}

#[tokio::test]
async fn without_dev_mode_it_explains_how_to_start() {
    let site = site();
    let mut command = std::process::Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(site.data())
        .env("SECRETSTORE_ROOT_KEY", &site.root_key)
        .env_remove("SECRETSTORE_DEV");
    let (ok, text) = run_to_exit(command);
    assert!(!ok);
    assert!(text.contains("--dev"), "{text}");
}

#[test]
fn help_documents_every_flag_and_its_environment_twin() {
    let output = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--listen", "SECRETSTORE_LISTEN"),
        ("--data", "SECRETSTORE_DATA"),
        ("--dev", "SECRETSTORE_DEV"),
        ("--root-key-file", "SECRETSTORE_ROOT_KEY_FILE"),
        (
            "--max-secrets-per-scope",
            "SECRETSTORE_MAX_SECRETS_PER_SCOPE",
        ),
        ("--sweep-interval", "SECRETSTORE_SWEEP_INTERVAL"),
        ("--max-body-bytes", "SECRETSTORE_MAX_BODY_BYTES"),
        ("--log-format", "SECRETSTORE_LOG_FORMAT"),
        ("--rate-limit", "SECRETSTORE_RATE_LIMIT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing from:\n{help}"
        );
    }
    assert!(help.contains("SECRETSTORE_ROOT_KEY "), "{help}");
}

#[tokio::test]
async fn json_logs_carry_request_facts_and_never_a_payload_or_whole_key() {
    let mut site = site();
    let mut server = site.start(&["--log-format", "json"]);
    let key = "sk_test_logcheck0123456789secretpart";
    let payload = "log-check-payload-5e8d2b";
    let http = client();
    let (status, _) = set(
        &http,
        &server.url,
        key,
        &[
            ("name", "n"),
            ("payload", payload),
            ("scope[type]", "account"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let bad = http
        .get(format!(
            "{}/v1/apps/secrets/find?name=n&scope[type]=account&payload={payload}",
            server.url
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body = bad.text().await.unwrap();
    assert!(!body.contains(payload));
    server.terminate();
    let log = server.log_text();
    assert!(!log.contains(payload), "payload in the log:\n{log}");
    assert!(
        !log.contains("logcheck0123456789secretpart"),
        "key in the log:\n{log}"
    );
    let requests: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .filter(|v: &serde_json::Value| v.get("request_id").is_some())
        .collect();
    assert!(requests.len() >= 2, "{log}");
    for entry in &requests {
        for field in ["request_id", "method", "path", "status", "latency_ms"] {
            assert!(entry.get(field).is_some(), "{field} missing: {entry}");
        }
        // Milliseconds to the microsecond, not 3.2939480000000003.
        let latency = entry["latency_ms"].to_string();
        let decimals = latency.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "latency_ms {latency}");
    }
}

/// stderr of a start that must fail, and whether it failed.
fn failed_start(command: std::process::Command) -> String {
    let (ok, text) = run_to_exit(command);
    assert!(!ok, "the start should have failed:\n{text}");
    text
}

#[test]
fn a_data_path_that_is_a_file_is_reported_as_such() {
    let site = site();
    std::fs::write(site.data(), "not a directory").unwrap();
    let text = failed_start(site.command(&[]));
    assert!(text.contains("is a file, not a directory"), "{text}");
    assert!(text.contains("--data"), "{text}");
    assert!(!text.contains("root key"), "{text}");
}

/// A command run as user `nobody`, where the machine allows it (root with setpriv); root itself
/// reads every directory, so an unreadable one needs another user.
fn as_nobody(command: &std::process::Command) -> Option<std::process::Command> {
    let is_root = is_root();
    let has_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !is_root || !has_setpriv {
        eprintln!("skipped: needs root and setpriv to run the server as another user");
        return None;
    }
    Some(secretstore_testkit::binary::wrap(
        command,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    ))
}

#[test]
fn a_data_directory_the_user_cannot_read_or_write_is_reported_as_such() {
    use std::os::unix::fs::PermissionsExt;
    let site = site();
    // The site's own directory must be reachable by the other user; the data one is not.
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(site.data()).unwrap();
    for (mode, problem) in [(0o700, "cannot read"), (0o755, "cannot write")] {
        std::fs::set_permissions(site.data(), std::fs::Permissions::from_mode(mode)).unwrap();
        let Some(command) = as_nobody(&site.command(&[])) else {
            return;
        };
        let text = failed_start(command);
        assert!(text.contains(problem), "{mode:o}: {text}");
        assert!(text.contains("the data directory"), "{text}");
        assert!(!text.contains("root key"), "{text}");
    }
}

#[tokio::test]
async fn a_data_directory_or_database_others_may_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let mut site = site();
    let without_env_key = |site: &crate::server::Site| {
        let mut command = site.command(&[]);
        command.env_remove("SECRETSTORE_ROOT_KEY");
        command
    };
    std::fs::create_dir(site.data()).unwrap();
    mode(&site.data(), 0o755);
    let text = failed_start(without_env_key(&site));
    let data = site.data().display().to_string();
    assert!(
        text.contains(&format!(
            "the data directory {data} has permissions 755, so users other than its owner can \
             read or change it; run `chmod 700 {data}`"
        )),
        "{text}"
    );
    assert!(!site.db().exists(), "a database was created");
    assert!(
        !site.data().join("root.key").exists(),
        "a dev root key was generated into it"
    );

    mode(&site.data(), 0o700);
    write_some_data(&mut site).await;
    mode(&site.db(), 0o644);
    let text = failed_start(site.command(&[]));
    let db = site.db().display().to_string();
    assert!(
        text.contains(&format!(
            "the database file {db} has permissions 644, so users other than its owner can read \
             or change it; run `chmod 600 {db}`"
        )),
        "{text}"
    );
    mode(&site.db(), 0o600);
    site.start(&[]);
}

/// Whether this process runs as root, which may give a file to another user.
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout == b"0\n")
}

#[tokio::test]
async fn a_data_directory_database_or_dev_root_key_another_user_owns_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to give files to another user");
        return;
    }
    let mut site = site();
    write_some_data(&mut site).await;
    // The same key as the dev root key, so only its owner can be wrong.
    let key = site.data().join("root.key");
    std::fs::write(&key, &site.root_key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for (path, what) in [
        (site.data(), "the data directory"),
        (site.db(), "the database file"),
        (key.clone(), "the root key file"),
    ] {
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let mut dev_key = site.command(&[]);
        dev_key.env_remove("SECRETSTORE_ROOT_KEY");
        let text = failed_start(dev_key);
        let shown = path.display();
        assert!(
            text.contains(&format!(
                "{what} {shown} belongs to user 65534, not to the user secretstore runs as (0); \
                 run `chown 0 {shown}`"
            )),
            "{text}"
        );
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    }
    site.start(&[]);
}

#[tokio::test]
async fn the_server_runs_with_core_dumps_forbidden() {
    let has_prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_prlimit {
        eprintln!("skipped: needs prlimit (util-linux) to read another process's limits");
        return;
    }
    let mut site = site();
    let server = site.start(&[]);
    let pid = server.pid().unwrap().to_string();
    let limits = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--core",
            "--output",
            "SOFT,HARD",
            "--noheadings",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&limits.stdout);
    // Soft and hard: the process cannot raise it again.
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "{text}"
    );
}

#[test]
fn a_port_in_use_is_found_first_and_nothing_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let site = site();
    let mut command = site.command(&["--listen", &addr]);
    command.env_remove("SECRETSTORE_ROOT_KEY");
    let text = failed_start(command);
    assert!(text.contains("--listen"), "{text}");
    assert!(text.contains("already listening"), "{text}");
    assert!(!site.data().exists(), "the data directory was created");
    // Printed once, not also as a log line.
    assert_eq!(text.matches("cannot listen").count(), 1, "{text}");
}

#[test]
fn listen_takes_a_bare_port_or_a_host_name_and_explains_the_form() {
    for given in ["0", "localhost:0"] {
        let mut site = site();
        let server = site.start(&["--listen", given]);
        assert!(
            server.url.starts_with("http://127.0.0.1:"),
            "{given}: {}",
            server.url
        );
    }
    let site = site();
    let text = failed_start(site.command(&["--listen", "nonsense"]));
    assert!(text.contains("HOST:PORT"), "{text}");
    assert!(!text.contains("invalid socket address syntax"), "{text}");
}

#[test]
fn boolean_variables_take_the_usual_spellings_and_are_named_when_refused() {
    for yes in ["1", "yes", "on", "true", "TRUE"] {
        let site = site();
        // Started by the variable alone, without the flag.
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(site.data())
            .env("SECRETSTORE_ROOT_KEY", &site.root_key)
            .env("SECRETSTORE_DEV", yes)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            line.starts_with("secretstore listening on"),
            "{yes}: {line:?}"
        );
    }
    let site = site();
    let mut command = std::process::Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(site.data())
        .env("SECRETSTORE_DEV", "maybe");
    let text = failed_start(command);
    assert!(text.contains("SECRETSTORE_DEV=maybe"), "{text}");
    assert!(text.contains("true or false"), "{text}");
}

#[test]
fn serve_help_says_what_production_mode_needs() {
    let output = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Production mode"), "{help}");
    for needed in [
        "--root-key-file",
        "--admin-token-file",
        "SECRETSTORE_ADMIN_TOKEN",
        "--admin-listen",
        "token-generate",
    ] {
        assert!(help.contains(needed), "{needed} missing:\n{help}");
    }
}
