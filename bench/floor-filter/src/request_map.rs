//! One `proxy_get_header_map_pairs` of the request headers, the serialized map unparsed (the
//! SDK's `get_http_request_headers` would add ~6,000 instructions of `String`s): the floor
//! filter's map read and the `map` probe's, one file for both crates (the probe takes it by
//! `#[path]`).
use proxy_wasm::types::{MapType, Status};

extern "C" {
    // the same import the SDK declares (hostcalls.rs), called without its parser
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

pub fn request_map() -> Option<Vec<u8>> {
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
