//! The JSON of admin objects: each has an `object` field; credentials show only their hint
//! (`redacted`), and their whole secret only in the answer that made them.

use secretstore_core::{Account, ApiKeyRecord, App, Installation, Removed, User, UserSession};
use serde_json::{json, Value};
use zeroize::Zeroizing;

pub fn account(a: &Account) -> Value {
    json!({"id": a.id.as_str(), "object": "account", "name": a.name, "created": a.created})
}

pub fn app(a: &App) -> Value {
    json!({
        "id": a.id.as_str(), "object": "app", "name": a.name,
        "account": a.owner.as_str(), "created": a.created,
    })
}

pub fn installation(i: &Installation) -> Value {
    json!({
        "id": i.id.as_str(), "object": "installation", "app": i.app.as_str(),
        "account": i.account.as_str(), "created": i.created,
    })
}

pub fn user(u: &User) -> Value {
    json!({
        "id": u.id.as_str(), "object": "user", "account": u.account.as_str(),
        "email": u.email, "created": u.created,
    })
}

pub fn key(k: &ApiKeyRecord) -> Value {
    let mut permissions = Vec::new();
    if k.permissions.read {
        permissions.push("secret_read");
    }
    if k.permissions.write {
        permissions.push("secret_write");
    }
    let redacted = k.hint.to_string().replacen("****", "\u{2026}", 1);
    json!({
        "id": k.id.as_str(), "object": "api_key", "app": k.app.as_str(),
        "mode": k.mode.as_str(), "type": k.key_type.as_str(), "permissions": permissions,
        "name": k.name, "created": k.created, "expires_at": k.expires_at,
        "revoked": k.revoked, "redacted": redacted,
    })
}

pub fn session(s: &UserSession) -> Value {
    json!({
        "id": s.id.as_str(), "object": "user_session", "app": s.app.as_str(),
        "account": s.account.as_str(), "user": s.user.as_str(), "mode": s.mode.as_str(),
        "created": s.created, "expires_at": s.expires_at,
    })
}

/// An object's JSON with its whole secret, for the one answer that shows it.
pub fn with_secret(mut object: Value, secret: &Zeroizing<String>) -> Value {
    if let Value::Object(map) = &mut object {
        map.insert("secret".into(), Value::String(secret.as_str().to_owned()));
    }
    object
}

/// The answer to a removal.
pub fn removed(id: &str, object: &str, removed: &Removed) -> Value {
    json!({
        "id": id, "object": object, "deleted": true,
        "removed": {
            "apps": removed.apps, "installations": removed.installations,
            "users": removed.users, "api_keys": removed.api_keys,
            "user_sessions": removed.user_sessions, "secrets": removed.secrets,
            "keys": removed.keys,
        },
    })
}
