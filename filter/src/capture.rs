//! The HTTP stream context: gathers what the request and response say about usage, and in
//! `on_log` turns it into an event and hands it to the sinks. It never dispatches a callout
//! (Envoy cancels a stream's callouts when the stream is destroyed) and never pauses.
//!
//! Each host call costs about a microsecond in Envoy, so capture makes as few as it can:
//! body sizes come from the body callbacks' own arguments, the status from `:status` (Envoy
//! runs local replies through the same callback), and the extra fields are read only when a
//! configured output carries them.

use crate::event::{self, Event};
use crate::hostcall::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use crate::root::Shared;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

struct Captured {
    start_ns: u64,
    /// Bytes of `:path` up to (not including) the query.
    path: Vec<u8>,
    key: Option<Vec<u8>>,
    method: Option<Vec<u8>>,
    request_id: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    attributes: Vec<Option<Vec<u8>>>,
    request_bytes: u64,
    response_bytes: u64,
    /// 0 until response headers arrive: a stream that ends without a response stays 0.
    status: u32,
}

pub struct Stream {
    shared: Option<Rc<Shared>>,
    captured: Option<Captured>,
}

impl Stream {
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Stream {
            shared,
            captured: None,
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(sh) = &self.shared else {
            return Action::Continue;
        };
        let cfg = &sh.config;
        let mut path = hostcall::header(REQUEST_HEADERS, ":path").unwrap_or_default();
        let len = event::strip_query(&path).len();
        path.truncate(len);
        if event::is_excluded(&path, &cfg.exclude_paths) {
            return Action::Continue;
        }
        let key = hostcall::header(REQUEST_HEADERS, &cfg.subscription_key_header);
        if key.is_none() && cfg.require_key {
            return Action::Continue;
        }
        let extra = |name: &str| {
            if sh.extras {
                hostcall::header(REQUEST_HEADERS, name)
            } else {
                None
            }
        };
        self.captured = Some(Captured {
            start_ns: hostcall::now_ns(),
            path,
            key,
            method: hostcall::header(REQUEST_HEADERS, ":method"),
            request_id: extra("x-request-id"),
            authority: extra(":authority"),
            attributes: cfg.attributes.iter().map(|a| extra(&a.header)).collect(),
            request_bytes: 0,
            response_bytes: 0,
            status: 0,
        });
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _: bool) -> Action {
        // Without buffering, each call carries one chunk: its size is what arrived.
        if let Some(c) = &mut self.captured {
            c.request_bytes += body_size as u64;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(c) = &mut self.captured {
            c.status = hostcall::header(RESPONSE_HEADERS, ":status")
                .map(|s| event::parse_status(&s))
                .unwrap_or(0);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        if let Some(c) = &mut self.captured {
            c.response_bytes += body_size as u64;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(sh), Some(c)) = (&self.shared, self.captured.take()) else {
            return;
        };
        let now_ns = hostcall::now_ns();
        let cfg = &sh.config;
        let key = c.key.as_deref().map(event::text).unwrap_or_default();
        let id = event::uuid_v7(now_ns / 1_000_000, &sh.state.borrow_mut().rng.bytes10());
        let e = Event {
            id,
            api_path: event::text(&c.path),
            subscription_key: event::apply_key_mode(key, cfg.key_mode),
            method: c.method.as_deref().map(event::text).unwrap_or_default(),
            response_time_ms: now_ns.saturating_sub(c.start_ns) / 1_000_000,
            status_code: c.status,
            completed_unix_ns: now_ns,
            request_size: c.request_bytes,
            response_size: c.response_bytes,
            request_id: c.request_id.as_deref().map(event::text),
            authority: c.authority.as_deref().map(event::text),
            attributes: cfg
                .attributes
                .iter()
                .zip(&c.attributes)
                .filter_map(|(a, v)| v.as_deref().map(|v| (a.field.as_str(), event::text(v))))
                .collect(),
        };
        sh.emit(&e, now_ns);
    }
}
