//! Probe filters for the per-host-call cost table of `make bench`: the null filter (same SDK
//! and build profile) plus one host call per request, chosen at build time by a feature, so the
//! difference to the null filter in the same interleaved run is the cost of that one call:
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
//!
//! Built without a feature it is the null filter (`dist/null_filter.wasm`, bench/build.sh): a
//! root context and an HTTP context that override nothing, so every callback still crosses
//! into the VM and back, which is what the null row measures.
#![cfg_attr(feature = "post_bare", allow(dead_code, unexpected_cfgs))]
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
#[allow(unused_imports)]
use std::hint::black_box;

#[cfg(feature = "map")]
#[path = "../../floor-filter/src/request_map.rs"]
mod request_map;
#[cfg(feature = "map")]
use request_map::request_map;

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

struct Root;
#[cfg(not(any(feature = "callout", feature = "post_bare")))]
impl Context for Root {}
#[cfg(feature = "callout")]
impl Context for Root {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {}
}
#[cfg(feature = "post_bare")]
impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        batch::answer(self, token, headers, body);
    }
}
impl RootContext for Root {
    #[cfg(any(feature = "tick", feature = "post_bare"))]
    fn on_configure(&mut self, _: usize) -> bool {
        #[cfg(feature = "post_bare")]
        batch::configure(self, self.get_plugin_configuration());
        self.set_tick_period(std::time::Duration::from_millis(100));
        true
    }
    #[cfg(feature = "tick")]
    fn on_tick(&mut self) {}
    #[cfg(feature = "post_bare")]
    fn on_tick(&mut self) {
        batch::tick(self);
    }
    #[cfg(feature = "callout")]
    fn on_configure(&mut self, _: usize) -> bool {
        self.set_tick_period(std::time::Duration::from_millis(100));
        true
    }
    #[cfg(feature = "callout")]
    fn on_tick(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let batches = SEEN.load(Relaxed) / 100;
        SEEN.fetch_sub(batches * 100, Relaxed);
        for _ in 0..batches {
            self.dispatch_http_call(
                "upstream",
                vec![
                    (":method", "POST"),
                    (":path", "/probe"),
                    (":authority", "upstream"),
                    ("content-type", "application/json"),
                ],
                Some(BODY),
                vec![],
                std::time::Duration::from_secs(5),
            )
            .ok();
        }
    }
    #[cfg(feature = "cel")]
    fn on_configure(&mut self, _: usize) -> bool {
        match proxy_wasm::hostcalls::call_foreign_function("expr_create", Some(EXPR.as_bytes())) {
            Ok(Some(t)) if t.len() == 4 => {
                let token = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                CEL.store(token, std::sync::atomic::Ordering::Relaxed);
                true
            }
            other => {
                proxy_wasm::hostcalls::log(
                    proxy_wasm::types::LogLevel::Critical,
                    &format!("probe cel: expr_create {other:?}"),
                )
                .ok();
                // hosts without Envoy's CEL (fuel-bench's) still run it: the call, refused
                true
            }
        }
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;
impl Context for Stream {}
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        #[cfg(feature = "header")]
        black_box(self.get_http_request_header(":path"));
        #[cfg(feature = "clock")]
        black_box(self.get_current_time());
        #[cfg(feature = "map")]
        black_box(request_map());
        Action::Continue
    }
    fn on_log(&mut self) {
        #[cfg(feature = "post_bare")]
        batch::request();
        #[cfg(feature = "callout")]
        SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "set_property")]
        self.set_property(vec!["usage_event"], Some(EVENT));
        #[cfg(feature = "cel")]
        {
            let token = CEL.load(std::sync::atomic::Ordering::Relaxed).to_le_bytes();
            black_box(proxy_wasm::hostcalls::call_foreign_function(
                "expr_evaluate",
                Some(&token),
            ))
            .ok();
        }
        #[cfg(feature = "log")]
        black_box(proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Info,
            "probe",
        ))
        .ok();
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}
