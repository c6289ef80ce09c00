//! What the host keeps between calls: per VM (`HostState`, the wasmtime store's data) and
//! across the VMs of one simulated proxy process (`Hub`: clock, shared queues, shared data).

use crate::abi::Headers;
use crate::wasi::{WasiState, WasiView};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use wasmtime::{Memory, TypedFunc};

/// Which proxy the host behaves like. Envoy is the reference; the others lack the imports
/// and callbacks listed on each (the README's "Other proxy-wasm hosts" table says the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Envoy,
    /// Kong's ngx_wasm_module: no `proxy_resolve_shared_queue`, no `on_queue_ready`, no
    /// Envoy properties such as `response.code`.
    Kong,
    /// APISIX's wasm-nginx-module: no timer, no shared queues, no `on_log`, no properties.
    Apisix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 0 trace, 1 debug, 2 info, 3 warn, 4 error, 5 critical.
    pub level: i32,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutState {
    Pending,
    Answered(u32),
    /// Reset after it was sent: delivered as `on_http_call_response(token, 0, 0, 0)`.
    Failed,
    /// Envoy's own 504 after `timeout_ms`.
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct Callout {
    pub token: u32,
    pub context_id: u32,
    pub upstream: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    pub sent_at_ns: u64,
    pub state: CalloutState,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body, inflated when it was sent with `content-encoding: gzip`.
    pub fn plain_body(&self) -> Vec<u8> {
        if self.header("content-encoding").as_deref() == Some("gzip") {
            use std::io::Read;
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .is_ok()
            {
                return out;
            }
        }
        self.body.clone()
    }
}

#[derive(Debug, Clone, Default)]
pub struct StreamData {
    pub request_headers: Headers,
    pub request_body: Vec<u8>,
    /// What `proxy_get_buffer_bytes` of the request body reads: the chunk the current
    /// `on_request_body` announces, or, while the filter buffers, everything buffered.
    pub request_chunk: Vec<u8>,
    /// What went upstream: the request headers as they were when the filter let them go,
    /// and the body as the filter left it. While `released` and nothing wrote to the map
    /// since, `upstream_headers` is None and `request_headers` are what went upstream (a
    /// copy is made only at such a write: the agent runs every entry through here).
    pub upstream_headers: Option<Headers>,
    pub released: bool,
    pub upstream_body: Vec<u8>,
    /// What `on_request_headers` and each `on_request_body` answered.
    pub request_answers: Vec<i32>,
    pub response_headers: Headers,
    /// The chunk the current `on_response_body` announces (Envoy, not buffering).
    pub response_body: Vec<u8>,
    /// Response body bytes so far (the `response.size` property).
    pub response_size: u64,
    pub response_code: Option<u32>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    /// What the filter stored with `proxy_set_property` (Envoy: filter state `wasm.<name>`).
    pub filter_state: HashMap<String, Vec<u8>>,
    /// Envoy lets a filter read the request headers only in their own callback and in
    /// `on_log`, and the response headers likewise: it forgets the map once the callback
    /// returns. Reads outside are answered as for a map that is not there.
    pub request_headers_open: bool,
    pub response_headers_open: bool,
}

pub struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Queue {
    pub vm_id: String,
    pub name: String,
    /// The VM that registered it last: only it is told `on_queue_ready` (as in Envoy).
    pub owner: Option<u64>,
    pub items: VecDeque<Vec<u8>>,
    pub ready: bool,
}

/// State shared by the VMs of one simulated proxy process.
#[derive(Debug, Default)]
pub struct Hub {
    pub now_ns: u64,
    pub queues: Vec<Queue>,
    pub shared_data: HashMap<String, (Vec<u8>, u32)>,
    pub next_vm: u64,
}

pub type SharedHub = Rc<RefCell<Hub>>;

pub struct HostState {
    pub wasi: WasiState,
    pub hub: SharedHub,
    pub vm_key: u64,
    pub vm_id: String,
    pub profile: Profile,
    pub log_level: i32,
    pub logs: Vec<LogLine>,
    pub metrics: Vec<Metric>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub tick_period_ms: u32,
    pub root_id: u32,
    pub active: u32,
    /// By context id; Fx-hashed: every host call of a stream looks its stream up here.
    pub streams: rustc_hash::FxHashMap<u32, StreamData>,
    /// Finished callouts, oldest first (bounded by `history_limit`).
    pub callouts: Vec<Callout>,
    /// Callouts waiting for an answer.
    pub pending: Vec<Callout>,
    pub history_limit: usize,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
    pub clusters: Vec<String>,
    /// When set, `proxy_http_call` answers this status instead of starting the callout (a
    /// host with its own ideas: any status the ABI allows, and some it does not).
    pub callout_refusal: Option<i32>,
    pub done_called: bool,
    pub local_responses: Vec<(u32, u32)>,
    pub memory: Option<Memory>,
    pub alloc: Option<TypedFunc<i32, i32>>,
    /// Count of host calls made by the guest, by import name.
    pub host_calls: HashMap<&'static str, u64>,
    /// The host's calls into the guest, in order.
    pub call_trace: crate::trace::CallTrace,
}

impl WasiView for HostState {
    fn wasi(&mut self) -> &mut WasiState {
        &mut self.wasi
    }
}
