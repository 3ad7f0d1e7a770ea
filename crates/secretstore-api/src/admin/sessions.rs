//! `/v1/user_sessions`: a UI extension acting for one dashboard user of one account, for a
//! short while (60 s to 1 h, 15 min by default). Its secret (`ek_...`) is the API key of its
//! /v1 calls, shown once; ending a session refuses it at once.

use axum::response::Response;
use secretstore_core::{SessionId, UserSession};
use serde_json::json as object;

use super::keys::{fresh_secret, mode_param};
use super::users::user_id;
use super::{
    account_param, app_param, found, json, now, path_id, render, Admin, AdminCaller, JsonBody,
    PathParams,
};
use crate::error::ApiError;

const MIN_LIFETIME_SECS: i64 = 60;
const MAX_LIFETIME_SECS: i64 = 3_600;
const DEFAULT_LIFETIME_SECS: i64 = 900;

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let app = app_param(&body.required("app")?, "app")?;
    let account = account_param(&body.required("account")?, "account")?;
    let user = user_id(&body.required("user")?, "user")?;
    let mode = mode_param(&body.required("mode")?)?;
    let lifetime = body
        .integer("lifetime_secs")?
        .unwrap_or(DEFAULT_LIFETIME_SECS);
    body.finish()?;
    if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(ApiError::out_of_range(
            "lifetime_secs",
            format!(
                "Invalid lifetime_secs: must be between {MIN_LIFETIME_SECS} and \
                 {MAX_LIFETIME_SECS}."
            ),
        ));
    }
    let prefix = match mode {
        secretstore_core::Mode::Test => "ek_test_",
        secretstore_core::Mode::Live => "ek_live_",
    };
    let (secret, hash, hint) = fresh_secret(prefix);
    let created = now(&admin);
    let session = UserSession {
        id: SessionId::generate(),
        app,
        account,
        user,
        mode,
        created,
        expires_at: created + lifetime,
        hash,
        hint,
    };
    admin.directory.create_session(session.clone()).await?;
    Ok(json(render::with_secret(
        render::session(&session),
        &secret,
    )))
}

fn session_id(path: &PathParams) -> Result<SessionId, ApiError> {
    path_id(path.id(), "user session", SessionId::parse)
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let session = admin.directory.session(&session_id(&path)?).await?;
    found(session, "user session", path.id(), render::session)
}

pub async fn remove(admin: Admin, _: AdminCaller, path: PathParams) -> Result<Response, ApiError> {
    let removed = admin.directory.remove_session(&session_id(&path)?).await?;
    found(
        removed,
        "user session",
        path.id(),
        |session| object!({"id": session.id.as_str(), "object": "user_session", "deleted": true}),
    )
}
