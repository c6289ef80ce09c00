//! A reference receiver for the batches the usage filter sends, and a tiny
//! upstream API for demos and end-to-end tests.
//!
//! * [`collector`]: accepts batches in every format the filter can send
//!   (Veil JSON, NDJSON, CloudEvents batch, Kafka REST; optionally gzipped),
//!   validates each event like Veil's platform API, de-duplicates retries and
//!   appends new events to an NDJSON file. Control endpoints expose counters
//!   and inject faults.
//! * [`upstream`]: answers any request with the status, size and delay its
//!   query string asks for.
//!
//! Both are plain hyper services; [`run_collector`] and [`run_upstream`] run
//! them on a listener until a shutdown future completes, which is also how
//! the tests start them on an ephemeral port.

pub mod cli;
pub mod collector;
pub mod decode;
pub mod faults;
pub mod http;
pub mod store;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Serves the collector on `listener`, storing into `store`, until `shutdown`.
pub async fn run_collector(
    listener: TcpListener,
    store: store::Store,
    shutdown: impl Future<Output = ()>,
) {
    run_collector_with(listener, store, None, shutdown).await;
}

/// [`run_collector`], answering 401 to batches whose `Authorization` header is
/// not `require_auth` (when given).
pub async fn run_collector_with(
    listener: TcpListener,
    store: store::Store,
    require_auth: Option<String>,
    shutdown: impl Future<Output = ()>,
) {
    let state = collector::Collector::with_auth(store, require_auth);
    let handler = move |req| collector::handle(Arc::clone(&state), req);
    http::serve(listener, handler, shutdown).await;
}

/// Serves the demo upstream on `listener` until `shutdown`.
pub async fn run_upstream(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    http::serve(listener, upstream::handle, shutdown).await;
}
