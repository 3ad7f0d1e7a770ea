//! The `secretstore` binary. `secretstore serve` runs the Secret Store: it loads the root key,
//! opens storage, checks the key against the data, starts the expiry sweep and serves HTTP until
//! SIGTERM or SIGINT, then finishes in-flight requests and flushes storage before exiting.

mod cli;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Serve(args) => serve::main(args),
    }
}
