//! The `secretstore secrets`, `completions` and `man` commands, run as a user would: a real
//! `secretstore serve --dev` on a free port, and the binary run again as a subprocess for each
//! command, with input on stdin and the key in the environment.

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use secretstore_testkit::binary::Site;

const BIN: &str = env!("CARGO_BIN_EXE_secretstore");
const KEY: &str = "sk_test_clitest";

/// A dev-mode server on a free port over a fresh data directory; both go when dropped.
struct Server {
    _running: secretstore_testkit::binary::Server,
    url: String,
    _site: Site,
}

fn start() -> Server {
    let mut site = Site::new(BIN);
    let running = site.start(&[]);
    let url = running.url.clone();
    Server {
        _running: running,
        url,
        _site: site,
    }
}

/// `secretstore` with a clean environment: no key or base URL unless the test gives one.
fn bare() -> Command {
    let mut command = Command::new(BIN);
    for var in [
        "SECRETSTORE_API_KEY",
        "STRIPE_API_KEY",
        "SECRETSTORE_BASE_URL",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs a command with `stdin` as its standard input.
fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command refused before it reads its input (a usage error) closes the pipe first.
    match input.write_all(stdin.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    drop(input);
    child.wait_with_output().unwrap()
}

struct Answer {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Answer {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.stdout))
    }
}

impl Server {
    /// `secretstore secrets ARGS` against this server, the key in the environment, not yet run.
    fn secrets_command(&self, args: &[&str]) -> Command {
        let mut command = bare();
        command
            .arg("secrets")
            .args(args)
            .env("SECRETSTORE_API_KEY", KEY)
            .env("SECRETSTORE_BASE_URL", &self.url);
        command
    }

    fn secrets(&self, args: &[&str], stdin: &str) -> Answer {
        answer(run(self.secrets_command(args), stdin))
    }
}

fn answer(output: Output) -> Answer {
    Answer {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn set_from_stdin_then_find_hidden_revealed_and_as_json() {
    let server = start();
    let set = server.secrets(&["set", "my-api-key"], "s3cr3t\n").ok();
    assert!(set.stdout.contains("appsecret_"), "{}", set.stdout);
    assert!(set.stdout.contains("my-api-key"));
    assert!(
        !set.stdout.contains("s3cr3t"),
        "set never prints the payload"
    );

    let hidden = server.secrets(&["find", "my-api-key"], "").ok();
    assert!(
        hidden.stdout.contains("(hidden; use --reveal)"),
        "{}",
        hidden.stdout
    );
    assert!(!hidden.stdout.contains("s3cr3t"));

    let revealed = server.secrets(&["find", "my-api-key", "--reveal"], "").ok();
    // One trailing newline from stdin was removed: the payload is exactly "s3cr3t".
    assert!(
        revealed
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["payload", "s3cr3t"]),
        "{}",
        revealed.stdout
    );

    let json = server
        .secrets(&["find", "my-api-key", "--json"], "")
        .ok()
        .json();
    assert_eq!(json["object"], "apps.secret");
    assert_eq!(json["name"], "my-api-key");
    assert_eq!(json["scope"]["type"], "account");
    assert!(json.get("payload").is_none(), "{json}");

    let json = server
        .secrets(&["--json", "find", "my-api-key", "--reveal"], "")
        .ok()
        .json();
    assert_eq!(json["payload"], "s3cr3t");
}

#[test]
fn set_from_a_file_keeps_inner_newlines() {
    let server = start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::write(&file, "-----BEGIN-----\nabc\n-----END-----\n").unwrap();
    server
        .secrets(
            &["set", "pem", "--payload-file", file.to_str().unwrap()],
            "ignored",
        )
        .ok();
    let json = server
        .secrets(&["find", "pem", "--reveal", "--json"], "")
        .ok()
        .json();
    assert_eq!(json["payload"], "-----BEGIN-----\nabc\n-----END-----");

    let missing = server.secrets(
        &[
            "set",
            "x",
            "--payload-file",
            dir.path().join("nope").to_str().unwrap(),
        ],
        "",
    );
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("cannot read the payload file"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_payload_is_never_taken_from_the_command_line_and_never_empty() {
    let server = start();
    let positional = server.secrets(&["set", "name", "s3cr3t"], "");
    assert_eq!(positional.code, 2, "{}", positional.stderr);
    let flag = server.secrets(&["set", "name", "--payload", "s3cr3t"], "");
    assert_eq!(flag.code, 2, "{}", flag.stderr);

    let empty = server.secrets(&["set", "name"], "");
    assert_eq!(empty.code, 2);
    assert!(empty.stderr.contains("empty"), "{}", empty.stderr);
    let newline_only = server.secrets(&["set", "name"], "\n");
    assert_eq!(newline_only.code, 2);

    let listed = server.secrets(&["list", "--json"], "").ok().json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[test]
fn list_and_delete() {
    let server = start();
    for name in ["first", "second", "third"] {
        server.secrets(&["set", name], "p").ok();
    }
    let table = server.secrets(&["list"], "").ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", table.stdout);
    assert!(
        lines[1].starts_with("third"),
        "newest first: {}",
        table.stdout
    );
    assert_eq!(lines.len(), 4);

    let page = server
        .secrets(&["list", "--limit", "2", "--json"], "")
        .ok()
        .json();
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"].as_array().unwrap().len(), 2);

    let all = server
        .secrets(&["list", "--limit", "1", "--all", "--json"], "")
        .ok()
        .json();
    let names: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["third", "second", "first"]);
    assert_eq!(all["has_more"], false);

    let deleted = server.secrets(&["delete", "second"], "").ok();
    assert!(deleted.stdout.contains("deleted"), "{}", deleted.stdout);
    let json = server
        .secrets(&["delete", "third", "--json"], "")
        .ok()
        .json();
    assert_eq!(json["deleted"], true);

    let gone = server.secrets(&["find", "second"], "");
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("No such secret: 'second'"),
        "{}",
        gone.stderr
    );
    assert!(gone.stderr.contains("resource_missing"), "{}", gone.stderr);
    assert!(gone.stdout.is_empty());

    let left = server.secrets(&["list"], "").ok();
    assert!(left.stdout.contains("first") && !left.stdout.contains("second"));
}

#[test]
fn user_scope_and_account_keep_secrets_apart() {
    let server = start();
    server
        .secrets(&["set", "token", "--scope", "user:usr_123"], "user's")
        .ok();
    server
        .secrets(&["set", "token", "--account", "acct_42"], "acct_42's")
        .ok();

    let user = server
        .secrets(
            &[
                "find",
                "token",
                "--scope",
                "user:usr_123",
                "--reveal",
                "--json",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(user["payload"], "user's");
    assert_eq!(user["scope"]["user"], "usr_123");

    let account = server
        .secrets(
            &[
                "find",
                "token",
                "--account",
                "acct_42",
                "--reveal",
                "--json",
            ],
            "",
        )
        .ok()
        .json();
    assert_eq!(account["payload"], "acct_42's");

    // The app's own account scope holds neither.
    assert_eq!(server.secrets(&["find", "token"], "").code, 1);
    let readable = server
        .secrets(&["list", "--scope", "user:usr_123"], "")
        .ok();
    assert!(readable.stdout.contains("token"));

    let bad = server.secrets(&["list", "--scope", "team"], "");
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("user:<id>"), "{}", bad.stderr);
}

#[test]
fn expires_at_takes_durations_and_the_server_refuses_the_past() {
    let server = start();
    let before = now();
    let json = server
        .secrets(&["set", "soon", "--expires-at", "30d", "--json"], "x")
        .ok()
        .json();
    let at = json["expires_at"].as_i64().unwrap();
    assert!(
        at >= before + 30 * 86_400 && at <= now() + 30 * 86_400,
        "{json}"
    );

    let exact = now() + 3600;
    let json = server
        .secrets(
            &["set", "exact", "--expires-at", &exact.to_string(), "--json"],
            "x",
        )
        .ok()
        .json();
    assert_eq!(json["expires_at"].as_i64(), Some(exact));

    let past = server.secrets(&["set", "past", "--expires-at", "1000"], "x");
    assert_eq!(past.code, 1);
    assert!(
        past.stderr
            .contains("Invalid expires_at: must be a Unix timestamp in the future."),
        "{}",
        past.stderr
    );
    assert!(
        past.stderr.contains("parameter_out_of_range"),
        "{}",
        past.stderr
    );

    let nonsense = server.secrets(&["set", "x", "--expires-at", "soon"], "x");
    assert_eq!(nonsense.code, 2);
    assert!(nonsense.stderr.contains("30d"), "{}", nonsense.stderr);
}

#[test]
fn the_api_key_comes_from_the_flag_or_either_variable_and_is_never_printed() {
    let server = start();
    let mut command = bare();
    command.args(["secrets", "list", "--base-url", &server.url]);
    let missing = answer(run(command, ""));
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no API key"), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("STRIPE_API_KEY"),
        "{}",
        missing.stderr
    );

    let mut command = bare();
    command
        .args(["secrets", "list", "--base-url", &server.url])
        .env("STRIPE_API_KEY", KEY);
    answer(run(command, "")).ok();

    let mut command = bare();
    command.args([
        "secrets",
        "list",
        "--base-url",
        &server.url,
        "--api-key",
        KEY,
    ]);
    answer(run(command, "")).ok();

    let secret_part = "0123456789abcdefSECRET";
    let bad_key = format!("sk_bogus_{secret_part}");
    let mut command = bare();
    command
        .args(["secrets", "list", "--base-url", &server.url])
        .env("SECRETSTORE_API_KEY", &bad_key);
    let refused = answer(run(command, ""));
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("HTTP 401"), "{}", refused.stderr);
    assert!(!refused.stderr.contains(secret_part), "{}", refused.stderr);
    assert!(!refused.stdout.contains(secret_part));

    // Help shows the variable's name, never its value.
    let mut command = bare();
    command
        .args(["secrets", "--help"])
        .env("SECRETSTORE_API_KEY", &bad_key);
    let help = answer(run(command, "")).ok();
    assert!(
        help.stdout.contains("SECRETSTORE_API_KEY"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("http://127.0.0.1:12111"),
        "{}",
        help.stdout
    );
    assert!(!help.stdout.contains(secret_part), "{}", help.stdout);
}

#[test]
fn nothing_listening_is_reported_with_a_hint() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut command = bare();
    command
        .args([
            "secrets",
            "list",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .env("SECRETSTORE_API_KEY", KEY);
    let failed = answer(run(command, ""));
    assert_eq!(failed.code, 1);
    assert!(
        failed.stderr.contains("could not reach"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("is the server running"),
        "{}",
        failed.stderr
    );
}

#[test]
fn completions_for_each_shell_mention_secrets() {
    for shell in ["bash", "zsh", "fish"] {
        let mut command = bare();
        command.args(["completions", shell]);
        let script = answer(run(command, "")).ok();
        assert!(!script.stdout.is_empty(), "{shell}");
        assert!(
            script.stdout.contains("secrets"),
            "{shell}: {}",
            script.stdout
        );
        assert!(script.stdout.contains("reveal"), "{shell}");
        for word in ["admin", "installations", "token-generate", "sessions"] {
            assert!(script.stdout.contains(word), "{shell}: no {word}");
        }
    }
    // A directory that does not exist yet is created, parents included.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("not/yet");
    let mut command = bare();
    command.args(["completions", "fish", "--out-dir"]).arg(&out);
    answer(run(command, "")).ok();
    assert!(out.join("secretstore.fish").exists());
}

#[test]
fn the_man_page_describes_the_commands() {
    let mut command = bare();
    command.arg("man");
    let page = answer(run(command, "")).ok();
    assert!(
        page.stdout.starts_with(".ie") || page.stdout.contains(".TH"),
        "{}",
        page.stdout
    );
    assert!(page.stdout.contains("secrets"), "{}", page.stdout);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man/man1");
    let mut command = bare();
    command.args(["man", "--out-dir"]).arg(&out);
    answer(run(command, "")).ok();
    let written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(written.iter().any(|n| n == "secretstore.1"), "{written:?}");
    assert!(
        written.iter().any(|n| n.starts_with("secretstore-secrets")),
        "{written:?}"
    );
    // Every admin command has its page.
    for page in [
        "secretstore-admin.1",
        "secretstore-admin-token-generate.1",
        "secretstore-admin-accounts-create.1",
        "secretstore-admin-apps-delete.1",
        "secretstore-admin-installations-list.1",
        "secretstore-admin-users-get.1",
        "secretstore-admin-keys-roll.1",
        "secretstore-admin-keys-revoke.1",
        "secretstore-admin-sessions-create.1",
    ] {
        assert!(written.iter().any(|n| n == page), "no {page}: {written:?}");
    }
}

#[test]
fn a_base_url_without_a_scheme_gets_a_suggestion() {
    let mut command = bare();
    command
        .args(["secrets", "list", "--base-url", "127.0.0.1:12111"])
        .env("SECRETSTORE_API_KEY", KEY);
    let failed = answer(run(command, ""));
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("http://127.0.0.1:12111"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stderr.contains("relative URL"), "{}", failed.stderr);
}

#[test]
fn a_missing_name_does_not_show_the_key_or_url_as_required() {
    for with_env in [false, true] {
        let mut command = bare();
        command.args(["secrets", "find"]);
        if with_env {
            command
                .env("SECRETSTORE_API_KEY", KEY)
                .env("SECRETSTORE_BASE_URL", "http://127.0.0.1:12111");
        }
        let failed = answer(run(command, ""));
        assert_eq!(failed.code, 2);
        let usage = failed
            .stderr
            .lines()
            .find(|line| line.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("no usage line: {}", failed.stderr))
            .to_owned();
        assert_eq!(
            usage, "Usage: secretstore secrets find <NAME>",
            "env {with_env}"
        );
    }
}

#[test]
fn the_key_and_url_variables_are_still_documented_in_help() {
    let mut command = bare();
    command.args(["secrets", "--help"]);
    let help = answer(run(command, "")).ok().stdout;
    for text in [
        "SECRETSTORE_API_KEY",
        "STRIPE_API_KEY",
        "SECRETSTORE_BASE_URL",
    ] {
        assert!(help.contains(text), "{text} missing:\n{help}");
    }
}

/// A production server and `secretstore admin ARGS` against it.
struct Production {
    _running: secretstore_testkit::binary::Server,
    site: Site,
    admin_url: String,
}

fn production() -> Production {
    let mut site = Site::production(BIN);
    let running = site.start(&[]);
    let admin_url = running.admin_url.clone().unwrap();
    Production {
        _running: running,
        site,
        admin_url,
    }
}

impl Production {
    /// `secretstore admin ARGS` against this server, not yet run.
    fn admin_command(&self, args: &[&str]) -> Command {
        let mut command = bare();
        command
            .arg("admin")
            .args(args)
            .env("SECRETSTORE_ADMIN_URL", &self.admin_url)
            .env(
                "SECRETSTORE_ADMIN_TOKEN",
                self.site.admin_token.as_ref().unwrap(),
            );
        command
    }

    fn admin(&self, args: &[&str]) -> Answer {
        answer(run(self.admin_command(args), ""))
    }
}

#[test]
fn admin_commands_provision_with_tables_json_and_secrets_on_their_own_line() {
    let p = production();
    let table = p
        .admin(&[
            "accounts", "create", "--id", "acct_cli", "--name", "CLI Inc.",
        ])
        .ok();
    let first = table.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("id") && first.ends_with("acct_cli"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("CLI Inc."), "{}", table.stdout);
    let json = p
        .admin(&[
            "apps",
            "create",
            "--id",
            "com.cli.app",
            "--name",
            "App",
            "--account",
            "acct_cli",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        (json["object"].as_str(), json["account"].as_str()),
        (Some("app"), Some("acct_cli"))
    );

    // The key alone on standard output (the details on standard error), once.
    let created = p
        .admin(&[
            "keys",
            "create",
            "--app",
            "com.cli.app",
            "--mode",
            "test",
            "--type",
            "restricted",
            "--permission",
            "secret_read",
        ])
        .ok();
    let key = created.stdout.trim();
    assert_eq!(created.stdout.lines().count(), 1, "{}", created.stdout);
    assert!(key.starts_with("rk_test_") && key.len() >= 48, "{key}");
    assert!(created.stderr.contains("secret_read"), "{}", created.stderr);
    let listed = p.admin(&["keys", "list", "--app", "com.cli.app"]).ok();
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert!(
        !listed.stdout.contains(key),
        "a listing shows the key: {}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains(&key[key.len() - 4..]),
        "the hint shows the last four"
    );

    // The key works on the public API through `secretstore secrets` (read-only: list yes,
    // set no).
    let mut command = bare();
    command
        .args(["secrets", "list", "--base-url", &p._running.url])
        .env("SECRETSTORE_API_KEY", key);
    let listing = answer(run(command, ""));
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    let mut command = bare();
    command
        .args(["secrets", "set", "n", "--base-url", &p._running.url])
        .env("SECRETSTORE_API_KEY", key);
    let refused = answer(run(command, "payload"));
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("permission_denied"),
        "{}",
        refused.stderr
    );

    // Removal needs --confirm, and says how much went.
    let unconfirmed = p.admin(&["accounts", "delete", "acct_cli"]);
    assert_eq!(unconfirmed.code, 1);
    assert!(
        unconfirmed.stderr.contains("confirmation_required"),
        "{}",
        unconfirmed.stderr
    );
    let removed = p
        .admin(&["accounts", "delete", "acct_cli", "--confirm", "--json"])
        .ok()
        .json();
    assert_eq!(removed["deleted"], true);
    assert_eq!(removed["removed"]["apps"], 1);
    assert_eq!(removed["removed"]["api_keys"], 1);
    let gone = p.admin(&["accounts", "get", "acct_cli"]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("resource_missing"), "{}", gone.stderr);
}

#[test]
fn admin_refuses_without_a_token_and_with_a_wrong_one() {
    let p = production();
    let mut command = bare();
    command
        .args(["admin", "accounts", "list"])
        .env("SECRETSTORE_ADMIN_URL", &p.admin_url);
    let missing = answer(run(command, ""));
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("SECRETSTORE_ADMIN_TOKEN"),
        "{}",
        missing.stderr
    );
    let mut command = bare();
    command
        .args(["admin", "accounts", "list"])
        .env("SECRETSTORE_ADMIN_URL", &p.admin_url)
        .env(
            "SECRETSTORE_ADMIN_TOKEN",
            "not-the-token-but-long-enough-to-be-one",
        );
    let wrong = answer(run(command, ""));
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("admin_token_invalid"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn token_generate_prints_one_fresh_token_and_every_admin_command_has_help() {
    let mut command = bare();
    command.args(["admin", "token-generate"]);
    let one = answer(run(command, "")).ok().stdout;
    let mut command = bare();
    command.args(["admin", "token-generate"]);
    let two = answer(run(command, "")).ok().stdout;
    assert_eq!(one.trim().len(), 48);
    assert!(one.trim().bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(one, two);
    for path in [
        vec!["admin"],
        vec!["admin", "accounts"],
        vec!["admin", "apps", "create"],
        vec!["admin", "installations", "list"],
        vec!["admin", "users", "delete"],
        vec!["admin", "keys", "roll"],
        vec!["admin", "sessions", "create"],
    ] {
        let mut command = bare();
        command.args(&path).arg("--help");
        let help = answer(run(command, "")).ok().stdout;
        assert!(help.contains("Usage: secretstore"), "{path:?}: {help}");
    }
}

/// Where a test sends a command's standard output instead of a pipe it reads.
enum Sink {
    /// A pipe whose reader is already gone, as `| head` leaves it: every write is refused
    /// (EPIPE), deterministically, since the reader closes before the command starts.
    ClosedPipe,
    /// `/dev/full`: every write fails with "no space left on device".
    Full,
}

/// Runs `command` with its standard output on `sink`; (exit code, standard error).
fn run_into(command: Command, sink: Sink) -> (i32, String) {
    run_with(command, stdio(sink), Stdio::piped())
}

fn stdio(sink: Sink) -> Stdio {
    match sink {
        Sink::ClosedPipe => {
            // The write end of a pipe whose only reader, a process of its own, has exited.
            let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
            let writer = reader.stdin.take().unwrap();
            reader.wait().unwrap();
            Stdio::from(writer)
        }
        Sink::Full => Stdio::from(std::fs::File::create("/dev/full").unwrap()),
    }
}

/// Runs `command` with these standard output and error; (exit code, standard error if piped).
fn run_with(mut command: Command, stdout: Stdio, stderr: Stdio) -> (i32, String) {
    let output = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn an_answer_nobody_reads_ends_quietly_but_a_failed_write_or_a_lost_secret_fails() {
    let p = production();
    p.admin(&["accounts", "create", "--id", "acct_pipe"]).ok();
    p.admin(&[
        "apps",
        "create",
        "--id",
        "com.pipe.app",
        "--name",
        "Pipe",
        "--account",
        "acct_pipe",
    ])
    .ok();
    let admin = |args: &[&str]| p.admin_command(args);
    let create_key = || {
        admin(&[
            "keys",
            "create",
            "--app",
            "com.pipe.app",
            "--mode",
            "test",
            "--type",
            "secret",
        ])
    };

    // `secretstore admin accounts list --json | head -1`, `head` gone: as any Unix filter,
    // the command ends as its work did, without a word (it used to panic, exit code 101).
    for args in [
        &["accounts", "list", "--json"][..],
        &["accounts", "list"][..],
        &["apps", "get", "com.pipe.app"][..],
    ] {
        let (code, stderr) = run_into(admin(args), Sink::ClosedPipe);
        assert_eq!((code, stderr.as_str()), (0, ""), "{args:?}");
    }
    // Any other failure to write is said, and fails the command.
    let (code, stderr) = run_into(admin(&["accounts", "list", "--json"]), Sink::Full);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // A secret shown only once that nobody could read is a failure, whatever the cause.
    let (code, stderr) = run_into(create_key(), Sink::ClosedPipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the secret could not be written to standard output"),
        "{stderr}"
    );
    // Standard error gone too (`2>&1 | head -1`): still no panic, still a failure.
    let (code, _) = run_with(
        create_key(),
        stdio(Sink::ClosedPipe),
        stdio(Sink::ClosedPipe),
    );
    assert_eq!(code, 1);
    let (code, stderr) = run_into(admin(&["token-generate"]), Sink::ClosedPipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the admin token could not be written to standard output"),
        "{stderr}"
    );
}

#[test]
fn secrets_completions_and_man_end_quietly_without_a_reader_and_fail_on_a_full_disk() {
    let server = start();
    server.secrets(&["set", "piped"], "payload").ok();
    type Make<'a> = Box<dyn Fn() -> Command + 'a>;
    let commands: [(&str, Make); 5] = [
        (
            "secrets list",
            Box::new(|| server.secrets_command(&["list"])),
        ),
        (
            "secrets find --json",
            Box::new(|| server.secrets_command(&["find", "piped", "--json"])),
        ),
        (
            "secrets list --json",
            Box::new(|| server.secrets_command(&["list", "--json"])),
        ),
        (
            "completions bash",
            Box::new(|| {
                let mut command = bare();
                command.args(["completions", "bash"]);
                command
            }),
        ),
        (
            "man",
            Box::new(|| {
                let mut command = bare();
                command.arg("man");
                command
            }),
        ),
    ];
    for (name, command) in &commands {
        let (code, stderr) = run_into(command(), Sink::ClosedPipe);
        assert_eq!((code, stderr.as_str()), (0, ""), "{name}");
        let (code, stderr) = run_into(command(), Sink::Full);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains("cannot write to standard output"),
            "{name}: {stderr}"
        );
    }
}
