//! The host calls the reference filters make, on the raw proxy-wasm imports as the filter's
//! `wasm_host.rs` makes them: no SDK, so no SDK dispatcher or exports in the module (`abi.rs`
//! owns them). One file for both crates (the probe takes it by `#[path]`); each build uses
//! only the calls its feature makes, and the linker drops the rest.
#![allow(dead_code)]

const OK: u32 = 0;

/// proxy-wasm map types.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
/// proxy-wasm buffer types.
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, ret_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        ret_token: *mut u32,
    ) -> u32;
}

/// Takes ownership of bytes the host allocated through `abi::proxy_on_memory_allocate` (a
/// leaked `Vec<u8>` of capacity `size`).
fn owned(status: u32, ptr: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != OK {
        return None;
    }
    if ptr.is_null() || size == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the host wrote `size` bytes into memory it obtained from our allocator.
    Some(unsafe { Vec::from_raw_parts(ptr, size, size) })
}

pub fn log(level: u32, msg: &[u8]) {
    // SAFETY: pointer and length describe a live slice.
    unsafe { proxy_log(level, msg.as_ptr(), msg.len()) };
}

pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    let (mut ptr, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers are valid for the call.
    let st =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut ptr, &mut size) };
    owned(st, ptr, size)
}

/// The whole map in proxy-wasm's serialized form, unparsed: the floor is the crossings and
/// the host's own work, not a parser.
pub fn header_map(map: u32) -> Option<Vec<u8>> {
    let (mut ptr, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers are valid for the call.
    let st = unsafe { proxy_get_header_map_pairs(map, &mut ptr, &mut size) };
    owned(st, ptr, size)
}

pub fn now_ns() -> u64 {
    let mut t = 0u64;
    // SAFETY: as above.
    unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

/// `path`: segments joined by NUL.
pub fn set_property(path: &[u8], value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) == OK }
}

pub fn buffer(kind: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    let (mut ptr, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: out-pointers are valid for the call.
    let st = unsafe { proxy_get_buffer_bytes(kind, start, max, &mut ptr, &mut size) };
    owned(st, ptr, size)
}

/// A counter.
pub fn define_metric(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: as above.
    let st = unsafe { proxy_define_metric(0, name.as_ptr(), name.len(), &mut id) };
    (st == OK).then_some(id)
}

pub fn increment_metric(id: u32, by: i64) {
    // SAFETY: plain values.
    unsafe { proxy_increment_metric(id, by) };
}

pub fn set_tick_period_ms(ms: u32) -> bool {
    // SAFETY: plain values.
    unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
}

pub fn call_foreign_function(name: &str, args: &[u8]) -> Result<Vec<u8>, u32> {
    let (mut ptr, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: pointers and lengths describe live slices; out-pointers are valid for the call.
    let st = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut ptr,
            &mut size,
        )
    };
    owned(st, ptr, size).ok_or(st)
}

/// proxy-wasm's serialized header map: count, then each key and value length, then each key
/// and value followed by a NUL (as the filter's `callout::serialize_map`).
fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Starts a callout: its token, or the status the host refused it with.
pub fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u32,
) -> Result<u32, u32> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    let mut token = 0;
    // SAFETY: every pointer and length describes a live buffer for the call.
    let st = unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    if st == OK {
        Ok(token)
    } else {
        Err(st)
    }
}
