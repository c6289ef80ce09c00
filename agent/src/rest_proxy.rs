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
use flate2::read::GzDecoder;
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

/// A request refused: its status and why, as the answer's body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

/// The address `--listen-http` may bind: every address it resolves to is loopback, unless
/// `remote` (`--listen-http-remote`) allows others.
pub fn check_bind(spec: &str, addrs: &[SocketAddr], remote: bool) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("--listen-http {spec}: resolves to no address"));
    }
    if !remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "--listen-http {spec}: {} is not a loopback address; whoever reaches it can \
                 write to the topic, so add --listen-http-remote to allow it",
                a.ip()
            ));
        }
    }
    Ok(())
}

/// A request line and its headers (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub http10: bool,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The request head, without its final empty line.
pub fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    let text = std::str::from_utf8(bytes).map_err(|_| refuse(400, "request head: not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, format!("request line {first:?}: not HTTP/1.1")));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(refuse(505, format!("{version}: HTTP/1.1 only"))),
    };
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let Some((n, v)) = l.split_once(':') else {
            return Err(refuse(400, format!("header line {l:?}: no colon")));
        };
        if n.is_empty() || n.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(refuse(400, format!("header name {n:?}")));
        }
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Head {
        method: method.into(),
        target: target.into(),
        http10,
        headers,
    })
}

/// How the body comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Fixed(usize),
    Chunked,
}

/// What an accepted head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    pub topic: String,
    pub length: Length,
    pub gzip: bool,
    pub timeout_ms: u32,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Checks a head against the topics served and the body limit: `POST /topics/TOPIC` with a
/// `kafka-rest` content type, a known encoding and a length within `max_body`.
pub fn route(head: &Head, topics: &[&str], max_body: usize) -> Result<Produce, Refusal> {
    let path = head.target.split('?').next().unwrap_or_default();
    let topic = path.strip_prefix("/topics/").unwrap_or_default();
    if topic.is_empty() || !topics.contains(&topic) {
        return Err(refuse(
            404,
            format!(
                "{path}: POST /topics/TOPIC, TOPIC one of: {}",
                topics.join(", ")
            ),
        ));
    }
    if head.method != "POST" {
        return Err(refuse(405, format!("{}: only POST", head.method)));
    }
    let ct = head.header("content-type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE) {
        return Err(refuse(
            415,
            format!("content-type {ct:?}: only {CONTENT_TYPE} (http.format: kafka-rest)"),
        ));
    }
    let gzip = match head.header("content-encoding").map(str::to_ascii_lowercase) {
        None => false,
        Some(e) if e == "identity" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => return Err(refuse(415, format!("content-encoding {e}: gzip or none"))),
    };
    let length = match (
        head.header("transfer-encoding"),
        head.header("content-length"),
    ) {
        (Some(te), _) if te.eq_ignore_ascii_case("chunked") => Length::Chunked,
        (Some(te), _) => return Err(refuse(501, format!("transfer-encoding {te}"))),
        (None, Some(n)) => match n.parse::<usize>() {
            Ok(n) if n > max_body => {
                return Err(refuse(413, format!("{n} bytes: at most {max_body}")))
            }
            Ok(n) => Length::Fixed(n),
            Err(_) => return Err(refuse(400, format!("content-length {n:?}"))),
        },
        (None, None) => return Err(refuse(411, "a content-length or a chunked body")),
    };
    let timeout_ms = head
        .header("x-envoy-expected-rq-timeout-ms")
        .and_then(|t| t.parse::<u32>().ok())
        .map(|t| t.clamp(1000, 600_000))
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let close = head
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    Ok(Produce {
        topic: topic.into(),
        length,
        gzip,
        timeout_ms,
        keep_alive: !head.http10 && !close,
        expect_continue: head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue")),
    })
}

fn too_large(max: usize) -> Refusal {
    refuse(413, format!("body larger than {max} bytes"))
}

/// A chunked body, at most `max` bytes (trailers skipped).
pub fn read_chunked(r: &mut impl BufRead, max: usize) -> Result<Vec<u8>, Refusal> {
    let broken = |what: &str| refuse(400, format!("chunked body: {what}"));
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        r.by_ref()
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(|_| broken("cut short"))?;
        if line.last() != Some(&b'\n') {
            return Err(broken("a chunk size line"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| broken("a chunk size"))?;
        let size = text.trim().split(';').next().unwrap_or_default();
        let n = usize::from_str_radix(size, 16).map_err(|_| broken("a chunk size"))?;
        if n == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = Vec::new();
                r.by_ref()
                    .take(8192)
                    .read_until(b'\n', &mut t)
                    .map_err(|_| broken("cut short"))?;
                if t.last() != Some(&b'\n') {
                    return Err(broken("a trailer"));
                }
                if t == b"\r\n" || t == b"\n" {
                    return Ok(body);
                }
            }
        }
        if body.len().saturating_add(n) > max {
            return Err(too_large(max));
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(&mut body[start..])
            .map_err(|_| broken("cut short"))?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).map_err(|_| broken("cut short"))?;
        if &crlf != b"\r\n" {
            return Err(broken("no CRLF after a chunk"));
        }
    }
}

/// The body as sent by the filter: gunzipped when it is gzip, at most `max` bytes either way.
pub fn decode(body: Vec<u8>, gzip: bool, max: usize) -> Result<Vec<u8>, Refusal> {
    if !gzip {
        return Ok(body);
    }
    let mut out = Vec::new();
    GzDecoder::new(&body[..])
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| refuse(400, format!("content-encoding gzip: {e}")))?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(out)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    const GOOD: &str = "POST /topics/usage HTTP/1.1\nhost: kafka\n\
        content-type: application/vnd.kafka.json.v2+json\ncontent-length: 10\n\
        x-usage-batch-id: 0190ab12-cd34-7ef0-8123-456789abcdef";

    #[test]
    fn a_kafka_rest_post_is_routed_to_its_topic() {
        let h = head(GOOD);
        assert_eq!(h.header("host"), Some("kafka"));
        let p = route(&h, &["usage", "other"], 100).unwrap();
        assert_eq!(
            p,
            Produce {
                topic: "usage".into(),
                length: Length::Fixed(10),
                gzip: false,
                timeout_ms: DEFAULT_TIMEOUT_MS,
                keep_alive: true,
                expect_continue: false,
            }
        );
        let h = head(
            "POST /topics/usage?x=1 HTTP/1.1\nContent-Type: Application/VND.kafka.json.v2+json; charset=utf-8\n\
             Transfer-Encoding: chunked\nContent-Encoding: gzip\nConnection: close\n\
             x-envoy-expected-rq-timeout-ms: 2000",
        );
        let p = route(&h, &["usage"], 100).unwrap();
        assert_eq!(p.length, Length::Chunked);
        assert!(p.gzip && !p.keep_alive);
        assert_eq!(p.timeout_ms, 2000);
    }

    #[test]
    fn everything_else_is_refused_with_a_status_that_says_why() {
        let good = GOOD.to_string();
        for (text, status, says) in [
            (good.replace("/topics/usage", "/topics/nope"), 404, "usage"),
            (
                good.replace("/topics/usage", "/api/v1/usage/events"),
                404,
                "/topics/TOPIC",
            ),
            (good.replace("/topics/usage", "/topics/"), 404, "TOPIC"),
            (good.replace("POST", "GET"), 405, "only POST"),
            (
                good.replace("vnd.kafka.json.v2+json", "json"),
                415,
                "kafka-rest",
            ),
            (
                good.replace("content-type: application/vnd.kafka.json.v2+json\n", ""),
                415,
                "content-type",
            ),
            (
                good.replace("content-length: 10", "content-length: 101"),
                413,
                "at most 100",
            ),
            (
                good.replace("content-length: 10", "content-length: ten"),
                400,
                "content-length",
            ),
            (
                good.replace("content-length: 10", "x: y"),
                411,
                "content-length",
            ),
            (
                good.replace("content-length: 10", "transfer-encoding: gzip"),
                501,
                "gzip",
            ),
            (
                good.replace(
                    "content-length: 10",
                    "content-length: 10\ncontent-encoding: br",
                ),
                415,
                "br",
            ),
        ] {
            let e = route(&head(&text), &["usage"], 100).unwrap_err();
            assert_eq!(e.status, status, "{text}: {e:?}");
            assert!(e.why.contains(says), "{text}: {e:?}");
        }
        for (text, status) in [
            ("POST /topics/usage HTTP/2", 505),
            ("POST /topics/usage", 400),
            ("POST  /topics/usage HTTP/1.1", 400),
            ("POST /topics/usage HTTP/1.1\r\nno colon", 400),
            ("POST /topics/usage HTTP/1.1\r\nbad name: x", 400),
        ] {
            assert_eq!(
                parse_head(text.as_bytes()).unwrap_err().status,
                status,
                "{text}"
            );
        }
        assert_eq!(parse_head(b"\xff\xfe").unwrap_err().status, 400);
    }

    #[test]
    fn only_loopback_unless_allowed() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_bind("x", &[a("127.0.0.1:1"), a("[::1]:1")], false).is_ok());
        let e = check_bind("0.0.0.0:8080", &[a("0.0.0.0:8080")], false).unwrap_err();
        assert!(
            e.starts_with("--listen-http 0.0.0.0:8080: 0.0.0.0 is not a loopback"),
            "{e}"
        );
        assert!(e.contains("--listen-http-remote"), "{e}");
        assert!(check_bind("h:1", &[a("127.0.0.1:1"), a("10.0.0.1:1")], false).is_err());
        assert!(check_bind("0.0.0.0:8080", &[a("0.0.0.0:8080")], true).is_ok());
        assert!(check_bind("h:1", &[], true).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let mut r = &b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT"[..];
        assert_eq!(read_chunked(&mut r, 100).unwrap(), b"hello world");
        assert_eq!(r, b"NEXT");
        let mut r = &b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut r, 10).unwrap_err().status, 413);
        for broken in [
            &b"5\r\nhel"[..],
            b"zz\r\nhello\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5",
        ] {
            let mut r = broken;
            assert_eq!(read_chunked(&mut r, 100).unwrap_err().status, 400);
        }
    }

    #[test]
    fn gzip_is_inflated_within_the_limit() {
        use flate2::{write::GzEncoder, Compression};
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&[b'x'; 1000]).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(decode(z.clone(), true, 1000).unwrap(), vec![b'x'; 1000]);
        // A small body that inflates past the limit (a gzip bomb) is refused.
        assert_eq!(decode(z, true, 999).unwrap_err().status, 413);
        assert_eq!(
            decode(b"not gzip".to_vec(), true, 99).unwrap_err().status,
            400
        );
        assert_eq!(decode(b"plain".to_vec(), false, 99).unwrap(), b"plain");
    }

    #[test]
    fn heads_are_read_to_their_empty_line_and_bounded() {
        let mut r = &b"\r\nPOST / HTTP/1.1\r\na: b\r\n\r\nbody"[..];
        assert_eq!(
            read_head(&mut r).unwrap().unwrap(),
            b"POST / HTTP/1.1\r\na: b\r\n"
        );
        assert_eq!(r, b"body");
        let mut r = &b""[..];
        assert_eq!(read_head(&mut r).unwrap(), None);
        let mut r = &b"POST / HTTP/1.1\r\na: b"[..];
        assert_eq!(read_head(&mut r).unwrap_err().status, 400);
        let long = format!("POST / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let mut r = long.as_bytes();
        assert_eq!(read_head(&mut r).unwrap_err().status, 431);
    }

    /// A request over TCP to a listener whose only topic `usage` goes to a broker that is not
    /// there: (status line, body).
    fn post(addr: SocketAddr, req: &[u8]) -> (String, String) {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    fn listener() -> SocketAddr {
        let t = crate::kafka::parse_url("kafka://127.0.0.1:1/usage")
            .unwrap()
            .unwrap();
        let sinks = HashMap::from([("usage".to_string(), Arc::new(Sink::new("k", t)))]);
        start("127.0.0.1:0", false, sinks, 4096).unwrap().0
    }

    fn request(extra: &str, body: &str) -> Vec<u8> {
        format!(
            "POST /topics/usage HTTP/1.1\r\ncontent-type: {CONTENT_TYPE}\r\n{extra}\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn over_tcp_a_body_that_is_not_kafka_rest_is_refused_with_400() {
        let addr = listener();
        let (status, body) = post(addr, &request("", r#"{"events":[{"id":"x"}]}"#));
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert!(body.contains("not kafka-rest"), "{body}");
        let (status, body) = post(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        assert!(body.contains("/topics/TOPIC"), "{body}");
        let big = "x".repeat(5000);
        let (status, _) = post(addr, &request("", &big));
        assert_eq!(status, "HTTP/1.1 413 Content Too Large");
    }

    #[test]
    fn over_tcp_records_no_broker_acknowledged_get_a_retryable_status_by_the_deadline() {
        let addr = listener();
        let t0 = std::time::Instant::now();
        let (status, body) = post(
            addr,
            &request(
                "x-envoy-expected-rq-timeout-ms: 1000\r\n",
                r#"{"records":[{"key":"org-1","value":{"id":"x"}}]}"#,
            ),
        );
        let took = t0.elapsed();
        assert!(
            status == "HTTP/1.1 503 Service Unavailable"
                || status == "HTTP/1.1 504 Gateway Timeout",
            "{status} {body}"
        );
        assert!(body.contains("kafka"), "{body}");
        assert!(took < Duration::from_millis(3000), "{took:?}");
    }
}
