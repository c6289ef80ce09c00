//! The floor of what any usage filter costs in Envoy (issue 9): the null filter (same SDK and
//! build profile) plus exactly the host calls a complete event cannot do without, and nothing
//! else:
//!
//! - `on_http_request_headers`: one request-header map read (`proxy_get_header_map_pairs`:
//!   `:path`, `:method` and the key in one crossing) and one clock read (the start);
//! - `on_http_response_headers`: one `:status` read (`proxy_get_header_map_value`);
//! - `on_log`: one clock read (the end).
//!
//! Four host calls per request. No usage filter goes below this however its code is written,
//! unless it finds fewer or cheaper calls. The map is read raw and not parsed (the SDK's
//! `get_http_request_headers` would add ~6,000 instructions of `String`s): the floor is the
//! crossings and the host's own work, not a parser. What is read is kept (`black_box`), never used.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::hint::black_box;
use std::time::SystemTime;

mod request_map;
use request_map::request_map;

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { start: None }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    start: Option<SystemTime>,
}
impl Context for Stream {}
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        black_box(request_map());
        self.start = Some(self.get_current_time());
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        black_box(self.get_http_response_header(":status"));
        Action::Continue
    }
    fn on_log(&mut self) {
        let end = self.get_current_time();
        black_box(self.start.map(|s| end.duration_since(s)));
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}
