//! A request as `--listen-http` reads it: the head, the route to a topic, the body (chunked
//! or not, gzip or not) within the size limit; a refusal says why. Plain functions, no I/O but
//! the reader they are given.

use super::{CONTENT_TYPE, DEFAULT_TIMEOUT_MS};
use flate2::read::GzDecoder;
use std::io::{BufRead, Read};
use std::net::SocketAddr;

/// A request refused: its status and why, as the answer's body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

pub(super) fn refuse(status: u16, why: impl Into<String>) -> Refusal {
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
