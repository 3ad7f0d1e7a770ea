//! Who is asking and what they may do: the `Principal` an authenticator resolves a credential
//! into, and `authorize`, the one place that decides whether a parsed request is allowed.
//!
//! Authorisation runs after a request is parsed (a user session's limit depends on the scope it
//! names) and before anything is looked up, so a refusal is the same whether or not the secret
//! exists and changes nothing. The namespace a principal may act in is decided when it is
//! authenticated; `authorize` decides what it may do inside that namespace.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::ids::{Namespace, UserId};
use crate::secret::Scope;

/// A credential's identity, for its look-up in the directory and for rate limiting: a SHA-256
/// of the credential, never the credential itself. What is stored about a credential apart
/// from its look-up (the owner of an idempotency record) is a keyed digest of this, not this.
/// Its `Debug` shows a short prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId([u8; 32]);

impl CredentialId {
    pub fn of(credential: &[u8]) -> Self {
        Self(Sha256::digest(credential).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CredentialId({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// How a credential may be shown in a message or a log: its prefix and, for a credential long
/// enough that they reveal little, its last four characters (`sk_test_****WXYZ`), as Stripe
/// shows keys. Fixed-size: building one costs nothing, so every principal carries one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CredentialHint {
    prefix: &'static str,
    last4: Option<[u8; 4]>,
}

impl CredentialHint {
    /// `last4` must be ASCII (credentials are); anything else is shown as `****` alone.
    pub fn new(prefix: &'static str, last4: Option<[u8; 4]>) -> Self {
        Self {
            prefix,
            last4: last4.filter(|tail| tail.iter().all(u8::is_ascii_graphic)),
        }
    }

    /// The prefixes a stored hint may carry: those of the credentials this server issues.
    const STORED_PREFIXES: [&'static str; 6] = [
        "sk_test_", "sk_live_", "rk_test_", "rk_live_", "ek_test_", "ek_live_",
    ];

    /// The two columns storage keeps a hint in: its prefix and its last four characters.
    pub fn stored_parts(&self) -> (&'static str, Option<String>) {
        let last4 = self
            .last4
            .and_then(|tail| std::str::from_utf8(&tail).ok().map(str::to_owned));
        (self.prefix, last4)
    }

    /// A hint back from its stored columns. A prefix this server does not issue (a damaged or
    /// hand-edited row) is shown as none at all.
    pub fn from_stored(prefix: &str, last4: Option<&str>) -> Self {
        let prefix = Self::STORED_PREFIXES
            .iter()
            .find(|p| **p == prefix)
            .copied()
            .unwrap_or("");
        let last4 = last4.and_then(|t| <[u8; 4]>::try_from(t.as_bytes()).ok());
        Self::new(prefix, last4)
    }
}

impl fmt::Display for CredentialHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix)?;
        f.write_str("****")?;
        if let Some(tail) = &self.last4 {
            f.write_str(std::str::from_utf8(tail).unwrap_or(""))?;
        }
        Ok(())
    }
}

impl fmt::Debug for CredentialHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialHint({self})")
    }
}

/// What a credential may do with secrets: read (find, list) and write (set, delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
}

impl Permissions {
    pub const ALL: Permissions = Permissions {
        read: true,
        write: true,
    };
}

/// A permission by its name on the wire (`secret_read`, `secret_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    SecretRead,
    SecretWrite,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SecretRead => "secret_read",
            Permission::SecretWrite => "secret_write",
        }
    }
}

/// A resolved caller: the namespace it acts in and what it may do there.
#[derive(Debug, Clone)]
pub struct Principal {
    pub namespace: Namespace,
    pub credential: CredentialId,
    /// The credential as it may be shown in a message.
    pub shown: CredentialHint,
    pub permissions: Permissions,
    /// A user session reaches only the account scope and this user's scope.
    pub session_user: Option<UserId>,
    /// The id the admin API gave the credential (`key_...`, `uss_...`), for the audit log;
    /// `None` in dev mode, where keys are not issued.
    pub issued: Option<String>,
}

impl Principal {
    /// The credential's kind and id as the audit log records them: the issued id, or where
    /// there is none the hint (never the credential).
    pub fn credential_ref(&self) -> (&'static str, String) {
        let prefix = self.shown.prefix;
        let kind = if prefix.starts_with("sk_") {
            "secret_key"
        } else if prefix.starts_with("rk_") {
            "restricted_key"
        } else if prefix.starts_with("ek_") {
            "user_session"
        } else {
            "unknown"
        };
        let id = self
            .issued
            .clone()
            .unwrap_or_else(|| self.shown.to_string());
        (kind, id)
    }
}

/// What a parsed request would do, as far as authorisation cares.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub permission: Permission,
    pub scope: &'a Scope,
}

/// Why `authorize` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the credential lacks the {} permission", permission.as_str())]
    Permission {
        shown: CredentialHint,
        permission: Permission,
    },
    #[error("a user session may use only the account scope and its own user's scope")]
    Scope { shown: CredentialHint },
}

/// The one decision whether `principal` may do `access`.
pub fn authorize(principal: &Principal, access: &Access<'_>) -> Result<(), Denied> {
    let allowed = match access.permission {
        Permission::SecretRead => principal.permissions.read,
        Permission::SecretWrite => principal.permissions.write,
    };
    if !allowed {
        return Err(Denied::Permission {
            shown: principal.shown,
            permission: access.permission,
        });
    }
    if let (Some(own), Scope::User(asked)) = (&principal.session_user, access.scope) {
        if own != asked {
            return Err(Denied::Scope {
                shown: principal.shown,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, AppId, Mode};

    fn principal(permissions: Permissions, session_user: Option<&str>) -> Principal {
        Principal {
            namespace: Namespace {
                app: AppId::parse("app").unwrap(),
                account: AccountId::parse("acct_1").unwrap(),
                mode: Mode::Test,
            },
            credential: CredentialId::of(b"sk_test_app"),
            shown: CredentialHint::new("sk_test_", Some(*b"WXYZ")),
            permissions,
            session_user: session_user.map(|u| UserId::parse(u).unwrap()),
            issued: None,
        }
    }

    fn user(id: &str) -> Scope {
        Scope::User(UserId::parse(id).unwrap())
    }

    #[test]
    fn permissions_decide_reads_and_writes() {
        let read_only = principal(
            Permissions {
                read: true,
                write: false,
            },
            None,
        );
        let read = Access {
            permission: Permission::SecretRead,
            scope: &Scope::Account,
        };
        let write = Access {
            permission: Permission::SecretWrite,
            scope: &Scope::Account,
        };
        assert_eq!(authorize(&read_only, &read), Ok(()));
        assert!(matches!(
            authorize(&read_only, &write),
            Err(Denied::Permission {
                permission: Permission::SecretWrite,
                ..
            })
        ));
    }

    #[test]
    fn a_session_reaches_the_account_scope_and_its_own_user_only() {
        let session = principal(Permissions::ALL, Some("usr_1"));
        for (scope, allowed) in [
            (Scope::Account, true),
            (user("usr_1"), true),
            (user("usr_2"), false),
        ] {
            let access = Access {
                permission: Permission::SecretRead,
                scope: &scope,
            };
            assert_eq!(authorize(&session, &access).is_ok(), allowed, "{scope:?}");
        }
        // A key that is not a session reaches every user's scope.
        let key = principal(Permissions::ALL, None);
        let access = Access {
            permission: Permission::SecretWrite,
            scope: &user("usr_2"),
        };
        assert_eq!(authorize(&key, &access), Ok(()));
    }

    #[test]
    fn hints_show_the_prefix_and_at_most_the_last_four() {
        assert_eq!(
            CredentialHint::new("sk_test_", Some(*b"WXYZ")).to_string(),
            "sk_test_****WXYZ"
        );
        assert_eq!(
            CredentialHint::new("rk_live_", None).to_string(),
            "rk_live_****"
        );
        assert_eq!(
            CredentialHint::new("sk_test_", Some([0xff, b'a', b'b', b'c'])).to_string(),
            "sk_test_****"
        );
    }

    #[test]
    fn credential_ids_never_show_the_credential() {
        let id = CredentialId::of(b"sk_test_verysecret");
        assert!(!format!("{id:?}").contains("verysecret"));
        assert_eq!(id, CredentialId::of(b"sk_test_verysecret"));
        assert_ne!(id, CredentialId::of(b"sk_test_other"));
    }
}
