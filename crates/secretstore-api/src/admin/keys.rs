//! `/v1/apps/{app}/keys` and `/v1/keys/{id}`: an app's API keys. A key is shown whole once, in
//! the answer that made it (create, or roll for the new key); storage keeps its SHA-256 and a
//! hint. Roll makes a new key now and leaves the old one valid for a grace period; revoke ends a
//! key at once.

use axum::response::Response;
use secretstore_core::ids::random_id;
use secretstore_core::{
    ApiKeyId, ApiKeyRecord, AppId, CredentialHint, CredentialId, KeyType, Mode, Permissions,
};
use zeroize::Zeroizing;

use super::{
    found, json, listing, not_found, now, path_id, render, Admin, AdminCaller, JsonBody,
    PathParams, Query,
};
use crate::error::{ApiError, Code};

/// Random characters after a credential's prefix (the contract asks for at least 40).
pub const SECRET_CHARS: usize = 48;

/// Longest grace period of a roll: a week.
const MAX_GRACE_SECS: i64 = 604_800;

/// A fresh credential with this prefix: its text (wiped when dropped), hash and hint.
pub fn fresh_secret(prefix: &'static str) -> (Zeroizing<String>, CredentialId, CredentialHint) {
    let secret = Zeroizing::new(random_id(prefix, SECRET_CHARS));
    let bytes = secret.as_bytes();
    let last4 = [
        bytes[bytes.len() - 4],
        bytes[bytes.len() - 3],
        bytes[bytes.len() - 2],
        bytes[bytes.len() - 1],
    ];
    (
        secret.clone(),
        CredentialId::of(secret.as_bytes()),
        CredentialHint::new(prefix, Some(last4)),
    )
}

pub fn mode_param(text: &str) -> Result<Mode, ApiError> {
    match text {
        "test" => Ok(Mode::Test),
        "live" => Ok(Mode::Live),
        _ => Err(
            ApiError::new(Code::InvalidEnum, "Invalid mode: must be test or live.")
                .with_param("mode"),
        ),
    }
}

fn prefix(key_type: KeyType, mode: Mode) -> &'static str {
    match (key_type, mode) {
        (KeyType::Secret, Mode::Test) => "sk_test_",
        (KeyType::Secret, Mode::Live) => "sk_live_",
        (KeyType::Restricted, Mode::Test) => "rk_test_",
        (KeyType::Restricted, Mode::Live) => "rk_live_",
    }
}

fn permissions(key_type: KeyType, given: Option<Vec<String>>) -> Result<Permissions, ApiError> {
    let Some(given) = given else {
        return Ok(match key_type {
            KeyType::Secret => Permissions::ALL,
            KeyType::Restricted => Permissions {
                read: false,
                write: false,
            },
        });
    };
    if key_type == KeyType::Secret {
        return Err(ApiError::invalid(
            "permissions",
            "A secret key may do everything; permissions belong to restricted keys.".into(),
        ));
    }
    let mut out = Permissions {
        read: false,
        write: false,
    };
    for permission in given {
        match permission.as_str() {
            "secret_read" => out.read = true,
            "secret_write" => out.write = true,
            _ => {
                return Err(ApiError::new(
                    Code::InvalidEnum,
                    "Invalid permissions: each is secret_read or secret_write.",
                )
                .with_param("permissions"))
            }
        }
    }
    Ok(out)
}

fn app_of(path: &PathParams) -> Result<AppId, ApiError> {
    path_id(path.parent(), "app", AppId::parse)
}

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let app = app_of(&path)?;
    let mode = mode_param(&body.required("mode")?)?;
    let key_type = match body.required("type")?.as_str() {
        "secret" => KeyType::Secret,
        "restricted" => KeyType::Restricted,
        _ => {
            return Err(ApiError::new(
                Code::InvalidEnum,
                "Invalid type: must be secret or restricted.",
            )
            .with_param("type"))
        }
    };
    let permissions = permissions(key_type, body.strings("permissions")?)?;
    let name = body.string("name")?;
    body.finish()?;
    if admin.directory.app(&app).await?.is_none() {
        return Err(not_found("app", path.parent()));
    }
    let (secret, hash, hint) = fresh_secret(prefix(key_type, mode));
    let key = ApiKeyRecord {
        id: ApiKeyId::generate(),
        app,
        mode,
        key_type,
        permissions,
        name,
        created: now(&admin),
        expires_at: None,
        revoked: false,
        hash,
        hint,
    };
    admin.directory.create_key(key.clone()).await?;
    Ok(json(render::with_secret(render::key(&key), &secret)))
}

pub async fn list(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut query: Query,
) -> Result<Response, ApiError> {
    let app = app_of(&path)?;
    let page = query.page()?;
    query.finish()?;
    if admin.directory.app(&app).await?.is_none() {
        return Err(not_found("app", path.parent()));
    }
    let listed = admin.directory.keys(&app, &page).await?;
    Ok(listing(format!("/v1/apps/{app}/keys"), listed, render::key))
}

fn key_id(path: &PathParams) -> Result<ApiKeyId, ApiError> {
    path_id(path.id(), "key", ApiKeyId::parse)
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let key = admin.directory.key(&key_id(&path)?).await?;
    found(key, "key", path.id(), render::key)
}

pub async fn roll(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let id = key_id(&path)?;
    let grace = body.integer("grace_period_secs")?.unwrap_or(0);
    body.finish()?;
    if !(0..=MAX_GRACE_SECS).contains(&grace) {
        return Err(ApiError::out_of_range(
            "grace_period_secs",
            format!("Invalid grace_period_secs: must be between 0 and {MAX_GRACE_SECS}."),
        ));
    }
    let Some(old) = admin.directory.key(&id).await? else {
        return Err(not_found("key", path.id()));
    };
    let now = now(&admin);
    if !old.usable_at(now) {
        return Err(ApiError::invalid(
            "id",
            "This key is revoked or expired already; create a new key instead.".into(),
        ));
    }
    let (secret, hash, hint) = fresh_secret(prefix(old.key_type, old.mode));
    let new = ApiKeyRecord {
        id: ApiKeyId::generate(),
        created: now,
        expires_at: None,
        revoked: false,
        hash,
        hint,
        ..old
    };
    let rolled = admin
        .directory
        .roll_key(&id, now + grace, new.clone())
        .await?;
    found(rolled, "key", path.id(), |_| {
        render::with_secret(render::key(&new), &secret)
    })
}

pub async fn revoke(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    body: JsonBody,
) -> Result<Response, ApiError> {
    body.finish()?;
    let revoked = admin.directory.revoke_key(&key_id(&path)?).await?;
    found(revoked, "key", path.id(), render::key)
}
