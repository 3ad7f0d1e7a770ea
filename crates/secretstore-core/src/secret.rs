//! The parts of a secret a request names: its `SecretName`, its `Scope`, its `Payload` (kept in
//! memory that is wiped on drop, and never printed) and its expiry. Each type can only be built
//! from a value that satisfies the contract, so code that holds one need not check again.

use std::fmt;

use zeroize::Zeroizing;

use crate::ids::{Namespace, UserId};
use crate::limits::{MAX_EXPIRY_AHEAD_SECS, MAX_STRING_CHARS};

/// Why a value was refused; the HTTP edge adds which parameter it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("is not well formed")]
    Malformed,
}

/// At most `max` Unicode scalar values (not bytes: `é` counts once); the one home of that rule,
/// for every string the contract bounds (names, payloads, users, cursors, `expand` items).
pub fn check_length(value: &str, max: usize) -> Result<(), InvalidValue> {
    // Byte length bounds the char count from above, so most values skip the count.
    if value.len() > max && value.chars().count() > max {
        return Err(InvalidValue::TooLong { max });
    }
    Ok(())
}

/// Non-empty and at most `max` Unicode scalar values.
pub fn check_text(value: &str, max: usize) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::Empty);
    }
    check_length(value, max)
}

/// A secret's name, unique within its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_text(value, MAX_STRING_CHARS)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The plaintext of a secret. Zeroed when dropped; `Debug` never shows it; there is no
/// `Display`, so it cannot slip into a format string.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Zeroizing<String>);

impl Payload {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_text(value, MAX_STRING_CHARS)?;
        Ok(Self(Zeroizing::new(value.to_owned())))
    }

    /// For plaintext coming back out of the envelope: the bytes were checked when set, but a
    /// payload that is not UTF-8 any more is refused instead of being shown damaged.
    pub fn from_opened(bytes: Zeroizing<Vec<u8>>) -> Option<Self> {
        let text = std::str::from_utf8(&bytes).ok()?;
        Some(Self(Zeroizing::new(text.to_owned())))
    }

    /// The plaintext, for the one place that must see it: the response body being written.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Payload([REDACTED])")
    }
}

/// Who inside a namespace may see a secret: every user of the account, or one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Account,
    User(UserId),
}

impl Scope {
    pub fn type_str(&self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::User(_) => "user",
        }
    }

    pub fn user(&self) -> Option<&UserId> {
        match self {
            Scope::Account => None,
            Scope::User(user) => Some(user),
        }
    }

    /// The scope a backend stored as its `type_str` and its user ('' for the account scope);
    /// `None` for values that name no scope.
    pub fn from_columns(scope_type: &str, scope_user: &str) -> Option<Self> {
        match scope_type {
            "account" => Some(Scope::Account),
            "user" => UserId::parse(scope_user).ok().map(Scope::User),
            _ => None,
        }
    }
}

/// Where a secret lives: the namespace, its scope and its name. (Not an API key: `sk_...` keys
/// are credentials, handled above this crate.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretAddress {
    pub namespace: Namespace,
    pub scope: Scope,
    pub name: SecretName,
}

/// A validated expiry: later than now and at most 100 years ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresAt(i64);

/// Why an `expires_at` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidExpiry {
    #[error("must be in the future")]
    NotInFuture,
    #[error("must be at most 100 years in the future")]
    TooFar,
}

impl ExpiresAt {
    pub fn validate(at: i64, now: i64) -> Result<Self, InvalidExpiry> {
        if at <= now {
            Err(InvalidExpiry::NotInFuture)
        } else if at - now > MAX_EXPIRY_AHEAD_SECS {
            Err(InvalidExpiry::TooFar)
        } else {
            Ok(Self(at))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A secret is live until the second its expiry names: at `expires_at` it is gone.
pub fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_payloads_count_characters_not_bytes() {
        let four_byte = "😀".repeat(MAX_STRING_CHARS);
        assert!(SecretName::parse(&four_byte).is_ok());
        assert!(Payload::parse(&four_byte).is_ok());
        let too_long = "😀".repeat(MAX_STRING_CHARS + 1);
        assert_eq!(
            SecretName::parse(&too_long),
            Err(InvalidValue::TooLong { max: 5000 })
        );
        assert!(Payload::parse(&too_long).is_err());
        assert_eq!(SecretName::parse(""), Err(InvalidValue::Empty));
        assert!(Payload::parse("").is_err());
        assert!(UserId::parse("").is_err());
    }

    #[test]
    fn payload_debug_is_redacted() {
        let p = Payload::parse("hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "Payload([REDACTED])");
        assert!(!format!("{:?}", Some(&p)).contains("hunter2"));
    }

    #[test]
    fn expiry_must_be_future_and_within_a_century() {
        let now = 1_700_000_000;
        assert_eq!(
            ExpiresAt::validate(now - 1, now),
            Err(InvalidExpiry::NotInFuture)
        );
        assert_eq!(
            ExpiresAt::validate(now, now),
            Err(InvalidExpiry::NotInFuture)
        );
        assert_eq!(
            ExpiresAt::validate(now + 1, now).map(ExpiresAt::get),
            Ok(now + 1)
        );
        assert!(ExpiresAt::validate(now + MAX_EXPIRY_AHEAD_SECS, now).is_ok());
        assert_eq!(
            ExpiresAt::validate(now + MAX_EXPIRY_AHEAD_SECS + 1, now),
            Err(InvalidExpiry::TooFar)
        );
    }

    #[test]
    fn liveness_flips_at_the_expiry_second() {
        assert!(is_live(None, 10));
        assert!(is_live(Some(11), 10));
        assert!(!is_live(Some(10), 10));
    }

    proptest! {
        #[test]
        fn text_within_limit_is_accepted(s in "\\PC{1,300}") {
            prop_assert!(SecretName::parse(&s).is_ok());
        }
    }
}
