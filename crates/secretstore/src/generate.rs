//! `secretstore completions SHELL` and `secretstore man`: shell completions and the man page,
//! generated from the same clap definitions that parse the command line, so they can never
//! drift from the commands they describe.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::cli::Cli;

/// The name completions and man pages are generated for.
const BIN: &str = "secretstore";

#[derive(Debug, Args)]
#[command(after_help = "Install, for example:\n  \
bash: secretstore completions bash > ~/.local/share/bash-completion/completions/secretstore\n  \
zsh:  secretstore completions zsh > ~/.zfunc/_secretstore   (with ~/.zfunc in $fpath)\n  \
fish: secretstore completions fish > ~/.config/fish/completions/secretstore.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,

    /// Write the script into this directory (under the shell's usual file name) instead of
    /// standard output.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Read it with: secretstore man | man -l -")]
pub struct ManArgs {
    /// Write one page per command (secretstore.1, secretstore-secrets.1, ...) into this
    /// directory instead of printing the main page to standard output.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Creates `--out-dir` (and its parents) if missing, as `mkdir -p` would.
fn out_dir(dir: &Path) -> Result<(), ExitCode> {
    std::fs::create_dir_all(dir).map_err(|err| {
        failed(&format!(
            "cannot create the directory {}: {err}",
            dir.display()
        ))
    })
}

pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut command = Cli::command();
    if let Some(dir) = &args.out_dir {
        if let Err(code) = out_dir(dir) {
            return code;
        }
    }
    match args.out_dir {
        Some(dir) => match clap_complete::generate_to(args.shell, &mut command, BIN, &dir) {
            Ok(path) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => failed(&format!("cannot write into {}: {err}", dir.display())),
        },
        None => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut command, BIN, &mut script);
            print(&script)
        }
    }
}

pub fn man(args: ManArgs) -> ExitCode {
    let command = Cli::command();
    if let Some(dir) = &args.out_dir {
        if let Err(code) = out_dir(dir) {
            return code;
        }
    }
    match args.out_dir {
        Some(dir) => match clap_mangen::generate_to(command, &dir) {
            Ok(()) => {
                eprintln!("wrote the man pages into {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(err) => failed(&format!("cannot write into {}: {err}", dir.display())),
        },
        None => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(command).render(&mut page) {
                Ok(()) => print(&page),
                Err(err) => failed(&format!("cannot render the man page: {err}")),
            }
        }
    }
}

/// Prints `bytes`; a failed write fails the command in `main` (`stdout::failed`).
fn print(bytes: &[u8]) -> ExitCode {
    crate::stdout::write(bytes);
    ExitCode::SUCCESS
}

fn failed(message: &str) -> ExitCode {
    eprintln!("secretstore: {message}");
    ExitCode::FAILURE
}
