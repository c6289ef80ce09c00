//! Real HTTP/1.1 callouts, each on its own thread (the filter keeps them few:
//! `max_in_flight`), over one pool of keep-alive connections. The answer comes back on a
//! channel and goes to the VM as Envoy gives it: the collector's status, headers and body;
//! a connection failure as Envoy's own 503; a reset after the request was sent as a
//! response with no headers. Timeouts are the main loop's: it answers 504 at the deadline.

use crate::answer::{Answer, Outcome};
use crate::kafka::{self, Sink};
use proxy_wasm_host::Callout;
use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Most of a collector's answer body read (the filter logs 256 bytes of it).
const MAX_ANSWER_BODY: u64 = 64 * 1024;

/// Where a cluster's callouts go: an HTTP collector, or a Kafka topic (`kafka.rs`).
enum Dest {
    Http(String),
    Kafka(Arc<Sink>),
}

pub struct Client {
    agent: ureq::Agent,
    clusters: HashMap<String, Dest>,
    tx: Sender<Answer>,
}

impl Client {
    pub fn new(clusters: &[(String, String)], tx: Sender<Answer>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .max_idle_connections_per_host(16)
            .redirects(0)
            .build();
        Client {
            agent,
            clusters: clusters
                .iter()
                .map(|(name, addr)| {
                    let d = match kafka::parse_url(addr) {
                        // cli.rs refused a bad URL already.
                        Some(t) => Dest::Kafka(Arc::new(Sink::new(name, t.expect("checked")))),
                        None => Dest::Http(addr.clone()),
                    };
                    (name.clone(), d)
                })
                .collect(),
            tx,
        }
    }

    /// Starts the callout; its answer arrives on the channel.
    pub fn send(&self, c: Callout) {
        let addr = match self.clusters.get(&c.upstream) {
            Some(Dest::Http(addr)) => Some(addr.clone()),
            Some(Dest::Kafka(sink)) => return sink.send(&c, &self.tx),
            None => None,
        };
        let Some(addr) = addr else {
            // The host refuses a callout to an unknown cluster, so this does not happen.
            let _ = self.tx.send(Answer {
                token: c.token,
                outcome: Outcome::ConnectFailed,
            });
            return;
        };
        let agent = self.agent.clone();
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            let outcome = call(&agent, &addr, &c);
            let _ = tx.send(Answer {
                token: c.token,
                outcome,
            });
        });
    }
}

fn call(agent: &ureq::Agent, addr: &str, c: &Callout) -> Outcome {
    let h = |n: &str| c.header(n).unwrap_or_default();
    let url = format!("http://{addr}{}", h(":path"));
    // The main loop answers 504 at the deadline; this only frees the thread.
    let limit = Duration::from_millis(c.timeout_ms as u64 + 1000);
    let mut req = agent.request(&h(":method"), &url).timeout(limit);
    for (k, v) in &c.headers {
        if k.starts_with(':') || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        req = req.set(k, &String::from_utf8_lossy(v));
    }
    req = req.set("Host", &h(":authority"));
    let resp = match req.send_bytes(&c.body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            return match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => Outcome::ConnectFailed,
                _ => Outcome::Reset,
            }
        }
    };
    let status = resp.status() as u32;
    let headers: Vec<(String, String)> = resp
        .headers_names()
        .into_iter()
        .filter(|n| !n.eq_ignore_ascii_case("content-length"))
        .flat_map(|n| {
            resp.all(&n)
                .into_iter()
                .map(|v| (n.to_ascii_lowercase(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut body = Vec::new();
    if resp
        .into_reader()
        .take(MAX_ANSWER_BODY)
        .read_to_end(&mut body)
        .is_err()
    {
        return Outcome::Reset;
    }
    Outcome::Answered {
        status,
        headers,
        body,
    }
}

/// The event ids in a callout body (gunzipped when sent with `content-encoding: gzip`):
/// every quoted 36-character UUID.
pub fn ids_in(c: &Callout) -> Vec<u128> {
    let body = c.plain_body();
    let mut out = Vec::new();
    let b = &body[..];
    let mut from = 0;
    for i in memchr::memchr_iter(b'"', b) {
        if i < from || i + 38 > b.len() {
            continue;
        }
        if b[i + 37] == b'"' {
            if let Some(id) = parse_uuid(&b[i + 1..i + 37]) {
                out.push(id);
                from = i + 38;
            }
        }
    }
    out
}

pub fn parse_uuid(s: &[u8]) -> Option<u128> {
    if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in s.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d as u128;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ids_in_a_body() {
        let u = uuid::Uuid::from_u128(0x0190_ab12_cd34_7ef0_8123_4567_89ab_cdef);
        let body = format!(r#"{{"events":[{{"id":"{u}","x":"y"}},{{"id":"not-a-uuid"}}]}}"#);
        let c = Callout {
            token: 1,
            context_id: 1,
            upstream: "c".into(),
            headers: vec![],
            body: body.into_bytes(),
            timeout_ms: 1,
            sent_at_ns: 0,
            state: proxy_wasm_host::CalloutState::Pending,
        };
        assert_eq!(ids_in(&c), vec![u.as_u128()]);
    }
}
