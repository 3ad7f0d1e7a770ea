//! Who owns a secret: the app, the account that installed it and the mode (test or live) form a
//! `Namespace`, the unit of isolation. Also the secret's public id, `appsecret_` + 30 random
//! alphanumerics, drawn from the OS random source so ids reveal nothing about order or count.

use std::fmt;

use crate::secret::InvalidValue;

/// Test and live data never see each other; the key's prefix decides which one a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    /// Stripe's `livemode`: true for live-mode keys and data.
    pub fn livemode(self) -> bool {
        matches!(self, Mode::Live)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    /// The mode named by `as_str`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "test" => Some(Mode::Test),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

/// Identifiers of apps and accounts are short ASCII tokens; anything else is refused before it
/// can reach storage or a log line.
fn check_token(value: &str, max: usize, extra: &[u8]) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if value.len() > max {
        return Err(InvalidValue::TooLong { max });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
    {
        return Err(InvalidValue::Malformed);
    }
    Ok(())
}

/// `prefix` followed by `len` random alphanumerics from the OS random source
/// (`secretstore_crypto::fill_random`). Rejection sampling keeps every character uniformly
/// likely, so ids reveal nothing about order or count.
pub fn random_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    // Wiped on return: some ids are credentials (an API key's secret part, the admin token).
    let mut buf = zeroize::Zeroizing::new([0u8; 64]);
    while id.len() < prefix.len() + len {
        // One byte in 32 is rejected: a few more than needed almost always suffice at once.
        let want = (prefix.len() + len - id.len() + 4).min(buf.len());
        let buf = &mut buf[..want];
        // The OS random source failing is unrecoverable for a secret store.
        secretstore_crypto::fill_random(buf).expect("the operating system's random source failed");
        for &b in buf.iter() {
            if b < 248 && id.len() < prefix.len() + len {
                id.push(ALPHANUMERIC[(b % 62) as usize] as char);
            }
        }
    }
    id
}

/// An id a platform chose for an object it creates: `prefix` and 1 to 64 of `[A-Za-z0-9_]`.
pub fn check_chosen(value: &str, prefix: &str) -> Result<(), InvalidValue> {
    let rest = value.strip_prefix(prefix).ok_or(InvalidValue::Malformed)?;
    check_token(rest, 64, b"")
}

/// The app a credential belongs to: letters, digits, `_`, `.` and `-` (Stripe's app ids look
/// like `com.example.app`). In dev mode, the text after the key's mode prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    pub const MAX_LEN: usize = 200;
    /// Longest id a platform may choose for an app it provisions.
    pub const MAX_CHOSEN_LEN: usize = 128;

    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_token(value, Self::MAX_LEN, b".-")?;
        Ok(Self(value.to_owned()))
    }

    /// A fresh id, `app_` + 16 random alphanumerics.
    pub fn generate() -> Self {
        Self(random_id("app_", 16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account on the platform, `acct_...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub const PREFIX: &'static str = "acct_";
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_token(value, Self::MAX_LEN, b"")?;
        match value.strip_prefix(Self::PREFIX) {
            Some(rest) if !rest.is_empty() => Ok(Self(value.to_owned())),
            _ => Err(InvalidValue::Malformed),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh id, `acct_` + 16 random alphanumerics.
    pub fn generate() -> Self {
        Self(random_id(Self::PREFIX, 16))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dashboard user of one account, the owner of a user-scoped secret. Stripe documents no
/// format beyond "not empty, at most 5,000 characters", so that is all that is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        crate::secret::check_text(value, crate::limits::MAX_STRING_CHARS)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub const PREFIX: &'static str = "usr_";

    /// A fresh id for a provisioned user, `usr_` + 16 random alphanumerics.
    pub fn generate() -> Self {
        Self(random_id(Self::PREFIX, 16))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The unit of isolation: one app's secrets on one account in one mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    pub app: AppId,
    pub account: AccountId,
    pub mode: Mode,
}

/// `appsecret_` followed by 30 characters of `[A-Za-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretId(String);

/// The characters of generated ids (`appsecret_...`, `req_...`).
pub const ALPHANUMERIC: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl SecretId {
    pub const PREFIX: &'static str = "appsecret_";
    pub const RANDOM_LEN: usize = 30;

    /// A fresh id.
    pub fn generate() -> Self {
        Self(random_id(Self::PREFIX, Self::RANDOM_LEN))
    }

    /// Accepts only the exact shape this server issues; used for ids read back from storage
    /// and for list cursors.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value.strip_prefix(Self::PREFIX) {
            Some(rest)
                if rest.len() == Self::RANDOM_LEN
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Ok(Self(value.to_owned()))
            }
            _ => Err(InvalidValue::Malformed),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_contract_shape_and_differ() {
        let a = SecretId::generate();
        let b = SecretId::generate();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 40);
            assert!(SecretId::parse(id.as_str()).is_ok(), "{id}");
        }
    }

    #[test]
    fn secret_id_parse_refuses_other_shapes() {
        for bad in [
            "",
            "appsecret_",
            "appsecret_short",
            "sec_123456789012345678901234567890",
            "appsecret_12345678901234567890123456789!",
        ] {
            assert!(SecretId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_ids_need_the_prefix_and_a_body() {
        assert!(AccountId::parse("acct_1Abc").is_ok());
        for bad in ["", "acct_", "acc_1", "acct_1 2", "acct_é"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_ids_are_short_ascii_tokens() {
        assert!(AppId::parse("abc_123").is_ok());
        assert!(AppId::parse("com.example-app").is_ok());
        assert!(AppId::parse("").is_err());
        assert!(AppId::parse("a b").is_err());
        assert!(AppId::parse("a/b").is_err());
        assert!(AppId::parse(&"a".repeat(201)).is_err());
    }
}
