//! `secretstore audit ...`: the audit log of a running server, through its admin API (so each
//! works while the server serves; docs/audit.md). `verify` checks the whole hash chain and names
//! the first record edited, removed, inserted or moved (exit status 1 when it finds one);
//! `search` filters records, printed as a table or, with `--json`, as the API's JSON; `prune`
//! removes records older than a time and leaves an anchor the rest verifies from.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::admin::{block_on, client, listed, print_answer, Connection, Failure, ListArgs};
use crate::stdout::outln;

#[derive(Debug, Args)]
#[command(after_help = "The admin token comes from --admin-token-file, else \
SECRETSTORE_ADMIN_TOKEN; the admin URL from --admin-url, else SECRETSTORE_ADMIN_URL, else \
http://127.0.0.1:12112. TIME is Unix seconds or RFC 3339 (2026-12-01T00:00:00Z).\n\nExamples:\n  \
secretstore audit verify\n  \
secretstore audit search --secret-name stripe_key --operation secrets.find --since 2026-12-01T00:00:00Z\n  \
secretstore audit prune --before 2026-06-01T00:00:00Z --confirm")]
pub struct AuditArgs {
    #[command(flatten)]
    connection: Connection,

    #[command(subcommand)]
    command: AuditCommand,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole chain; name the first record edited, removed, inserted or moved.
    Verify,
    /// Records matching every filter given, newest first.
    Search {
        /// Records at or after TIME.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Records before TIME.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        secret_name: Option<String>,
        /// secrets.set, secrets.find, secrets.delete, secrets.list, or an admin operation
        /// ("admin POST /v1/accounts").
        #[arg(long)]
        operation: Option<String>,
        /// success, failure, a status (404) or an error code (resource_missing).
        #[arg(long)]
        outcome: Option<String>,
        /// A key's or session's id (key_..., uss_...), or "admin".
        #[arg(long)]
        credential: Option<String>,
        /// Records per page, 1 to 1000 (default 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
        /// The page after this record's seq.
        #[arg(long, value_name = "SEQ")]
        starting_after: Option<String>,
        /// Fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Remove records older than TIME (the newest always stays), leaving an anchor the rest
    /// verifies from.
    Prune {
        #[arg(long, value_name = "TIME")]
        before: String,
        /// Remove them for good (required).
        #[arg(long)]
        confirm: bool,
    },
}

pub fn main(args: AuditArgs) -> ExitCode {
    block_on(run(args))
}

async fn run(args: AuditArgs) -> Result<(), Failure> {
    let client = client(&args.connection)?;
    let as_json = args.connection.json;
    match args.command {
        AuditCommand::Verify => {
            let answer = client.get("/v1/audit/verify").await?;
            if as_json {
                print_answer(&answer, true);
            } else if answer["intact"] == true {
                outln!(
                    "The audit chain is intact: {} records checked, from {} to the head, record \
                     {} (hash {}).",
                    answer["records"],
                    match answer["from"].as_i64() {
                        Some(0) | None => "the first record".to_owned(),
                        Some(anchor) => format!("the pruning anchor at record {anchor}"),
                    },
                    answer["head"]["seq"],
                    answer["head"]["hash"].as_str().unwrap_or("")
                );
                outln!(
                    "Keep the head's hash elsewhere: records removed from the end of the chain \
                     show only against it."
                );
            } else {
                outln!(
                    "The audit chain is broken at record {}: {}.",
                    answer["record"],
                    answer["problem"].as_str().unwrap_or("")
                );
            }
            if answer["intact"] == true {
                Ok(())
            } else {
                Err(Failure::Reported)
            }
        }
        AuditCommand::Search {
            since,
            until,
            app,
            account,
            user,
            secret_name,
            operation,
            outcome,
            credential,
            limit,
            starting_after,
            all,
        } => {
            let list = ListArgs {
                limit,
                starting_after,
                all,
            };
            let filters = [
                ("since", &since),
                ("until", &until),
                ("app", &app),
                ("account", &account),
                ("user", &user),
                ("secret_name", &secret_name),
                ("operation", &operation),
                ("outcome", &outcome),
                ("credential", &credential),
            ];
            let page = listed(&client, "/v1/audit/records", &list, &filters).await?;
            print_answer(&page, as_json);
            Ok(())
        }
        AuditCommand::Prune { before, confirm } => {
            let path = if confirm {
                "/v1/audit/prune?confirm=true"
            } else {
                "/v1/audit/prune"
            };
            let before: Value = match before.parse::<i64>() {
                Ok(seconds) => json!(seconds),
                Err(_) => json!(before),
            };
            let answer = client.post(path, &json!({ "before": before })).await?;
            if as_json {
                print_answer(&answer, true);
            } else {
                match answer["anchor"]["seq"].as_i64() {
                    Some(anchor) => outln!(
                        "Removed {} records; the chain now verifies from the anchor at record \
                         {anchor}.",
                        answer["removed"]
                    ),
                    None => outln!("Removed {} records.", answer["removed"]),
                }
            }
            Ok(())
        }
    }
}
