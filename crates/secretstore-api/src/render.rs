//! The JSON of `apps.secret` objects and lists, exactly as CONTRACT §1 describes: `expires_at`
//! always present (null when none), `payload` only when expanded, `deleted` only on delete.

use secretstore_core::{ListPage, Mode, Scope, Secret};
use serde::Serialize;

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
        livemode: secret.key.namespace.mode == Mode::Live,
        name: secret.key.name.as_str(),
        payload: secret.payload.as_ref().map(|p| p.expose()),
        scope: ScopeJson {
            kind: secret.key.scope.type_str(),
            user: match &secret.key.scope {
                Scope::Account => None,
                Scope::User(user) => Some(user.as_str()),
            },
        },
    }
}

pub fn secret(secret: &Secret, deleted: bool) -> Vec<u8> {
    serde_json::to_vec(&secret_json(secret, deleted)).unwrap_or_default()
}

#[derive(Serialize)]
struct ListJson<'a> {
    object: &'static str,
    url: &'static str,
    has_more: bool,
    data: Vec<SecretJson<'a>>,
}

pub fn list(page: &ListPage) -> Vec<u8> {
    let body = ListJson {
        object: "list",
        url: "/v1/apps/secrets",
        has_more: page.has_more,
        data: page.items.iter().map(|s| secret_json(s, false)).collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
