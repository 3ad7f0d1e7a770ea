//! The typed requests of the four operations, and their encoding in Stripe's bracket style
//! (`scope[type]=user&scope[user]=usr_1&expand[0]=payload`), the form Stripe's SDKs send: a
//! form body on POST, the query string on GET. The encoded text of a set holds the payload, so
//! it is built once into a buffer sized up front (no reallocation leaves copies behind) that is
//! wiped when dropped.

use std::borrow::Cow;

use zeroize::Zeroizing;

use crate::secret::{Scope, SecretPayload};

/// Parameters in the order they are sent.
#[derive(Debug, Default)]
pub(crate) struct Form<'a> {
    pairs: Vec<(&'static str, Cow<'a, str>)>,
}

impl<'a> Form<'a> {
    pub(crate) fn push(&mut self, name: &'static str, value: impl Into<Cow<'a, str>>) {
        self.pairs.push((name, value.into()));
    }

    /// `application/x-www-form-urlencoded` text. Percent-encoding at most triples a byte, so
    /// the buffer never grows past what is reserved here.
    pub(crate) fn encode(&self) -> Zeroizing<String> {
        let capacity = self
            .pairs
            .iter()
            .map(|(name, value)| name.len() * 3 + value.len() * 3 + 2)
            .sum();
        let mut serializer = form_urlencoded::Serializer::new(String::with_capacity(capacity));
        for (name, value) in &self.pairs {
            serializer.append_pair(name, value);
        }
        Zeroizing::new(serializer.finish())
    }
}

/// Set (create or replace) a secret: `POST /v1/apps/secrets`.
///
/// Setting an existing name in a scope replaces its payload and expiry (an omitted expiry
/// clears it) and keeps its id and creation time.
///
/// ```
/// use secretstore_client::{Scope, SetSecret};
///
/// let params = SetSecret::new(Scope::user("usr_123"), "github-token", "ghp_...")
///     .expires_at(1_900_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct SetSecret {
    pub(crate) scope: Scope,
    pub(crate) name: String,
    pub(crate) payload: SecretPayload,
    pub(crate) expires_at: Option<i64>,
    pub(crate) expand_payload: bool,
    pub(crate) idempotency_key: Option<String>,
}

impl SetSecret {
    /// The secret `name` in `scope`, holding `payload`.
    pub fn new(scope: Scope, name: impl Into<String>, payload: impl Into<SecretPayload>) -> Self {
        SetSecret {
            scope,
            name: name.into(),
            payload: payload.into(),
            expires_at: None,
            expand_payload: false,
            idempotency_key: None,
        }
    }

    /// Unix seconds after which the secret is gone: later than now, at most 100 years ahead.
    pub fn expires_at(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }

    /// Ask for the payload back in the answer (`expand[]=payload`).
    pub fn expand_payload(mut self) -> Self {
        self.expand_payload = true;
        self
    }

    /// Use this `Idempotency-Key` instead of a fresh random one, so that a repeat of the same
    /// logical call (after a crash, say) is answered from the first instead of running twice.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub(crate) fn form(&self) -> Form<'_> {
        let mut form = Form::default();
        form.push("name", self.name.as_str());
        form.push("payload", self.payload.expose());
        self.scope.append_to(&mut form);
        if let Some(at) = self.expires_at {
            form.push("expires_at", at.to_string());
        }
        if self.expand_payload {
            form.push("expand[0]", "payload");
        }
        form
    }
}

/// Find a secret by name: `GET /v1/apps/secrets/find`.
///
/// ```
/// use secretstore_client::{FindSecret, Scope};
///
/// let params = FindSecret::new(Scope::Account, "my-api-key").expand_payload();
/// ```
#[derive(Debug, Clone)]
pub struct FindSecret {
    pub(crate) scope: Scope,
    pub(crate) name: String,
    pub(crate) expand_payload: bool,
}

impl FindSecret {
    /// The secret `name` in `scope`.
    pub fn new(scope: Scope, name: impl Into<String>) -> Self {
        FindSecret {
            scope,
            name: name.into(),
            expand_payload: false,
        }
    }

    /// Include the payload in the answer (`expand[]=payload`); without it only the metadata
    /// comes back.
    pub fn expand_payload(mut self) -> Self {
        self.expand_payload = true;
        self
    }

    pub(crate) fn form(&self) -> Form<'_> {
        named_secret_form(&self.scope, &self.name, self.expand_payload)
    }
}

/// The parameters find and delete share: one secret named in one scope, payload on request.
fn named_secret_form<'a>(scope: &'a Scope, name: &'a str, expand_payload: bool) -> Form<'a> {
    let mut form = Form::default();
    form.push("name", name);
    scope.append_to(&mut form);
    if expand_payload {
        form.push("expand[0]", "payload");
    }
    form
}

/// Delete a secret by name: `POST /v1/apps/secrets/delete`. The answer is the secret as it
/// was, with `deleted: true`.
///
/// ```
/// use secretstore_client::{DeleteSecret, Scope};
///
/// let params = DeleteSecret::new(Scope::Account, "my-api-key");
/// ```
#[derive(Debug, Clone)]
pub struct DeleteSecret {
    pub(crate) scope: Scope,
    pub(crate) name: String,
    pub(crate) expand_payload: bool,
    pub(crate) idempotency_key: Option<String>,
}

impl DeleteSecret {
    /// The secret `name` in `scope`.
    pub fn new(scope: Scope, name: impl Into<String>) -> Self {
        DeleteSecret {
            scope,
            name: name.into(),
            expand_payload: false,
            idempotency_key: None,
        }
    }

    /// Include the deleted payload in the answer.
    pub fn expand_payload(mut self) -> Self {
        self.expand_payload = true;
        self
    }

    /// Use this `Idempotency-Key` instead of a fresh random one.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub(crate) fn form(&self) -> Form<'_> {
        named_secret_form(&self.scope, &self.name, self.expand_payload)
    }
}

/// List the secrets of a scope, newest first: `GET /v1/apps/secrets`.
///
/// ```
/// use secretstore_client::{ListSecrets, Scope};
///
/// let params = ListSecrets::new(Scope::Account).limit(100);
/// ```
#[derive(Debug, Clone)]
pub struct ListSecrets {
    pub(crate) scope: Scope,
    pub(crate) limit: Option<u32>,
    pub(crate) starting_after: Option<String>,
    pub(crate) ending_before: Option<String>,
    pub(crate) expand_payload: bool,
}

impl ListSecrets {
    /// The secrets of `scope`.
    pub fn new(scope: Scope) -> Self {
        ListSecrets {
            scope,
            limit: None,
            starting_after: None,
            ending_before: None,
            expand_payload: false,
        }
    }

    /// Secrets per page, 1 to 100 (the server's default is 10).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The page after (older than) the secret with this id.
    pub fn starting_after(mut self, id: impl Into<String>) -> Self {
        self.starting_after = Some(id.into());
        self
    }

    /// The page before (newer than) the secret with this id. With
    /// [`Client::list_all`](crate::Client::list_all), the stream walks towards newer secrets.
    pub fn ending_before(mut self, id: impl Into<String>) -> Self {
        self.ending_before = Some(id.into());
        self
    }

    /// Include every payload in the answer (`expand[]=data.payload`).
    pub fn expand_payload(mut self) -> Self {
        self.expand_payload = true;
        self
    }

    pub(crate) fn form(&self) -> Form<'_> {
        let mut form = Form::default();
        self.scope.append_to(&mut form);
        if let Some(limit) = self.limit {
            form.push("limit", limit.to_string());
        }
        if let Some(id) = &self.starting_after {
            form.push("starting_after", id.as_str());
        }
        if let Some(id) = &self.ending_before {
            form.push("ending_before", id.as_str());
        }
        if self.expand_payload {
            form.push("expand[0]", "data.payload");
        }
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_encodes_in_stripe_bracket_style() {
        let params = SetSecret::new(Scope::user("usr_1"), "a b", "p&q=r")
            .expires_at(1_900_000_000)
            .expand_payload();
        assert_eq!(
            params.form().encode().as_str(),
            "name=a+b&payload=p%26q%3Dr&scope%5Btype%5D=user&scope%5Buser%5D=usr_1\
             &expires_at=1900000000&expand%5B0%5D=payload"
        );
    }

    #[test]
    fn list_encodes_cursors_and_expand() {
        let params = ListSecrets::new(Scope::Account)
            .limit(3)
            .starting_after("appsecret_x")
            .expand_payload();
        assert_eq!(
            params.form().encode().as_str(),
            "scope%5Btype%5D=account&limit=3&starting_after=appsecret_x\
             &expand%5B0%5D=data.payload"
        );
    }

    #[test]
    fn the_reserved_buffer_is_never_outgrown() {
        let payload = "\u{1F600}".repeat(5000);
        let params = SetSecret::new(Scope::Account, "n", payload.as_str());
        let form = params.form();
        let capacity: usize = form
            .pairs
            .iter()
            .map(|(name, value)| name.len() * 3 + value.len() * 3 + 2)
            .sum();
        let encoded = form.encode();
        assert!(encoded.len() <= capacity);
        assert_eq!(encoded.capacity(), capacity);
    }
}
