//! `secretstore-harness crash`: crash consistency under SIGKILL. Many clients run a mix of set
//! and delete against the real server, each over its own small set of names; the server is
//! killed with SIGKILL at a random moment; the database must then pass its integrity check
//! (SQLite's `integrity_check`, or PostgreSQL's amcheck with `--postgres`), and after a restart every name must hold a state the model allows: what was last
//! acknowledged, or, for a request whose answer the kill swallowed, either the state before it
//! or the state it would have produced. The next cycle continues from the states read back.
//!
//! Besides the read-back after each restart, answers are checked as they arrive: a delete
//! answered 404 for a name that must exist, or 200 for a name that must be absent, or with a
//! payload that was never stored there, is a violation on the spot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::api::{Api, Outcome, Scope};
use crate::model::{Allowed, State};
use crate::rng::Rng;
use crate::server::{load_average, random_hex, resolve_bin, work_dir, ServerSpec};
use secretstore_testkit::postgres::ScratchDatabase;

#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// Kill-and-restart cycles to run.
    #[arg(long, default_value_t = 3)]
    pub cycles: u32,

    /// Concurrent clients; client N works in the user scope usr_N.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clients: u32,

    /// Names each client sets and deletes (few, so every name sees many operations).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub names: u32,

    /// The secretstore binary [default: target/release/secretstore if present, else
    /// target/debug/secretstore].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,

    /// Seed for kill delays, operation mixes and payloads [default: from the clock; printed,
    /// so a run can be repeated].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Shortest time from the start of a cycle's load to the kill, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub min_kill_ms: u64,

    /// Longest time from the start of a cycle's load to the kill, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub max_kill_ms: u64,

    /// Directory to create the run's work directory in (data and one server log per cycle)
    /// [default: the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Keep the work directory after a successful run (it is always kept after a failure).
    #[arg(long)]
    pub keep: bool,

    /// Run the server on PostgreSQL instead of a data directory: a scratch database on the
    /// test server (SECRETSTORE_TEST_DATABASE_URL, default postgres://root@127.0.0.1:5432/test),
    /// checked with amcheck after each kill and dropped at the end (kept after a failure).
    #[arg(long)]
    pub postgres: bool,
}

/// Percent of operations that are sets (the rest are deletes).
const SET_PERCENT: u64 = 65;
/// Percent of sets that ask for the payload back (checked against what was sent).
const SET_EXPAND_PERCENT: u64 = 30;
/// Percent of deletes that ask for the payload back (checked against the model).
const DELETE_EXPAND_PERCENT: u64 = 50;
/// Longest payload, in characters.
const MAX_PAYLOAD_CHARS: u64 = 200;

/// What one client did in one cycle, and the sums over clients and cycles.
#[derive(Debug, Default)]
struct Tally {
    acked_sets: u64,
    /// Deletes answered 200 or 404 (both acknowledge that the name is now absent).
    acked_deletes: u64,
    /// Of those, the ones answered 404.
    acked_deletes_missing: u64,
    uncertain: u64,
    not_sent: u64,
    violations: Vec<String>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.acked_sets += other.acked_sets;
        self.acked_deletes += other.acked_deletes;
        self.acked_deletes_missing += other.acked_deletes_missing;
        self.uncertain += other.uncertain;
        self.not_sent += other.not_sent;
        self.violations.extend(other.violations);
    }

    fn acknowledged(&self) -> u64 {
        self.acked_sets + self.acked_deletes
    }
}

/// One client's names and model, handed to its task for a cycle and back.
#[derive(Debug)]
struct Client {
    index: u32,
    user: String,
    scope: Scope,
    names: Vec<String>,
    model: Vec<Allowed>,
    rng: Rng,
    /// Makes every payload unique, so a state read back names the one set that wrote it.
    sequence: u64,
}

impl Client {
    fn label(&self, name: usize) -> String {
        format!("{}/{}", self.user, self.names[name])
    }
}

pub async fn run(args: CrashArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.min_kill_ms <= args.max_kill_ms,
        "--min-kill-ms must not exceed --max-kill-ms"
    );
    let bin = resolve_bin(args.bin.clone())?;
    let seed = args.seed.unwrap_or_else(Rng::clock_seed);
    let work = work_dir("secretstore-crash.", args.work_dir.as_deref())?;
    let database = args.postgres.then(ScratchDatabase::create);
    // Each client keeps up to --names secrets in its scope; the default maximum of 10 would
    // refuse sets, which is not what this harness is about.
    let mut extra_args = vec!["--max-secrets-per-scope".into(), "1000000".into()];
    if let Some(database) = &database {
        extra_args.extend(["--database-url".into(), database.url().to_owned()]);
    }
    let spec = ServerSpec {
        bin,
        data: work.path().join("data"),
        root_key: random_hex(32)?,
        extra_args,
    };
    // An app of its own per run (not derived from the seed, which a rerun repeats): a run over
    // a database that already holds other runs' secrets still starts from empty scopes.
    let key = format!("sk_test_crash{}", random_hex(6)?);

    println!("secretstore-harness crash");
    println!("  binary      {}", spec.bin.display());
    println!("  seed        {seed} (the same kill delays and operation sequences: --seed {seed})");
    println!(
        "  load        {} clients x {} names, {SET_PERCENT}% set / {}% delete, kill after {}-{} ms",
        args.clients,
        args.names,
        100 - SET_PERCENT,
        args.min_kill_ms,
        args.max_kill_ms
    );
    println!("  work dir    {}", work.path().display());
    if let Some(database) = &database {
        println!(
            "  database    PostgreSQL, scratch database {}",
            database.name()
        );
    }
    println!("  loadavg     {}", load_average());

    let began = Instant::now();
    let mut rng = Rng::derive(seed, &[0]);
    let mut clients: Vec<Client> = (0..args.clients)
        .map(|index| Client {
            index,
            user: format!("usr_{index}"),
            scope: Scope::user(format!("usr_{index}")),
            names: (0..args.names).map(|n| format!("name-{n}")).collect(),
            model: vec![Allowed::default(); args.names as usize],
            rng: Rng::derive(seed, &[1, u64::from(index)]),
            sequence: 0,
        })
        .collect();
    let mut totals = Tally::default();
    let mut verified_total = 0;
    let mut server = spec.start(&log_path(work.path(), 1)).await?;

    for cycle in 1..=args.cycles {
        let killing = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(clients.len());
        for client in clients.drain(..) {
            let api = Api::new(&server.url, &key, Duration::from_secs(30))?;
            tasks.push(tokio::spawn(run_client(client, api, Arc::clone(&killing))));
        }
        let delay = rng.between(args.min_kill_ms, args.max_kill_ms);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // The flag goes up before the signal: a client that then sees its request fail knows
        // the kill caused it, and one that sees a failure with the flag down has found a fault.
        // Clients do not stop on the flag itself, so the kill always lands with requests in
        // flight (stopping on it would let a group commit answer everyone first).
        killing.store(true, Ordering::SeqCst);
        server.kill9().await?;

        let mut tally = Tally::default();
        for task in tasks {
            let (client, t) = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .context("a client did not stop within 60 s of the kill")?
                .context("a client task panicked")?;
            clients.push(client);
            tally.absorb(t);
        }
        clients.sort_by_key(|c| c.index);

        let integrity = match &database {
            Some(database) => postgres_amcheck(database.url()).await?,
            None => {
                sqlite_integrity_check(&spec.data.join(secretstore_sqlite::DATABASE_FILE)).await?
            }
        };
        if integrity != "ok" {
            tally
                .violations
                .push(format!("integrity check after the kill: {integrity}"));
        }

        server = spec.start(&log_path(work.path(), cycle + 1)).await?;
        let restart = server.start_time;
        let (verified, present, violations) = verify(&mut clients, &server.url, &key).await?;
        tally.violations.extend(violations);

        println!(
            "cycle {cycle:>3}/{}: killed after {delay:>4} ms | acknowledged {:>5} ({} sets, {} \
             deletes, {} of them 404) | uncertain {:>2} | not sent {:>2} | integrity {integrity} \
             | restart {:>4} ms | verified {verified} names ({present} present)",
            args.cycles,
            tally.acknowledged(),
            tally.acked_sets,
            tally.acked_deletes,
            tally.acked_deletes_missing,
            tally.uncertain,
            tally.not_sent,
            restart.as_millis(),
        );
        verified_total += verified;
        let violations = std::mem::take(&mut tally.violations);
        totals.absorb(tally);

        if !violations.is_empty() {
            eprintln!(
                "\nFAILED in cycle {cycle}: {} violation(s):",
                violations.len()
            );
            for violation in &violations {
                eprintln!("  - {violation}");
            }
            let _ = server.kill9().await;
            let kept = work.keep();
            eprintln!(
                "\nkept the data and server logs (server-N.log is the process killed in cycle \
                 N) in {}\nthe same kill delays and operation sequences: --seed {seed}",
                kept.display()
            );
            if let Some(database) = database {
                eprintln!("kept the database: {}", database.keep());
            }
            return Ok(false);
        }
    }

    let final_log = server.log.clone();
    let status = server.terminate().await?;
    let wall = began.elapsed();
    println!(
        "\ntotal: {} cycles in {:.1} s | acknowledged {} ({} sets, {} deletes, {} of them 404) | \
         uncertain {} | not sent {} | verified {} name states | violations 0 | loadavg {}",
        args.cycles,
        wall.as_secs_f64(),
        totals.acknowledged(),
        totals.acked_sets,
        totals.acked_deletes,
        totals.acked_deletes_missing,
        totals.uncertain,
        totals.not_sent,
        verified_total,
        load_average(),
    );
    if !status.success() {
        eprintln!(
            "FAILED: the last server did not exit cleanly on SIGTERM ({status}); its log {}:\n{}",
            final_log.display(),
            crate::server::tail(&final_log)
        );
        let kept = work.keep();
        eprintln!("kept {}", kept.display());
        return Ok(false);
    }
    if args.keep {
        let kept = work.keep();
        println!("kept {}", kept.display());
    }
    Ok(true)
}

fn log_path(work: &Path, n: u32) -> PathBuf {
    work.join(format!("server-{n}.log"))
}

/// One client's load for one cycle: random sets and deletes over its names, one request at a
/// time, until a request fails (the kill guarantees one will) or gets an unexpected answer.
async fn run_client(mut client: Client, api: Api, killing: Arc<AtomicBool>) -> (Client, Tally) {
    let mut tally = Tally::default();
    loop {
        let i = client.rng.below(client.names.len() as u64) as usize;
        let label = client.label(i);
        let name = client.names[i].clone();
        if client.rng.chance(SET_PERCENT) {
            client.sequence += 1;
            let prefix = format!("c{}n{i}s{}:", client.index, client.sequence);
            let payload = client.rng.payload(&prefix, MAX_PAYLOAD_CHARS);
            let expand = client.rng.chance(SET_EXPAND_PERCENT);
            match api.set(&client.scope, &name, &payload, expand).await {
                Outcome::Answered { status: 200, body } => {
                    if expand && !body.is_null() && body["payload"].as_str() != Some(&payload) {
                        tally.violations.push(format!(
                            "{label}: set answered payload {} instead of {payload:?}",
                            body["payload"]
                        ));
                    }
                    client.model[i].acknowledged(State::Present(payload));
                    tally.acked_sets += 1;
                }
                Outcome::Answered { status, body } => {
                    tally
                        .violations
                        .push(format!("{label}: set answered {status}: {body}"));
                    break;
                }
                Outcome::NotSent => {
                    note_failure(&killing, &mut tally, &label, "set: connection refused");
                    tally.not_sent += 1;
                    break;
                }
                Outcome::Lost(err) => {
                    note_failure(&killing, &mut tally, &label, &format!("set: {err}"));
                    client.model[i].uncertain(State::Present(payload));
                    tally.uncertain += 1;
                    break;
                }
            }
        } else {
            let expand = client.rng.chance(DELETE_EXPAND_PERCENT);
            match api.delete(&client.scope, &name, expand).await {
                Outcome::Answered { status: 200, body } => {
                    let allowed = &client.model[i];
                    if !allowed.allows_present() {
                        tally.violations.push(format!(
                            "{label}: delete answered 200 (it existed) but it must be \
                             {allowed}: {body}"
                        ));
                    } else if expand && !body.is_null() {
                        match body["payload"].as_str() {
                            Some(p) if allowed.allows(&State::Present(p.to_owned())) => {}
                            _ => tally.violations.push(format!(
                                "{label}: delete answered payload {}, expected {allowed}",
                                body["payload"]
                            )),
                        }
                    }
                    if !body.is_null() && body["deleted"] != Value::Bool(true) {
                        tally.violations.push(format!(
                            "{label}: delete answered 200 without \"deleted\": true: {body}"
                        ));
                    }
                    client.model[i].acknowledged(State::Absent);
                    tally.acked_deletes += 1;
                }
                Outcome::Answered { status: 404, body } => {
                    let allowed = &client.model[i];
                    if !allowed.allows_absent() {
                        tally.violations.push(format!(
                            "{label}: delete answered 404 (absent) but it must be {allowed}: \
                             {body}"
                        ));
                    }
                    client.model[i].acknowledged(State::Absent);
                    tally.acked_deletes += 1;
                    tally.acked_deletes_missing += 1;
                }
                Outcome::Answered { status, body } => {
                    tally
                        .violations
                        .push(format!("{label}: delete answered {status}: {body}"));
                    break;
                }
                Outcome::NotSent => {
                    note_failure(&killing, &mut tally, &label, "delete: connection refused");
                    tally.not_sent += 1;
                    break;
                }
                Outcome::Lost(err) => {
                    note_failure(&killing, &mut tally, &label, &format!("delete: {err}"));
                    client.model[i].uncertain(State::Absent);
                    tally.uncertain += 1;
                    break;
                }
            }
        }
    }
    (client, tally)
}

/// A request that failed while the kill flag was still down failed for a reason other than
/// the kill: the server dropped a connection or died on its own.
fn note_failure(killing: &AtomicBool, tally: &mut Tally, label: &str, what: &str) {
    if !killing.load(Ordering::SeqCst) {
        tally
            .violations
            .push(format!("{label}: {what} (before the kill)"));
    }
}

/// Reads every name of every client back (find with the payload), checks it against the
/// model, cross-checks each scope's list against the finds, and makes what was read the
/// model's new certain state. Returns (names verified, names present, violations).
async fn verify(
    clients: &mut [Client],
    url: &str,
    key: &str,
) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients.iter() {
        let api = Api::new(url, key, Duration::from_secs(30))?;
        let scope = client.scope.clone();
        let names = client.names.clone();
        let user = client.user.clone();
        tasks.push(tokio::spawn(async move {
            read_scope(&api, &scope, &user, &names).await
        }));
    }
    let (mut verified, mut present, mut violations) = (0, 0, Vec::new());
    for (client, task) in clients.iter_mut().zip(tasks) {
        let (states, problems) = task.await.context("a verifier panicked")?;
        violations.extend(problems);
        for (i, state) in states.into_iter().enumerate() {
            let Some(state) = state else { continue };
            verified += 1;
            if !client.model[i].allows(&state) {
                violations.push(format!(
                    "{}: expected {}, actual {state}",
                    client.label(i),
                    client.model[i]
                ));
            }
            if matches!(state, State::Present(_)) {
                present += 1;
            }
            client.model[i].acknowledged(state);
        }
    }
    Ok((verified, present, violations))
}

/// The state of each name in one scope (None where it could not be read), and any problems:
/// a find that failed, or a list that disagrees with the finds.
async fn read_scope(
    api: &Api,
    scope: &Scope,
    user: &str,
    names: &[String],
) -> (Vec<Option<State>>, Vec<String>) {
    let mut states = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        let state = match api.find(scope, name, true).await {
            Outcome::Answered { status: 200, body } => match body["payload"].as_str() {
                Some(payload) if body["name"].as_str() == Some(name) => {
                    Some(State::Present(payload.to_owned()))
                }
                _ => {
                    problems.push(format!("{user}/{name}: find answered 200 with {body}"));
                    None
                }
            },
            Outcome::Answered { status: 404, body }
                if body["error"]["code"].as_str() == Some("resource_missing") =>
            {
                Some(State::Absent)
            }
            Outcome::Answered { status, body } => {
                problems.push(format!("{user}/{name}: find answered {status}: {body}"));
                None
            }
            Outcome::NotSent => {
                problems.push(format!("{user}/{name}: find: connection refused"));
                None
            }
            Outcome::Lost(err) => {
                problems.push(format!("{user}/{name}: find: {err}"));
                None
            }
        };
        states.push(state);
    }

    // The list must show exactly the names the finds found, with the same payloads: the
    // scope's index and its rows must agree after recovery.
    match api.list(scope, 100, true).await {
        Outcome::Answered { status: 200, body } => {
            let mut listed: Vec<(String, String)> = body["data"]
                .as_array()
                .map(|data| {
                    data.iter()
                        .map(|s| {
                            (
                                s["name"].as_str().unwrap_or("?").to_owned(),
                                s["payload"].as_str().unwrap_or("?").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut found: Vec<(String, String)> = names
                .iter()
                .zip(&states)
                .filter_map(|(name, state)| match state {
                    Some(State::Present(p)) => Some((name.clone(), p.clone())),
                    _ => None,
                })
                .collect();
            listed.sort();
            found.sort();
            if body["has_more"] != Value::Bool(false) || listed != found {
                problems.push(format!(
                    "{user}: list disagrees with find: list has {:?}, find has {:?}",
                    listed.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                    found.iter().map(|(n, _)| n).collect::<Vec<_>>()
                ));
            }
        }
        Outcome::Answered { status, body } => {
            problems.push(format!("{user}: list answered {status}: {body}"))
        }
        Outcome::NotSent => problems.push(format!("{user}: list: connection refused")),
        Outcome::Lost(err) => problems.push(format!("{user}: list: {err}")),
    }
    (states, problems)
}

/// amcheck on every table (`verify_heapam`) and every B-tree index (`bt_index_check` with
/// `heapallindexed`, so an index that lost a row of its table is caught) of the database the
/// server writes, as the kill left it; "ok" or what is damaged.
async fn postgres_amcheck(url: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connect to the database for amcheck")?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
        .context("CREATE EXTENSION amcheck (PostgreSQL's contrib package)")?;
    let mut problems = Vec::new();
    let tables = client
        .query(
            "SELECT c.relname, (SELECT count(*) FROM verify_heapam(c.oid)) \
             FROM pg_class c WHERE c.relkind = 'r' \
             AND c.relnamespace = current_schema()::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .context("verify_heapam")?;
    for row in &tables {
        let (table, damaged): (String, i64) = (row.get(0), row.get(1));
        if damaged > 0 {
            problems.push(format!("table {table}: {damaged} corrupt tuple(s)"));
        }
    }
    let indexes = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam \
             WHERE c.relkind = 'i' AND a.amname = 'btree' \
             AND c.relnamespace = current_schema()::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .context("list the indexes")?;
    for row in &indexes {
        let index: String = row.get(0);
        if let Err(e) = client
            .execute("SELECT bt_index_check($1::text::regclass, true)", &[&index])
            .await
        {
            problems.push(format!("index {index}: {e}"));
        }
    }
    drop(client);
    let _ = driver.await;
    if tables.is_empty() {
        problems.push("no tables: the server never created its schema".into());
    }
    Ok(if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    })
}

/// `PRAGMA integrity_check` on a read-only connection, on the files exactly as the kill left
/// them: read-only, so the check neither checkpoints the write-ahead log nor changes anything
/// the restarted server will recover from.
async fn sqlite_integrity_check(db: &Path) -> anyhow::Result<String> {
    let db = db.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let conn = rusqlite::Connection::open_with_flags(
            &db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("open {} read-only", db.display()))?;
        let mut statement = conn.prepare("PRAGMA integrity_check")?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows.join("; "))
    })
    .await
    .context("the integrity check panicked")?
}
