//! What is particular to the SQLite store, beyond the conformance suite: data surviving a
//! restart, the data directory's lock and permissions, schema versions, group commit actually
//! batching (with failing jobs inside a batch), damaged rows reported, not panicked on, and
//! backups (a snapshot of a running store restored, files that are not backups refused).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secretstore_core::audit::Verifier;
use secretstore_core::{
    AtomicWrites as _, AuditAppend, AuditChain, AuditEvent, AuditStore as _, Completed,
    IdempotencyClaim, KeptAnswer, KeyOwner, KeyStore as _, Lifecycle as _, ListQuery,
    MetaStore as _, Mode, Namespace, PutRequest, Scope, SealedSecret, SecretId, SecretStore as _,
    Store, StoreError, StoredKey, UserId, Write, Written,
};
use secretstore_crypto::{DigestKey, KeyId, RootKey};
use secretstore_sqlite::{
    inspect, restore, snapshot_stopped, try_lock, SqliteOptions, SqliteStore, DATABASE_FILE,
    LOCK_FILE, MIGRATIONS, SCHEMA_VERSION,
};
use secretstore_store_tests::fixtures::{
    address, assert_scope_full, at, claim_and_complete, failing_put, home, idempotency_key,
    kept_answer, namespace, put_ok, put_request, query, user, NOW, NO_QUOTA, ROOMY,
};

/// A temporary directory private to this user (0700), as a data directory must be: the
/// default temporary directory follows the umask (often 0755), which the store refuses.
fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("tempdir")
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open")
}

fn open_with(dir: &Path, options: SqliteOptions) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir, options).expect("open"))
}

async fn list_ids(store: &dyn Store, ns: &Namespace, scope: &Scope) -> Vec<SecretId> {
    store
        .list(&ListQuery {
            namespace: ns.clone(),
            scope: scope.clone(),
            limit: 100,
            cursor: None,
            now: NOW,
        })
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// Writes a known state: a (expiring), b (replaced), c (deleted), a meta value and a kept
/// idempotent answer. Returns a and b as stored.
async fn write_known_state(store: Arc<dyn Store>) -> (SealedSecret, SealedSecret, KeptAnswer) {
    let ns = home();
    let a = put_ok(
        &store,
        &address(&ns, &Scope::Account, "a"),
        NOW,
        Some(NOW + 100),
        ROOMY,
        "a",
    )
    .await;
    put_ok(
        &store,
        &address(&ns, &Scope::Account, "b"),
        NOW,
        None,
        ROOMY,
        "b1",
    )
    .await;
    put_ok(
        &store,
        &address(&ns, &Scope::Account, "c"),
        NOW,
        None,
        ROOMY,
        "c",
    )
    .await;
    let b = put_ok(
        &store,
        &address(&ns, &Scope::Account, "b"),
        NOW + 1,
        None,
        ROOMY,
        "b2",
    )
    .await;
    store
        .delete(&address(&ns, &Scope::Account, "c"), NOW + 1)
        .await
        .expect("delete")
        .expect("c existed");
    store.meta_put("check", vec![1, 2, 3]).await.expect("meta");
    let ik = idempotency_key("sk_test_x", "k1");
    assert_eq!(
        store.idempotency_claim(&ik, at(NOW)).await.expect("claim"),
        IdempotencyClaim::Claimed
    );
    let answer = kept_answer(3, "sealed", NOW);
    store
        .idempotency_complete(&ik, answer.clone(), NO_QUOTA)
        .await
        .expect("complete");
    (a, b, answer)
}

async fn check_known_state(
    store: Arc<dyn Store>,
    a: &SealedSecret,
    b: &SealedSecret,
    answer: &KeptAnswer,
) {
    let ns = home();
    assert_eq!(
        store.get(&a.address, NOW).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(
        store.get(&b.address, NOW + 1).await.expect("get"),
        Some(b.clone())
    );
    assert_eq!(
        store
            .get(&address(&ns, &Scope::Account, "c"), NOW)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        list_ids(&*store, &ns, &Scope::Account).await,
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        store.meta_get("check").await.expect("meta"),
        Some(vec![1, 2, 3])
    );
    let ik = idempotency_key("sk_test_x", "k1");
    assert_eq!(
        store
            .idempotency_claim(&ik, at(NOW + 1))
            .await
            .expect("claim"),
        IdempotencyClaim::Kept(answer.clone())
    );
    // New secrets still go to the top after a restart.
    let d = put_ok(
        &store,
        &address(&ns, &Scope::Account, "d"),
        NOW + 2,
        None,
        ROOMY,
        "d",
    )
    .await;
    assert_eq!(
        list_ids(&*store, &ns, &Scope::Account).await,
        vec![d.id, b.id.clone(), a.id.clone()]
    );
}

/// A store opened in `dir`, the known state written, then closed and dropped (so its lock is
/// free): what it wrote.
async fn known_state_closed(dir: &Path) -> (SealedSecret, SealedSecret, KeptAnswer) {
    let store: Arc<dyn Store> = Arc::new(open(dir));
    let known = write_known_state(Arc::clone(&store)).await;
    store.close().await.expect("close");
    drop(store);
    known
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_close_and_reopen() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("data");
    let (a, b, answer) = known_state_closed(&dir).await;
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    check_known_state(store, &a, &b, &answer).await;
}

/// What an owner keeps is counted in the database, not in the process: its quota holds across
/// a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_idempotency_quota_holds_across_a_restart() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("data");
    let first = idempotency_key("sk_test_quota", "k1");
    let answer = kept_answer(1, "kept", NOW);
    let quota = answer.bytes(&first);
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    assert_eq!(
        claim_and_complete(&store, &first, answer, quota).await,
        Completed::Kept
    );
    store.close().await.expect("close");
    drop(store);
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    let second = idempotency_key("sk_test_quota", "k2");
    assert_eq!(
        claim_and_complete(&store, &second, kept_answer(2, "kept", NOW), quota).await,
        Completed::OverQuota
    );
}

/// Answers kept before the quota existed (schema 4) count towards it once the database is
/// upgraded: migration 5 counts what is already stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_database_counts_the_answers_it_already_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = private_tempdir();
    let database = tmp.path().join(DATABASE_FILE);
    let old = idempotency_key("sk_test_upgrade", "old");
    let kept = kept_answer(1, &"x".repeat(100), NOW);
    {
        let db = rusqlite::Connection::open(&database).expect("sqlite");
        for script in &MIGRATIONS[..4] {
            db.execute_batch(script).expect("migration");
        }
        db.execute_batch("PRAGMA user_version = 4")
            .expect("version");
        db.execute(
            "INSERT INTO idempotency (credential, key, fingerprint, sealed, created) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                &old.credential.as_bytes()[..],
                old.key,
                &kept.fingerprint[..],
                kept.sealed,
                kept.created
            ],
        )
        .expect("an answer kept by schema 4");
    }
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let store: Arc<dyn Store> = Arc::new(open(tmp.path()));
    let new = idempotency_key("sk_test_upgrade", "new");
    let answer = kept_answer(2, "y", NOW);
    let both = kept.bytes(&old) + answer.bytes(&new);
    assert_eq!(
        claim_and_complete(&store, &new, answer.clone(), both - 1).await,
        Completed::OverQuota,
        "the answer kept before the upgrade counts"
    );
    assert_eq!(
        claim_and_complete(&store, &new, answer, both).await,
        Completed::Kept
    );
}

/// The first column of every row `sql` selects, as texts.
fn texts(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut stmt = db.prepare(sql).expect("prepare");
    let rows = stmt.query_map([], |r| r.get(0)).expect("query");
    rows.collect::<Result<_, _>>().expect("texts")
}

/// The unique constraints on `secrets`, each as its columns.
fn unique_indexes_of_secrets(db: &rusqlite::Connection) -> Vec<Vec<String>> {
    texts(
        db,
        "SELECT (SELECT group_concat(name) FROM pragma_index_info(l.name))
         FROM pragma_index_list('secrets') AS l WHERE l.\"unique\" = 1 ORDER BY 1",
    )
    .iter()
    .map(|columns| columns.split(',').map(str::to_owned).collect())
    .collect()
}

/// Migration 9 makes `secrets` again without the unique index on `id`: what schema 8 held is
/// all there, readable, in its order, and the seq of the newest secret, deleted before the
/// upgrade, is still never given again.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_drops_the_unique_index_on_ids_and_keeps_every_secret_and_seq() {
    let tmp = private_tempdir();
    // The known state, written by this binary, then copied into a database of schema 8.
    let source = tmp.path().join("source");
    let (a, b, answer) = known_state_closed(&source).await;
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let database = dir.join(DATABASE_FILE);
    {
        let db = rusqlite::Connection::open(&database).expect("sqlite");
        for script in &MIGRATIONS[..8] {
            db.execute_batch(script).expect("migration");
        }
        db.execute_batch("PRAGMA user_version = 8")
            .expect("version");
        assert_eq!(
            unique_indexes_of_secrets(&db).len(),
            2,
            "schema 8 has the unique index on id"
        );
        db.execute(
            "ATTACH ?1 AS source",
            [source.join(DATABASE_FILE).to_str().expect("utf-8")],
        )
        .expect("attach");
        db.execute_batch(
            "INSERT INTO secrets SELECT * FROM source.secrets;
             INSERT INTO keys SELECT * FROM source.keys;
             INSERT INTO meta SELECT * FROM source.meta;
             INSERT INTO idempotency SELECT * FROM source.idempotency;
             UPDATE sqlite_sequence SET seq = (SELECT seq FROM source.sqlite_sequence
                                               WHERE name = 'secrets')
                 WHERE name = 'secrets';
             DETACH source;",
        )
        .expect("copy");
        let (newest, counter): (i64, i64) = db
            .query_row(
                "SELECT (SELECT MAX(seq) FROM secrets),
                        (SELECT seq FROM sqlite_sequence WHERE name = 'secrets')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("seq");
        assert_eq!((newest, counter), (2, 3), "c, the newest, was deleted");
    }
    std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // check_known_state reads a and b, the meta value and the kept answer, then puts d.
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    check_known_state(Arc::clone(&store), &a, &b, &answer).await;
    store.close().await.expect("close");
    drop(store);

    let db = rusqlite::Connection::open(&database).expect("sqlite");
    assert_eq!(
        unique_indexes_of_secrets(&db),
        vec![vec![
            "app",
            "account",
            "livemode",
            "scope_type",
            "scope_user",
            "name"
        ]],
        "only an address is unique"
    );
    let mut indexes = texts(&db, "SELECT name FROM pragma_index_list('secrets')");
    indexes.sort();
    // Migration 11 then dropped the one by account.
    assert_eq!(
        indexes,
        [
            "secrets_by_expiry",
            "secrets_by_scope",
            "sqlite_autoindex_secrets_1"
        ],
    );
    let mut indexes = texts(&db, "SELECT name FROM pragma_index_list('keys')");
    indexes.sort();
    assert_eq!(indexes, ["keys_root", "sqlite_autoindex_keys_1"]);
    let d: i64 = db
        .query_row("SELECT seq FROM secrets WHERE name = 'd'", [], |r| r.get(0))
        .expect("d");
    assert_eq!(d, 4, "the deleted c's seq 3 is not given again");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_drop_and_reopen() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("data");
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    let (a, b, answer) = write_known_state(Arc::clone(&store)).await;
    // No close: dropping must release the directory for an immediate reopen.
    drop(store);
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    check_known_state(store, &a, &b, &answer).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = private_tempdir();
    let first = open(tmp.path());
    match SqliteStore::open(tmp.path(), SqliteOptions::default()) {
        Err(StoreError::Unavailable(why)) => {
            let expected = format!(
                "data directory {} is in use by another secretstore process",
                tmp.path().display()
            );
            assert!(why.starts_with(&expected), "{why}");
            assert!(
                why.contains(&format!("pid {}", std::process::id())),
                "{why}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    first.close().await.expect("close");
    // Closed but not yet dropped: the lock is held until the store is dropped.
    assert!(SqliteStore::open(tmp.path(), SqliteOptions::default()).is_err());
    drop(first);
    let again = open(tmp.path());
    again.check_ready().await.expect("ready");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_and_its_files_are_private() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("nested").join("data");
    let store = open(&dir);
    store
        .put(put_request(
            &address(&home(), &Scope::Account, "x"),
            NOW,
            None,
            ROOMY,
            "x",
        ))
        .await
        .expect("put");
    assert_eq!(mode_of(&dir), 0o700, "data directory");
    for file in [
        DATABASE_FILE.to_owned(),
        format!("{DATABASE_FILE}-wal"),
        format!("{DATABASE_FILE}-shm"),
        LOCK_FILE.to_owned(),
    ] {
        assert_eq!(mode_of(&dir.join(&file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_recorded_in_user_version() {
    let tmp = private_tempdir();
    let store = open(tmp.path());
    store.close().await.expect("close");
    drop(store);
    let db = rusqlite::Connection::open(tmp.path().join(DATABASE_FILE)).expect("sqlite");
    let version: u32 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(journal, "wal", "WAL is a property of the database file");
    let columns = texts(&db, "SELECT name FROM pragma_table_info('secrets')");
    for expected in [
        "seq",
        "id",
        "app",
        "account",
        "livemode",
        "scope_type",
        "scope_user",
        "name",
        "created",
        "expires_at",
        "sealed",
    ] {
        assert!(
            columns.iter().any(|c| c == expected),
            "secrets.{expected} missing: {columns:?}"
        );
    }
    drop(db);
    // Reopening an up-to-date database applies nothing and keeps the version.
    let store = open(tmp.path());
    store.check_ready().await.expect("ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_a_newer_secretstore_is_refused() {
    let tmp = private_tempdir();
    drop(open(tmp.path()));
    let db = rusqlite::Connection::open(tmp.path().join(DATABASE_FILE)).expect("sqlite");
    db.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .expect("set version");
    drop(db);
    match SqliteStore::open(tmp.path(), SqliteOptions::default()) {
        Err(StoreError::Internal(why)) => {
            assert!(why.contains("newer"), "{why}");
            assert!(
                why.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
                "{why}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Holds the writer inside a put's seal until `release` is called, so that jobs sent meanwhile
/// queue up and go into the next batch together.
struct Gate {
    go: std::sync::mpsc::Sender<()>,
    task: tokio::task::JoinHandle<Result<SealedSecret, StoreError>>,
}

impl Gate {
    async fn close(store: &Arc<SqliteStore>) -> Gate {
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let mut request = put_request(
            &address(&home(), &user("usr_gate"), "gate"),
            NOW,
            None,
            ROOMY,
            "g",
        );
        request.seal = Box::new(move |id: &SecretId| {
            let _ = started_tx.send(());
            let _ = wait.recv();
            Ok(id.as_str().as_bytes().to_vec())
        });
        let task = {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.put(request).await })
        };
        started.await.expect("the writer reached the gate");
        Gate { go, task }
    }

    async fn release(self) {
        self.go.send(()).expect("gate still waiting");
        self.task.await.expect("task").expect("gated put");
    }
}

/// Waits until `count` writes are queued behind the gate.
async fn until_queued(store: &SqliteStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().queued_writes < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} writes queued",
            store.stats().queued_writes
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_batches_concurrent_puts() {
    let tmp = private_tempdir();
    let store = open_with(tmp.path(), SqliteOptions::default());
    let before = store.stats();
    let gate = Gate::close(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..199 {
        let store = Arc::clone(&store);
        let k = address(&home(), &Scope::Account, &format!("batched-{n}"));
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, ROOMY, "b")).await });
    }
    until_queued(&store, 199).await;
    gate.release().await;
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("put");
    }
    let after = store.stats();
    assert_eq!(after.ops - before.ops, 200, "every put ran");
    assert_eq!(
        after.commits - before.commits,
        2,
        "the gate's batch, then one batch of 199"
    );
    assert_eq!(
        list_ids(&*store, &home(), &Scope::Account).await.len(),
        100,
        "a full page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_batch_bounds_a_transaction() {
    let tmp = private_tempdir();
    let options = SqliteOptions {
        max_batch: 8,
        readers: 1,
        ..SqliteOptions::default()
    };
    let store = open_with(tmp.path(), options);
    let before = store.stats();
    let gate = Gate::close(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let store = Arc::clone(&store);
        let k = address(&home(), &Scope::Account, &format!("small-batch-{n}"));
        tasks.spawn(async move { store.put(put_request(&k, NOW, None, ROOMY, "b")).await });
    }
    until_queued(&store, 20).await;
    gate.release().await;
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("put");
    }
    let after = store.stats();
    assert_eq!(
        after.commits - before.commits,
        1 + 3,
        "the gate, then 8 + 8 + 4"
    );
}

/// Queues one job after another behind the gate, in a known order.
async fn queue<T: Send + 'static>(
    store: &Arc<SqliteStore>,
    queued: &mut usize,
    job: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let task = tokio::spawn(job);
    *queued += 1;
    until_queued(store, *queued).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_jobs_in_a_batch_are_undone_alone() {
    let tmp = private_tempdir();
    let store = open_with(tmp.path(), SqliteOptions::default());
    let ns = home();
    let s = Scope::Account;
    let x = put_ok(
        &(Arc::clone(&store) as Arc<dyn Store>),
        &address(&ns, &s, "x"),
        NOW,
        None,
        2,
        "x",
    )
    .await;
    let before = store.stats();
    let gate = Gate::close(&store).await;
    let mut n = 0;
    let put = |request: PutRequest| {
        let store = Arc::clone(&store);
        async move { store.put(request).await }
    };
    let new1 = queue(
        &store,
        &mut n,
        put(put_request(&address(&ns, &s, "new1"), NOW, None, 2, "1")),
    )
    .await;
    // Sees new1, which is not committed yet but earlier in the same transaction.
    let new2 = queue(
        &store,
        &mut n,
        put(put_request(&address(&ns, &s, "new2"), NOW, None, 2, "2")),
    )
    .await;
    let bad = queue(
        &store,
        &mut n,
        put(failing_put(&address(&ns, &s, "bad"), NOW, ROOMY)),
    )
    .await;
    let replace = queue(
        &store,
        &mut n,
        put(put_request(&address(&ns, &s, "x"), NOW + 1, None, 2, "x2")),
    )
    .await;
    let delete = {
        let store = Arc::clone(&store);
        let k = address(&ns, &s, "new1");
        queue(&store.clone(), &mut n, async move {
            store.delete(&k, NOW + 1).await
        })
        .await
    };
    let new3 = queue(
        &store,
        &mut n,
        put(put_request(
            &address(&ns, &s, "new3"),
            NOW + 1,
            None,
            2,
            "3",
        )),
    )
    .await;
    let mut panicking = put_request(&address(&ns, &s, "panics"), NOW, None, ROOMY, "p");
    panicking.seal = Box::new(|_: &SecretId| panic!("a deliberate panic inside a seal closure"));
    let panics = queue(&store, &mut n, put(panicking)).await;
    let meta = {
        let store = Arc::clone(&store);
        queue(&store.clone(), &mut n, async move {
            store.meta_put("m", vec![7]).await
        })
        .await
    };
    gate.release().await;

    let new1 = new1.await.expect("task").expect("new1 fits");
    assert!(matches!(
        new2.await.expect("task"),
        Err(StoreError::ScopeFull { max: 2 })
    ));
    assert!(matches!(bad.await.expect("task"), Err(StoreError::Seal(_))));
    let replaced = replace.await.expect("task").expect("replace");
    assert_eq!(replaced.id, x.id);
    assert_eq!(
        delete.await.expect("task").expect("delete").map(|s| s.id),
        Some(new1.id)
    );
    let new3 = new3.await.expect("task").expect("room after the delete");
    assert!(matches!(
        panics.await.expect("task"),
        Err(StoreError::Internal(_))
    ));
    meta.await.expect("task").expect("meta");

    let after = store.stats();
    assert_eq!(
        after.commits - before.commits,
        2,
        "the gate's batch and one more"
    );
    assert_eq!(after.ops - before.ops, 9);
    assert_eq!(list_ids(&*store, &ns, &s).await, vec![new3.id, x.id]);
    assert_eq!(store.meta_get("m").await.expect("meta"), Some(vec![7]));
    // The writer survived the panic.
    put_ok(
        &(Arc::clone(&store) as Arc<dyn Store>),
        &address(&ns, &user("usr_after"), "after"),
        NOW,
        None,
        2,
        "a",
    )
    .await;
}

/// A commit behind the gate, queued in order.
async fn queue_commit(
    store: &Arc<SqliteStore>,
    queued: &mut usize,
    writes: Vec<Write>,
) -> tokio::task::JoinHandle<Result<Vec<Written>, StoreError>> {
    let job = {
        let store = Arc::clone(store);
        async move { store.commit(writes).await }
    };
    queue(store, queued, job).await
}

/// A put of `name` in the home namespace's account scope, its name as its payload.
fn in_account(name: &str, now: i64) -> PutRequest {
    put_request(
        &address(&home(), &Scope::Account, name),
        now,
        None,
        ROOMY,
        name,
    )
}

/// A put behind the gate, queued in order.
async fn queue_put(
    store: &Arc<SqliteStore>,
    queued: &mut usize,
    request: PutRequest,
) -> tokio::task::JoinHandle<Result<SealedSecret, StoreError>> {
    let job = {
        let store = Arc::clone(store);
        async move { store.put(request).await }
    };
    queue(store, queued, job).await
}

/// Puts, deletes and commits run without a savepoint, so each checks what can refuse it before
/// its first change: a put at an expired secret's address into a full scope, and a put beside a
/// user's first key into a scope that is full already (written before users had keys), fail
/// alone, change nothing, and the batch around them commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_without_a_savepoint_fail_before_they_change_anything() {
    let tmp = private_tempdir();
    let store = open_with(tmp.path(), SqliteOptions::default());
    let dyn_store = Arc::clone(&store) as Arc<dyn Store>;
    let ns = home();
    let full = user("usr_full");
    let legacy = user("usr_legacy");
    for (scope, name, expires_at) in [
        (&full, "old", Some(NOW + 1)),
        (&full, "live", None),
        (&legacy, "l", None),
    ] {
        let at = address(&ns, scope, name);
        put_ok(&dyn_store, &at, NOW, expires_at, ROOMY, name).await;
    }
    let owner = KeyOwner::User {
        account: ns.account.clone(),
        user: UserId::parse("usr_legacy").expect("user id"),
    };
    let first_key = StoredKey {
        owner: owner.clone(),
        version: 1,
        root: KeyId([7; 8]),
        wrapped: b"wrapped".to_vec(),
        created: NOW,
    };

    let gate = Gate::close(&store).await;
    let mut n = 0;
    let before = queue_put(&store, &mut n, in_account("before", NOW + 2)).await;
    // "old" expired at NOW + 1; the scope holds one live secret, its maximum.
    let old = address(&ns, &full, "old");
    let expired = queue_put(&store, &mut n, put_request(&old, NOW + 2, None, 1, "o")).await;
    let new = address(&ns, &legacy, "new");
    let writes = vec![
        Write::AddKey(first_key),
        Write::PutSecret(put_request(&new, NOW + 2, None, 1, "n")),
    ];
    let keyed = queue_commit(&store, &mut n, writes).await;
    let after = queue_put(&store, &mut n, in_account("after", NOW + 2)).await;
    gate.release().await;

    assert_scope_full(expired.await.expect("task"), 1);
    assert_scope_full(keyed.await.expect("task"), 1);
    let before = before.await.expect("task").expect("the batch committed");
    let after = after.await.expect("task").expect("the batch committed");
    assert_eq!(
        list_ids(&*store, &ns, &Scope::Account).await,
        vec![after.id, before.id]
    );
    assert_eq!(
        store.keys_of(&owner).await.expect("keys"),
        Vec::new(),
        "the key went with its put"
    );
    store.check_ready().await.expect("ready");
}

/// A write without a savepoint that fails after it changed something (two puts in one commit,
/// the second past the scope's maximum) takes its batch with it: it keeps its own error,
/// every other job of the batch is answered with a retryable failure, nothing of the batch
/// is written, and storage is not reported unwell for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_fails_after_a_change_undoes_its_batch() {
    let tmp = private_tempdir();
    let store = open_with(tmp.path(), SqliteOptions::default());
    let ns = home();
    let scope = user("usr_two");
    let gate = Gate::close(&store).await;
    let mut n = 0;
    let mate = queue_put(&store, &mut n, in_account("mate", NOW)).await;
    let (one, two) = (address(&ns, &scope, "one"), address(&ns, &scope, "two"));
    let writes = vec![
        Write::PutSecret(put_request(&one, NOW, None, 1, "1")),
        Write::PutSecret(put_request(&two, NOW, None, 1, "2")),
    ];
    let two = queue_commit(&store, &mut n, writes).await;
    let later = queue_put(&store, &mut n, in_account("later", NOW)).await;
    gate.release().await;

    assert_scope_full(two.await.expect("task"), 1);
    for (name, answer) in [("mate", mate.await), ("later", later.await)] {
        match answer.expect("task") {
            Err(StoreError::Unavailable(why)) => {
                assert!(why.contains("retry"), "{name}: {why}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(list_ids(&*store, &ns, &scope).await, Vec::<SecretId>::new());
    assert_eq!(
        list_ids(&*store, &ns, &Scope::Account).await,
        Vec::<SecretId>::new()
    );
    store
        .check_ready()
        .await
        .expect("a batch undone is no storage failure");
    let retry = store.put(in_account("mate", NOW)).await;
    retry.expect("a retry succeeds");
}

/// An audit event numbered `i` (its request id says which), at a time that grows with `i`.
fn audit_event(i: i64) -> AuditEvent {
    AuditEvent {
        time_ms: 1_700_000_000_000 + i * 1000,
        request_id: format!("req_{i:020}"),
        operation: "secrets.set".into(),
        status: 200,
        ..AuditEvent::default()
    }
}

/// The request ids of the chain as stored, and whether it verifies from its anchor.
async fn stored_chain(store: &Arc<SqliteStore>, chain: &AuditChain) -> (Vec<i64>, Vec<String>) {
    let anchor = store.audit_anchor().await.expect("anchor");
    let entries = store
        .audit_scan(anchor.as_ref().map_or(0, |a| a.seq), 1000)
        .await
        .expect("scan");
    let mut verifier = Verifier::new(chain, anchor.as_ref()).expect("the anchor verifies");
    for entry in &entries {
        verifier.check(entry).expect("the chain verifies");
    }
    (
        entries.iter().map(|e| e.seq).collect(),
        entries.iter().map(|e| e.event.request_id.clone()).collect(),
    )
}

/// Records appended in one batch make one chain: the records of jobs that fail in the batch
/// are not kept and leave no gap, a prune in the batch counts the records appended before it,
/// and the chain goes on from the batch in the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_records_of_one_batch_make_one_chain_without_the_failed_jobs() {
    let tmp = private_tempdir();
    let store = open_with(tmp.path(), SqliteOptions::default());
    let chain = Arc::new(AuditChain::new(DigestKey::new(
        &RootKey::generate().expect("a root key"),
    )));
    let append = |i: i64| AuditAppend::new(Arc::new(audit_event(i)), Arc::clone(&chain));
    let record = |i: i64| Write::Audit(append(i));
    let ns = home();
    let full = user("usr_full");
    put_ok(
        &(Arc::clone(&store) as Arc<dyn Store>),
        &address(&ns, &full, "only"),
        NOW,
        None,
        1,
        "o",
    )
    .await;

    let gate = Gate::close(&store).await;
    let mut n = 0;
    let one = queue_commit(
        &store,
        &mut n,
        vec![Write::PutSecret(in_account("one", NOW)), record(1)],
    )
    .await;
    let over = put_request(&address(&ns, &full, "over"), NOW, None, 1, "x");
    let refused = queue_commit(&store, &mut n, vec![Write::PutSecret(over), record(2)]).await;
    let alone = {
        let (store, three) = (Arc::clone(&store), append(3));
        queue(&store.clone(), &mut n, async move {
            store.audit_append(three).await
        })
        .await
    };
    let unsealed = failing_put(&address(&ns, &Scope::Account, "unsealed"), NOW, ROOMY);
    let failed = queue_commit(&store, &mut n, vec![Write::PutSecret(unsealed), record(4)]).await;
    let five = queue_commit(
        &store,
        &mut n,
        vec![Write::PutSecret(in_account("five", NOW)), record(5)],
    )
    .await;
    gate.release().await;

    one.await.expect("task").expect("one");
    assert_scope_full(refused.await.expect("task"), 1);
    assert_eq!(alone.await.expect("task").expect("alone").seq, 2);
    assert!(matches!(
        failed.await.expect("task"),
        Err(StoreError::Seal(_))
    ));
    let five = five.await.expect("task").expect("five");
    assert!(matches!(five.last(), Some(Written::Audit(entry)) if entry.seq == 3));
    let (seqs, ids) = stored_chain(&store, &chain).await;
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(ids, [1, 3, 5].map(|i| audit_event(i).request_id));

    // A prune between two appends of one batch: the first is the head it must keep.
    let gate = Gate::close(&store).await;
    let mut n = 0;
    let six = queue_commit(
        &store,
        &mut n,
        vec![Write::PutSecret(in_account("six", NOW)), record(6)],
    )
    .await;
    let prune = {
        let (store, chain) = (Arc::clone(&store), Arc::clone(&chain));
        let before = audit_event(100).time_ms;
        queue(&store.clone(), &mut n, async move {
            store.audit_prune(before, before, chain).await
        })
        .await
    };
    gate.release().await;
    six.await.expect("task").expect("six");
    assert_eq!(
        prune.await.expect("task").expect("prune"),
        3,
        "all but the newest"
    );
    let seven = store.audit_append(append(7)).await.expect("seven");
    assert_eq!(seven.seq, 5);
    let (seqs, ids) = stored_chain(&store, &chain).await;
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(ids, [6, 7].map(|i| audit_event(i).request_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_works_in_steps() {
    let tmp = private_tempdir();
    let options = SqliteOptions {
        purge_batch: 3,
        ..SqliteOptions::default()
    };
    let store: Arc<SqliteStore> = open_with(tmp.path(), options);
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    for n in 0..10 {
        put_ok(
            &dyn_store,
            &address(&home(), &Scope::Account, &format!("e{n}")),
            NOW,
            Some(NOW + 1),
            ROOMY,
            "e",
        )
        .await;
    }
    let before = store.stats();
    assert_eq!(store.purge_expired(NOW + 1).await.expect("purge"), 10);
    assert_eq!(store.stats().ops - before.ops, 4, "3 + 3 + 3 + 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_row_is_an_internal_error() {
    let tmp = private_tempdir();
    let store: Arc<dyn Store> = Arc::new(open(tmp.path()));
    let ns = home();
    let s = user("usr_damage");
    put_ok(&store, &address(&ns, &s, "bad-id"), NOW, None, ROOMY, "a").await;
    put_ok(&store, &address(&ns, &s, "fine"), NOW, None, ROOMY, "b").await;
    // Another connection edits the file under the running store, as an operator's shell could.
    let db = rusqlite::Connection::open(tmp.path().join(DATABASE_FILE)).expect("sqlite");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    db.execute(
        "UPDATE secrets SET id = 'not-an-id' WHERE name = 'bad-id'",
        [],
    )
    .expect("damage the id");
    drop(db);

    assert!(matches!(
        store.get(&address(&ns, &s, "bad-id"), NOW).await,
        Err(StoreError::Internal(_))
    ));
    assert!(matches!(
        store.list(&query(&ns, &s, 10, None, NOW)).await,
        Err(StoreError::Internal(_))
    ));
    assert!(matches!(
        store.delete(&address(&ns, &s, "bad-id"), NOW).await,
        Err(StoreError::Internal(_))
    ));
    assert!(matches!(
        store
            .put(put_request(
                &address(&ns, &s, "bad-id"),
                NOW,
                None,
                ROOMY,
                "c"
            ))
            .await,
        Err(StoreError::Internal(_))
    ));
    // The rest keeps working.
    assert!(store
        .get(&address(&ns, &s, "fine"), NOW)
        .await
        .expect("get")
        .is_some());
    put_ok(&store, &address(&ns, &s, "new"), NOW, None, ROOMY, "n").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_with_the_same_texts_in_other_columns_do_not_collide() {
    // An account id that looks like an app id and the reverse must not alias.
    let tmp = private_tempdir();
    let store: Arc<dyn Store> = Arc::new(open(tmp.path()));
    let one = namespace("acct_x", "acct_y", Mode::Test);
    let two = namespace("acct_y", "acct_x", Mode::Test);
    let a = put_ok(
        &store,
        &address(&one, &Scope::Account, "n"),
        NOW,
        None,
        1,
        "a",
    )
    .await;
    let b = put_ok(
        &store,
        &address(&two, &Scope::Account, "n"),
        NOW,
        None,
        1,
        "b",
    )
    .await;
    assert_ne!(a.id, b.id);
    assert_eq!(list_ids(&*store, &one, &Scope::Account).await, vec![a.id]);
}

/// A find of a secret already found is answered from the read cache, without a reader.
#[tokio::test]
async fn a_second_get_is_answered_from_the_cache() {
    let dir = private_tempdir();
    let store = open_with(&dir.path().join("data"), SqliteOptions::default());
    let k = address(&home(), &Scope::Account, "cached");
    put_ok(
        &(store.clone() as Arc<dyn Store>),
        &k,
        NOW,
        None,
        ROOMY,
        "v",
    )
    .await;
    assert!(store.get(&k, NOW).await.expect("get").is_some());
    assert_eq!(
        store.stats().cached_secrets,
        1,
        "the first get fills the cache"
    );
    let reads = store.stats().reads;
    assert!(store.get(&k, NOW).await.expect("get").is_some());
    assert_eq!(store.stats().reads, reads, "the second get needs no reader");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        // SQLite's own -wal and -shm files come and go as connections close (a closed store's
        // last reader may close after `close` returns): not what these tests look for.
        .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
        .collect();
    names.sort();
    names
}

/// A snapshot holds the store as it was when taken (a write after it is not in it), leaves no
/// file in the data directory, and restored into a new directory it is that store again.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_a_running_store_restores_to_the_store_as_it_was() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("data");
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    let (a, b, answer) = write_known_state(Arc::clone(&store)).await;
    let mut snapshot = store.snapshot().await.expect("snapshot");
    put_ok(
        &store,
        &address(&home(), &Scope::Account, "after"),
        NOW,
        None,
        ROOMY,
        "after",
    )
    .await;
    assert!(
        !names_in(&dir)
            .iter()
            .any(|name| name.starts_with("snapshot-")),
        "the snapshot's name is gone once it is open: {:?}",
        names_in(&dir)
    );
    assert!(
        try_lock(&dir).expect("lock").is_none(),
        "the store holds it"
    );

    let backup = tmp.path().join("backup.db");
    std::io::copy(
        &mut snapshot,
        &mut std::fs::File::create(&backup).expect("create"),
    )
    .expect("copy");
    let info = inspect(&backup).expect("a backup");
    assert_eq!(
        (info.schema_version, info.secrets),
        (SCHEMA_VERSION, 2),
        "{info:?}"
    );

    let restored = tmp.path().join("restored");
    assert_eq!(restore(&restored, &backup).expect("restore"), info);
    assert_eq!(mode_of(&restored), 0o700);
    assert_eq!(mode_of(&restored.join(DATABASE_FILE)), 0o600);
    let refused = restore(&restored, &backup).expect_err("not empty");
    assert!(refused.0.contains("is not empty"), "{refused}");
    // check_known_state lists the scope: "after" would show there if the copy held it.
    check_known_state(Arc::new(open(&restored)), &a, &b, &answer).await;
}

/// A directory no server holds is copied by whoever takes its lock, read-only; a snapshot a
/// dead process left in a data directory is removed when the store opens there.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_store_is_copied_under_its_lock_and_stale_snapshots_go() {
    let tmp = private_tempdir();
    let dir = tmp.path().join("data");
    let (a, b, answer) = known_state_closed(&dir).await;
    let before = names_in(&dir);

    let held = try_lock(&dir).expect("lock").expect("no one holds it");
    assert!(SqliteStore::open(&dir, SqliteOptions::default()).is_err());
    let backup = tmp.path().join("backup.db");
    std::fs::File::create(&backup).expect("create");
    snapshot_stopped(&dir, &held, &backup).expect("snapshot");
    drop(held);
    assert_eq!(names_in(&dir), before, "the directory is left as it was");

    let stale = dir.join("snapshot-0123456789abcdef.db");
    std::fs::write(&stale, b"half a copy").expect("write");
    let restored = tmp.path().join("restored");
    restore(&restored, &backup).expect("restore");
    check_known_state(Arc::new(open(&restored)), &a, &b, &answer).await;
    drop(open(&dir));
    assert!(!stale.exists(), "a stale snapshot is removed at open");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_are_not_backups_are_refused_with_a_reason() {
    let tmp = private_tempdir();
    let text = tmp.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some words in a file\n".repeat(20),
    )
    .expect("write");
    let bare = tmp.path().join("bare.db");
    rusqlite::Connection::open(&bare)
        .and_then(|db| db.execute_batch("CREATE TABLE t (x)"))
        .expect("sqlite");
    let empty = tmp.path().join("empty.db");
    std::fs::write(&empty, b"").expect("write");
    for (file, reason) in [
        (&text, "not an SQLite database"),
        (&bare, "without secretstore's tables"),
        (&empty, "it is empty"),
    ] {
        let refused = inspect(file).expect_err("not a backup");
        assert!(
            refused.0.contains("is not a secretstore backup") && refused.0.contains(reason),
            "{refused}"
        );
        let into = tmp.path().join("into");
        assert_eq!(restore(&into, file).expect_err("refused"), refused);
        assert!(!into.exists(), "a refused restore creates nothing");
    }

    let newer = tmp.path().join("newer");
    drop(open(&newer));
    let db = rusqlite::Connection::open(newer.join(DATABASE_FILE)).expect("sqlite");
    db.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .expect("set version");
    drop(db);
    let refused =
        restore(&tmp.path().join("into"), &newer.join(DATABASE_FILE)).expect_err("newer schema");
    assert!(refused.0.contains("newer"), "{refused}");
}
