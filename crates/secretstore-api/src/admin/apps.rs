//! `/v1/apps`: the programs accounts install. An app's owner account counts as an installation.

use axum::response::Response;
use secretstore_core::{App, AppId};

use super::accounts::chosen_account;
use super::{
    found, json, listing, now, path_id, render, Admin, AdminCaller, JsonBody, PathParams, Query,
};
use crate::error::ApiError;

pub async fn create(
    admin: Admin,
    _: AdminCaller,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    let id = match body.string("id")? {
        Some(id) if id.len() <= AppId::MAX_CHOSEN_LEN => AppId::parse(&id).map_err(|_| {
            ApiError::invalid(
                "id",
                "Invalid id: an app id is 1 to 128 letters, digits, '.', '-' or '_' (as in \
                 com.example.app)."
                    .into(),
            )
        })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "id",
                "Invalid id: an app id is at most 128 characters.".into(),
            ))
        }
        None => AppId::generate(),
    };
    let name = body.required("name")?;
    if name.is_empty() {
        return Err(ApiError::empty_string("name"));
    }
    let owner = chosen_account(&body.required("account")?, "account")?;
    body.finish()?;
    let app = App {
        id,
        name,
        owner,
        created: now(&admin),
    };
    admin.directory.create_app(app.clone()).await?;
    Ok(json(render::app(&app)))
}

pub async fn list(admin: Admin, _: AdminCaller, mut query: Query) -> Result<Response, ApiError> {
    let page = query.page()?;
    query.finish()?;
    let listed = admin.directory.apps(&page).await?;
    Ok(listing("/v1/apps".into(), listed, render::app))
}

pub async fn retrieve(
    admin: Admin,
    _: AdminCaller,
    path: PathParams,
) -> Result<Response, ApiError> {
    let id = path_id(path.id(), "app", AppId::parse)?;
    found(
        admin.directory.app(&id).await?,
        "app",
        path.id(),
        render::app,
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
    let id = path_id(path.id(), "app", AppId::parse)?;
    found(
        admin.shredding(admin.directory.remove_app(&id)).await?,
        "app",
        path.id(),
        |removed| render::removed(id.as_str(), "app", removed),
    )
}
