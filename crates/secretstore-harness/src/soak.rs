//! `secretstore-harness soak`: a long, steady, mixed load against the real server. It first
//! measures the maximum throughput of the mix (closed loop: every connection sends its next
//! request as soon as the last is answered), then holds a fraction of that rate open-loop (a
//! fixed schedule of send times, kept whether or not the server keeps up) for the whole
//! duration, and judges the run: no errors at all, resident memory at the end within a
//! tolerance of what it was after warm-up, p99 latency at the end not far above p99 just
//! after warm-up, the target rate actually answered, and a clean exit on SIGTERM afterwards.
//!
//! The mix is what an app backend does: 70% find with the payload, 20% set (replacing a
//! secret), 10% list, spread over many user scopes that each hold fewer secrets than the
//! scope maximum, so the maximum never refuses a set.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::api::{Api, Outcome, Scope};
use crate::rng::Rng;
use crate::server::{
    load_average, random_hex, read_rss_kib, resolve_bin, work_dir, ServerProcess, ServerSpec,
};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Seconds of open-loop load at the target rate (after the measurement).
    #[arg(long, default_value_t = 600)]
    pub duration: u64,

    /// Target rate in requests a second; skips measuring the maximum.
    #[arg(long, conflicts_with = "fraction")]
    pub rate: Option<f64>,

    /// Target rate as a fraction of the measured maximum throughput.
    #[arg(long, default_value_t = 0.7)]
    pub fraction: f64,

    /// Keep-alive connections (one request in flight on each at a time).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,

    /// Seconds of closed-loop load that measure the maximum throughput (after 2 s unmeasured).
    #[arg(long, default_value_t = 10)]
    pub measure: u64,

    /// Length of one reporting window, in seconds.
    #[arg(long, default_value_t = 10)]
    pub window: u64,

    /// Seconds of warm-up at the start of the open-loop run, whose windows the verdict does not
    /// judge [default: 10% of --duration, at least one window].
    #[arg(long)]
    pub warmup: Option<u64>,

    /// Seconds at each end of the judged run whose p99 latencies are compared (clipped to half
    /// of the judged run).
    #[arg(long, default_value_t = 60)]
    pub flat_span: u64,

    /// Latency is flat when p99 of the last span <= this factor x p99 of the first span after
    /// warm-up, plus --p99-slack-ms.
    #[arg(long, default_value_t = 2.0)]
    pub p99_factor: f64,

    /// Milliseconds added to the latency rule's bound, so sub-millisecond jitter (a p99 going
    /// from 0.4 to 0.9 ms) is not called a trend.
    #[arg(long, default_value_t = 1.0)]
    pub p99_slack_ms: f64,

    /// Memory is flat when resident size at the end is within this percentage of resident
    /// size after warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance_pct: f64,

    /// A request sent more than this many milliseconds after its scheduled time counts as
    /// late (no connection was free, or the harness itself did not get the CPU).
    #[arg(long, default_value_t = 10)]
    pub late_ms: u64,

    /// The run passes only if the rate answered after warm-up is at least this percentage of
    /// the target: a server that stalls makes the harness fall behind rather than see slow
    /// answers, so a shortfall must fail the run, not hide in a "late" count.
    #[arg(long, default_value_t = 95.0)]
    pub min_achieved_pct: f64,

    /// User scopes the load is spread over.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub scopes: u32,

    /// Secrets in each scope (at most 10, the server's default scope maximum, which the soak
    /// keeps).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub names_per_scope: u32,

    /// The secretstore binary [default: target/release/secretstore if present, else
    /// target/debug/secretstore].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,

    /// Seed for the operation mix and payloads [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Write a summary here: JSON if the name ends in .json, else markdown.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// Directory to create the run's work directory in [default: the system's temporary
    /// directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

const KEY: &str = "sk_test_soak";
/// Longest payload in characters; sets draw 1..=this.
const MAX_PAYLOAD_CHARS: u64 = 120;

/// The seeded secrets every operation picks from.
#[derive(Debug)]
struct Dataset {
    scopes: Vec<Scope>,
    names: Vec<String>,
}

impl Dataset {
    fn new(scopes: u32, names: u32) -> Self {
        Self {
            scopes: (0..scopes)
                .map(|s| Scope::user(format!("usr_soak{s}")))
                .collect(),
            names: (0..names).map(|n| format!("secret-{n}")).collect(),
        }
    }

    fn pick(&self, rng: &mut Rng) -> (&Scope, &str) {
        let scope = &self.scopes[rng.below(self.scopes.len() as u64) as usize];
        let name = &self.names[rng.below(self.names.len() as u64) as usize];
        (scope, name)
    }
}

/// One request of the mix; Err describes anything but a 2xx answer.
async fn mixed_request(api: &Api, data: &Dataset, rng: &mut Rng) -> Result<(), String> {
    let roll = rng.below(100);
    let (scope, name) = data.pick(rng);
    let (op, outcome) = if roll < 70 {
        ("find", api.find(scope, name, true).await)
    } else if roll < 90 {
        let payload = rng.payload("", MAX_PAYLOAD_CHARS);
        ("set", api.set(scope, name, &payload, false).await)
    } else {
        ("list", api.list(scope, 10, false).await)
    };
    match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(&status) => Ok(()),
        Outcome::Answered { status, body } => Err(format!("{op} answered {status}: {body}")),
        Outcome::NotSent => Err(format!("{op}: connection refused")),
        Outcome::Lost(err) => Err(format!("{op}: {err}")),
    }
}

/// Everything recorded about the requests scheduled in one window.
#[derive(Debug, Default, Clone)]
struct Window {
    ok: u64,
    errors: u64,
    late: u64,
    max_lag: Duration,
    /// Send to answer, in microseconds.
    latencies_us: Vec<u32>,
    /// Sampled at the window's end.
    rss_kib: Option<u64>,
    load1: Option<f64>,
}

/// Shared between the connections and the reporter.
#[derive(Debug)]
struct Recorder {
    windows: Mutex<Vec<Window>>,
    error_samples: Mutex<Vec<String>>,
}

impl Recorder {
    fn error(&self, message: String) {
        let mut samples = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < 20 {
            samples.push(message);
        }
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    let window = Duration::from_secs(args.window.max(1));
    let windows = args.duration.div_ceil(window.as_secs()) as usize;
    let warmup = args
        .warmup
        .unwrap_or((args.duration / 10).max(window.as_secs()));
    // At least one window: "RSS after warm-up" is sampled at the end of the last warm-up one.
    let warm_windows = (warmup.div_ceil(window.as_secs()) as usize).max(1);
    if windows < warm_windows + 2 {
        bail!(
            "--duration {} leaves fewer than two {}-second windows after a {warmup}-second \
             warm-up: nothing to compare",
            args.duration,
            window.as_secs()
        );
    }
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        bail!("--fraction must be in (0, 1]");
    }
    let bin = resolve_bin(args.bin.clone())?;
    let seed = args.seed.unwrap_or_else(Rng::clock_seed);
    let work = work_dir("secretstore-soak.", args.work_dir.as_deref())?;
    let spec = ServerSpec {
        bin,
        data: work.path().join("data"),
        root_key: random_hex(32)?,
        // Per-request info logs would measure the log writer, not the store.
        extra_args: vec!["--log".into(), "warn".into()],
    };
    let load_before = load_average();
    println!("secretstore-harness soak");
    println!("  binary       {}", spec.bin.display());
    println!(
        "  load         {} connections; 70% find (expand payload), 20% set, 10% list over {} \
         scopes x {} secrets",
        args.connections, args.scopes, args.names_per_scope
    );
    println!(
        "  run          {} s open-loop in {} s windows, first {warmup} s warm-up; seed {seed}",
        args.duration,
        window.as_secs()
    );
    println!("  loadavg      {load_before} (before)");

    let server = spec.start(&work.path().join("server.log")).await?;
    let data = Arc::new(Dataset::new(args.scopes, args.names_per_scope));
    let apis: Vec<Api> = (0..args.connections)
        .map(|_| Api::new(&server.url, KEY, Duration::from_secs(10)))
        .collect::<Result<_, _>>()?;

    seed_data(&apis, &data).await?;
    println!(
        "  seeded       {} secrets; server RSS {:.1} MiB",
        data.scopes.len() * data.names.len(),
        mib(server.rss_kib()?)
    );

    let (max_rate, measure_errors) = match args.rate {
        Some(_) => (None, 0),
        None => {
            closed_loop(&apis, &data, seed, Duration::from_secs(2)).await;
            let (ok, errors) =
                closed_loop(&apis, &data, seed ^ 1, Duration::from_secs(args.measure)).await;
            let max = ok as f64 / args.measure as f64;
            println!(
                "  maximum      {max:.0} req/s (closed loop, {} connections, {} s, {errors} errors)",
                args.connections, args.measure
            );
            (Some(max), errors)
        }
    };
    let target = args
        .rate
        .or(max_rate.map(|m| m * args.fraction))
        .context("no rate")?;
    if target <= 0.0 {
        bail!("the target rate is {target}: nothing to run");
    }
    println!(
        "  target       {target:.0} req/s{}",
        if args.rate.is_none() {
            format!(" ({:.0}% of the maximum)", args.fraction * 100.0)
        } else {
            String::new()
        }
    );
    println!();
    println!("{}", table_header());

    let recorder = Arc::new(Recorder {
        windows: Mutex::new(vec![Window::default(); windows]),
        error_samples: Mutex::new(Vec::new()),
    });
    let duration = Duration::from_secs(args.duration);
    let t0 = Instant::now() + Duration::from_millis(100);
    let end = t0 + duration;
    let interval_ns = 1e9 / target;
    let next_slot = Arc::new(AtomicU64::new(0));
    let missed = Arc::new(AtomicU64::new(0));
    let late_after = Duration::from_millis(args.late_ms);
    let mut tasks = Vec::new();
    for (c, api) in apis.iter().enumerate() {
        let api = api.clone();
        let data = Arc::clone(&data);
        let recorder = Arc::clone(&recorder);
        let next_slot = Arc::clone(&next_slot);
        let missed = Arc::clone(&missed);
        let mut rng = Rng::derive(seed, &[2, c as u64]);
        tasks.push(tokio::spawn(async move {
            loop {
                // Slots go out in order to whichever connection is free: if none is free when
                // a slot's time comes, it is sent late, and the lag is recorded.
                let slot = next_slot.fetch_add(1, Ordering::Relaxed);
                let offset = Duration::from_nanos((slot as f64 * interval_ns) as u64);
                if offset >= duration {
                    break;
                }
                let at = t0 + offset;
                tokio::time::sleep_until(at.into()).await;
                let sent = Instant::now();
                if sent >= end {
                    // So far behind that the run is over: the run keeps its length, and the
                    // slot counts as missed rather than stretching the run with a backlog.
                    missed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let lag = sent.saturating_duration_since(at);
                let result = mixed_request(&api, &data, &mut rng).await;
                let done = Instant::now();
                // Counted in the window the answer came in: a window's rate is what the server
                // answered in it, so falling behind shows as a rate below the target. The few
                // answers that arrive after the end count in the last window.
                let index = ((done.saturating_duration_since(t0).as_nanos() / window.as_nanos())
                    as usize)
                    .min(windows - 1);
                let mut all = recorder.windows.lock().unwrap_or_else(|e| e.into_inner());
                let w = &mut all[index];
                w.latencies_us
                    .push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX));
                w.max_lag = w.max_lag.max(lag);
                if lag > late_after {
                    w.late += 1;
                }
                match result {
                    Ok(()) => w.ok += 1,
                    Err(message) => {
                        w.errors += 1;
                        drop(all);
                        recorder.error(message);
                    }
                }
            }
        }));
    }
    let reporter = tokio::spawn(report_windows(
        Arc::clone(&recorder),
        server.pid,
        t0,
        window,
        windows,
        target,
        warm_windows,
    ));
    for task in tasks {
        task.await.context("a connection task panicked")?;
    }
    reporter.await.context("the reporter panicked")?;

    let rss_now = server.rss_kib().ok();
    let status = stop(server).await;
    let windows = std::mem::take(&mut *recorder.windows.lock().unwrap_or_else(|e| e.into_inner()));
    let errors = recorder
        .error_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let summary = Summary::judge(
        &args,
        missed.load(Ordering::Relaxed),
        &windows,
        warm_windows,
        window,
        target,
        max_rate,
        measure_errors,
        rss_now,
        status,
        errors,
        load_before,
    );
    // The lines printed during the run were written a moment after each window closed; a
    // request sent late may have been answered after that. This table counts every answer.
    println!("\nall windows, every answer counted:\n{}", table_header());
    for (i, w) in windows.iter().enumerate() {
        println!("{}", table_row(i, w, window, target, i < warm_windows));
    }
    println!("\n{}", summary.verdict_text());
    if let Some(path) = &args.report {
        let text = if path.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(&summary.json(&windows, window, target))?
        } else {
            summary.markdown(&windows, window, target)
        };
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if !summary.passed() {
        // The server's warnings and errors are the first thing to read after a failed soak.
        let kept = work.keep();
        println!("kept the server's log and data in {}", kept.display());
    }
    Ok(summary.passed())
}

/// Creates every secret of the dataset, one connection per slice of scopes.
async fn seed_data(apis: &[Api], data: &Arc<Dataset>) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for (c, api) in apis.iter().enumerate() {
        let api = api.clone();
        let data = Arc::clone(data);
        let step = apis.len();
        tasks.push(tokio::spawn(async move {
            for scope in data.scopes.iter().skip(c).step_by(step) {
                for name in &data.names {
                    let payload = format!("seed payload of {name}");
                    match api.set(scope, name, &payload, false).await {
                        Outcome::Answered { status: 200, .. } => {}
                        Outcome::Answered { status, body } => {
                            bail!("seeding {name}: {status}: {body}")
                        }
                        Outcome::NotSent => bail!("seeding {name}: connection refused"),
                        Outcome::Lost(err) => bail!("seeding {name}: {err}"),
                    }
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a seeding task panicked")??;
    }
    Ok(())
}

/// Every connection sends its next request as soon as the last is answered, for `length`.
/// Returns (2xx answers, errors).
async fn closed_loop(apis: &[Api], data: &Arc<Dataset>, seed: u64, length: Duration) -> (u64, u64) {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for (c, api) in apis.iter().enumerate() {
        let api = api.clone();
        let data = Arc::clone(data);
        let mut rng = Rng::derive(seed, &[3, c as u64]);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match mixed_request(&api, &data, &mut rng).await {
                    Ok(()) => ok += 1,
                    Err(_) => errors += 1,
                }
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        if let Ok((o, e)) = task.await {
            ok += o;
            errors += e;
        }
    }
    (ok, errors)
}

/// At each window's end samples the server's RSS and the load average, then (after a short
/// grace for the window's last answers) prints the window's line.
async fn report_windows(
    recorder: Arc<Recorder>,
    pid: u32,
    t0: Instant,
    window: Duration,
    windows: usize,
    target: f64,
    warm_windows: usize,
) {
    let grace = (window / 4).min(Duration::from_secs(1));
    for index in 0..windows {
        let end = t0 + window * (index as u32 + 1);
        tokio::time::sleep_until(end.into()).await;
        let rss = read_rss_kib(pid);
        let load1 = load_average()
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok());
        {
            let mut windows = recorder.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows[index].rss_kib = rss;
            windows[index].load1 = load1;
        }
        tokio::time::sleep(grace).await;
        let snapshot = recorder.windows.lock().unwrap_or_else(|e| e.into_inner())[index].clone();
        println!(
            "{}",
            table_row(index, &snapshot, window, target, index < warm_windows)
        );
    }
}

/// SIGTERM, and whether the server then exited cleanly.
async fn stop(server: ServerProcess) -> Result<(), String> {
    match server.terminate().await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("exited with {status} on SIGTERM")),
        Err(err) => Err(format!("{err:#}")),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The q-quantile (0..=1) of unsorted microsecond samples, in milliseconds.
fn quantile_ms(samples: &mut [u32], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
    let (_, value, _) = samples.select_nth_unstable(rank);
    Some(f64::from(*value) / 1000.0)
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn table_header() -> String {
    format!(
        "{:>9} {:>9} {:>11} {:>7} {:>10} {:>7} {:>8} {:>8} {:>8} {:>6}",
        "window s",
        "target/s",
        "achieved/s",
        "late",
        "max lag ms",
        "errors",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "load1"
    )
}

fn table_row(index: usize, w: &Window, window: Duration, target: f64, warm: bool) -> String {
    let secs = window.as_secs();
    let mut latencies = w.latencies_us.clone();
    format!(
        "{:>9} {:>9.0} {:>11.0} {:>7} {:>10.1} {:>7} {:>8} {:>8} {:>8} {:>6}{}",
        format!("{}-{}", index as u64 * secs, (index as u64 + 1) * secs),
        target,
        (w.ok + w.errors) as f64 / window.as_secs_f64(),
        w.late,
        w.max_lag.as_secs_f64() * 1000.0,
        w.errors,
        fmt_ms(quantile_ms(&mut latencies, 0.50)),
        fmt_ms(quantile_ms(&mut latencies, 0.99)),
        w.rss_kib
            .map_or_else(|| "-".into(), |k| format!("{:.1}", mib(k))),
        w.load1.map_or_else(|| "-".into(), |l| format!("{l:.2}")),
        if warm { "  warm-up" } else { "" }
    )
}

/// The run's figures and the verdict on them.
#[derive(Debug)]
struct Summary {
    max_rate: Option<f64>,
    target: f64,
    achieved: f64,
    min_achieved_pct: f64,
    late: u64,
    late_ms: u64,
    missed: u64,
    requests: u64,
    measure_errors: u64,
    soak_errors: u64,
    error_samples: Vec<String>,
    rss_warm_kib: Option<u64>,
    rss_end_kib: Option<u64>,
    rss_tolerance_pct: f64,
    span_windows: usize,
    p99_first_ms: Option<f64>,
    p99_last_ms: Option<f64>,
    p99_bound_ms: Option<f64>,
    p99_factor: f64,
    p99_slack_ms: f64,
    warm_windows: usize,
    window_secs: u64,
    shutdown: Result<(), String>,
    load_before: String,
    load_after: String,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    fn judge(
        args: &SoakArgs,
        missed: u64,
        windows: &[Window],
        warm_windows: usize,
        window: Duration,
        target: f64,
        max_rate: Option<f64>,
        measure_errors: u64,
        rss_now: Option<u64>,
        shutdown: Result<(), String>,
        error_samples: Vec<String>,
        load_before: String,
    ) -> Self {
        let judged = &windows[warm_windows..];
        let span_windows =
            ((args.flat_span / window.as_secs()) as usize).clamp(1, (judged.len() / 2).max(1));
        let merged_p99 = |part: &[Window]| {
            let mut all: Vec<u32> = part
                .iter()
                .flat_map(|w| w.latencies_us.iter().copied())
                .collect();
            quantile_ms(&mut all, 0.99)
        };
        let p99_first_ms = merged_p99(&judged[..span_windows]);
        let p99_last_ms = merged_p99(&judged[judged.len() - span_windows..]);
        let requests: u64 = judged.iter().map(|w| w.ok + w.errors).sum();
        Self {
            max_rate,
            target,
            achieved: requests as f64 / (judged.len() as f64 * window.as_secs_f64()),
            min_achieved_pct: args.min_achieved_pct,
            late: windows.iter().map(|w| w.late).sum(),
            late_ms: args.late_ms,
            missed,
            requests: windows.iter().map(|w| w.ok + w.errors).sum(),
            measure_errors,
            soak_errors: windows.iter().map(|w| w.errors).sum(),
            error_samples,
            rss_warm_kib: windows[warm_windows - 1].rss_kib,
            // The last window's sample, or (if the reporter missed it) the one taken after the
            // load stopped.
            rss_end_kib: windows.last().and_then(|w| w.rss_kib).or(rss_now),
            rss_tolerance_pct: args.rss_tolerance_pct,
            span_windows,
            p99_first_ms,
            p99_last_ms,
            p99_bound_ms: p99_first_ms.map(|p| p * args.p99_factor + args.p99_slack_ms),
            p99_factor: args.p99_factor,
            p99_slack_ms: args.p99_slack_ms,
            warm_windows,
            window_secs: window.as_secs(),
            shutdown,
            load_before,
            load_after: load_average(),
        }
    }

    fn errors_ok(&self) -> bool {
        self.measure_errors == 0 && self.soak_errors == 0
    }

    fn rss_change_pct(&self) -> Option<f64> {
        let (warm, end) = (self.rss_warm_kib?, self.rss_end_kib?);
        Some((end as f64 - warm as f64) / warm as f64 * 100.0)
    }

    fn rss_ok(&self) -> bool {
        self.rss_change_pct()
            .is_some_and(|c| c.abs() <= self.rss_tolerance_pct)
    }

    fn latency_ok(&self) -> bool {
        matches!((self.p99_last_ms, self.p99_bound_ms), (Some(last), Some(bound)) if last <= bound)
    }

    fn rate_ok(&self) -> bool {
        self.achieved >= self.target * self.min_achieved_pct / 100.0
    }

    fn passed(&self) -> bool {
        self.errors_ok()
            && self.rss_ok()
            && self.latency_ok()
            && self.rate_ok()
            && self.shutdown.is_ok()
    }

    fn verdict_text(&self) -> String {
        let mark = |ok: bool| if ok { "PASS" } else { "FAIL" };
        let warm_end = self.warm_windows as u64 * self.window_secs;
        let span = self.span_windows as u64 * self.window_secs;
        let mut out = String::from("verdict\n");
        out += &format!(
            "  {}  errors: {} (measurement {}, soak {}) of {} soak requests; rule: none\n",
            mark(self.errors_ok()),
            self.measure_errors + self.soak_errors,
            self.measure_errors,
            self.soak_errors,
            self.requests
        );
        for sample in &self.error_samples {
            out += &format!("          {sample}\n");
        }
        out += &format!(
            "  {}  memory: RSS after warm-up (t={warm_end} s) {} MiB, at end {} MiB ({}); rule: \
             |change| <= {}%\n",
            mark(self.rss_ok()),
            self.rss_warm_kib
                .map_or_else(|| "?".into(), |k| format!("{:.1}", mib(k))),
            self.rss_end_kib
                .map_or_else(|| "?".into(), |k| format!("{:.1}", mib(k))),
            self.rss_change_pct()
                .map_or_else(|| "?".into(), |c| format!("{c:+.1}%")),
            self.rss_tolerance_pct
        );
        out += &format!(
            "  {}  latency: p99 of the first {span} s after warm-up {} ms, of the last {span} s \
             {} ms; rule: last <= {} x first + {} ms = {} ms\n",
            mark(self.latency_ok()),
            fmt_ms(self.p99_first_ms),
            fmt_ms(self.p99_last_ms),
            self.p99_factor,
            self.p99_slack_ms,
            fmt_ms(self.p99_bound_ms)
        );
        out += &format!(
            "  {}  shutdown: {}\n",
            mark(self.shutdown.is_ok()),
            match &self.shutdown {
                Ok(()) => "clean exit on SIGTERM".to_owned(),
                Err(err) => err.clone(),
            }
        );
        out += &format!(
            "  {}  load: achieved {:.0} req/s after warm-up of a {:.0} req/s target (maximum {}); \
             rule: >= {}% of the target, else the run did not apply the load it claims\n",
            mark(self.rate_ok()),
            self.achieved,
            self.target,
            self.max_rate
                .map_or_else(|| "not measured".into(), |m| format!("{m:.0} req/s")),
            self.min_achieved_pct
        );
        out += &format!(
            "  info  schedule: {} of {} requests sent more than {} ms late ({:.3}%); {} never \
             sent (their time came after the run's end)\n",
            self.late,
            self.requests,
            self.late_ms,
            if self.requests == 0 {
                0.0
            } else {
                self.late as f64 * 100.0 / self.requests as f64
            },
            self.missed
        );
        out += &format!(
            "  info  loadavg before {}, after {}\n",
            self.load_before, self.load_after
        );
        out += if self.passed() { "PASS" } else { "FAIL" };
        out
    }

    fn json(&self, windows: &[Window], window: Duration, target: f64) -> serde_json::Value {
        let rows: Vec<_> = windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut lat = w.latencies_us.clone();
                json!({
                    "start_s": i as u64 * window.as_secs(),
                    "end_s": (i as u64 + 1) * window.as_secs(),
                    "warm_up": i < self.warm_windows,
                    "target_rps": target,
                    "achieved_rps": (w.ok + w.errors) as f64 / window.as_secs_f64(),
                    "late": w.late,
                    "max_lag_ms": w.max_lag.as_secs_f64() * 1000.0,
                    "errors": w.errors,
                    "p50_ms": quantile_ms(&mut lat, 0.5),
                    "p99_ms": quantile_ms(&mut lat, 0.99),
                    "rss_kib": w.rss_kib,
                    "load1": w.load1,
                })
            })
            .collect();
        json!({
            "passed": self.passed(),
            "max_rps": self.max_rate,
            "target_rps": self.target,
            "achieved_rps": self.achieved,
            "requests": self.requests,
            "late": self.late,
            "late_ms": self.late_ms,
            "missed": self.missed,
            "min_achieved_pct": self.min_achieved_pct,
            "rate_passed": self.rate_ok(),
            "errors": { "measurement": self.measure_errors, "soak": self.soak_errors,
                        "samples": self.error_samples },
            "rss": { "after_warm_up_kib": self.rss_warm_kib, "end_kib": self.rss_end_kib,
                     "change_pct": self.rss_change_pct(), "tolerance_pct": self.rss_tolerance_pct,
                     "passed": self.rss_ok() },
            "latency": { "span_s": self.span_windows as u64 * self.window_secs,
                         "p99_first_ms": self.p99_first_ms, "p99_last_ms": self.p99_last_ms,
                         "bound_ms": self.p99_bound_ms, "factor": self.p99_factor,
                         "slack_ms": self.p99_slack_ms, "passed": self.latency_ok() },
            "shutdown": match &self.shutdown { Ok(()) => "clean".to_owned(), Err(e) => e.clone() },
            "loadavg": { "before": self.load_before, "after": self.load_after },
            "windows": rows,
        })
    }

    fn markdown(&self, windows: &[Window], window: Duration, target: f64) -> String {
        let mut out = String::from("# secretstore soak\n\n```\n");
        out += &table_header();
        out.push('\n');
        for (i, w) in windows.iter().enumerate() {
            out += &table_row(i, w, window, target, i < self.warm_windows);
            out.push('\n');
        }
        out += "```\n\n```\n";
        out += &self.verdict_text();
        out += "\n```\n";
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_ranked_sample() {
        let mut samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(quantile_ms(&mut samples, 0.50), Some(50.0));
        assert_eq!(quantile_ms(&mut samples, 0.99), Some(99.0));
        assert_eq!(quantile_ms(&mut samples, 1.0), Some(100.0));
        assert_eq!(quantile_ms(&mut [], 0.5), None);
        assert_eq!(quantile_ms(&mut [7000], 0.99), Some(7.0));
    }
}
