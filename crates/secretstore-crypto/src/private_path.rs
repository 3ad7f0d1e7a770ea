//! The one rule for a file or directory that holds key material or what it protects (the root
//! key file, the admin token file, the data directory and the database in it): it is private to
//! the user the server runs as. Its owner is that user, and its group and others have no
//! permission on it: one who can read it can read every secret, one who can write it can swap a
//! key or the data under the server, and another owner can change its permissions at will.
//! Such a path is refused at start, with one sentence that names it, says what is wrong and
//! gives the command that fixes it; nothing is tightened behind the operator's back.

use std::path::Path;

/// Why a path is not private, as the sentence an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPrivate {
    #[error(
        "{what} {path} has permissions {mode:03o}, so users other than its owner can read or \
         change it; run `chmod {fix:03o} {path}`"
    )]
    Loose {
        what: &'static str,
        path: String,
        mode: u32,
        /// The mode to give it: 700 for a directory, 600 for a file.
        fix: u32,
    },
    #[error(
        "{what} {path} belongs to user {owner}, not to the user secretstore runs as ({user}); \
         run `chown {user} {path}`, or run secretstore as its owner"
    )]
    Foreign {
        what: &'static str,
        path: String,
        owner: u32,
        user: u32,
    },
    #[error("cannot check the permissions of {what} {path}: {reason}")]
    Unreadable {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// Refuses `path` (named `what` in the sentence, as in "the data directory") unless it is
/// private to this process's user. Symbolic links are followed: what counts is what is read.
pub fn ensure_private(path: &Path, what: &'static str) -> Result<(), NotPrivate> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|err| NotPrivate::Unreadable {
        what,
        path: shown.clone(),
        reason: err.to_string(),
    })?;
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() != user {
        return Err(NotPrivate::Foreign {
            what,
            path: shown,
            owner: meta.uid(),
            user,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NotPrivate::Loose {
            what,
            path: shown,
            mode,
            fix: if meta.is_dir() { 0o700 } else { 0o600 },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn owner_only_passes_anything_for_group_or_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        set_mode(&file, 0o600);
        set_mode(dir.path(), 0o700);
        assert_eq!(ensure_private(&file, "the file"), Ok(()));
        assert_eq!(ensure_private(dir.path(), "the directory"), Ok(()));
        for mode in [0o640, 0o604, 0o620, 0o602, 0o666] {
            set_mode(&file, mode);
            let err = ensure_private(&file, "the file").unwrap_err().to_string();
            let shown = file.display();
            assert_eq!(
                err,
                format!(
                    "the file {shown} has permissions {mode:03o}, so users other than its owner \
                     can read or change it; run `chmod 600 {shown}`"
                )
            );
        }
        set_mode(dir.path(), 0o755);
        let err = ensure_private(dir.path(), "the directory").unwrap_err();
        assert!(err.to_string().contains("has permissions 755"), "{err}");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        set_mode(dir.path(), 0o700);
        let missing = ensure_private(&dir.path().join("none"), "the file").unwrap_err();
        assert!(
            matches!(missing, NotPrivate::Unreadable { .. }),
            "{missing}"
        );
    }
}
