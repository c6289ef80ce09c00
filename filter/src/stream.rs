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
use crate::tokens::request::{self, Rewrite};
use std::rc::Rc;

pub struct Stream {
    shared: Option<Rc<Shared>>,
    /// Boxed: the stream is moved in and out of the context table, and the request out of the
    /// stream at its end; moving ~180 bytes each time cost ~500 instructions a request, a box
    /// (one small allocation) a pointer.
    captured: Option<Box<Captured>>,
    /// `llm.force_stream_usage` holds this request's headers and buffers its body.
    hold: Option<Hold>,
}

/// A request whose body is buffered for the `include_usage` rewrite.
struct Hold {
    max_bytes: u64,
}

/// proxy-wasm's answers to a request callback.
pub const CONTINUE: u32 = 0;
/// From `on_request_body`: Envoy keeps the chunk and the next call sees the whole buffer.
pub const STOP_AND_BUFFER: u32 = 1;

impl Stream {
    /// `shared` is None when streaming is off: the stream then does nothing.
    pub fn new(shared: Option<Rc<Shared>>) -> Self {
        Stream {
            shared,
            captured: None,
            hold: None,
        }
    }

    /// `end`: the request has no body. The headers always continue: proxy-wasm-cpp-host
    /// (Envoy 1.40) turns a `StopIteration` from here into `StopAllIterationAndWatermark`,
    /// after which no body callback comes until the plugin resumes the stream, and nothing
    /// would. So an `llm.force_stream_usage` candidate with a body loses its `content-length`
    /// here (Envoy forgets the header map once this returns, and the body may grow; upstream
    /// the body is then chunked, or framed by HTTP/2) and its body is buffered.
    pub fn on_request_headers(&mut self, host: &dyn Host, end: bool) -> u32 {
        let Some(sh) = &self.shared else {
            return CONTINUE;
        };
        let Some(map) = host.header_map(Map::RequestHeaders) else {
            return CONTINUE;
        };
        let headers = HeaderMap::new(map);
        self.captured = Captured::begin(&sh.config, headers, 0, sh.extras).map(Box::new);
        let Some(c) = &mut self.captured else {
            return CONTINUE;
        };
        c.start_ns = host.now_ns();
        match &sh.config.llm {
            Some(l) if l.force_stream_usage && !end && c.llm.is_some() => {
                let h = &c.headers;
                let [method, ct, ce, cl] = h.find_each([
                    ":method",
                    "content-type",
                    "content-encoding",
                    "content-length",
                ]);
                let slice = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| h.slice(&r));
                if request::candidate(
                    slice(&method).unwrap_or_default(),
                    h.slice(&c.path),
                    slice(&ct),
                    slice(&ce),
                ) {
                    if cl.is_some() {
                        host.remove_header(Map::RequestHeaders, "content-length");
                    }
                    self.hold = Some(Hold {
                        max_bytes: l.max_request_bytes,
                    });
                }
                CONTINUE
            }
            _ => CONTINUE,
        }
    }

    /// Without buffering, each call carries one chunk: its size is what arrived. A held
    /// request is buffered until its end (Envoy then passes the whole buffer's size), read
    /// once, rewritten when it needs `include_usage`, and let go; one that outgrows
    /// `llm.max_request_bytes` is let go unchanged at once.
    pub fn on_request_body(&mut self, host: &dyn Host, body_size: usize, end: bool) -> u32 {
        let Some(c) = &mut self.captured else {
            return CONTINUE;
        };
        let Some(hold) = &self.hold else {
            c.request_bytes += body_size as u64;
            return CONTINUE;
        };
        c.request_bytes = body_size as u64;
        let too_large = body_size as u64 > hold.max_bytes;
        if !end && !too_large {
            return STOP_AND_BUFFER;
        }
        self.hold = None;
        let rewrite = match too_large {
            true => Rewrite::Unparsable,
            false => host
                .buffer(BufferKind::RequestBody, 0, body_size)
                .map_or(Rewrite::Unparsable, |b| request::add_include_usage(&b)),
        };
        match rewrite {
            Rewrite::Rewritten(new) => {
                host.set_buffer(BufferKind::RequestBody, 0, body_size, &new);
            }
            Rewrite::Unparsable => {
                if let Some(sh) = &self.shared {
                    sh.delivery.borrow_mut().count_unmodified();
                }
            }
            Rewrite::Unchanged => {}
        }
        CONTINUE
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
    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize, end: bool) {
        if let Some(c) = &mut self.captured {
            c.response_bytes += body_size as u64;
            if let Some(s) = &mut c.llm {
                let want = s.want(body_size);
                if want > 0 {
                    let bytes = host.buffer(BufferKind::ResponseBody, 0, want);
                    s.fed(body_size, bytes.as_deref().unwrap_or_default());
                }
            }
            // Published at the body's end rather than in `on_log`: Envoy runs the other
            // filters' stream-complete work (a rate limit's `apply_on_stream_done`) before
            // the wasm `on_log`, and they should see the usage too.
            if end {
                if let Some(sh) = &self.shared {
                    publish(host, c.usage_state(&sh.config));
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
        // a response that ended without a last body chunk (no body, a reset) publishes now
        publish(host, c.usage_state(cfg));
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

/// `llm.filter_state`: one `proxy_set_property` per value (nothing when not configured).
fn publish(host: &dyn Host, values: Vec<(&'static [u8], Vec<u8>)>) {
    for (path, value) in values {
        host.set_property(path, &value);
    }
}
