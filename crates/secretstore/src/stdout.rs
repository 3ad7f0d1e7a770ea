//! Standard output for every command that prints an answer. Rust's `println!` panics when it
//! cannot write, so `secretstore audit search --json | head -1` used to end in a panic's message
//! and exit code 101 once `head` had gone. Here, as for any Unix filter, a reader that went away
//! is not a failure: the rest of the output is dropped and the command ends as its work did.
//! Any other failure to write (a full disk under `> file`) is said once on standard error, and
//! the command fails (`main` asks `failed`).
//!
//! A secret shown only once (a new API key, a generated admin token) is the exception: it is
//! the command's whole result, so failing to write it fails the command whatever the cause,
//! with a message saying so (`secret_line`).

use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// Standard output can no longer be written (its reader went away, or a write failed).
static CLOSED: AtomicBool = AtomicBool::new(false);
/// A write failed for another reason than a reader that went away.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes and flushes `text`, unless an earlier write could not be made.
pub fn print(text: fmt::Arguments<'_>) {
    if !CLOSED.load(Ordering::Relaxed) {
        let mut out = std::io::stdout().lock();
        note(out.write_fmt(text).and_then(|()| out.flush()));
    }
}

/// `print` for bytes (a man page, a completion script).
pub fn write(bytes: &[u8]) {
    if !CLOSED.load(Ordering::Relaxed) {
        let mut out = std::io::stdout().lock();
        note(out.write_all(bytes).and_then(|()| out.flush()));
    }
}

/// Takes note of how a write to standard output went, for writes made here and for a command
/// that writes through its own handle (`secrets`): after a failure nothing more is written, and
/// one that is not a broken pipe is said and fails the command.
pub fn note(written: std::io::Result<()>) {
    if let Err(err) = written {
        CLOSED.store(true, Ordering::Relaxed);
        if err.kind() != ErrorKind::BrokenPipe {
            FAILED.store(true, Ordering::Relaxed);
            say(format_args!("cannot write to standard output: {err}"));
        }
    }
}

/// Writes a secret that is shown only once, on a line of its own; `false` (said on standard
/// error, `what` naming the secret) if it could not be written, broken pipe included.
pub fn secret_line(secret: &str, what: &str) -> bool {
    let why = if CLOSED.load(Ordering::Relaxed) {
        // Whatever made an earlier write fail was said then (unless it was a broken pipe).
        "an earlier write to it failed".to_owned()
    } else {
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{secret}").and_then(|()| out.flush()) {
            Ok(()) => return true,
            Err(err) => err.to_string(),
        }
    };
    CLOSED.store(true, Ordering::Relaxed);
    FAILED.store(true, Ordering::Relaxed);
    say(format_args!(
        "{what} could not be written to standard output: {why}"
    ));
    false
}

/// Says `message` on standard error, if it can: `eprintln!` would panic were standard error a
/// closed pipe too (`2>&1 | head`).
fn say(message: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "secretstore: {message}");
}

/// Whether a write to standard output failed other than by its reader going away.
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// `print!` for the commands' answers (see the module).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::print(format_args!($($arg)*))
    };
}

/// `println!` for the commands' answers (see the module).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
