//! `demo-upstream`: a stand-in for the API behind the proxy. The query string
//! chooses the answer, so a demo or test can produce any status, size and
//! latency without writing a server:
//!
//! ```text
//! GET /anything?status=404&bytes=1000&delay_ms=50
//! ```

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response};

use crate::http::{respond, Body};

/// Largest body `bytes=` may ask for.
pub const MAX_BYTES: usize = 64 << 20;
/// Longest `delay_ms=` (one minute), so a typo cannot hang a test for hours.
pub const MAX_DELAY_MS: u64 = 60_000;

/// What the query string asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub bytes: usize,
    pub delay_ms: u64,
}

/// Parses `status`, `bytes` and `delay_ms`; other parameters are ignored.
pub fn parse_query(query: Option<&str>) -> Result<Answer, String> {
    let mut answer = Answer {
        status: 200,
        bytes: 16,
        delay_ms: 0,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{name} must be a non-negative integer, got {value:?}"))
        };
        match name {
            "status" => {
                answer.status = number()?
                    .try_into()
                    .ok()
                    .filter(|s| (200..=599).contains(s))
                    .ok_or_else(|| format!("status must be 200..=599, got {value}"))?;
            }
            "bytes" => {
                answer.bytes = usize::try_from(number()?)
                    .ok()
                    .filter(|b| *b <= MAX_BYTES)
                    .ok_or_else(|| format!("bytes must be at most {MAX_BYTES}"))?;
            }
            "delay_ms" => {
                answer.delay_ms = Some(number()?)
                    .filter(|d| *d <= MAX_DELAY_MS)
                    .ok_or_else(|| format!("delay_ms must be at most {MAX_DELAY_MS}"))?;
            }
            _ => {}
        }
    }
    Ok(answer)
}

/// `bytes` of `x`. Bodies up to 1 MiB are slices of one shared buffer, so the
/// common case allocates nothing per request.
fn x_bytes(len: usize) -> Bytes {
    const SHARED: usize = 1 << 20;
    static XS: OnceLock<Bytes> = OnceLock::new();
    if len <= SHARED {
        XS.get_or_init(|| Bytes::from(vec![b'x'; SHARED]))
            .slice(..len)
    } else {
        Bytes::from(vec![b'x'; len])
    }
}

/// Answers one request as its query string says.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let answer = parse_query(req.uri().query());

    // Drain the request body frame by frame without keeping it: the proxy
    // (and the filter that measures request_size) must see it fully consumed,
    // and a connection can only be reused once its body has been read.
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }

    let answer = match answer {
        Ok(answer) => answer,
        Err(message) => return Ok(respond(400, "text/plain", message)),
    };
    if answer.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(answer.delay_ms)).await;
    }

    let mut response = Response::builder().status(answer.status);
    // 204 and 304 must not carry a body (RFC 9110); hyper also omits
    // Content-Length for them.
    let body = if matches!(answer.status, 204 | 304) {
        Bytes::new()
    } else {
        response = response
            .header(CONTENT_TYPE, "text/plain")
            .header(CONTENT_LENGTH, answer.bytes);
        x_bytes(answer.bytes)
    };
    Ok(response
        .body(Full::new(body))
        .expect("status checked in parse_query"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            parse_query(None),
            Ok(Answer {
                status: 200,
                bytes: 16,
                delay_ms: 0
            })
        );
        assert_eq!(
            parse_query(Some("status=503&bytes=0&delay_ms=25&other=1&flag")),
            Ok(Answer {
                status: 503,
                bytes: 0,
                delay_ms: 25
            })
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "status=abc",
            "status=99",
            "status=600",
            "bytes=-1",
            "bytes=999999999999",
            "delay_ms=1.5",
            "delay_ms=600000",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn x_bytes_lengths() {
        assert_eq!(x_bytes(0).len(), 0);
        assert_eq!(&x_bytes(3)[..], b"xxx");
        assert_eq!(x_bytes((1 << 20) + 1).len(), (1 << 20) + 1);
    }
}
