//! What a server process does to itself at start, before it reads a key or opens a file:
//! `restrict_umask`, so that whatever it creates without an explicit mode (SQLite's `-wal` and
//! `-shm` files take the database file's mode through the umask) is private to its user.
//! `secretstore serve` calls it first thing; the router tests, which share a process with their
//! test harness, do not.

/// Files and directories this process creates are private: 0600 and 0700 at most, whatever
/// umask the process was started with.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}
