//! `secretstore keys ...`: the key hierarchy of a running server, through its admin API, so
//! each works while the server serves (contract §11). `status` shows how many stored keys each
//! root key version wraps (and how many secrets are still sealed in format 1, which only their
//! old root key opens); `rotate-root` re-wraps every stored key under the active root key
//! version; `rotate-namespace` gives a namespace (or every one, `--all`) a new key and re-wraps
//! its secrets' data keys under it.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use secretstore_crypto::{Pkcs11RootKey, RootKeyProvider as _};

use crate::admin::{block_on, client, print_answer, Connection, Failure};
use crate::stdout::outln;

#[derive(Debug, Args)]
#[command(after_help = "The admin token comes from --admin-token-file, else \
SECRETSTORE_ADMIN_TOKEN; the admin URL from --admin-url, else SECRETSTORE_ADMIN_URL, else \
http://127.0.0.1:12112.\n\nRotating the root key: start (or SIGHUP) the server with the new key \
first and the old one after it (--root-key-file NEW --root-key-file OLD), run `secretstore keys \
rotate-root`, and retire the old key once `secretstore keys status` shows it wraps nothing and no \
secret is left in format 1.\n\nExamples:\n  \
secretstore keys status\n  \
secretstore keys rotate-root\n  \
secretstore keys rotate-namespace --app myapp --account acct_123 --mode live\n  \
secretstore keys rotate-namespace --all")]
pub struct KeysArgs {
    #[command(flatten)]
    connection: Connection,

    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new root key inside an HSM (PKCS#11): an AES-256 key that cannot be extracted,
    /// labelled LABEL, for --pkcs11-key-label. Needs no server; prints the key's id.
    HsmGenerate {
        /// The PKCS#11 module (the HSM vendor's library).
        #[arg(long, value_name = "PATH")]
        pkcs11_module: std::path::PathBuf,
        #[arg(long, value_name = "LABEL")]
        pkcs11_token_label: String,
        /// File holding the token's user PIN (owner-only).
        #[arg(long, value_name = "PATH")]
        pkcs11_pin_file: std::path::PathBuf,
        /// The new key's label; refused if the token holds one already.
        #[arg(long, value_name = "LABEL")]
        pkcs11_key_label: String,
    },
    /// How many stored keys each root key version wraps.
    Status,
    /// Re-wrap every stored key under the active root key version.
    RotateRoot,
    /// Give a namespace (app, account, mode) a new key and re-wrap its secrets under it.
    RotateNamespace {
        #[arg(long, required_unless_present = "all")]
        app: Option<String>,
        #[arg(long, required_unless_present = "all")]
        account: Option<String>,
        /// test or live.
        #[arg(long, required_unless_present = "all")]
        mode: Option<String>,
        /// Every namespace that holds secrets, one after the other.
        #[arg(long, conflicts_with_all = ["app", "account", "mode"])]
        all: bool,
    },
}

pub fn main(args: KeysArgs) -> ExitCode {
    if let KeysCommand::HsmGenerate {
        pkcs11_module,
        pkcs11_token_label,
        pkcs11_pin_file,
        pkcs11_key_label,
    } = &args.command
    {
        return match Pkcs11RootKey::generate_key_with_pin_file(
            pkcs11_module,
            pkcs11_token_label,
            pkcs11_pin_file,
            pkcs11_key_label,
        ) {
            Ok(key) => {
                outln!(
                    "made root key {} ({}); start the server with --pkcs11-key-label {}",
                    key.id(),
                    key.describe(),
                    pkcs11_key_label
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("secretstore: {err}");
                ExitCode::FAILURE
            }
        };
    }
    block_on(run(args))
}

fn print_roots(answer: &Value) {
    for root in answer["roots"].as_array().into_iter().flatten() {
        let source = root["source"]
            .as_str()
            .unwrap_or("not given to this server");
        let active = if root["active"] == true {
            " (active)"
        } else {
            ""
        };
        outln!(
            "root key {}{active}: wraps {} stored keys; {source}",
            root["id"].as_str().unwrap_or(""),
            root["keys"]
        );
    }
}

async fn run(args: KeysArgs) -> Result<(), Failure> {
    let client = client(&args.connection)?;
    let as_json = args.connection.json;
    let answer = match args.command {
        KeysCommand::HsmGenerate { .. } => unreachable!("answered without a server by main"),
        KeysCommand::Status => client.get("/v1/root_keys").await?,
        KeysCommand::RotateRoot => client.post("/v1/root_keys/rotate", &json!({})).await?,
        KeysCommand::RotateNamespace {
            app,
            account,
            mode,
            all,
        } => {
            let body = if all {
                json!({ "all": true })
            } else {
                json!({ "app": app, "account": account, "mode": mode })
            };
            client.post("/v1/namespace_keys/rotate", &body).await?
        }
    };
    if as_json {
        print_answer(&answer, true);
        return Ok(());
    }
    match answer["object"].as_str() {
        Some("root_key_status") => {
            print_roots(&answer);
            outln!(
                "secrets still sealed in format 1 (opened only by the root key that sealed \
                 them; `secretstore keys rotate-namespace --all` moves them): {}",
                answer["format_1_secrets"]
            );
        }
        Some("root_key_rotation") => {
            outln!(
                "re-wrapped {} stored keys under the active root key",
                answer["rewrapped"]
            );
            print_roots(&answer);
        }
        _ => {
            for ns in answer["namespaces"].as_array().into_iter().flatten() {
                outln!(
                    "{} {} {}: key version {}, {} secrets re-wrapped ({} of them sealed again \
                     from format 1)",
                    ns["app"].as_str().unwrap_or(""),
                    ns["account"].as_str().unwrap_or(""),
                    ns["mode"].as_str().unwrap_or(""),
                    ns["version"],
                    ns["rewrapped"],
                    ns["resealed_from_format_1"]
                );
            }
        }
    }
    Ok(())
}
