//! Who the store serves in production mode, as the admin API provisions it: accounts (the
//! businesses on a platform), apps (owned by an account), installations (an app on an account;
//! an app's owner counts as one), users (dashboard users of one account), API keys of an app
//! (per mode, secret or restricted) and user sessions (a UI extension acting for one user of
//! one account). Credentials are kept only as a hash and a hint for display; the whole secret of
//! a key or session is shown once, when it is made, and never stored.

use std::fmt;

use crate::ids::{random_id, AccountId, AppId, Mode, UserId};
use crate::principal::{CredentialHint, CredentialId, Permissions};
use crate::secret::InvalidValue;

macro_rules! issued_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix and 24 random alphanumerics.
            pub fn generate() -> Self {
                Self(random_id(Self::PREFIX, 24))
            }

            /// Accepts the prefix followed by 1 to 64 of `[A-Za-z0-9_]` (the ids this server
            /// issues, and nothing a client could use to reach storage in another shape).
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                crate::ids::check_chosen(value, Self::PREFIX)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

issued_id!(
    /// An installation, `inst_...`.
    InstallationId,
    "inst_"
);
issued_id!(
    /// An API key's id (not the key), `key_...`.
    ApiKeyId,
    "key_"
);
issued_id!(
    /// A user session's id (not its secret), `uss_...`.
    SessionId,
    "uss_"
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: Option<String>,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub name: String,
    /// The account that owns the app; it counts as an installation of it.
    pub owner: AccountId,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub id: InstallationId,
    pub app: AppId,
    pub account: AccountId,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub account: AccountId,
    pub email: Option<String>,
    pub created: i64,
}

/// An API key's kind: a secret key may do everything; a restricted one what it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Secret,
    Restricted,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Secret => "secret",
            KeyType::Restricted => "restricted",
        }
    }
}

/// An API key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub app: AppId,
    pub mode: Mode,
    pub key_type: KeyType,
    pub permissions: Permissions,
    pub name: Option<String>,
    pub created: i64,
    /// When a rolled key stops working; `None` until it is rolled.
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub hash: CredentialId,
    pub hint: CredentialHint,
}

impl ApiKeyRecord {
    /// Whether the key authenticates at `now`.
    pub fn usable_at(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A user session as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    pub id: SessionId,
    pub app: AppId,
    pub account: AccountId,
    pub user: UserId,
    pub mode: Mode,
    pub created: i64,
    pub expires_at: i64,
    pub hash: CredentialId,
    pub hint: CredentialHint,
}

impl UserSession {
    pub fn usable_at(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// What a credential's hash names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Key(ApiKeyRecord),
    Session(UserSession),
}

/// How much a removal took with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removed {
    pub apps: u64,
    pub installations: u64,
    pub users: u64,
    pub api_keys: u64,
    pub user_sessions: u64,
    pub secrets: u64,
    /// Stored keys destroyed with it (crypto-shredding): namespace keys and users' keys.
    pub keys: u64,
}

impl std::ops::AddAssign for Removed {
    /// A removal that takes others with it (an account, the apps it owns) adds up their counts.
    fn add_assign(&mut self, more: Removed) {
        self.apps += more.apps;
        self.installations += more.installations;
        self.users += more.users;
        self.api_keys += more.api_keys;
        self.user_sessions += more.user_sessions;
        self.secrets += more.secrets;
        self.keys += more.keys;
    }
}

/// A page of a directory listing: up to `limit` objects after the one named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPage {
    pub limit: u32,
    pub starting_after: Option<String>,
}

/// Objects of one page, in order of creation, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}
