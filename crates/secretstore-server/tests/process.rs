//! What `secretstore_server::process` does to the process that calls it, observed from inside
//! (this test binary is that process; its tests change process-wide settings that none of the
//! others depends on).

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use secretstore_server::process;

#[test]
fn what_the_process_creates_is_private_whatever_umask_it_started_with() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o000));
    process::restrict_umask();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("created-with-the-default-mode");
    std::fs::File::create(&file).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn core_dumps_are_forbidden_and_the_process_is_not_dumpable() {
    use rustix::process::{getrlimit, Resource};
    process::forbid_core_dumps().unwrap();
    let limit = getrlimit(Resource::Core);
    assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
    assert_eq!(
        rustix::process::dumpable_behavior().unwrap(),
        rustix::process::DumpableBehavior::NotDumpable
    );
}

#[test]
fn a_taken_variable_is_gone_from_the_environment() {
    // A name no other test uses; std's environment functions share one lock, so the other
    // tests of this process (which read TMPDIR) do not race with this change.
    let name = "SECRETSTORE_TEST_TAKE_ENV_ROOT_KEY";
    std::env::set_var(name, "s3cr3t-value");
    let taken = process::take_env(name).unwrap();
    assert_eq!(taken.as_str(), "s3cr3t-value");
    assert!(std::env::var_os(name).is_none());
    assert!(!std::env::vars_os().any(|(n, _)| n == name));
    // A process started afterwards does not inherit it.
    let child = std::process::Command::new("sh")
        .args(["-c", &format!("printf %s \"${{{name}-unset}}\"")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&child.stdout), "unset");
    assert!(process::take_env(name).is_none());
}
