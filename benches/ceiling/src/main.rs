//! `ceiling`: the leanest HTTP/1.1 server hyper makes, answering every request with the same
//! fixed JSON body (a `find` answer with its payload expanded, byte for byte the size of the
//! ones `scripts/bench` reads).
//!
//! `scripts/bench` runs it beside `secretstore serve` and drives both with the same load, so the
//! figures for secretstore can be read against what this machine's network stack, hyper and
//! tokio can do at all in the same run: the ceiling. It does nothing else on purpose: no
//! routing, no parsing of the request beyond what hyper does, no logging, no extra headers.
//!
//! ```text
//! ceiling --listen 127.0.0.1:0
//! ceiling listening on http://127.0.0.1:40123
//! ```

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What every request gets: a `find` answer with `expand[]=payload` of a ~100-byte payload, the
/// very answer `scripts/bench` reads from secretstore (~290 bytes).
const BODY: &[u8] = br#"{"id":"appsecret_5110hHS1707T6fjBnah1LkdIwHu7ix","object":"apps.secret","created":1680209063,"expires_at":null,"livemode":false,"name":"bench-0042","payload":"tok_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-0042","scope":{"type":"account"}}"#;

const USAGE: &str =
    "usage: ceiling [--listen ADDR]   (default 127.0.0.1:0; port 0 picks a free port)";

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(listen) => listen,
        Err(message) => {
            eprintln!("ceiling: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ceiling: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ceiling: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--listen" => args.next().ok_or("--listen needs an address")?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None if other == "-h" || other == "--help" => return Err("help".to_owned()),
                None => return Err(format!("unknown argument {other:?}")),
            },
        };
        listen = value
            .parse()
            .map_err(|err| format!("--listen {value:?}: {err}"))?;
    }
    Ok(listen)
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "ceiling listening on http://{addr}")?;
        stdout.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(_) => continue,
        };
        // Same as any sensible HTTP server: answers go out as soon as they are written.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // A client that goes away mid-request is not an error worth reporting here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(
    _request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
