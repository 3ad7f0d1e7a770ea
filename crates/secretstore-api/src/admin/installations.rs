//! `/v1/installations`: an app on an account. Removing one removes that app's secrets in that
//! account (both modes) and its user sessions there.

use axum::response::Response;
use secretstore_core::{AccountId, AppId, Installation, InstallationFilter, InstallationId};

use super::{
    json, listing, not_found, now, render, Admin, AdminCaller, JsonBody, PathParams, Query,
};
use crate::error::ApiError;

fn app_param(text: &str, param: &str) -> Result<AppId, ApiError> {
    AppId::parse(text)
        .map_err(|_| ApiError::invalid(param, format!("Invalid {param}: not an app id.")))
}

fn account_param(text: &str, param: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text)
        .map_err(|_| ApiError::invalid(param, format!("Invalid {param}: not an account id.")))
}

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let app = app_param(&body.required("app")?, "app")?;
    let account = account_param(&body.required("account")?, "account")?;
    body.finish()?;
    let installation = Installation {
        id: InstallationId::generate(),
        app,
        account,
        created: now(&admin),
    };
    admin
        .directory
        .create_installation(installation.clone())
        .await?;
    Ok(json(render::installation(&installation)))
}

pub async fn list(admin: Admin, _: AdminCaller, mut query: Query) -> Result<Response, ApiError> {
    let filter = InstallationFilter {
        app: query
            .text("app")?
            .map(|a| app_param(&a, "app"))
            .transpose()?,
        account: query
            .text("account")?
            .map(|a| account_param(&a, "account"))
            .transpose()?,
    };
    let page = query.page()?;
    query.finish()?;
    let listed = admin.directory.installations(&filter, &page).await?;
    Ok(listing(
        "/v1/installations".into(),
        listed,
        render::installation,
    ))
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let id = InstallationId::parse(path.id()).map_err(|_| not_found("installation", path.id()))?;
    match admin.directory.installation(&id).await? {
        Some(installation) => Ok(json(render::installation(&installation))),
        None => Err(not_found("installation", path.id())),
    }
}

pub async fn remove(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
    mut query: Query,
) -> Result<Response, ApiError> {
    query.confirmed()?;
    query.finish()?;
    let id = InstallationId::parse(path.id()).map_err(|_| not_found("installation", path.id()))?;
    match admin.directory.remove_installation(&id).await? {
        Some(removed) => Ok(json(render::removed(id.as_str(), "installation", &removed))),
        None => Err(not_found("installation", path.id())),
    }
}
