//! `Host` on the proxy-wasm ABI: the raw imports, with every status an ordinary answer.
//!
//! The SDK's own wrappers panic on any status they do not expect (its `dispatch_http_call`
//! among them) and unwrap header values as UTF-8; a panic traps the VM and Envoy then fails
//! every request. Here every status is an ordinary answer: absent, empty, refused.
#![allow(clashing_extern_declarations)]

use crate::callout::{serialize_map, Callout};
use crate::host::{BufferKind, Host, Level, Map};

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
    fn proxy_get_header_map_pairs(map: u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
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
    fn proxy_set_buffer_bytes(
        kind: u32,
        start: usize,
        size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
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

/// The host of this VM, on the ABI imports.
pub struct WasmHost;

impl Host for WasmHost {
    fn log(&self, level: Level, msg: &[u8]) {
        // SAFETY: pointer and length describe a live slice.
        unsafe { proxy_log(level as u32, msg.as_ptr(), msg.len()) };
    }

    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: out-pointers are valid for the call.
        let st = unsafe {
            proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut ptr, &mut size)
        };
        owned(st, ptr, size)
    }

    fn header_map(&self, map: Map) -> Option<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: out-pointers are valid for the call.
        let st = unsafe { proxy_get_header_map_pairs(map as u32, &mut ptr, &mut size) };
        owned(st, ptr, size)
    }

    fn now_ns(&self) -> u64 {
        let mut t = 0u64;
        // SAFETY: as above.
        unsafe { proxy_get_current_time_nanoseconds(&mut t) };
        t
    }

    fn property(&self, path: &[u8]) -> Option<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: as above.
        let st = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut ptr, &mut size) };
        owned(st, ptr, size)
    }

    fn set_property(&self, path: &[u8], value: &[u8]) -> bool {
        // SAFETY: as above.
        unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) == OK }
    }

    fn buffer(&self, kind: BufferKind, start: usize, max: usize) -> Option<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: as above.
        let st = unsafe { proxy_get_buffer_bytes(kind as u32, start, max, &mut ptr, &mut size) };
        owned(st, ptr, size)
    }

    fn set_buffer(&self, kind: BufferKind, start: usize, size: usize, value: &[u8]) -> bool {
        // SAFETY: pointer and length describe a live slice.
        unsafe {
            proxy_set_buffer_bytes(kind as u32, start, size, value.as_ptr(), value.len()) == OK
        }
    }

    fn remove_header(&self, map: Map, name: &str) -> bool {
        // SAFETY: as above.
        unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) == OK }
    }

    fn define_metric(&self, gauge: bool, name: &str) -> Option<u32> {
        let mut id = 0;
        // SAFETY: as above.
        let st =
            unsafe { proxy_define_metric(u32::from(gauge), name.as_ptr(), name.len(), &mut id) };
        (st == OK).then_some(id)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        // SAFETY: plain values.
        unsafe { proxy_increment_metric(id, by) };
    }

    fn set_tick_period_ms(&self, ms: u32) -> bool {
        // SAFETY: plain values.
        unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
    }

    fn register_queue(&self, name: &str) -> Option<u32> {
        let mut id = 0;
        // SAFETY: as above.
        let st = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
        (st == OK).then_some(id)
    }

    fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
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

    fn enqueue(&self, queue: u32, value: &[u8]) -> bool {
        // SAFETY: as above.
        unsafe { proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len()) == OK }
    }

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>> {
        let mut ptr = std::ptr::null_mut();
        let mut size = 0;
        // SAFETY: as above.
        let st = unsafe { proxy_dequeue_shared_queue(queue, &mut ptr, &mut size) };
        owned(st, ptr, size)
    }

    fn http_call(&self, c: &Callout) -> Result<u32, u32> {
        let headers = serialize_map(&c.headers);
        let trailers = serialize_map::<&str, &str>(&[]);
        let mut token = 0;
        // SAFETY: every pointer and length describes a live buffer for the call.
        let st = unsafe {
            proxy_http_call(
                c.upstream.as_ptr(),
                c.upstream.len(),
                headers.as_ptr(),
                headers.len(),
                c.body.as_ptr(),
                c.body.len(),
                trailers.as_ptr(),
                trailers.len(),
                u32::try_from(c.timeout_ms).unwrap_or(u32::MAX),
                &mut token,
            )
        };
        if st == OK {
            Ok(token)
        } else {
            Err(st)
        }
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn done(&self) {
        // SAFETY: no arguments.
        unsafe { proxy_done() };
    }
}
