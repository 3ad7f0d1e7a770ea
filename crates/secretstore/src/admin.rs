//! `secretstore admin ...`: the admin API of a production server from the shell (accounts,
//! apps, installations, users, keys, sessions), and `token-generate`. Objects print as readable
//! tables, or as the API's JSON with `--json`. A key's or session's secret is printed once, alone
//! on standard output (the rest goes to standard error), so `KEY=$(secretstore admin keys
//! create ...)` captures exactly the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secretstore_client::{AdminClient, Error};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::stdout::{out, outln};

const TOKEN_ENV: &str = "SECRETSTORE_ADMIN_TOKEN";
const URL_ENV: &str = "SECRETSTORE_ADMIN_URL";
const DEFAULT_URL: &str = "http://127.0.0.1:12112";

#[derive(Debug, Args)]
#[command(after_help = "The admin token comes from --admin-token-file, else \
SECRETSTORE_ADMIN_TOKEN; the admin URL from --admin-url, else SECRETSTORE_ADMIN_URL, else \
http://127.0.0.1:12112.\n\nExample:\n  \
export SECRETSTORE_ADMIN_TOKEN=$(secretstore admin token-generate)\n  \
secretstore admin accounts create --id acct_platform\n  \
secretstore admin apps create --id com.example.app --name Example --account acct_platform\n  \
KEY=$(secretstore admin keys create --app com.example.app --mode test --type secret)")]
pub struct AdminArgs {
    #[command(flatten)]
    connection: Connection,

    #[command(subcommand)]
    command: AdminCommand,
}

/// How to reach the admin API; `secretstore admin` and `secretstore audit` share it.
#[derive(Debug, Args)]
pub struct Connection {
    /// The admin API (the server's --admin-listen). [env: SECRETSTORE_ADMIN_URL] [default:
    /// http://127.0.0.1:12112]
    #[arg(long, global = true, value_name = "URL")]
    admin_url: Option<String>,

    /// File holding the admin token (owner-only). [env: SECRETSTORE_ADMIN_TOKEN holds the token
    /// itself]
    #[arg(long, global = true, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,

    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Trust this certificate authority (PEM) for an admin API served over TLS with a private
    /// certificate. [env: SECRETSTORE_CA_CERT]
    #[arg(long, global = true, value_name = "PATH")]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Print a fresh admin token (48 random characters) for --admin-token-file or
    /// SECRETSTORE_ADMIN_TOKEN.
    TokenGenerate,
    /// Businesses on the platform.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Programs accounts install; an app's owner account counts as an installation.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// An app on an account.
    #[command(subcommand)]
    Installations(InstallationsCommand),
    /// Dashboard users of one account.
    #[command(subcommand)]
    Users(UsersCommand),
    /// An app's API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Short-lived credentials of a UI extension acting for one user.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

/// Listing options every `list` takes.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Objects per page, 1 to 100 (default 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// The page after this object's id.
    #[arg(long, value_name = "ID")]
    pub starting_after: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
struct Confirm {
    /// Remove it and everything it owns (required: the answer says how much went).
    #[arg(long)]
    confirm: bool,
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account.
    Create {
        /// acct_ + 1 to 64 of [A-Za-z0-9_]; a random one if not given.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List accounts, newest first.
    List(ListArgs),
    /// Show one account.
    Get { id: String },
    /// Remove an account: its users, installations, the apps it owns and every secret on it.
    Delete {
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an app owned by an account.
    Create {
        /// 1 to 128 of [A-Za-z0-9._-] (as in com.example.app); a random one if not given.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        /// The owner account.
        #[arg(long)]
        account: String,
    },
    /// List apps, newest first.
    List(ListArgs),
    /// Show one app.
    Get { id: String },
    /// Remove an app: its keys, installations, sessions and secrets everywhere.
    Delete {
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
enum InstallationsCommand {
    /// Install an app on an account.
    Create {
        #[arg(long)]
        app: String,
        #[arg(long)]
        account: String,
    },
    /// List installations, newest first, optionally of one app or one account.
    List {
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one installation.
    Get { id: String },
    /// Remove an installation: the app's secrets on that account and its sessions there.
    Delete {
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user of an account.
    Create {
        #[arg(long)]
        account: String,
        /// usr_ + 1 to 64 of [A-Za-z0-9_]; a random one if not given.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// List an account's users, newest first.
    List {
        #[arg(long)]
        account: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one user.
    Get {
        #[arg(long)]
        account: String,
        id: String,
    },
    /// Remove a user: every secret in the user's scope on the account, and its sessions.
    Delete {
        #[arg(long)]
        account: String,
        id: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key; prints the key itself once, alone on standard output.
    Create {
        #[arg(long)]
        app: String,
        /// test or live.
        #[arg(long)]
        mode: String,
        /// secret (may do everything) or restricted (only its --permission).
        #[arg(long = "type")]
        key_type: String,
        /// secret_read (find, list) or secret_write (set, delete); repeat for both.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// List an app's keys (never the keys themselves), newest first.
    List {
        #[arg(long)]
        app: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one key.
    Get { id: String },
    /// Make a new key now (printed once) and keep the old one valid for the grace period.
    Roll {
        id: String,
        /// Seconds the old key still works, 0 to 604800 (default 0: it stops at once).
        #[arg(long, value_name = "SECS")]
        grace_period: Option<i64>,
    },
    /// End a key at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Start a user session; prints its secret (ek_...) once, alone on standard output.
    Create {
        #[arg(long)]
        app: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        user: String,
        /// test or live.
        #[arg(long)]
        mode: String,
        /// 60 to 3600 (default 900).
        #[arg(long, value_name = "SECS")]
        lifetime: Option<i64>,
    },
    /// Show one session.
    Get { id: String },
    /// End a session at once.
    Delete { id: String },
}

/// Reads an admin token file, refusing one that is not private to this user.
pub fn read_token_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let shown = path.display();
    std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read the admin token file {shown}: {e}"))?;
    secretstore_crypto::ensure_private(path, "the admin token file")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the admin token file {shown}: {e}"))?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

pub fn main(args: AdminArgs) -> ExitCode {
    if let AdminCommand::TokenGenerate = args.command {
        let token = Zeroizing::new(secretstore_core::ids::random_id("", 48));
        return if crate::stdout::secret_line(&token, "the admin token") {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    block_on(run(args))
}

/// Runs a command against the admin API and turns its failure into a message and an exit
/// code: 2 for a usage mistake, 1 for a refused request.
pub fn block_on(work: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match crate::runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("secretstore: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Request(err)) => {
            match &err {
                Error::Api(api) => {
                    eprintln!("secretstore: {}", api.message);
                    let code = api.code.as_deref().unwrap_or("none");
                    eprintln!("  (HTTP {}, {}, code {code})", api.status, api.kind);
                }
                other => eprintln!("secretstore: {other}"),
            }
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}

pub enum Failure {
    Usage(String),
    Request(Error),
    /// The command printed why it failed itself.
    Reported,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Request(err)
    }
}

/// A client of the admin API `args` names.
pub fn client(args: &Connection) -> Result<AdminClient, Failure> {
    let token = match &args.admin_token_file {
        Some(path) => read_token_file(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => Zeroizing::new(token.trim().to_owned()),
            _ => {
                return Err(Failure::Usage(format!(
                    "no admin token: give --admin-token-file PATH or set {TOKEN_ENV}"
                )))
            }
        },
    };
    let url = args
        .admin_url
        .clone()
        .or_else(|| std::env::var(URL_ENV).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let ca = args
        .ca_cert
        .clone()
        .or_else(|| std::env::var_os("SECRETSTORE_CA_CERT").map(PathBuf::from));
    let roots = match ca {
        Some(path) => vec![std::fs::read(&path).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the CA certificate {}: {e}",
                path.display()
            ))
        })?],
        None => Vec::new(),
    };
    AdminClient::new(&url, token, &roots).map_err(|err| match err {
        Error::InvalidArgument(message) => Failure::Usage(message),
        other => Failure::Request(other),
    })
}

/// A path segment, percent-encoded.
fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `?limit=..&starting_after=..` plus filters.
fn query(list: &ListArgs, filters: &[(&str, &Option<String>)]) -> String {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    if let Some(limit) = list.limit {
        pairs.append_pair("limit", &limit.to_string());
    }
    for (name, value) in filters {
        if let Some(value) = value {
            pairs.append_pair(name, value);
        }
    }
    let text = pairs.finish();
    if text.is_empty() {
        text
    } else {
        format!("?{text}")
    }
}

/// Every page of a listing when `--all`, else one.
pub async fn listed(
    client: &AdminClient,
    path: &str,
    list: &ListArgs,
    filters: &[(&str, &Option<String>)],
) -> Result<Value, Failure> {
    let mut after = list.starting_after.clone();
    let mut data = Vec::new();
    loop {
        let mut filters = filters.to_vec();
        filters.push(("starting_after", &after));
        let page = client
            .get(&format!("{path}{}", query(list, &filters)))
            .await
            .map_err(Failure::Request)?;
        let items = page["data"].as_array().cloned().unwrap_or_default();
        let more = page["has_more"].as_bool().unwrap_or(false);
        // Objects page by their id; audit records by their seq.
        after = items.last().and_then(|item| {
            item["id"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| item["seq"].as_i64().map(|seq| seq.to_string()))
        });
        data.extend(items);
        if !list.all || !more || after.is_none() {
            let mut page = page;
            page["data"] = Value::Array(data);
            if list.all {
                page["has_more"] = Value::Bool(false);
            }
            return Ok(page);
        }
    }
}

async fn run(args: AdminArgs) -> Result<(), Failure> {
    let client = client(&args.connection)?;
    let c = &client;
    let req = |r: Result<Value, Error>| r.map_err(Failure::Request);
    let answer = match &args.command {
        AdminCommand::TokenGenerate => return Ok(()),
        AdminCommand::Accounts(cmd) => match cmd {
            AccountsCommand::Create { id, name } => req(c
                .post("/v1/accounts", &json!({"id": id, "name": name}))
                .await)?,
            AccountsCommand::List(list) => listed(c, "/v1/accounts", list, &[]).await?,
            AccountsCommand::Get { id } => req(c.get(&format!("/v1/accounts/{}", seg(id))).await)?,
            AccountsCommand::Delete { id, confirm } => req(c
                .delete(&removal(&format!("/v1/accounts/{}", seg(id)), confirm))
                .await)?,
        },
        AdminCommand::Apps(cmd) => match cmd {
            AppsCommand::Create { id, name, account } => req(c
                .post(
                    "/v1/apps",
                    &json!({"id": id, "name": name, "account": account}),
                )
                .await)?,
            AppsCommand::List(list) => listed(c, "/v1/apps", list, &[]).await?,
            AppsCommand::Get { id } => req(c.get(&format!("/v1/apps/{}", seg(id))).await)?,
            AppsCommand::Delete { id, confirm } => req(c
                .delete(&removal(&format!("/v1/apps/{}", seg(id)), confirm))
                .await)?,
        },
        AdminCommand::Installations(cmd) => match cmd {
            InstallationsCommand::Create { app, account } => req(c
                .post(
                    "/v1/installations",
                    &json!({"app": app, "account": account}),
                )
                .await)?,
            InstallationsCommand::List { app, account, list } => {
                listed(
                    c,
                    "/v1/installations",
                    list,
                    &[("app", app), ("account", account)],
                )
                .await?
            }
            InstallationsCommand::Get { id } => {
                req(c.get(&format!("/v1/installations/{}", seg(id))).await)?
            }
            InstallationsCommand::Delete { id, confirm } => req(c
                .delete(&removal(&format!("/v1/installations/{}", seg(id)), confirm))
                .await)?,
        },
        AdminCommand::Users(cmd) => match cmd {
            UsersCommand::Create { account, id, email } => req(c
                .post(
                    &format!("/v1/accounts/{}/users", seg(account)),
                    &json!({"id": id, "email": email}),
                )
                .await)?,
            UsersCommand::List { account, list } => {
                listed(
                    c,
                    &format!("/v1/accounts/{}/users", seg(account)),
                    list,
                    &[],
                )
                .await?
            }
            UsersCommand::Get { account, id } => req(c
                .get(&format!("/v1/accounts/{}/users/{}", seg(account), seg(id)))
                .await)?,
            UsersCommand::Delete {
                account,
                id,
                confirm,
            } => req(c
                .delete(&removal(
                    &format!("/v1/accounts/{}/users/{}", seg(account), seg(id)),
                    confirm,
                ))
                .await)?,
        },
        AdminCommand::Keys(cmd) => match cmd {
            KeysCommand::Create {
                app,
                mode,
                key_type,
                permissions,
                name,
            } => {
                let mut body = json!({"mode": mode, "type": key_type, "name": name});
                if !permissions.is_empty() {
                    body["permissions"] = json!(permissions);
                }
                req(c.post(&format!("/v1/apps/{}/keys", seg(app)), &body).await)?
            }
            KeysCommand::List { app, list } => {
                listed(c, &format!("/v1/apps/{}/keys", seg(app)), list, &[]).await?
            }
            KeysCommand::Get { id } => req(c.get(&format!("/v1/keys/{}", seg(id))).await)?,
            KeysCommand::Roll { id, grace_period } => req(c
                .post(
                    &format!("/v1/keys/{}/roll", seg(id)),
                    &json!({"grace_period_secs": grace_period}),
                )
                .await)?,
            KeysCommand::Revoke { id } => req(c
                .post(&format!("/v1/keys/{}/revoke", seg(id)), &json!({}))
                .await)?,
        },
        AdminCommand::Sessions(cmd) => match cmd {
            SessionsCommand::Create {
                app,
                account,
                user,
                mode,
                lifetime,
            } => req(c
                .post(
                    "/v1/user_sessions",
                    &json!({"app": app, "account": account, "user": user, "mode": mode,
                            "lifetime_secs": lifetime}),
                )
                .await)?,
            SessionsCommand::Get { id } => {
                req(c.get(&format!("/v1/user_sessions/{}", seg(id))).await)?
            }
            SessionsCommand::Delete { id } => {
                req(c.delete(&format!("/v1/user_sessions/{}", seg(id))).await)?
            }
        },
    };
    print_answer(&answer, args.connection.json);
    Ok(())
}

fn removal(path: &str, confirm: &Confirm) -> String {
    if confirm.confirm {
        format!("{path}?confirm=true")
    } else {
        path.to_owned()
    }
}

/// JSON as is; otherwise a table (the secret alone on standard output, the rest on standard
/// error, when there is one).
pub fn print_answer(answer: &Value, as_json: bool) {
    if as_json {
        outln!("{answer:#}");
        return;
    }
    let secret = answer.get("secret").and_then(Value::as_str);
    let text = if answer["object"] == "list" {
        list_table(answer)
    } else {
        object_table(answer)
    };
    match secret {
        Some(secret) => {
            // Not `eprint!`, which panics if standard error is a pipe whose reader went away
            // (`2>&1 | head -1`): the secret must still get its chance below. A failure there
            // fails the command (`stdout::failed`), which the caller's exit code says.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{text}");
            let _ = writeln!(err, "The secret below is shown once; keep it now.");
            drop(err);
            crate::stdout::secret_line(secret, "the secret");
        }
        None => out!("{text}"),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn object_table(object: &Value) -> String {
    let Some(map) = object.as_object() else {
        return format!("{object}\n");
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    // id and object first, the rest in the API's order.
    let first = ["id", "object"];
    let rest = map
        .keys()
        .filter(|k| !first.contains(&k.as_str()) && *k != "secret");
    first
        .iter()
        .map(|k| k.to_string())
        .filter(|k| map.contains_key(k))
        .chain(rest.cloned())
        .map(|k| format!("{k:width$}  {}\n", cell(&map[&k])))
        .collect()
}

/// Columns of a listing, by the objects' kind.
fn columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "account" => &["id", "name", "created"],
        "app" => &["id", "name", "account", "created"],
        "installation" => &["id", "app", "account", "created"],
        "user" => &["id", "account", "email", "created"],
        "api_key" => &[
            "id",
            "mode",
            "type",
            "permissions",
            "redacted",
            "revoked",
            "expires_at",
        ],
        "audit_record" => &[
            "seq",
            "time",
            "operation",
            "status",
            "code",
            "credential",
            "app",
            "account",
            "user",
            "secret_name",
            "client",
        ],
        _ => &["id"],
    }
}

fn list_table(page: &Value) -> String {
    let items = page["data"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "(none)\n".into();
    }
    let kind = items[0]["object"].as_str().unwrap_or("");
    let cols = columns(kind);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| cols.iter().map(|c| cell(&item[*c])).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
            + "\n"
    };
    let mut out = line(cols.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    if page["has_more"] == true {
        out.push_str("(more follow: use --all, or --starting-after the last id or seq)\n");
    }
    out
}
