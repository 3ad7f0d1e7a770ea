//! `GET /v1/backup`: a consistent copy of the whole store, streamed while the server serves,
//! for `secretstore backup` (contract §11). Storage makes the copy (`Lifecycle::snapshot`: for
//! SQLite, `VACUUM INTO` from one read transaction, which holds up no write) into a file that is
//! already unlinked, and this streams it out in chunks, so neither the server's memory nor its
//! disk keeps anything once the answer ends, however it ends. The copy holds ciphertext and
//! wrapped keys only: it opens only with the server's root key. A backend whose database runs
//! elsewhere (PostgreSQL) answers 404 with where to look instead (pg_dump).

use axum::body::Body;
use axum::response::Response;
use bytes::BytesMut;
use http::{HeaderValue, StatusCode};
use tokio::io::AsyncReadExt as _;

use super::{Admin, AdminCaller, Query};
use crate::error::ApiError;

/// Bytes read from the snapshot per chunk of the answer: few reads for a large database,
/// little memory per download.
const CHUNK: usize = 256 * 1024;

pub async fn download(admin: Admin, _: AdminCaller, query: Query) -> Result<Response, ApiError> {
    query.finish()?;
    let file = admin.storage.snapshot().await?;
    let bytes = file
        .metadata()
        .map_err(|e| ApiError::internal(format!("cannot read the snapshot's size: {e}")))?
        .len();
    tracing::info!(bytes, "backup snapshot taken");
    let chunks = futures::stream::try_unfold(tokio::fs::File::from_std(file), |mut file| async {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        let read = file.read_buf(&mut chunk).await?;
        Ok::<_, std::io::Error>((read > 0).then(|| (chunk.freeze(), file)))
    });
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // The length lets the client tell a copy cut short from a whole one.
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes));
    headers.insert(
        http::header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"secretstore-backup.db\""),
    );
    Ok(response)
}
