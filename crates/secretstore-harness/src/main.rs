//! `secretstore-harness`: long-running checks of the real `secretstore` binary that do not fit
//! in `cargo test`. `crash` kills the server with SIGKILL under mixed load again and again and
//! proves that every acknowledged write survived and nothing else appeared; `soak` holds a
//! steady fraction of the measured maximum load for minutes and proves that errors stay at
//! zero and memory and latency stay flat; `memory` stores and finds the largest secrets and
//! proves the server's resident memory stays under a bound. Each exits 0 on success, 1 when a check fails, and 2
//! when the harness itself could not run.

mod api;
mod crash;
mod memory;
mod model;
mod rng;
mod server;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "secretstore-harness",
    version,
    about = "Crash-consistency and soak harnesses for the secretstore binary."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SIGKILL the server at random moments under mixed set/delete load; after each restart
    /// check every acknowledged write and SQLite's integrity check.
    Crash(crash::CrashArgs),
    /// Measure the maximum throughput of a mixed load, then hold a fraction of it for a long
    /// time; check errors, resident memory and latency stay flat.
    Soak(soak::SoakArgs),
    /// Set and find many secrets of the largest size; check the server's resident memory stays
    /// under a bound.
    Memory(memory::MemoryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("secretstore-harness: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let work = async {
            match cli.command {
                Command::Crash(args) => crash::run(args).await,
                Command::Soak(args) => soak::run(args).await,
                Command::Memory(args) => memory::run(args).await,
            }
        };
        // Interrupted, the run is dropped where it stands: dropping a server process kills it
        // and dropping a work directory removes it, so nothing is left behind.
        tokio::select! {
            outcome = work => outcome,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("secretstore-harness: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Waits for SIGINT or SIGTERM; names the one that came.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        // Without signal handlers the run simply cannot be interrupted cleanly.
        _ => std::future::pending().await,
    }
}
