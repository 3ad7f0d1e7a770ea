//! What a server process does to itself at start, before it reads a key or opens a file, while
//! it is the process's only thread. `secretstore serve` calls these first thing; the router
//! tests, which share a process with their test harness, do not.
//!
//! - `forbid_core_dumps`: a core dump holds whatever the process held (the root key's derived
//!   keys, payloads being answered), so none is written, whatever signal ends the process
//!   (`RLIMIT_CORE` 0); and the process is not dumpable (`PR_SET_DUMPABLE` 0), which also
//!   keeps other processes of the same user from attaching a debugger or reading its memory
//!   and environment through /proc.
//! - `restrict_umask`: whatever the process creates without an explicit mode (SQLite's `-wal`
//!   and `-shm` files take the database file's mode through the umask) is private to its user.
//! - `raise_open_files_limit`: the soft limit on open files becomes the hard one, so that the
//!   connection limits (`--max-connections`), not a default of 1,024 descriptors, decide how
//!   many clients are served.
//! - `lock_memory` (`--mlock`): every page of the process stays in RAM, never written to swap,
//!   where keys and payloads would outlive the process on a disk.
//! - `take_env`: a secret given in the environment (the root key, the admin token) is read
//!   once and removed, so nothing that reads the environment later (a child process, a
//!   library, a crash reporter) finds it.

use zeroize::Zeroizing;

/// No core dump, whatever signal ends the process, and no debugger or /proc reader of the same
/// user. Fails only where the system refuses, and then the server should not start.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Locks the process's memory, present and future, into RAM (`mlockall`), pages as they are
/// first touched so that reserved but unused address space costs nothing. The soft limit on
/// locked memory is raised to the hard one first; fails where that is too small for what the
/// process holds already, and then the server should not start.
pub fn lock_memory() -> std::io::Result<()> {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Memlock);
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Memlock,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force
/// (`None`: unlimited or unknown). A failure leaves the limit as it was.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

/// Files and directories this process creates are private: 0600 and 0700 at most, whatever
/// umask the process was started with.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The value of the environment variable `name`, taken out of the environment: later readers
/// of the environment (`getenv`, child processes) no longer find it. A value that is not UTF-8
/// is removed too, and counts as not given. The copy returned is wiped when dropped.
///
/// Call it only while the process has one thread, as `secretstore serve` does before it starts
/// the async runtime, SQLite's threads and the log writer. Changing the environment races with
/// any other thread reading it (POSIX `getenv` is not synchronised with `unsetenv`; Rust 2024
/// makes `remove_var` unsafe for that reason); with a single thread there is no one to race.
///
/// What it cannot remove: the kernel's copy of the environment the process started with, at
/// the top of its stack, which `/proc/PID/environ` shows. `forbid_core_dumps` makes that file
/// readable by root only.
pub fn take_env(name: &str) -> Option<Zeroizing<String>> {
    let value = std::env::var_os(name)?;
    std::env::remove_var(name);
    match value.into_string() {
        Ok(text) => Some(Zeroizing::new(text)),
        Err(other) => {
            use std::os::unix::ffi::OsStringExt as _;
            drop(Zeroizing::new(other.into_vec()));
            None
        }
    }
}
