//! Backups as an operator takes them (contract §11): `secretstore backup` of a data directory
//! while its server serves and takes writes (the copy comes over the admin API) and of a stopped
//! one (the command copies it itself), `secretstore restore` into an empty directory, and a
//! server started there with the same root key finding every secret, while another root key is
//! refused at start naming the one needed. The backup holds no payload and no root key, and a
//! download cut short leaves nothing behind on the server. And the refusals: an output that exists, an input that is not a secretstore database, a directory
//! that is not empty, a running server without an admin API, and PostgreSQL, which pg_dump
//! backs up.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::server::{client, contains, integrity_check, site, Site, BIN};
use crate::startup::run_to_exit;

/// One secret the tests write and read back: where it lives and what it holds.
#[derive(Debug, Clone)]
struct Written {
    key: String,
    account: Option<String>,
    user: Option<String>,
    name: String,
    payload: String,
}

impl Written {
    fn scope(&self) -> Vec<(&'static str, String)> {
        match &self.user {
            Some(user) => vec![
                ("scope[type]", "user".into()),
                ("scope[user]", user.clone()),
            ],
            None => vec![("scope[type]", "account".into())],
        }
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.bearer_auth(&self.key);
        match &self.account {
            Some(account) => builder.header("Stripe-Account", account),
            None => builder,
        }
    }

    async fn set(&self, http: &reqwest::Client, url: &str, expires_at: Option<i64>) -> u16 {
        let mut form = self.scope();
        form.push(("name", self.name.clone()));
        form.push(("payload", self.payload.clone()));
        if let Some(at) = expires_at {
            form.push(("expires_at", at.to_string()));
        }
        let request = http.post(format!("{url}/v1/apps/secrets")).form(&form);
        self.request(request)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn assert_found(&self, http: &reqwest::Client, url: &str) {
        let mut query = self.scope();
        query.push(("name", self.name.clone()));
        query.push(("expand[]", "payload".into()));
        let request = http
            .get(format!("{url}/v1/apps/secrets/find"))
            .query(&query);
        let response = self.request(request).send().await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{self:?}: {body}");
        assert_eq!(body["payload"], self.payload.as_str(), "{self:?}");
    }
}

/// A payload no other run could have written, so finding it in a file means it leaked.
fn unique_payload(n: usize) -> String {
    format!(
        "zqxPLAINTEXT-{n}-{}",
        &secretstore_testkit::binary::random_root_key()[..24]
    )
}

/// 200 secrets over two apps, three accounts (one by `Stripe-Account`), account and user
/// scopes; every tenth expires in a day.
fn two_hundred() -> Vec<(Written, Option<i64>)> {
    let in_a_day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 86_400;
    (0..200)
        .map(|n| {
            let written = Written {
                key: if n % 2 == 0 {
                    "sk_test_backupone".into()
                } else {
                    "sk_live_backuptwo".into()
                },
                account: (n % 3 == 0).then(|| format!("acct_backup_{}", n % 5)),
                user: (n % 4 == 1).then(|| format!("usr_backup_{}", n % 7)),
                name: format!("secret-{n}"),
                payload: unique_payload(n),
            };
            (written, (n % 10 == 0).then_some(in_a_day))
        })
        .collect()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The flags of a dev server with its admin API on a free port, and the token's file.
fn admin_flags(site: &Site) -> (Vec<String>, PathBuf) {
    let token_file = site.dir.path().join("admin.token");
    write_private(&token_file, &secretstore_testkit::binary::random_root_key());
    let flags = vec![
        "--admin-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--admin-token-file".to_owned(),
        token_file.display().to_string(),
        "--max-secrets-per-scope".to_owned(),
        "100000".to_owned(),
    ];
    (flags, token_file)
}

fn refs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// `secretstore ARGS`, run to its end without holding up the test's runtime (a writer task
/// runs beside it), with no `SECRETSTORE_*` variable of the caller's.
async fn secretstore(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SECRETSTORE_") {
            command.env_remove(&name);
        }
    }
    command.output().await.unwrap()
}

/// `secretstore backup --data DATA --output OUTPUT EXTRA...`.
async fn backup(data: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "backup",
        "--data",
        path_arg(data),
        "--output",
        path_arg(output),
    ];
    args.extend_from_slice(extra);
    secretstore(&args).await
}

/// `secretstore restore --data DATA --input INPUT`.
async fn restore(data: &Path, input: &Path) -> Output {
    secretstore(&[
        "restore",
        "--data",
        path_arg(data),
        "--input",
        path_arg(input),
    ])
    .await
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What a refused command printed: one line on standard error, nothing on standard output.
fn refusal(output: &Output) -> String {
    assert!(!output.status.success(), "{}", text(output));
    assert!(output.stdout.is_empty(), "{}", text(output));
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    said
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

async fn root_key_id(admin_url: &str, token_file: &Path) -> String {
    let output = secretstore(&[
        "keys",
        "status",
        "--json",
        "--admin-url",
        admin_url,
        "--admin-token-file",
        path_arg(token_file),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    status["roots"][0]["id"].as_str().unwrap().to_owned()
}

/// The names of the writer's secrets in a backup, in the order it wrote them.
fn during_in(backup: &Path) -> Vec<usize> {
    let db = rusqlite::Connection::open(backup).unwrap();
    let mut stmt = db
        .prepare("SELECT name FROM secrets WHERE name LIKE 'during-%'")
        .unwrap();
    let mut found: Vec<usize> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|name| name.unwrap()["during-".len()..].parse().unwrap())
        .collect();
    found.sort_unstable();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_every_secret_under_the_same_root_key_only() {
    let mut site = site();
    let (flags, token_file) = admin_flags(&site);
    let server = site.start(&refs(&flags));
    let admin_url = server.admin_url.clone().unwrap();
    let http = client();
    let secrets = two_hundred();
    for (written, expires_at) in &secrets {
        assert_eq!(written.set(&http, &server.url, *expires_at).await, 200);
    }
    let root = root_key_id(&admin_url, &token_file).await;

    // A writer keeps setting secrets, one after the other, through the whole backup.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, done, url) = (Arc::clone(&stop), Arc::clone(&done), server.url.clone());
        tokio::spawn(async move {
            let http = client();
            let mut written = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let n = written.len();
                let one = Written {
                    key: "sk_test_backupone".into(),
                    account: None,
                    user: None,
                    name: format!("during-{n}"),
                    payload: unique_payload(1000 + n),
                };
                assert_eq!(
                    one.set(&http, &url, None).await,
                    200,
                    "a set during the backup"
                );
                written.push(one);
                done.store(written.len(), Ordering::SeqCst);
            }
            written
        })
    };
    while done.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let file = site.dir.path().join("backup.db");
    let before = done.load(Ordering::SeqCst);
    let output = backup(
        &site.data(),
        &file,
        &[
            "--admin-url",
            &admin_url,
            "--admin-token-file",
            path_arg(&token_file),
        ],
    )
    .await;
    let after = done.load(Ordering::SeqCst);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        after > before,
        "the writer kept writing while the backup was taken"
    );
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    for part in [
        "wrote ",
        "copied by the running server",
        "opens only with the same root key",
        root.as_str(),
    ] {
        assert!(said.contains(part), "{part:?} in {said}");
    }
    stop.store(true, Ordering::SeqCst);
    let during = writer.await.unwrap();

    // Consistent: the copy passes SQLite's check, and holds a prefix of the writer's secrets,
    // each one acknowledged before the copy began in it, none missing before the last.
    assert_eq!(integrity_check(&file), "ok");
    let copied = during_in(&file);
    assert!(copied.len() >= before, "{} < {before}", copied.len());
    assert_eq!(copied, (0..copied.len()).collect::<Vec<_>>(), "a prefix");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let leftovers: Vec<_> = std::fs::read_dir(site.data())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snapshot-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Ciphertext only: no payload, and not the root key, in either form.
    let bytes = std::fs::read(&file).unwrap();
    for written in secrets.iter().map(|(w, _)| w).chain(&during) {
        assert!(
            !contains(&bytes, written.payload.as_bytes()),
            "the payload of {} is in the backup",
            written.name
        );
    }
    let key_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&site.root_key[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(!contains(&bytes, site.root_key.as_bytes()));
    assert!(!contains(&bytes, &key_bytes));

    // Restored into an empty directory and served with the same root key: every secret.
    let mut restored = Site::new(BIN);
    restored.root_key = site.root_key.clone();
    let output = restore(&restored.data(), &file).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains(&root), "{}", text(&output));
    let mut again = restored.start(&[]);
    for (written, _) in &secrets {
        written.assert_found(&http, &again.url).await;
    }
    for written in &during[..copied.len()] {
        written.assert_found(&http, &again.url).await;
    }

    // A directory that holds data is never restored into.
    let output = restore(&restored.data(), &file).await;
    assert!(
        refusal(&output).contains("is not empty"),
        "{}",
        text(&output)
    );
    again.terminate();

    // Another root key: refused at start, naming the one the data needs.
    restored.root_key = secretstore_testkit::binary::random_root_key();
    let (started, said) = run_to_exit(restored.command(&[]));
    assert!(!started, "another root key must not start: {said}");
    assert!(
        said.contains(&format!("the stored keys are wrapped by root key {root}")),
        "{said}"
    );
}

/// The snapshot files a process has open, by the paths `/proc` shows for them.
fn open_snapshots(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .map(|target| target.display().to_string())
                .filter(|target| target.contains("/snapshot-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_download_cut_short_leaves_nothing_behind_on_the_server() {
    let mut site = site();
    let (flags, token_file) = admin_flags(&site);
    drop(site.start(&[]));
    // Tens of megabytes, far more than the socket buffers take, so the server is still in
    // the middle of the transfer when the client goes.
    site.insert_bare_secrets("bulky", "acct_bulky", 100_000, |n| {
        (None, format!("bulky-secret-with-a-long-name-{n:09}"), None)
    });
    let server = site.start(&refs(&flags));
    let pid = server.pid().unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let mut response = client()
        .get(format!("{}/v1/backup", server.admin_url.clone().unwrap()))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.content_length().unwrap() > 10_000_000);
    response.chunk().await.unwrap().expect("a first chunk");

    // Mid-transfer the server reads a file that no longer has a name.
    let open = open_snapshots(pid);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].ends_with(" (deleted)"), "{open:?}");
    drop(response);
    // Polled without blocking the runtime, whose tasks close the client's end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !open_snapshots(pid).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server still reads the snapshot 10 s after the client went"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(server.log_text().contains("backup snapshot taken"));
}

#[tokio::test]
async fn a_stopped_servers_directory_is_backed_up_without_a_server_and_restored() {
    // Dev mode with no key given: the server generates DATA/root.key, which the backup must
    // not carry, and says so.
    let mut site = site();
    let mut server = site.start_under(&["env", "-u", "SECRETSTORE_ROOT_KEY"], &[]);
    let key_file = site.data().join("root.key");
    let http = client();
    let secrets: Vec<Written> = two_hundred().into_iter().take(20).map(|(w, _)| w).collect();
    for written in &secrets {
        assert_eq!(written.set(&http, &server.url, None).await, 200);
    }
    server.terminate();

    let file = site.dir.path().join("stopped.db");
    let output = backup(&site.data(), &file, &[]).await;
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    for part in [
        "no server was running",
        "20 secrets",
        "root.key (the dev-mode root key) is not in it",
    ] {
        assert!(said.contains(part), "{part:?} in {said}");
    }
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    assert!(!contains(
        &std::fs::read(&file).unwrap(),
        key_text.trim().as_bytes()
    ));

    let mut restored = Site::new(BIN);
    let output = restore(&restored.data(), &file).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !restored.data().join("root.key").exists(),
        "the key is not restored"
    );
    let server = restored.start(&["--root-key-file", path_arg(&key_file)]);
    for written in &secrets {
        written.assert_found(&http, &server.url).await;
    }
}

#[tokio::test]
async fn what_cannot_be_backed_up_or_restored_is_refused_in_one_line() {
    let mut site = site();
    let mut server = site.start(&[]);
    let written = &two_hundred()[0].0;
    assert_eq!(written.set(&client(), &server.url, None).await, 200);
    let data = site.data();
    let tmp = site.dir.path();

    // A running server without an admin API cannot hand over a copy.
    let output_file = tmp.join("out.db");
    let said = refusal(
        &backup(
            &data,
            &output_file,
            &[
                "--admin-url",
                "http://127.0.0.1:9",
                "--admin-token-file",
                path_arg(&admin_flags(&site).1),
            ],
        )
        .await,
    );
    assert!(
        said.contains("held by a running server") && said.contains("--admin-url"),
        "{said}"
    );
    assert!(!output_file.exists(), "nothing is left behind");
    server.terminate();

    // An existing output is never overwritten.
    let existing = tmp.join("existing.db");
    std::fs::write(&existing, "keep me").unwrap();
    let said = refusal(&backup(&data, &existing, &[]).await);
    assert!(
        said.contains("exists") && said.contains("never overwrites"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");

    // A directory without a database.
    let empty = tmp.join("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    let said = refusal(&backup(&empty, &output_file, &[]).await);
    assert!(said.contains("holds no secretstore database"), "{said}");

    // Inputs that are not secretstore databases; the target is not even created.
    let notes = tmp.join("notes.txt");
    std::fs::write(&notes, "a text file, not a backup\n".repeat(40)).unwrap();
    let bare = tmp.join("bare.db");
    rusqlite::Connection::open(&bare)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let target = tmp.join("restored");
    for (input, reason) in [
        (&notes, "it is not an SQLite database"),
        (&bare, "without secretstore's tables"),
    ] {
        let said = refusal(&restore(&target, input).await);
        assert!(
            said.contains("is not a secretstore backup") && said.contains(reason),
            "{said}"
        );
        assert!(!target.exists());
    }
}

#[tokio::test]
async fn a_server_on_postgresql_says_pg_dump_takes_its_backups() {
    if !secretstore_testkit::postgres::available() {
        return;
    }
    let database = secretstore_testkit::postgres::ScratchDatabase::create();
    let mut site = Site::production(BIN);
    let server = site.start(&["--database-url", database.url()]);
    let admin = crate::tenancy::Admin::of(&site, &server);
    let (status, body) = admin.call("GET", "/v1/backup", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "resource_missing", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("pg_dump"), "{message}");
}
