//! The host calls the filter makes, on the raw ABI imports.
//!
//! The SDK's own wrappers panic on any status they do not expect and unwrap header values
//! as UTF-8; a panic traps the VM and Envoy then fails every request. Here every status is
//! an ordinary answer: absent, empty, refused.
#![allow(clashing_extern_declarations)]

pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

const OK: u32 = 0;

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
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, ret_id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_size: usize,
        name: *const u8,
        name_size: usize,
        ret_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, value: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_done() -> u32;
}

/// Takes ownership of bytes the host allocated through `proxy_on_memory_allocate`
/// (a boxed slice of exactly `size` bytes).
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
    let mut ptr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid for the call.
    let st =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut ptr, &mut size) };
    owned(st, ptr, size)
}

pub fn set_property(path: &[u8], value: &[u8]) -> bool {
    // SAFETY: as above.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) == OK }
}

pub fn now_ns() -> u64 {
    let mut t = 0u64;
    // SAFETY: as above.
    unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    t
}

pub fn buffer(kind: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut ptr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as above.
    let st = unsafe { proxy_get_buffer_bytes(kind, start, max, &mut ptr, &mut size) };
    owned(st, ptr, size)
}

/// kind: 0 counter, 1 gauge.
pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: as above.
    let st = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (st == OK).then_some(id)
}

/// Counters take positive increments; gauges (Envoy) take either sign.
pub fn increment_metric_signed(id: u32, by: i64) {
    // SAFETY: plain values.
    unsafe { proxy_increment_metric(id, by) };
}

pub fn set_tick_period_ms(ms: u32) -> bool {
    // SAFETY: plain values.
    unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
}

pub fn register_shared_queue(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: as above.
    let st = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (st == OK).then_some(id)
}

pub fn resolve_shared_queue(vm_id: &str, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: as above.
    let st = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    (st == OK).then_some(id)
}

pub fn enqueue_shared_queue(id: u32, value: &[u8]) -> bool {
    // SAFETY: as above.
    unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) == OK }
}

pub fn dequeue_shared_queue(id: u32) -> Option<Vec<u8>> {
    let mut ptr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: as above.
    let st = unsafe { proxy_dequeue_shared_queue(id, &mut ptr, &mut size) };
    owned(st, ptr, size)
}

pub fn done() {
    // SAFETY: no arguments.
    unsafe { proxy_done() };
}
