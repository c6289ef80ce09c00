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
//!
//! Built without a feature it is the null filter (so a workspace-wide build works).
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
#[allow(unused_imports)]
use std::hint::black_box;

#[cfg(feature = "map")]
extern "C" {
    // the same import the SDK declares (hostcalls.rs), called without its parser
    fn proxy_get_header_map_pairs(
        map_type: proxy_wasm::types::MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> proxy_wasm::types::Status;
}

/// One `proxy_get_header_map_pairs` of the request headers: the serialized map, unparsed
/// (as bench/floor-filter reads it).
#[cfg(feature = "map")]
fn request_map() -> Option<Vec<u8>> {
    use proxy_wasm::types::{MapType, Status};
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it allocated through the SDK's
    // `proxy_on_memory_allocate` (a leaked `Vec<u8>` of capacity `size`), as the SDK's own
    // `get_map` relies on.
    unsafe {
        match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
            Status::Ok if !data.is_null() => Some(Vec::from_raw_parts(data, size, size)),
            _ => None,
        }
    }
}

/// About one encoded event (the `ndjson` bytes per event in `make bench` part a).
#[cfg(feature = "set_property")]
const EVENT: &[u8] = &[b'x'; 366];

struct Root;
impl Context for Root {}
impl RootContext for Root {
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
        #[cfg(feature = "set_property")]
        self.set_property(vec!["usage_event"], Some(EVENT));
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
