//! `secretstore-harness memory`: the server's resident memory under the largest secrets a client
//! can store. Clients set secrets whose payload is 5,000 four-byte characters (the most the
//! contract allows), whose user id is 1,000 four-byte characters and whose name is long too,
//! and find each one back with its payload, while the server's resident set size is sampled.
//! Every secret is new, so every find that the read cache keeps adds to it: without a bound in
//! bytes, memory grows with the number of secrets found. The run passes when the peak stays at
//! or under `--max-rss-mib` (256 MiB: the default configuration's promise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{Api, Outcome, Scope};
use crate::server::{load_average, random_hex, read_rss_kib, resolve_bin, work_dir, ServerSpec};

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Secrets to set and find.
    #[arg(long, default_value_t = 20_000)]
    pub secrets: u64,

    /// Concurrent clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub clients: u64,

    /// The peak resident memory the run may reach, in MiB.
    #[arg(long, default_value_t = 256)]
    pub max_rss_mib: u64,

    /// The secretstore binary [default: target/release/secretstore if present, else
    /// target/debug/secretstore].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<std::path::PathBuf>,

    /// Extra flags for `secretstore serve` (e.g. --cache-bytes 0), one per occurrence.
    #[arg(long = "serve-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
}

/// Four bytes in UTF-8, one character: the largest the limits count as one.
const WIDE: char = '\u{1D11E}';

pub async fn run(args: MemoryArgs) -> anyhow::Result<bool> {
    let bin = resolve_bin(args.bin.clone())?;
    let work = work_dir("secretstore-memory.", None)?;
    let mut extra_args = vec!["--max-secrets-per-scope".to_owned(), "1000000".to_owned()];
    extra_args.extend(args.serve_args.iter().cloned());
    let spec = ServerSpec {
        bin,
        data: work.path().join("data"),
        root_key: random_hex(32)?,
        extra_args,
    };
    let server = spec.start(&work.path().join("server.log")).await?;
    let key = format!("sk_test_memory{}", random_hex(6)?);
    let payload: String = std::iter::repeat_n(WIDE, 5_000).collect();
    // A user id and a name as long as the request line of a find can carry (hyper refuses
    // request targets over 64 KiB, and each of these characters is 12 bytes percent-encoded).
    let user: String = std::iter::repeat_n(WIDE, 1_000).collect();
    let name_tail: String = std::iter::repeat_n(WIDE, 1_000).collect();
    println!("secretstore-harness memory");
    println!("  binary      {}", spec.bin.display());
    println!(
        "  load        {} secrets, each set then found with its payload, by {} clients",
        args.secrets, args.clients
    );
    println!(
        "  secret      payload 5,000 x U+1D11E (20,000 bytes), user id and name 1,000 x U+1D11E"
    );
    println!("  serve args  {}", spec.extra_args.join(" "));
    println!("  loadavg     {}", load_average());

    let rss_start = server.rss_kib()?;
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let api = Api::new(&server.url, &key, Duration::from_secs(60))?;
        let (next, failures) = (Arc::clone(&next), Arc::clone(&failures));
        let (payload, user, name_tail, total) = (
            payload.clone(),
            user.clone(),
            name_tail.clone(),
            args.secrets,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= total {
                    break;
                }
                // Ten secrets a user, so scopes stay small.
                let scope = Scope::user(format!("usr_{}{user}", n / 10));
                let name = format!("n{n}-{name_tail}");
                let ok =
                    |outcome: &Outcome| matches!(outcome, Outcome::Answered { status: 200, .. });
                if !ok(&api.set(&scope, &name, &payload, false).await)
                    || !ok(&api.find(&scope, &name, true).await)
                {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let mut samples = vec![(0u64, rss_start)];
    let mut peak = rss_start;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let done = next.load(Ordering::SeqCst).min(args.secrets);
        if let Some(rss) = read_rss_kib(server.pid) {
            peak = peak.max(rss);
            samples.push((done, rss));
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    for task in tasks {
        task.await?;
    }
    let rss_end = server.rss_kib()?;
    peak = peak.max(rss_end);
    let failed = failures.load(Ordering::SeqCst);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nresident memory (MiB) after N secrets set and found:");
    let step = (samples.len() / 12).max(1);
    for (done, rss) in samples.iter().step_by(step) {
        println!("  {done:>8}  {:>8.1}", mib(*rss));
    }
    println!(
        "\ntotal: {} secrets in {:.1} s, {failed} failed requests | RSS {:.1} MiB at start, \
         {:.1} MiB at the end, {:.1} MiB at most (limit {} MiB) | loadavg {}",
        args.secrets,
        began.elapsed().as_secs_f64(),
        mib(rss_start),
        mib(rss_end),
        mib(peak),
        args.max_rss_mib,
        load_average()
    );
    server.terminate().await?;
    let within = peak <= args.max_rss_mib * 1024;
    if failed > 0 {
        eprintln!("FAILED: {failed} requests were not answered 200");
    }
    if !within {
        eprintln!(
            "FAILED: the server's resident memory reached {:.1} MiB, over {} MiB",
            mib(peak),
            args.max_rss_mib
        );
    }
    Ok(failed == 0 && within)
}
