//! `/v1/root_keys` and `/v1/namespace_keys`: the key hierarchy, for an operator (contract §11).
//! `status` says how many stored keys each root key version wraps, so an old version can be
//! retired once it wraps none; `rotate` re-wraps them all under the active version; and
//! `namespace_keys/rotate` gives one namespace (or every one) a new key and re-wraps its
//! secrets' data keys under it. All of them run while the server serves: keys change wrapping,
//! never value, so no request is refused or answered differently meanwhile. These are what
//! `secretstore keys` calls.

use axum::response::Response;
use secretstore_core::{AccountId, AppId, CoreError, Mode, Namespace, RootStatus};
use serde_json::{json, Value};

use super::{json, Admin, AdminCaller, JsonBody, Query};
use crate::error::ApiError;

/// Namespaces read per step when every one is rotated.
const NAMESPACE_PAGE: u32 = 100;

fn key_error(err: secretstore_core::KeyError) -> ApiError {
    CoreError::Key(err).into()
}

fn root_json(root: &RootStatus) -> Value {
    json!({
        "id": root.id.to_string(),
        "source": root.source,
        "active": root.active,
        "keys": root.keys,
    })
}

pub async fn status(admin: Admin, _: AdminCaller, query: Query) -> Result<Response, ApiError> {
    query.finish()?;
    let roots = admin.keys.status().await.map_err(key_error)?;
    let formats = admin.keys.legacy_secrets().await.map_err(key_error)?;
    Ok(json(json!({
        "object": "root_key_status",
        "roots": roots.iter().map(root_json).collect::<Vec<_>>(),
        "format_1_secrets": formats,
    })))
}

pub async fn rotate(
    admin: Admin,
    _: AdminCaller,
    query: Query,
    body: JsonBody,
) -> Result<Response, ApiError> {
    query.finish()?;
    body.finish()?;
    let rotated = admin.keys.rotate_root().await.map_err(key_error)?;
    let roots = admin.keys.status().await.map_err(key_error)?;
    Ok(json(json!({
        "object": "root_key_rotation",
        "rewrapped": rotated.rewrapped,
        "roots": roots.iter().map(root_json).collect::<Vec<_>>(),
    })))
}

/// `{"app": ..., "account": ..., "mode": "test"|"live"}` for one namespace, or
/// `{"all": true}` for every namespace that holds secrets.
pub async fn rotate_namespace(
    admin: Admin,
    _: AdminCaller,
    query: Query,
    mut body: JsonBody,
) -> Result<Response, ApiError> {
    query.finish()?;
    let all = match body.take_value("all") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "all",
                format!("Invalid all: expected true or false, not {other}."),
            ))
        }
    };
    let one = if all {
        None
    } else {
        let app = body.required("app")?;
        let account = body.required("account")?;
        let mode = body.required("mode")?;
        Some(Namespace {
            app: AppId::parse(&app)
                .map_err(|e| ApiError::invalid("app", format!("Invalid app: {e}.")))?,
            account: AccountId::parse(&account)
                .map_err(|e| ApiError::invalid("account", format!("Invalid account: {e}.")))?,
            mode: Mode::parse(&mode).ok_or_else(|| {
                ApiError::invalid("mode", "Invalid mode: expected test or live.".to_owned())
            })?,
        })
    };
    body.finish()?;
    let mut done = Vec::new();
    let rotate = |namespace: Namespace| {
        let service = admin.service.clone();
        async move {
            let rotated = service.rotate_namespace(&namespace).await?;
            Ok::<_, ApiError>(json!({
                "app": namespace.app.as_str(),
                "account": namespace.account.as_str(),
                "mode": namespace.mode.as_str(),
                "version": rotated.version,
                "rewrapped": rotated.rewrapped,
                "resealed_from_format_1": rotated.resealed,
            }))
        }
    };
    match one {
        Some(namespace) => done.push(rotate(namespace).await?),
        None => {
            let mut after: Option<Namespace> = None;
            loop {
                let page = admin
                    .keys
                    .namespaces(after.as_ref(), NAMESPACE_PAGE)
                    .await
                    .map_err(key_error)?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                for namespace in page {
                    done.push(rotate(namespace).await?);
                }
                after = Some(last);
            }
        }
    }
    Ok(json(json!({
        "object": "namespace_key_rotation",
        "namespaces": done,
    })))
}
