//! `/v1/accounts/{account}/users`: dashboard users of one account. Removing one removes every
//! secret in that user's scope on the account, and the user's sessions.

use axum::response::Response;
use secretstore_core::ids::check_chosen;
use secretstore_core::{AccountId, User, UserId};

use super::{
    found, json, listing, not_found, now, path_id, render, Admin, AdminCaller, JsonBody,
    PathParams, Query,
};
use crate::error::ApiError;

fn account_of(path: &PathParams) -> Result<AccountId, ApiError> {
    path_id(path.parent(), "account", AccountId::parse)
}

/// A user id: `usr_` and 1 to 64 of `[A-Za-z0-9_]`.
pub fn user_id(text: &str, param: &str) -> Result<UserId, ApiError> {
    check_chosen(text, UserId::PREFIX)
        .and_then(|()| UserId::parse(text))
        .map_err(|_| {
            ApiError::invalid(
                param,
                format!(
                    "Invalid {param}: a user id is usr_ followed by 1 to 64 letters, digits or \
                     underscores."
                ),
            )
        })
}

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let account = account_of(&path)?;
    let id = match body.string("id")? {
        Some(id) => user_id(&id, "id")?,
        None => UserId::generate(),
    };
    let email = body.string("email")?;
    body.finish()?;
    let user = User {
        id,
        account,
        email,
        created: now(&admin),
    };
    admin.directory.create_user(user.clone()).await?;
    Ok(json(render::user(&user)))
}

pub async fn list(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut query: Query,
) -> Result<Response, ApiError> {
    let account = account_of(&path)?;
    let page = query.page()?;
    query.finish()?;
    if admin.directory.account(&account).await?.is_none() {
        return Err(not_found("account", path.parent()));
    }
    let listed = admin.directory.users(&account, &page).await?;
    Ok(listing(
        format!("/v1/accounts/{account}/users"),
        listed,
        render::user,
    ))
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let account = account_of(&path)?;
    let id = path_id(path.id(), "user", UserId::parse)?;
    found(
        admin.directory.user(&account, &id).await?,
        "user",
        path.id(),
        render::user,
    )
}

pub async fn remove(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut query: Query,
) -> Result<Response, ApiError> {
    query.confirmed()?;
    query.finish()?;
    let account = account_of(&path)?;
    let id = path_id(path.id(), "user", UserId::parse)?;
    found(
        admin
            .shredding(admin.directory.remove_user(&account, &id))
            .await?,
        "user",
        path.id(),
        |removed| render::removed(id.as_str(), "user", removed),
    )
}
