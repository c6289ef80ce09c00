//! The floor of what any usage filter costs in Envoy (issue 9): the null filter (same exports,
//! context table and build profile) plus exactly the host calls a complete event cannot do
//! without, and nothing else:
//!
//! - `on_request_headers`: one request-header map read (`proxy_get_header_map_pairs`:
//!   `:path`, `:method` and the key in one crossing) and one clock read (the start);
//! - `on_response_headers`: one `:status` read (`proxy_get_header_map_value`);
//! - `on_log`: one clock read (the end).
//!
//! Four host calls per request. No usage filter goes below this however its code is written,
//! unless it finds fewer or cheaper calls. The map is read raw and not parsed: the floor is the
//! crossings and the host's own work, not a parser. What is read is kept (`black_box`), never
//! used. The exports are the module's own (`abi.rs`), as the filter's are (issue 22).
use std::hint::black_box;

mod abi;
mod hostcalls;

#[derive(Default)]
pub struct Root;
impl abi::RootContext for Root {}

#[derive(Default)]
pub struct Stream {
    start: u64,
}
impl abi::StreamContext for Stream {
    fn on_request_headers(&mut self) {
        black_box(hostcalls::header_map(hostcalls::REQUEST_HEADERS));
        self.start = hostcalls::now_ns();
    }
    fn on_response_headers(&mut self) {
        black_box(hostcalls::header(hostcalls::RESPONSE_HEADERS, ":status"));
    }
    fn on_log(&mut self) {
        black_box(hostcalls::now_ns().saturating_sub(self.start));
    }
}
