//! The collector's HTTP routes: batch intake plus the control endpoints that
//! tests use to inspect and misconfigure it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::{Method, Request, Response};
use serde::Serialize;

use crate::decode::{decode_batch, decode_content_encoding, Format};
use crate::faults::{poisoned, Fault, FaultRequest, Faults};
use crate::http::{json, respond, Body, CloseConnection};
use crate::store::Store;

/// The header the filter puts on every batch; a retry carries the same value.
pub const BATCH_ID_HEADER: HeaderName = HeaderName::from_static("x-usage-batch-id");

/// Largest request body accepted on the wire (compressed or not).
pub const MAX_BODY: usize = 16 << 20;
/// Largest body after gunzip.
pub const MAX_DECODED_BODY: usize = 64 << 20;

/// The 200 answer to a batch, field order as in Veil's platform API.
#[derive(Serialize)]
struct Accepted {
    success: bool,
    processed: u64,
    errors: u64,
}

/// Every error answer: `{"success":false,"error":"..."}`.
#[derive(Serialize)]
struct Failed<'a> {
    success: bool,
    error: &'a str,
}

/// Shared state of one collector.
pub struct Collector {
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    /// When set, a batch must carry exactly this `Authorization` value (401 otherwise).
    require_auth: Option<String>,
}

impl Collector {
    pub fn new(store: Store) -> Arc<Collector> {
        Collector::with_auth(store, None)
    }

    /// A collector that answers 401 to a batch whose `Authorization` is not `require_auth`.
    pub fn with_auth(store: Store, require_auth: Option<String>) -> Arc<Collector> {
        Arc::new(Collector {
            store: Mutex::new(store),
            faults: Mutex::new(Faults::default()),
            require_auth,
        })
    }

    /// A poisoned lock only means another request panicked; the data is
    /// still consistent enough for a test collector, so keep serving.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Paths that are never treated as a batch, whatever the method.
const CONTROL_PATHS: [&str; 5] = ["/healthz", "/stats", "/attempts", "/faults", "/reset"];

/// Routes one request. `Err(CloseConnection)` drops the connection unanswered.
pub async fn handle(
    state: Arc<Collector>,
    req: Request<Incoming>,
) -> Result<Response<Body>, CloseConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => respond(200, "text/plain", "ok"),
        (&Method::GET, "/stats") => json(200, &state.store().stats()),
        (&Method::GET, "/attempts") => json(200, &state.store().attempts()),
        (&Method::GET, "/faults") => json(200, &state.faults().list()),
        (&Method::POST, "/faults") => add_faults(&state, req).await,
        (&Method::DELETE, "/faults") => {
            let mut faults = state.faults();
            faults.clear();
            json(200, &faults.list())
        }
        (&Method::POST, "/reset") => match state.store().reset() {
            Ok(()) => respond(200, "application/json", r#"{"success":true}"#),
            Err(e) => error(500, &format!("reset failed: {e}")),
        },
        (_, p) if CONTROL_PATHS.contains(&p) => method_not_allowed(p),
        (&Method::POST, _) => return batch(&state, req).await,
        (_, p) => method_not_allowed(p),
    };
    Ok(response)
}

/// `POST <any other path>`: one batch of usage events.
async fn batch(
    state: &Collector,
    req: Request<Incoming>,
) -> Result<Response<Body>, CloseConnection> {
    let (parts, body) = req.into_parts();
    let batch_id = header(&parts.headers, &BATCH_ID_HEADER);

    // Read the whole body before anything else, as a real collector would:
    // a `close` fault then hits a request that was fully delivered, which is
    // exactly the "did it arrive or not?" case the sender's retry must handle.
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => {
            state
                .store()
                .count_rejected(batch_id, response.status().as_u16());
            return Ok(response);
        }
    };

    let fault = state.faults().take();
    if let Some(fault) = fault {
        let answered = if fault.close { Some(0) } else { fault.status };
        state.store().count_faulted(batch_id, answered);
        if let Some(response) = apply_fault(&fault).await? {
            return Ok(response);
        }
        // A pure delay: go on and process normally.
    }

    if let Some(expected) = &state.require_auth {
        if header(&parts.headers, &AUTHORIZATION) != Some(expected.as_str()) {
            eprintln!(
                "collector: refused batch {}: missing or wrong authorization",
                batch_id.unwrap_or("-")
            );
            state.store().count_rejected(batch_id, 401);
            return Ok(error(401, "missing or wrong authorization"));
        }
    }

    Ok(ingest(state, &parts.headers, &body, batch_id))
}

/// Decodes, validates and stores a batch, and builds the answer.
fn ingest(
    state: &Collector,
    headers: &HeaderMap,
    body: &[u8],
    batch_id: Option<&str>,
) -> Response<Body> {
    // Every refusal is a 400: the body will never become acceptable, so the
    // sender must not retry it unchanged.
    let reject = |message: String| {
        eprintln!(
            "collector: rejected batch {}: {message}",
            batch_id.unwrap_or("-")
        );
        state.store().count_rejected(batch_id, 400);
        error(400, &message)
    };

    let format = match Format::from_content_type(header(headers, &CONTENT_TYPE)) {
        Ok(format) => format,
        Err(message) => return reject(message),
    };
    let encoding = header(headers, &CONTENT_ENCODING);
    let body = match decode_content_encoding(body, encoding, MAX_DECODED_BODY) {
        Ok(body) => body,
        Err(message) => return reject(message),
    };
    let candidates = match decode_batch(format, &body) {
        Ok(candidates) if candidates.is_empty() => return reject("no events".to_string()),
        Ok(candidates) => candidates,
        Err(message) => return reject(message),
    };
    // A receiver's batch limit comes before looking at the events themselves.
    let limit = state.faults().too_many(candidates.len());
    if let Some(limit) = limit {
        let events = candidates.len();
        eprintln!(
            "collector: refused batch {} of {events} events with 413: more than {limit}",
            batch_id.unwrap_or("-")
        );
        state.store().count_too_large(batch_id, events as u64);
        return error(
            413,
            &format!("batch of {events} events, more than the {limit} accepted"),
        );
    }
    let poison = state.faults().poison().map(str::to_string);
    if let Some(marker) = poison {
        let texts = candidates
            .iter()
            .filter_map(|c| c.as_ref().ok().map(|r| r.get()));
        if let Some(id) = poisoned(&marker, texts) {
            return reject(format!("event {id}: api_path contains \"{marker}\""));
        }
    }

    // The whole batch is checked and written under one lock, so concurrent
    // retries of the same events cannot both be appended.
    match state.store().ingest(batch_id, candidates) {
        Ok(outcome) => json(
            200,
            &Accepted {
                success: true,
                processed: outcome.processed,
                errors: outcome.errors,
            },
        ),
        Err(e) => {
            eprintln!("collector: writing events failed: {e}");
            // 500: the sender keeps the batch and retries later.
            error(500, &format!("could not store events: {e}"))
        }
    }
}

/// Carries out an injected fault. `Ok(None)` means "continue normally".
async fn apply_fault(fault: &Fault) -> Result<Option<Response<Body>>, CloseConnection> {
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fault.close {
        return Err(CloseConnection);
    }
    Ok(fault.status.map(|status| {
        let mut response = error(status, "injected fault");
        if let Some(seconds) = fault.retry_after {
            response.headers_mut().insert(RETRY_AFTER, seconds.into());
        }
        response
    }))
}

/// `POST /faults` with one fault object or an array of them.
async fn add_faults(state: &Collector, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let faults =
        match serde_json::from_slice::<FaultRequest>(&body) {
            Ok(FaultRequest::One(fault)) => vec![fault],
            Ok(FaultRequest::Many(faults)) => faults,
            Ok(FaultRequest::RejectWhen(r)) => {
                let mut faults = state.faults();
                return match faults.set_reject_when(r) {
                    Ok(()) => json(200, &faults.list()),
                    Err(message) => error(400, &message),
                };
            }
            Err(_) => return error(
                400,
                "expected a fault object such as {\"status\":503,\"count\":5} or an array of them",
            ),
        };
    let mut queue = state.faults();
    match queue.add(faults) {
        Ok(()) => json(200, &queue.list()),
        Err(message) => error(400, &message),
    }
}

/// Reads a whole body, refusing more than [`MAX_BODY`] bytes with 413.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(error(413, &format!("body larger than {MAX_BODY} bytes")))
        }
        Err(e) => Err(error(400, &format!("could not read body: {e}"))),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Veil's error shape: `{"success":false,"error":"..."}`.
fn error(status: u16, message: &str) -> Response<Body> {
    json(
        status,
        &Failed {
            success: false,
            error: message,
        },
    )
}

fn method_not_allowed(path: &str) -> Response<Body> {
    let allow = match path {
        "/healthz" | "/stats" | "/attempts" => "GET",
        "/faults" => "GET, POST, DELETE",
        _ => "POST",
    };
    let mut response = error(405, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, allow.parse().expect("valid header value"));
    response
}
