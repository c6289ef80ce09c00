//! `--listen-http ADDR`: a local Kafka REST Proxy for the filter in Envoy. Envoy's filter can
//! only make HTTP (and gRPC) callouts, so its `http` destination (format `kafka-rest`,
//! `http.path: /topics/TOPIC`) points here, and each POST becomes one produce of its records
//! through the same producer as `--cluster NAME=kafka://…` (`kafka.rs`): the answer is 200 only
//! once the broker acknowledged every record, 503 (or 504 at the deadline) when it did not,
//! so the filter retries the batch.
//!
//! Only what the filter sends is taken: `POST /topics/TOPIC` (TOPIC one of the `kafka://`
//! clusters' topics), `content-type: application/vnd.kafka.json.v2+json`, a body of
//! `{"records":[…]}` (plain or `content-encoding: gzip`, `content-length` or chunked) of at
//! most `--listen-http-max-bytes` bytes, decompressed. Anything else is refused with a 4xx
//! that says why. It binds loopback addresses only unless `--listen-http-remote` is given:
//! whoever can reach it can write to the topic.
//!
//! The parsing and the checks are plain functions (tested here); `start` runs them on a
//! thread per connection (HTTP/1.1 keep-alive, at most `MAX_CONNECTIONS` at once).

use crate::answer::Outcome;
use crate::kafka::Sink;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// `--listen-http-max-bytes`' default: a body (decompressed) larger than this is refused
/// with 413, and the filter splits the batch and lowers its batch size.
pub const DEFAULT_MAX_BODY: usize = 8 << 20;
/// The request line and headers.
pub const MAX_HEAD: usize = 16 << 10;
/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
pub const CONTENT_TYPE: &str = "application/vnd.kafka.json.v2+json";
/// How long a request may wait for the broker when the caller does not say
/// (`x-envoy-expected-rq-timeout-ms`): the filter's default `http.timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(60);

mod request;
#[cfg(test)]
mod tests;

use request::refuse;
pub use request::*;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// What the listener did, for `/metrics`.
#[derive(Default)]
pub struct Counts {
    /// Requests answered, by status.
    pub answered: Mutex<BTreeMap<u16, u64>>,
    /// Records the broker acknowledged.
    pub records: AtomicU64,
    /// Requests being answered now.
    pub active: AtomicUsize,
    connections: AtomicUsize,
}

impl Counts {
    fn answered(&self, status: u16) {
        if let Ok(mut m) = self.answered.lock() {
            *m.entry(status).or_default() += 1;
        }
    }
}

/// Binds `addr` (after `check_bind`) and serves it on threads. `sinks`: topic → its
/// producer.
pub fn start(
    addr: &str,
    remote: bool,
    sinks: HashMap<String, Arc<Sink>>,
    max_body: usize,
) -> Result<(SocketAddr, Arc<Counts>), String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("--listen-http {addr}: {e}"))?
        .collect();
    check_bind(addr, &addrs, remote)?;
    let l = TcpListener::bind(&addrs[..]).map_err(|e| format!("--listen-http {addr}: {e}"))?;
    let local = l
        .local_addr()
        .map_err(|e| format!("--listen-http {addr}: {e}"))?;
    let counts = Arc::new(Counts::default());
    let sinks = Arc::new(sinks);
    let c = counts.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            if c.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                c.connections.fetch_sub(1, Ordering::AcqRel);
                c.answered(503);
                let _ = answer(&mut conn, 503, &error_body("too many connections"), false);
                continue;
            }
            let (sinks, c) = (sinks.clone(), c.clone());
            std::thread::spawn(move || {
                serve(conn, &sinks, max_body, &c);
                c.connections.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok((local, counts))
}

fn error_body(why: &str) -> Vec<u8> {
    serde_json::json!({ "error": why }).to_string().into_bytes()
}

fn answer(w: &mut impl Write, status: u16, body: &[u8], keep_alive: bool) -> std::io::Result<()> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    write!(
        w,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: {conn}\r\n\r\n",
        reason(status),
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// The head, up to its empty line: `None` when the connection closed before one began.
fn read_head(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, Refusal> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut line)
            .map_err(|_| refuse(400, "request head cut short"))?;
        if n == 0 && head.is_empty() {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            return Err(if head.len() + line.len() > MAX_HEAD {
                refuse(431, format!("request head over {MAX_HEAD} bytes"))
            } else {
                refuse(400, "request head cut short")
            });
        }
        if line == b"\r\n" || line == b"\n" {
            if head.is_empty() {
                continue; // a stray CRLF between requests
            }
            return Ok(Some(head));
        }
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
        } else {
            line.pop();
        }
        head.extend_from_slice(&line);
        head.extend_from_slice(b"\r\n");
    }
}

/// One request, its head read: its answer, or why it was refused.
/// A request answered: the status, the body, whether the connection can go on, and the
/// records it held.
type Served = (u16, Vec<u8>, bool, usize);

fn one(
    bytes: &[u8],
    r: &mut BufReader<TcpStream>,
    sinks: &HashMap<String, Arc<Sink>>,
    max_body: usize,
) -> Result<Served, Refusal> {
    let head = parse_head(bytes)?;
    let topics: Vec<&str> = sinks.keys().map(String::as_str).collect();
    let p = route(&head, &topics, max_body)?;
    if p.expect_continue {
        let _ = r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body = match p.length {
        Length::Fixed(n) => {
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)
                .map_err(|_| refuse(400, "body shorter than its content-length"))?;
            b
        }
        Length::Chunked => read_chunked(r, max_body)?,
    };
    let body = decode(body, p.gzip, max_body)?;
    let Some(sink) = sinks.get(&p.topic) else {
        return Err(refuse(404, format!("topic {}", p.topic)));
    };
    let (tx, rx) = mpsc::channel();
    let records = sink.produce(&body, 0, p.timeout_ms, &tx);
    // Answered a little before the caller gives up, so the connection stays usable.
    let wait = Duration::from_millis(p.timeout_ms.saturating_sub(200).max(500) as u64);
    let (status, body) = match rx.recv_timeout(wait) {
        Ok(a) => match a.outcome {
            Outcome::Answered { status, body, .. } => (status as u16, body),
            _ => (503, error_body("kafka: no answer")),
        },
        Err(_) => (
            504,
            error_body("kafka: the broker did not acknowledge in time"),
        ),
    };
    Ok((status, body, p.keep_alive, records))
}

fn serve(conn: TcpStream, sinks: &HashMap<String, Arc<Sink>>, max_body: usize, c: &Counts) {
    let _ = conn.set_read_timeout(Some(IDLE));
    let _ = conn.set_nodelay(true);
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::with_capacity(64 * 1024, conn);
    loop {
        let got = match read_head(&mut r) {
            Ok(None) => return,
            Ok(Some(bytes)) => {
                c.active.fetch_add(1, Ordering::AcqRel);
                let got = one(&bytes, &mut r, sinks, max_body);
                c.active.fetch_sub(1, Ordering::AcqRel);
                got
            }
            Err(e) => Err(e),
        };
        let (status, body, keep_alive, records) = match got {
            Ok(a) => a,
            // What is left of a refused request cannot be told from the next one: close.
            Err(e) => (e.status, error_body(&e.why), false, 0),
        };
        c.answered(status);
        if status == 200 {
            c.records.fetch_add(records as u64, Ordering::Relaxed);
        }
        if answer(&mut w, status, &body, keep_alive).is_err() || !keep_alive {
            linger(&mut w, &mut r);
            return;
        }
    }
}

/// Closes after an answer without reading the whole request: the client's unread bytes
/// would make the close a reset, which can destroy the answer before the client reads it. So
/// the writing side is shut and what the client still sends is read and dropped (for a
/// second, at most `DEFAULT_MAX_BODY` bytes) first.
fn linger(w: &mut TcpStream, r: &mut BufReader<TcpStream>) {
    let _ = w.shutdown(std::net::Shutdown::Write);
    let _ = w.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = std::io::copy(
        &mut r.by_ref().take(DEFAULT_MAX_BODY as u64),
        &mut std::io::sink(),
    );
}

/// The listener's lines of `/metrics`.
pub fn render(c: &Counts) -> String {
    let mut s = String::from(
        "# HELP usage_agent_http_requests_total Requests to --listen-http, by the status answered.\n\
         # TYPE usage_agent_http_requests_total counter\n",
    );
    if let Ok(m) = c.answered.lock() {
        for (status, n) in m.iter() {
            s += &format!("usage_agent_http_requests_total{{status=\"{status}\"}} {n}\n");
        }
    }
    s += &format!(
        "# HELP usage_agent_http_records_acknowledged_total Records of --listen-http requests the broker acknowledged.\n\
         # TYPE usage_agent_http_records_acknowledged_total counter\n\
         usage_agent_http_records_acknowledged_total {}\n\
         # HELP usage_agent_http_requests_in_flight Requests to --listen-http being answered.\n\
         # TYPE usage_agent_http_requests_in_flight gauge\n\
         usage_agent_http_requests_in_flight {}\n",
        c.records.load(Ordering::Relaxed),
        c.active.load(Ordering::Relaxed)
    );
    s
}
