//! `/v1/accounts`: the businesses on the platform.

use axum::response::Response;
use secretstore_core::ids::check_chosen;
use secretstore_core::{Account, AccountId};

use super::{
    found, json, listing, now, path_id, render, Admin, AdminCaller, JsonBody, PathParams, Query,
};
use crate::error::ApiError;

/// An account id a platform chose (in parameter `param`): `acct_` and 1 to 64 of
/// `[A-Za-z0-9_]`.
pub fn chosen_account(id: &str, param: &str) -> Result<AccountId, ApiError> {
    check_chosen(id, AccountId::PREFIX)
        .and_then(|()| AccountId::parse(id))
        .map_err(|_| {
            ApiError::invalid(
                param,
                format!(
                    "Invalid {param}: an account id is acct_ followed by 1 to 64 letters, \
                     digits or underscores."
                ),
            )
        })
}

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let id = match body.string("id")? {
        Some(id) => chosen_account(&id, "id")?,
        None => AccountId::generate(),
    };
    let name = body.string("name")?;
    body.finish()?;
    let account = Account {
        id,
        name,
        created: now(&admin),
    };
    admin.directory.create_account(account.clone()).await?;
    Ok(json(render::account(&account)))
}

pub async fn list(admin: Admin, _: AdminCaller, mut query: Query) -> Result<Response, ApiError> {
    let page = query.page()?;
    query.finish()?;
    let listed = admin.directory.accounts(&page).await?;
    Ok(listing("/v1/accounts".into(), listed, render::account))
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let id = path_id(path.id(), "account", AccountId::parse)?;
    found(
        admin.directory.account(&id).await?,
        "account",
        path.id(),
        render::account,
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
    let id = path_id(path.id(), "account", AccountId::parse)?;
    found(
        admin.shredding(admin.directory.remove_account(&id)).await?,
        "account",
        path.id(),
        |removed| render::removed(id.as_str(), "account", removed),
    )
}
