//! The HTTP stream context: reads what the request and response say about usage and, when
//! the stream ends, hands the finished request to the delivery. It never dispatches a callout
//! (Envoy cancels a stream's callouts when the stream is destroyed) and never pauses.
//!
//! Each host call costs about a microsecond in Envoy, so it makes as few as it can: the
//! request headers in one map read, the status from `:status` (Envoy runs local replies
//! through the same callback), body sizes from the body callbacks' own arguments, and the
//! clock at the start and the end: four per metered request. A configured property (the key
//! from `subscription_key_property`, an attribute's `{"property": …}`) adds one read each at
//! the end; query attributes and `path_templates` are read from `:path`, no host call. A request whose response is
//! read for tokens (`llm`) reads the response map in place of `:status`, and adds one read
//! per body chunk up to `llm.max_scan_bytes`. Envoy offers a header map only in its own
//! callback and in `on_log`, and a host may end a stream with `on_done` alone: so each is
//! read in its own callback.
//!
//! Every callback the filter exports is a VM crossing for every stream, so it exports none it
//! can do without: no trailers callbacks and no `on_delete` (the stream is finished and
//! forgotten at the first of `on_log` and `on_done`).

use crate::captured::Captured;
use crate::config::Source;
use crate::headers::HeaderMap;
use crate::host::{BufferKind, Host, Level, Map};
use crate::shared::Shared;
use std::rc::Rc;

pub struct Stream {
    shared: Option<Rc<Shared>>,
    captured: Option<Captured>,
}

impl Stream {
    /// `shared` is None when streaming is off: the stream then does nothing.
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Stream {
            shared,
            captured: None,
        }
    }

    pub fn on_request_headers(&mut self, host: &dyn Host) {
        let Some(sh) = &self.shared else { return };
        let Some(map) = host.header_map(Map::RequestHeaders) else {
            return;
        };
        let headers = HeaderMap::new(map);
        self.captured = Captured::begin(&sh.config, headers, 0, sh.extras);
        if let Some(c) = &mut self.captured {
            c.start_ns = host.now_ns();
        }
    }

    /// Without buffering, each call carries one chunk: its size is what arrived.
    pub fn on_request_body(&mut self, body_size: usize) {
        if let Some(c) = &mut self.captured {
            c.request_bytes += body_size as u64;
        }
    }

    /// One host call either way: `:status` alone, or, when the response may be read for
    /// tokens, the whole map (status, content type and encoding).
    pub fn on_response_headers(&mut self, host: &dyn Host) {
        if let Some(c) = &mut self.captured {
            if c.llm.is_some() {
                let map = host.header_map(Map::ResponseHeaders).unwrap_or_default();
                c.set_response_headers(&HeaderMap::new(map));
            } else {
                c.set_status(host.header(Map::ResponseHeaders, ":status").as_deref());
            }
        }
    }

    /// A response being read for tokens costs one host call per chunk, up to
    /// `llm.max_scan_bytes` (and no more once a JSON body has closed); the chunk passes on at
    /// once either way.
    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize) {
        if let Some(c) = &mut self.captured {
            c.response_bytes += body_size as u64;
            if let Some(s) = &mut c.llm {
                let want = s.want(body_size);
                if want > 0 {
                    let bytes = host.buffer(BufferKind::ResponseBody, 0, want);
                    s.fed(body_size, bytes.as_deref().unwrap_or_default());
                }
            }
        }
    }

    /// The stream has ended (`on_log`, or `on_done` on a host that calls it first or never
    /// calls `on_log`): its event goes to the delivery, once.
    pub fn finish(&mut self, host: &dyn Host) {
        let (Some(sh), Some(c)) = (&self.shared, self.captured.take()) else {
            return;
        };
        let mut c = c;
        let cfg = &sh.config;
        // Properties are complete only now (Envoy: in on_log); each is one host call, made
        // only when configured, and attributes only when an output carries them.
        if let Some(p) = &cfg.subscription_key_property {
            if !c.set_key_property(cfg, host.property(&p.path).as_deref()) {
                return;
            }
        }
        if sh.extras {
            for a in &cfg.attributes {
                if let Source::Property(p) = &a.source {
                    c.properties.push(host.property(&p.path));
                }
            }
        }
        let now_ns = host.now_ns();
        let random = sh.rng.borrow_mut().event_id_bytes();
        let event = c.event(&sh.config, now_ns, &random);
        let line = sh.delivery.borrow_mut().finish(&event, now_ns / 1_000_000);
        if let Some(l) = line {
            if l.to_host_log {
                host.log(Level::Info, &l.line);
            }
            if l.to_filter_state {
                host.set_property(b"usage_event", &l.line);
            }
        }
    }
}
