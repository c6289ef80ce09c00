//! Probe filters for the per-host-call cost table of `make bench`: the null filter (same
//! exports, context table and build profile as the floor and the filter, `abi.rs`) plus one host call per request, chosen at build time by a feature, so the
//! difference to the null filter in the same interleaved run is the cost of that one call
//! (`floor` is the exception: the floor's four calls, for part (b3)'s bound):
//!
//! | feature | the one host call | where |
//! |---|---|---|
//! | `header` | one request-header read, `:path` (`proxy_get_header_map_value`) | `on_http_request_headers` |
//! | `clock` | one clock read (`proxy_get_current_time_nanoseconds`) | `on_http_request_headers` |
//! | `map` | the request-header map (`proxy_get_header_map_pairs`), unparsed as in the floor filter | `on_http_request_headers` |
//! | `set_property` | `set_property(["usage_event"], <366 bytes>)`, as the log sink does (filter state) | `on_log` |
//! | `log` | one `proxy_log` at info level (Envoy runs at `--log-level error`: the crossing, no line written) | `on_log` |
//! | `callout` | none per request: every 100 ms the root sends one 26,700-byte POST per 100 requests seen (the http sink's default batch of 100 `veil` events) to the bench's upstream | `on_tick` |
//! | `cel` | one `expr_evaluate` foreign call: a CEL list of everything an event needs (path, method, key, status, start, duration), compiled once by `expr_create` | `on_log` |
//! | `tick` | none per request: a 100 ms tick that does nothing (the filter's tick rate, the crossings alone) | `on_tick` |
//! | `post_*` | none per request: the batch-callout bisection of issue 22 (src/batch.rs) | `on_tick`, `on_http_call_response` |
//! | `floor` | the floor filter's four calls (bench/floor-filter): with a `post_*` feature, the floor plus that step's batches, the least any http sink at `batch_size` 100 can cost (issue 22) | the floor's callbacks |
//!
//! Built without a feature it is the null filter (`dist/null_filter.wasm`, bench/build.sh): a
//! root context and an HTTP context that do nothing, behind the filter's exports (the floor's
//! `abi.rs`, issue 22), so every callback the filter receives still crosses into the VM and
//! back, finds its context and drops it at the end, which is what the null row measures.
#![cfg_attr(feature = "post_bare", allow(dead_code, unexpected_cfgs))]
#[allow(unused_imports)]
use std::hint::black_box;

#[path = "../../floor-filter/src/abi.rs"]
mod abi;
#[path = "../../floor-filter/src/hostcalls.rs"]
mod hostcalls;

/// About one encoded event (the `ndjson` bytes per event in `make bench` part a).
#[cfg(feature = "set_property")]
const EVENT: &[u8] = &[b'x'; 366];

#[cfg(feature = "cel")]
static CEL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

#[cfg(feature = "cel")]
const EXPR: &str = "[request.path, request.method, 'x-subscription-key' in request.headers ? request.headers['x-subscription-key'] : '', response.code, request.time, request.duration]";

#[cfg(feature = "post_bare")]
mod batch;
// the filter's own encoder, record and buffer (their source files) for `batch`
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/buffer.rs"]
mod buffer;
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/encode/mod.rs"]
mod encode;
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/event.rs"]
mod event;
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/record/mod.rs"]
mod record;
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/swar.rs"]
mod swar;
#[cfg(feature = "post_bare")]
#[path = "../../../filter/src/tokens/mod.rs"]
mod tokens;
/// The two configuration types the encoder and the event need (the filter's are in
/// `config/types.rs` beside everything the configuration holds).
#[cfg(feature = "post_bare")]
mod config {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum KeyMode {
        Raw,
        Sha256,
        Redact,
    }
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Format {
        Veil,
        Ndjson,
        Json,
        CloudEvents,
        KafkaRest,
    }
    /// What `encode::Shape::of` reads of a destination.
    pub struct Http {
        pub format: Format,
        pub kafka_key: Option<String>,
        pub cloudevents_type: String,
        pub cloudevents_source: String,
    }
}

#[cfg(feature = "callout")]
static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(feature = "callout")]
const BODY: &[u8] = &[b'x'; 26_700];

#[derive(Default)]
pub struct Root;
impl abi::RootContext for Root {
    #[cfg(any(feature = "tick", feature = "callout", feature = "post_bare"))]
    fn on_configure(&mut self, size: usize) -> bool {
        #[cfg(feature = "post_bare")]
        batch::configure(hostcalls::buffer(hostcalls::PLUGIN_CONFIGURATION, 0, size));
        let _ = size;
        hostcalls::set_tick_period_ms(100);
        true
    }
    #[cfg(feature = "cel")]
    fn on_configure(&mut self, _: usize) -> bool {
        match hostcalls::call_foreign_function("expr_create", EXPR.as_bytes()) {
            Ok(t) if t.len() == 4 => {
                let token = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                CEL.store(token, std::sync::atomic::Ordering::Relaxed);
            }
            // hosts without Envoy's CEL (fuel-bench's) still run it: the call, refused
            other => hostcalls::log(5, format!("probe cel: expr_create {other:?}").as_bytes()),
        }
        true
    }
    #[cfg(feature = "post_bare")]
    fn on_tick(&mut self) {
        batch::tick();
    }
    #[cfg(feature = "callout")]
    fn on_tick(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let batches = SEEN.load(Relaxed) / 100;
        SEEN.fetch_sub(batches * 100, Relaxed);
        let headers = [
            (":method", "POST"),
            (":path", "/probe"),
            (":authority", "upstream"),
            ("content-type", "application/json"),
        ];
        for _ in 0..batches {
            let _ = hostcalls::http_call("upstream", &headers, BODY, 5_000);
        }
    }
    #[cfg(feature = "post_bare")]
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize) {
        batch::answer(token, headers, body);
    }
}

#[cfg(all(
    feature = "floor",
    any(feature = "header", feature = "clock", feature = "map")
))]
compile_error!(
    "`floor` makes the floor's calls itself: build it alone or beside one `post_*` feature"
);

#[derive(Default)]
pub struct Stream {
    /// `floor`: the request's start, as the floor filter keeps it.
    #[cfg(feature = "floor")]
    start: u64,
}
impl abi::StreamContext for Stream {
    #[cfg(any(
        feature = "header",
        feature = "clock",
        feature = "map",
        feature = "floor"
    ))]
    fn on_request_headers(&mut self) {
        // `floor`: the floor filter's two calls here (bench/floor-filter/src/lib.rs)
        #[cfg(feature = "floor")]
        {
            black_box(hostcalls::header_map(hostcalls::REQUEST_HEADERS));
            self.start = hostcalls::now_ns();
        }
        #[cfg(feature = "header")]
        black_box(hostcalls::header(hostcalls::REQUEST_HEADERS, ":path"));
        #[cfg(feature = "clock")]
        black_box(hostcalls::now_ns());
        #[cfg(feature = "map")]
        black_box(hostcalls::header_map(hostcalls::REQUEST_HEADERS));
    }
    #[cfg(feature = "floor")]
    fn on_response_headers(&mut self) {
        black_box(hostcalls::header(hostcalls::RESPONSE_HEADERS, ":status"));
    }
    #[cfg(any(
        feature = "floor",
        feature = "post_bare",
        feature = "callout",
        feature = "set_property",
        feature = "cel",
        feature = "log"
    ))]
    fn on_log(&mut self) {
        #[cfg(feature = "floor")]
        black_box(hostcalls::now_ns().saturating_sub(self.start));
        #[cfg(feature = "post_bare")]
        batch::request();
        #[cfg(feature = "callout")]
        SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "set_property")]
        hostcalls::set_property(b"usage_event", EVENT);
        #[cfg(feature = "cel")]
        {
            let token = CEL.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes();
            let _ = black_box(hostcalls::call_foreign_function("expr_evaluate", &token));
        }
        #[cfg(feature = "log")]
        hostcalls::log(2, b"probe");
    }
}
