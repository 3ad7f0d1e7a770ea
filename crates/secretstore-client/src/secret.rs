//! The objects the API answers with: the `apps.secret` object of docs/api.md §1 ([`Secret`]), its
//! [`Scope`], a page of a list ([`Page`]), and the payload as a type of its own
//! ([`SecretPayload`]) so that it is wiped from memory when dropped and never shows up in a
//! `Debug` print or a log line by accident.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Whose secret it is: the installing account's, or one dashboard user's of that account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Shared by the whole account (and every user of it).
    Account,
    /// Private to one dashboard user (`usr_...`).
    User(String),
}

impl Scope {
    /// A user scope.
    pub fn user(id: impl Into<String>) -> Self {
        Scope::User(id.into())
    }

    /// Stripe's `scope[type]`: `account` or `user`.
    pub fn type_str(&self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::User(_) => "user",
        }
    }

    /// The user id of a user scope.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Scope::Account => None,
            Scope::User(user) => Some(user),
        }
    }

    /// Appends the scope in Stripe's bracket form (`scope[type]=user&scope[user]=usr_1`).
    pub(crate) fn append_to<'a>(&'a self, form: &mut crate::params::Form<'a>) {
        form.push("scope[type]", self.type_str());
        if let Scope::User(user) = self {
            form.push("scope[user]", user);
        }
    }
}

/// `account`, or `user:<id>`: the form the command line takes.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Account => f.write_str("account"),
            Scope::User(user) => write!(f, "user:{user}"),
        }
    }
}

/// Why a scope's text form did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a scope is `account` or `user:<id>` (for example user:usr_123), not {0:?}")]
pub struct ParseScopeError(String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    /// Parses `account` or `user:<id>`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "account" {
            return Ok(Scope::Account);
        }
        match text.strip_prefix("user:") {
            Some(user) if !user.is_empty() => Ok(Scope::User(user.to_owned())),
            _ => Err(ParseScopeError(text.to_owned())),
        }
    }
}

/// The wire form: `{"type":"account"}` or `{"type":"user","user":"usr_..."}`.
#[derive(Serialize, Deserialize)]
struct ScopeWire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ScopeWire {
            kind: self.type_str().to_owned(),
            user: self.user_id().map(str::to_owned),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ScopeWire::deserialize(deserializer)?;
        match (wire.kind.as_str(), wire.user) {
            ("account", _) => Ok(Scope::Account),
            ("user", Some(user)) => Ok(Scope::User(user)),
            ("user", None) => Err(D::Error::missing_field("user")),
            (other, _) => Err(D::Error::unknown_variant(other, &["account", "user"])),
        }
    }
}

/// A secret's payload. It is wiped from memory when dropped, prints as `SecretPayload(***)`,
/// and is read only through [`expose`](SecretPayload::expose), so reading it is always a
/// visible decision in the code.
#[derive(Clone)]
pub struct SecretPayload(Zeroizing<String>);

impl SecretPayload {
    /// Wraps a payload.
    pub fn new(payload: impl Into<String>) -> Self {
        SecretPayload(Zeroizing::new(payload.into()))
    }

    /// The payload's text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (the server refuses empty payloads).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPayload(***)")
    }
}

impl From<String> for SecretPayload {
    fn from(payload: String) -> Self {
        SecretPayload(Zeroizing::new(payload))
    }
}

impl From<&str> for SecretPayload {
    fn from(payload: &str) -> Self {
        SecretPayload::new(payload)
    }
}

impl From<Zeroizing<String>> for SecretPayload {
    fn from(payload: Zeroizing<String>) -> Self {
        SecretPayload(payload)
    }
}

impl<'de> Deserialize<'de> for SecretPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretPayload::from)
    }
}

/// An `apps.secret` object (docs/api.md §1).
///
/// It serializes back to Stripe's JSON shape, **payload included when present**: a secret
/// fetched without `expand` has none, so only code that asked for the payload can write it out.
#[derive(Debug, Clone, Deserialize)]
pub struct Secret {
    /// `appsecret_` and 30 alphanumerics.
    pub id: String,
    /// Unix seconds when this scope + name was first created (a replace keeps it).
    pub created: i64,
    /// Unix seconds after which the secret is gone; `None` for no expiry.
    pub expires_at: Option<i64>,
    /// True for live-mode keys, false for test-mode keys.
    pub livemode: bool,
    /// Unique within its scope.
    pub name: String,
    /// Whose secret it is.
    pub scope: Scope,
    /// Present only when the request asked for it (`expand_payload`).
    #[serde(default)]
    pub payload: Option<SecretPayload>,
    /// True only in the answer to delete.
    #[serde(default)]
    pub deleted: bool,
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("object", "apps.secret")?;
        map.serialize_entry("created", &self.created)?;
        if self.deleted {
            map.serialize_entry("deleted", &true)?;
        }
        map.serialize_entry("expires_at", &self.expires_at)?;
        map.serialize_entry("livemode", &self.livemode)?;
        map.serialize_entry("name", &self.name)?;
        if let Some(payload) = &self.payload {
            map.serialize_entry("payload", payload.expose())?;
        }
        map.serialize_entry("scope", &self.scope)?;
        map.end()
    }
}

/// One page of a list: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    /// The secrets on this page, newest first.
    pub data: Vec<Secret>,
    /// Whether more secrets follow in the direction of the cursor.
    pub has_more: bool,
    /// The list's path (`/v1/apps/secrets`).
    #[serde(default)]
    pub url: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scope_text_form_round_trips() {
        assert_eq!("account".parse::<Scope>().unwrap(), Scope::Account);
        assert_eq!("user:usr_1".parse::<Scope>().unwrap(), Scope::user("usr_1"));
        assert!("user:".parse::<Scope>().is_err());
        assert!("users".parse::<Scope>().is_err());
        assert_eq!(Scope::user("usr_1").to_string(), "user:usr_1");
    }

    #[test]
    fn secret_decodes_and_encodes_stripe_json() {
        let json = r#"{"id":"appsecret_1","object":"apps.secret","created":1680209063,
            "expires_at":null,"livemode":false,"name":"k","payload":"s3cr3t",
            "scope":{"type":"user","user":"usr_1"}}"#;
        let secret: Secret = serde_json::from_str(json).unwrap();
        assert_eq!(secret.scope, Scope::user("usr_1"));
        assert_eq!(secret.payload.as_ref().map(|p| p.expose()), Some("s3cr3t"));
        assert!(!secret.deleted);
        let debug = format!("{secret:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let back = serde_json::to_value(&secret).unwrap();
        assert_eq!(back["object"], "apps.secret");
        assert_eq!(back["payload"], "s3cr3t");
        assert_eq!(back["expires_at"], serde_json::Value::Null);
        assert!(back.get("deleted").is_none());
    }

    #[test]
    fn unknown_scope_types_are_refused() {
        let err = serde_json::from_str::<Scope>(r#"{"type":"galaxy"}"#).unwrap_err();
        assert!(err.to_string().contains("galaxy"));
        assert!(serde_json::from_str::<Scope>(r#"{"type":"user"}"#).is_err());
    }
}
