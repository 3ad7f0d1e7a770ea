//! The JSON of `apps.secret` objects and lists, exactly as docs/api.md describes: `expires_at`
//! always present (null when none), `payload` only when expanded, `deleted` only on delete.
//! Bodies may hold a payload, so they come in memory that is wiped when dropped.

use secretstore_core::{ListPage, Scope, Secret};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::ops::SECRETS_PATH;

#[derive(Serialize)]
struct ScopeJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Serialize)]
struct SecretJson<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    expires_at: Option<i64>,
    livemode: bool,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    scope: ScopeJson<'a>,
}

fn secret_json(secret: &Secret, deleted: bool) -> SecretJson<'_> {
    SecretJson {
        id: secret.id.as_str(),
        object: "apps.secret",
        created: secret.created,
        deleted: deleted.then_some(true),
        expires_at: secret.expires_at,
        livemode: secret.address.namespace.mode.livemode(),
        name: secret.address.name.as_str(),
        payload: secret.payload.as_ref().map(|p| p.expose()),
        scope: ScopeJson {
            kind: secret.address.scope.type_str(),
            user: match &secret.address.scope {
                Scope::Account => None,
                Scope::User(user) => Some(user.as_str()),
            },
        },
    }
}

fn to_json(value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
}

/// A secret, as set and find answer it.
pub fn secret(secret: &Secret) -> Zeroizing<Vec<u8>> {
    to_json(&secret_json(secret, false))
}

/// A secret as delete answers it, marked `"deleted": true`.
pub fn deleted(secret: &Secret) -> Zeroizing<Vec<u8>> {
    to_json(&secret_json(secret, true))
}

#[derive(Serialize)]
struct ListJson<'a> {
    object: &'static str,
    url: &'static str,
    has_more: bool,
    data: Vec<SecretJson<'a>>,
}

pub fn list(page: &ListPage) -> Zeroizing<Vec<u8>> {
    to_json(&ListJson {
        object: "list",
        url: SECRETS_PATH,
        has_more: page.has_more,
        data: page.items.iter().map(|s| secret_json(s, false)).collect(),
    })
}
