//! `/v1/installations`: an app on an account. Removing one removes that app's secrets in that
//! account (both modes) and its user sessions there.

use axum::response::Response;
use secretstore_core::{Installation, InstallationFilter, InstallationId};

use super::{
    account_param, app_param, found, json, listing, now, path_id, render, Admin, AdminCaller,
    JsonBody, PathParams, Query,
};
use crate::error::ApiError;

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
    let id = path_id(path.id(), "installation", InstallationId::parse)?;
    found(
        admin.directory.installation(&id).await?,
        "installation",
        path.id(),
        render::installation,
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
    let id = path_id(path.id(), "installation", InstallationId::parse)?;
    found(
        admin
            .shredding(admin.directory.remove_installation(&id))
            .await?,
        "installation",
        path.id(),
        |removed| render::removed(id.as_str(), "installation", removed),
    )
}
