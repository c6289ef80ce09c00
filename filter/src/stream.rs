//! The HTTP stream context: reads what the request and response say about usage and, when
//! the stream ends, hands the finished request to the delivery. It never dispatches a callout
//! (Envoy cancels a stream's callouts when the stream is destroyed) and never pauses.
//!
//! Each host call costs about a microsecond in Envoy, so it makes as few as it can: the
//! request headers in one map read, the status from `:status` when the stream ends (Envoy
//! keeps the response headers for the access log), body sizes from the body callbacks' own
//! arguments, and the clock at the start and the end: four per metered request. A request
//! whose response is read for tokens (`llm`) reads the response map at its first body chunk
//! in place of `:status`, and adds one read per chunk up to `llm.max_scan_bytes`.
//!
//! Every callback the filter exports is a VM crossing for every stream, so it exports none it
//! can do without: no response-headers callback (see above), no trailers, and no `on_delete`
//! (the stream is finished and forgotten at the first of `on_log` and `on_done`).

use crate::captured::Captured;
use crate::headers::HeaderMap;
use crate::host::{Buffer, Host, Level, Map};
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

    /// A response being read for tokens costs one host call per chunk, up to
    /// `llm.max_scan_bytes` (and no more once a JSON body has closed), and one read of the
    /// response headers at its first chunk (status, content type and encoding); the chunk
    /// passes on at once either way.
    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize) {
        if let Some(c) = &mut self.captured {
            c.response_bytes += body_size as u64;
            if c.llm.is_some() && !c.response_read {
                let map = host.header_map(Map::ResponseHeaders).unwrap_or_default();
                c.set_response_headers(&HeaderMap::new(map));
            }
            if let Some(s) = &mut c.llm {
                let want = s.want(body_size);
                if want > 0 {
                    let bytes = host.buffer(Buffer::ResponseBody, 0, want);
                    s.fed(body_size, bytes.as_deref().unwrap_or_default());
                }
            }
        }
    }

    /// The stream has ended (`on_log`, or `on_done` on a host that calls it first or never
    /// calls `on_log`): its event goes to the delivery, once.
    pub fn finish(&mut self, host: &dyn Host) {
        let (Some(sh), Some(mut c)) = (&self.shared, self.captured.take()) else {
            return;
        };
        if !c.response_read {
            c.set_status(host.header(Map::ResponseHeaders, ":status").as_deref());
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
