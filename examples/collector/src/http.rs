//! The HTTP/1.1 server loop shared by `collector` and `demo-upstream`.
//!
//! It uses hyper directly rather than a framework: the collector needs to
//! *drop a connection without answering* (the `close` fault), and with hyper
//! that is simply a service returning an error — hyper then closes the socket
//! without writing a response (see [`CloseConnection`]).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// Every response body is a complete in-memory buffer.
pub type Body = Full<Bytes>;

/// Returned by a handler to close the connection without any response.
///
/// hyper treats a service error as fatal for the connection: it writes
/// nothing and drops the TCP stream, so the client sees EOF (or a reset)
/// instead of a status line — the same thing it sees when a real collector
/// crashes or a load balancer kills the connection mid-request.
#[derive(Debug)]
pub struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose (injected fault)")
    }
}

impl std::error::Error for CloseConnection {}

/// How long in-flight requests may run after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections on `listener` until `shutdown` completes, serving each
/// request with `handler`. Keep-alive is on (hyper's default for HTTP/1.1).
///
/// On shutdown the listener is closed first, then requests already being
/// handled get [`SHUTDOWN_GRACE`] to finish; idle keep-alive connections are
/// closed at once.
pub async fn serve<H, Fut, E>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // The timer lets hyper enforce its header read timeout on slow clients.
    builder.timer(TokioTimer::new());
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Typically EMFILE under load: back off instead of spinning.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small JSON answers should not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handler));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // Errors here are client disconnects or our own CloseConnection.
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, the signals `docker stop`,
/// systemd and test harnesses send.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A response with a body and a content type.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("valid status and header")
}

/// A JSON response.
pub fn json(status: u16, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("serialisable value");
    respond(status, "application/json", body)
}
