//! `secretstore secrets set|find|list|delete`: the four operations from the shell, on a
//! secretstore or on Stripe itself, built on `secretstore-client`. The API key comes from
//! `--api-key` or the environment and is never printed; the payload comes from standard input
//! or a file, never from the command line (where other users of the machine could see it in
//! the process list), and is printed only with `find --reveal`.

mod input;
mod output;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::TryStreamExt as _;
use secretstore_client::{
    Client, DeleteSecret, Error, FindSecret, ListSecrets, Page, Scope, SetSecret, DEFAULT_BASE_URL,
};
use zeroize::Zeroizing;

use self::input::{parse_expiry, read_payload, Expiry};
use self::output::PayloadLine;

/// The key's environment variables, most specific first.
const KEY_ENV: &str = "SECRETSTORE_API_KEY";
const STRIPE_KEY_ENV: &str = "STRIPE_API_KEY";
const BASE_URL_ENV: &str = "SECRETSTORE_BASE_URL";

/// A local server, for help texts and hints.
const LOCAL_URL: &str = "http://127.0.0.1:12111";

#[derive(Debug, Args)]
#[command(
    after_help = "The API key is read from --api-key, else SECRETSTORE_API_KEY, else \
STRIPE_API_KEY; the environment keeps it out of the process list. The base URL defaults to \
Stripe's API; a local secretstore (`secretstore serve --dev`) is http://127.0.0.1:12111.\n\n\
Examples:\n  \
export SECRETSTORE_API_KEY=sk_test_myapp SECRETSTORE_BASE_URL=http://127.0.0.1:12111\n  \
printf %s \"$TOKEN\" | secretstore secrets set gh-token --scope user:usr_1 --expires-at 30d\n  \
secretstore secrets find gh-token --scope user:usr_1 --reveal\n  \
secretstore secrets list --all --json\n  \
secretstore secrets delete gh-token --scope user:usr_1"
)]
pub struct SecretsArgs {
    /// API key (sk_test_..., sk_live_..., rk_...). Prefer the environment: a flag is visible to
    /// other users in the process list. [env: SECRETSTORE_API_KEY, else STRIPE_API_KEY]
    // Not clap's `env`: a value clap takes from the environment shows in every usage line as
    // if the flag were required.
    #[arg(long, global = true, value_name = "KEY")]
    api_key: Option<String>,

    /// Server to talk to: Stripe's API by default; a local secretstore is
    /// http://127.0.0.1:12111. [env: SECRETSTORE_BASE_URL] [default: https://api.stripe.com]
    #[arg(long, global = true, value_name = "URL")]
    base_url: Option<String>,

    /// Trust this certificate authority (PEM) for a server serving TLS with a private
    /// certificate. [env: SECRETSTORE_CA_CERT]
    #[arg(long, global = true, value_name = "PATH")]
    ca_cert: Option<PathBuf>,

    /// Act for this connected account (Stripe-Account: acct_...).
    #[arg(long, global = true, value_name = "ACCT")]
    account: Option<String>,

    /// Whose secrets: `account` (the whole account) or `user:<id>` (one dashboard user, such
    /// as user:usr_123).
    #[arg(long, global = true, default_value = "account", value_parser = parse_scope, value_name = "SCOPE")]
    scope: Scope,

    /// Print Stripe's JSON instead of readable text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Create a secret, or replace the payload and expiry of an existing one. The payload is
    /// read from standard input (one trailing newline removed) or --payload-file, never from
    /// the command line.
    Set(SetArgs),
    /// Show a secret's details; --reveal also prints its payload.
    Find(FindArgs),
    /// List the scope's secrets, newest first.
    List(ListArgs),
    /// Delete a secret.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    /// The secret's name, unique within its scope.
    name: String,

    /// Read the payload from this file instead of standard input (`-` is standard input). One
    /// trailing newline is removed.
    #[arg(long, value_name = "PATH")]
    payload_file: Option<PathBuf>,

    /// When the secret expires: Unix seconds, or a duration from now such as 30d, 12h, 15m,
    /// 3600s or 1h30m. Without it the secret does not expire (and a replace clears an expiry).
    #[arg(long, value_parser = parse_expiry, value_name = "WHEN")]
    expires_at: Option<Expiry>,
}

#[derive(Debug, Args)]
struct FindArgs {
    /// The secret's name.
    name: String,

    /// Fetch and print the payload. Without it the payload is neither fetched nor shown.
    #[arg(long)]
    reveal: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Secrets per page, 1 to 100 (the server's default is 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    limit: Option<u32>,

    /// Fetch every page, not just the first.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// The secret's name.
    name: String,
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    text.parse()
        .map_err(|err: secretstore_client::ParseScopeError| err.to_string())
}

/// What went wrong, and how the process ends.
enum Failure {
    /// The command cannot run as given (exit 2, like a usage error).
    Usage(String),
    /// The request failed (exit 1).
    Request(Error),
}

pub fn main(mut args: SecretsArgs) -> ExitCode {
    let runtime = match crate::runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let base_url = base_url(args.base_url.take());
    match runtime.block_on(run(args, &base_url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("secretstore: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Request(err)) => {
            report(&err, &base_url);
            ExitCode::FAILURE
        }
    }
}

/// Prints the server's message and code (or why no answer came) and a hint where one helps.
fn report(err: &Error, base_url: &str) {
    match err {
        Error::Api(api) => {
            eprintln!("secretstore: {}", api.message);
            let mut detail = format!("HTTP {}, {}", api.status, api.kind);
            if let Some(code) = &api.code {
                detail.push_str(&format!(", code {code}"));
            }
            if let Some(param) = &api.param {
                detail.push_str(&format!(", param {param}"));
            }
            if let Some(id) = &api.request_id {
                detail.push_str(&format!(", request {id}"));
            }
            eprintln!("  ({detail})");
            if api.is_authentication() {
                eprintln!(
                    "  hint: check the key (--api-key, {KEY_ENV} or {STRIPE_KEY_ENV}) and that \
                     --base-url ({base_url}) is the server it belongs to"
                );
            }
        }
        Error::Network { .. } | Error::Timeout { .. } => {
            eprintln!("secretstore: {err}");
            if base_url.trim_end_matches('/') == DEFAULT_BASE_URL {
                eprintln!(
                    "  hint: this talks to Stripe by default; for a local secretstore give \
                     --base-url {LOCAL_URL} (or set {BASE_URL_ENV})"
                );
            } else {
                eprintln!("  hint: is the server running at {base_url}?");
            }
        }
        other => eprintln!("secretstore: {other}"),
    }
}

/// A variable's value, unless it is unset or empty.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `--base-url`, else `SECRETSTORE_BASE_URL`, else Stripe's API.
fn base_url(flag: Option<String>) -> String {
    flag.or_else(|| env_value(BASE_URL_ENV))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
}

fn api_key(flag: Option<String>) -> Result<Zeroizing<String>, Failure> {
    let from_env = || env_value(KEY_ENV).or_else(|| env_value(STRIPE_KEY_ENV));
    match flag.filter(|key| !key.is_empty()).or_else(from_env) {
        Some(key) => Ok(Zeroizing::new(key)),
        None => Err(Failure::Usage(format!(
            "no API key: set {KEY_ENV} or {STRIPE_KEY_ENV} (or pass --api-key), for example \
             {KEY_ENV}=sk_test_myapp for a local secretstore in dev mode"
        ))),
    }
}

async fn run(args: SecretsArgs, base_url: &str) -> Result<(), Failure> {
    let key = api_key(args.api_key)?;
    let mut builder = Client::builder(key).base_url(base_url);
    let ca = args
        .ca_cert
        .clone()
        .or_else(|| std::env::var_os("SECRETSTORE_CA_CERT").map(PathBuf::from));
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the CA certificate {}: {e}",
                path.display()
            ))
        })?;
        builder = builder.root_certificate_pem(pem);
    }
    if let Some(account) = &args.account {
        builder = builder.stripe_account(account);
    }
    let client = builder.build().map_err(|err| match err {
        Error::InvalidArgument(message) => Failure::Usage(message),
        other => Failure::Request(other),
    })?;
    let scope = args.scope;
    let json = args.json;
    let mut out = std::io::stdout().lock();
    let written = match args.command {
        SecretsCommand::Set(set) => {
            let payload = read_payload(set.payload_file.as_deref()).map_err(Failure::Usage)?;
            let mut params = SetSecret::new(scope, set.name, payload);
            if let Some(expiry) = set.expires_at {
                params = params.expires_at(expiry.resolve(now()));
            }
            let secret = client.set(params).await.map_err(Failure::Request)?;
            if json {
                output::json_secret(&mut out, &secret)
            } else {
                output::secret(&mut out, &secret, PayloadLine::Omit)
            }
        }
        SecretsCommand::Find(find) => {
            let mut params = FindSecret::new(scope, find.name);
            if find.reveal {
                params = params.expand_payload();
            }
            let secret = client.find(params).await.map_err(Failure::Request)?;
            if json {
                output::json_secret(&mut out, &secret)
            } else {
                output::secret(&mut out, &secret, PayloadLine::HiddenUnlessRevealed)
            }
        }
        SecretsCommand::Delete(delete) => {
            let secret = client
                .delete(DeleteSecret::new(scope, delete.name))
                .await
                .map_err(Failure::Request)?;
            if json {
                output::json_secret(&mut out, &secret)
            } else {
                output::secret(&mut out, &secret, PayloadLine::Omit)
            }
        }
        SecretsCommand::List(list) => {
            let shown = scope.to_string();
            let mut params = ListSecrets::new(scope);
            if let Some(limit) = list.limit {
                params = params.limit(limit);
            }
            let page = if list.all {
                let data = client
                    .list_all(params)
                    .try_collect()
                    .await
                    .map_err(Failure::Request)?;
                Page {
                    data,
                    has_more: false,
                    url: "/v1/apps/secrets".to_owned(),
                }
            } else {
                client.list(params).await.map_err(Failure::Request)?
            };
            if json {
                output::json_page(&mut out, &page)
            } else if page.data.is_empty() {
                writeln!(out, "No secrets in scope {shown}.")
            } else {
                let written = output::table(&mut out, &page.data);
                if page.has_more {
                    eprintln!("(more secrets follow: use --all, or a larger --limit)");
                }
                written
            }
        }
    };
    // A reader that went away (`| head`) is not a failure; another failed write fails the
    // command in `main` (`stdout::failed`).
    crate::stdout::note(written.and_then(|()| out.flush()));
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
