//! What `secretstore_server::process` does to the process that calls it, observed from inside
//! (this test binary is that process; its tests change only process-wide settings that they
//! all want the same way).

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
