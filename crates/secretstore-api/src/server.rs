//! The HTTP/1.1 server loop. We run our own instead of `axum::serve` because a secret store
//! facing the network must bound what a slow or hostile client can hold: how many connections
//! are open at once and from one client address (`connections`, which closes the longest-idle
//! connection to make room rather than turn a new one away), how long a client may take to send
//! its headers (which also closes idle keep-alive connections), how long it may take to send its
//! body, and how large its headers may be. Each refusal is answered in the contract's JSON where
//! the protocol still allows an answer, hyper's own included: the few answers hyper writes by
//! itself (a malformed request, a request target over 65,534 bytes, too many or too large
//! headers) are recognised on their way out and replaced by JSON (`HyperRefusals`). A closed
//! connection lingers (reads and discards what the client still sends, for a bounded time), so
//! that a client still writing a refused body gets to read the answer instead of a reset.
//! Shutdown (shared by every listener of a server) stops accepting, lets in-flight requests
//! finish (up to a deadline), then returns.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::audit::ClientAddr;
use crate::connections::{Connections, Refusal, Registration};
use crate::error::{ApiError, Code};
use crate::middleware::new_request_id;
use crate::params::MAX_URI_BYTES;
use crate::HttpLimits;

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

/// How long a closing connection may linger, reading and discarding what its client still
/// sends; how long it waits for more; and the most it reads.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_IDLE: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Connections lingering at once; past it a connection closes without lingering. Lingering
/// sockets hold descriptors beyond `--max-connections`, so this is small, and it is part of the
/// descriptors `secretstore serve` keeps aside from connections.
pub const MAX_LINGERING: usize = 64;
/// How long a new connection waits for the slot an idle one was asked to give up.
const ROOM_PATIENCE: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` is triggered,
/// then lets in-flight requests finish (up to `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let connections = Connections::new(limits.max_connections, limits.max_connections_per_client);
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let refused = Arc::new(AtomicU64::new(0));
    let mut accept_failures = Backoff::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // hyper's own cap on a request head. It must hold the longest URI hyper parses (65,534
        // bytes, its fixed limit) plus headers up to our limit, so that our limit answers first,
        // in JSON.
        .max_buf_size(MAX_URI_BYTES + 2 * limits.max_header_bytes + 8 * 1024);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_failures.reset();
                    accepted
                }
                Err(err) => {
                    // Out of file descriptors: an idle connection gives one back. Then back off
                    // (doubling, up to a second) instead of spinning, and say so now and then,
                    // not at every attempt.
                    if is_out_of_descriptors(&err) {
                        connections.close_idlest();
                    }
                    accept_failures.wait(&err).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let registration = match connections.admit(peer.ip()) {
            Ok(registration) => Ok(registration),
            Err(Refusal::Full) if connections.make_room(ROOM_PATIENCE).await => {
                connections.admit(peer.ip())
            }
            Err(refusal) => Err(refusal),
        };
        let registration = match registration {
            Ok(registration) => registration,
            Err(refusal) => {
                let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_power_of_two() {
                    tracing::warn!(
                        refused = count,
                        limit = limits.max_connections,
                        per_client = limits.max_connections_per_client,
                        reason = ?refusal,
                        "too many connections; refusing new ones"
                    );
                }
                // Over TLS the refusal cannot be written before a handshake: the connection is
                // closed instead.
                if tls.is_none() {
                    tokio::spawn(refuse(stream, refusal));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = ClientAddr::new(peer.ip());
        let (router, http, shutdown) = (router.clone(), http.clone(), shutdown.clone());
        let lingering = Arc::clone(&lingering);
        match &tls {
            None => {
                tokio::spawn(connection(
                    stream,
                    client,
                    router,
                    http,
                    registration,
                    shutdown,
                    lingering,
                ));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let timeout = limits.header_timeout;
                tokio::spawn(async move {
                    // A client that never finishes its handshake is cut off like one that never
                    // sends its headers.
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(
                                stream,
                                client,
                                router,
                                http,
                                registration,
                                shutdown,
                                lingering,
                            )
                            .await
                        }
                        Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    connections.close_all();
    tokio::select! {
        () = connections.drained() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "in-flight requests did not finish in time; closing them");
        }
    }
    Ok(())
}

/// EMFILE or ENFILE: the process or the system has no file descriptor left.
fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == 24 || code == 23)
}

/// Accept failures in a row: how long to wait before the next attempt, and when to say so (at
/// most once every 10 seconds, and that it is over only after a run that was said).
#[derive(Debug, Default)]
struct Backoff {
    failures: u64,
    said: bool,
    last_said: Option<Instant>,
}

impl Backoff {
    fn reset(&mut self) {
        if self.said {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        self.failures = 0;
        self.said = false;
    }

    async fn wait(&mut self, err: &io::Error) {
        self.failures += 1;
        let quiet = self
            .last_said
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10));
        if !quiet {
            tracing::warn!(error = %err, "accepting a connection failed; backing off (said at most every 10 s)");
            self.last_said = Some(Instant::now());
            self.said = true;
        }
        let exponent = self.failures.min(7) as u32;
        tokio::time::sleep(
            Duration::from_millis(5 * 2u64.pow(exponent)).min(Duration::from_secs(1)),
        )
        .await;
    }
}

/// Serves one connection (plain or TLS) until it ends or it is asked to close (to make room, or
/// at shutdown). It lingers only when it may end with input unread: a request whose body was
/// not read to its end (its answer then says `connection: close`), or a request hyper refused
/// itself.
async fn connection<I>(
    io: I,
    client: ClientAddr,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    registration: Registration,
    shutdown: Shutdown,
    lingering: Arc<Semaphore>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let registration = Arc::new(registration);
    let unread_input = Arc::new(AtomicBool::new(false));
    let service = {
        let (registration, unread_input) = (Arc::clone(&registration), Arc::clone(&unread_input));
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = registration.busy();
            let with_body = !hyper::body::Body::is_end_stream(request.body());
            // Only a request with a body can leave input unread; the others cost no flag.
            let body_ended = with_body.then(|| Arc::new(AtomicBool::new(false)));
            let mut request = match &body_ended {
                Some(ended) => request.map(|body| {
                    axum::body::Body::new(TrackedBody {
                        inner: body,
                        ended: Arc::clone(ended),
                    })
                }),
                None => request.map(axum::body::Body::new),
            };
            request.extensions_mut().insert(client.clone());
            let answer = router.clone().oneshot(request);
            let unread_input = Arc::clone(&unread_input);
            // Boxed so that the connection can be driven by `poll_without_shutdown`, which
            // gives the socket back for the lingering close.
            Box::pin(async move {
                let mut answer = answer.await;
                let unread = body_ended.is_some_and(|ended| !ended.load(Ordering::Relaxed));
                if unread {
                    unread_input.store(true, Ordering::Relaxed);
                    // hyper keeps a connection whose request body was left unread only if
                    // the rest of the body has already arrived (it drains what it holds), and
                    // otherwise closes it without saying so in the answer: a keep-alive client
                    // would pool the connection and send its next request into the close,
                    // reading no answer (hyper's client reports `IncompleteMessage`). Closing
                    // always, and saying so, keeps it out of the client's pool whatever the
                    // timing.
                    if let Ok(answer) = answer.as_mut() {
                        answer
                            .headers_mut()
                            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                    }
                }
                drop(busy);
                answer
            })
        })
    };
    let mut conn = http.serve_connection(TokioIo::new(HyperRefusals::new(io)), service);
    let mut closing = false;
    let done = loop {
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break done,
            () = registration.state.close.notified(), if !closing => {
                closing = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = shutdown.wait(), if !closing => {
                closing = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    if let Err(err) = done {
        // Clients going away or timing out; nothing to answer.
        tracing::debug!(error = %err, "connection ended with an error");
    }
    let io = conn.into_parts().io.into_inner();
    let unread_input = io.replaced || unread_input.load(Ordering::Relaxed);
    // The slot is free from here: lingering holds a socket, bounded by `MAX_LINGERING`.
    drop(registration);
    if unread_input {
        if let Ok(_permit) = lingering.try_acquire() {
            linger(io.inner).await;
        }
    }
}

/// A request body that records whether it was read to its end, so that the answer to a
/// request whose body was left unread (refused before or while it arrived) says the connection
/// closes.
struct TrackedBody {
    inner: Incoming,
    ended: Arc<AtomicBool>,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => self.inner.is_end_stream(),
            // A body that failed midway leaves its connection unusable: hyper closes it.
            Some(Err(_)) => false,
        };
        if ended {
            self.ended.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Ends our side of the connection, then reads and discards what the client still sends
/// (bounded in time and bytes) before the socket closes. Closing a socket with unread input
/// makes the kernel send a reset, which can destroy the answer before the client reads it: a
/// client sending a body we refused would see a broken pipe instead of our 413.
async fn linger<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
    let mut sink = vec![0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let wait = (tokio::time::Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(wait, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

/// The refusal of a connection the listener has no room for, closing it; written before any
/// request is read, so there is no HTTP machinery to write it with.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let mut err = match refusal {
        Refusal::Full => ApiError::new(
            Code::TooManyConnections,
            "The server has too many open connections right now. Retry shortly, reusing \
             connections.",
        ),
        Refusal::PerClient => ApiError::new(
            Code::TooManyConnections,
            "Your address has too many connections open to this server. Reuse the ones you \
             have (keep-alive) instead of opening more.",
        ),
    };
    err.retry_after = Some(HeaderValue::from_static("1"));
    let answer = err.to_http_bytes(new_request_id());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A connection's socket, passing everything through but the answers hyper writes by itself
/// when it cannot parse a request (400, 414, 431, each with no body and closing the
/// connection), which it replaces with the contract's JSON error. Every answer of our own
/// carries `request-id`; an answer head without it can only be hyper's.
struct HyperRefusals<I> {
    inner: I,
    /// A replacement being written, and the length of what it replaces (reported as written
    /// once the replacement is).
    pending: Option<(Vec<u8>, usize, usize)>,
    /// A refusal was replaced: the request it refused may still be arriving.
    replaced: bool,
}

impl<I> HyperRefusals<I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            pending: None,
            replaced: false,
        }
    }
}

/// The status of an answer head that hyper wrote by itself, if `head` is one.
fn hypers_own_refusal(head: &[u8]) -> Option<Code> {
    let code = match head.get(..12)? {
        b"HTTP/1.1 400" => Code::RequestMalformed,
        b"HTTP/1.1 414" => Code::UriTooLong,
        b"HTTP/1.1 431" => Code::HeadersTooLarge,
        _ => return None,
    };
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    let ours = head[..end]
        .windows(13)
        .any(|w| w.eq_ignore_ascii_case(b"\r\nrequest-id:"));
    (!ours).then_some(code)
}

/// The JSON answer that replaces hyper's bare one.
fn refusal_for(code: Code) -> Vec<u8> {
    let message = match code {
        Code::UriTooLong => {
            "The request target (path and query string) is longer than 65,534 bytes, the most \
             this server reads. Shorten the parameters in the query string."
        }
        Code::HeadersTooLarge => {
            "The request has more than 100 headers, or headers too large to read. Send fewer \
             or shorter headers."
        }
        _ => {
            "The request could not be read as HTTP/1.1: its request line, a header or its \
             framing is malformed."
        }
    };
    let request_id = new_request_id();
    let err = ApiError::new(code, message);
    tracing::info!(
        request_id = %request_id,
        status = err.status().as_u16(),
        code = err.code.wire().unwrap_or(""),
        "request refused before it could be parsed"
    );
    err.to_http_bytes(request_id)
}

impl<I: AsyncWrite + Unpin> HyperRefusals<I> {
    /// Writes the pending replacement; Ready(Ok(n)) reports the replaced length once it is out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((bytes, written, replaced)) = self.pending.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        let replaced = *replaced;
        self.pending = None;
        Poll::Ready(Ok(replaced))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HyperRefusals<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HyperRefusals<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match hypers_own_refusal(buf) {
                Some(code) => {
                    this.pending = Some((refusal_for(code), 0, buf.len()));
                    this.replaced = true;
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_pending(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            match hypers_own_refusal(first) {
                Some(code) => {
                    let total = bufs.iter().map(|b| b.len()).sum();
                    this.pending = Some((refusal_for(code), 0, total));
                    this.replaced = true;
                }
                None => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            }
        }
        this.poll_pending(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bare_answers_are_recognised() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hypers_own_refusal(bare), Some(Code::HeadersTooLarge));
        assert_eq!(
            hypers_own_refusal(b"HTTP/1.1 414 URI Too Long\r\n\r\n"),
            Some(Code::UriTooLong)
        );
        assert_eq!(
            hypers_own_refusal(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Some(Code::RequestMalformed)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nRequest-Id: req_1\r\n\r\n{}";
        assert_eq!(hypers_own_refusal(ours), None);
        assert_eq!(hypers_own_refusal(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(hypers_own_refusal(b"HTTP/1.1"), None);
    }
}
