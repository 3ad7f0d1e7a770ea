//! The HTTP/1.1 server loop. We run our own instead of `axum::serve` because a secret store
//! facing the network must bound what a slow or hostile client can hold: how many connections
//! are open at once, how long a client may take to send its headers (which also closes idle
//! keep-alive connections), how long it may take to send its body, and how large its headers may
//! be. Each refusal is answered in the contract's JSON where the protocol still allows an answer.
//! Shutdown (shared by every listener of a server) stops accepting, lets in-flight requests
//! finish (up to a deadline), then returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::error::{ApiError, Code};
use crate::HttpLimits;

/// hyper refuses longer request targets itself (414, without a body); see docs/errors.md.
const MAX_URI_BYTES: usize = 65_534;

/// One shutdown for every listener of a server: `trigger` it once and every `serve` loop given
/// a clone of it stops accepting and drains.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::channel(false).0),
        }
    }

    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Returns once `trigger` was called (at once if it already was).
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` is triggered,
/// then lets in-flight requests finish (up to `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(AtomicU64::new(0));
    // Written to a connection over the limit, which is then closed: the request is never read,
    // so the answer is bytes made once here.
    let refusal: Arc<[u8]> = {
        let mut err = ApiError::new(
            Code::TooManyConnections,
            "The server has too many open connections right now. Retry shortly, reusing \
             connections.",
        );
        err.retry_after = Some(HeaderValue::from_static("1"));
        err.to_http_bytes().into()
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // hyper's own cap on a request head. It must hold the longest URI hyper parses (65,534
        // bytes, its fixed limit) plus headers up to our limit, so that our limit answers first,
        // in JSON.
        .max_buf_size(MAX_URI_BYTES + 2 * limits.max_header_bytes + 8 * 1024);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if count.is_power_of_two() {
                tracing::warn!(
                    refused = count,
                    limit = limits.max_connections,
                    "too many connections; refusing new ones"
                );
            }
            // Over TLS the refusal cannot be written before a handshake: the connection is
            // closed instead.
            if tls.is_none() {
                tokio::spawn(refuse(stream, Arc::clone(&refusal)));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(connection(stream, router, http, watcher, permit));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let timeout = limits.header_timeout;
                tokio::spawn(async move {
                    // A client that never finishes its handshake is cut off like one that never
                    // sends its headers.
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, router, http, watcher, permit).await,
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "in-flight requests did not finish in time; closing them");
        }
    }
    Ok(())
}

/// Serves one connection (plain or TLS) until it ends or shutdown closes it.
async fn connection<I>(
    io: I,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    // Errors here are clients going away or timing out; nothing to answer.
    if let Err(err) = watcher
        .watch(http.serve_connection(TokioIo::new(io), service))
        .await
    {
        tracing::debug!(error = %err, "connection ended with an error");
    }
    drop(permit);
}

async fn refuse(mut stream: TcpStream, answer: Arc<[u8]>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
