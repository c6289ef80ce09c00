//! The proxy-wasm ABI v0.2.1 exports: the host calls these, and each is routed to its root
//! or stream context with the host passed in.
//!
//! Owned here rather than taken from the SDK: the SDK's dispatcher `expect`s on a callout
//! token it did not register and `unwrap`s host statuses, and its `dispatch_http_call`
//! panics on a status it does not expect. A panic traps the VM, and the proxy then fails
//! every request. Nothing on these paths can panic: a context that is missing, or busy
//! because the host called back into the filter, is an ordinary answer.

use crate::host::{Host, Level};
use crate::root::Root;
use crate::stream::Stream;
use crate::wasm_host::WasmHost;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Context ids are small integers the host hands out: a multiplicative hash is enough, and
/// SipHash cost about a hundred instructions on every callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ById<T> = HashMap<u32, T, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Contexts {
    roots: ById<Root>,
    streams: ById<Stream>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

const CONTINUE: u32 = 0;

fn with<R>(default: R, f: impl FnOnce(&mut Contexts) -> R) -> R {
    CONTEXTS.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => f(&mut c),
        Err(_) => default,
    })
}

fn root<R>(id: u32, default: R, f: impl FnOnce(&mut Root) -> R) -> R {
    with(None, |c| c.roots.get_mut(&id).map(f)).unwrap_or(default)
}

fn stream(id: u32, f: impl FnOnce(&mut Stream)) {
    with((), |c| {
        if let Some(s) = c.streams.get_mut(&id) {
            f(s)
        }
    })
}

/// A stream callback whose answer the host acts on; a missing or busy stream continues.
fn stream_action(id: u32, f: impl FnOnce(&mut Stream) -> u32) -> u32 {
    with(None, |c| c.streams.get_mut(&id).map(f)).unwrap_or(CONTINUE)
}

extern "C" {
    #[cfg(target_os = "wasi")]
    fn __wasm_call_ctors();
}

#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the reactor's constructors, run once before any other export.
    unsafe {
        __wasm_call_ctors();
    }
    // A panic cannot be caught with panic=abort; at least say why the VM stopped.
    std::panic::set_hook(Box::new(|info| {
        WasmHost.log(
            Level::Error,
            format!("usage-filter: panic: {info}").as_bytes(),
        );
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
    with((), |c| {
        if parent == 0 {
            c.roots.insert(id, Root::default());
        } else {
            let s = c
                .roots
                .get(&parent)
                .map_or_else(|| Stream::new(None), Root::new_stream);
            c.streams.insert(id, s);
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> bool {
    root(id, false, |r| r.on_vm_start(&WasmHost, size))
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
    root(id, false, |r| r.on_configure(&WasmHost, size))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    root(id, (), |r| r.on_tick(&WasmHost))
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(id: u32, queue: u32) {
    root(id, (), |r| r.on_queue_ready(&WasmHost, queue))
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    let finished = root(id, false, |r| {
        r.on_http_call_response(&WasmHost, token, num_headers, body_size);
        r.finished()
    });
    if finished {
        forget_root(id);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _num: usize, end: bool) -> u32 {
    stream_action(id, |s| s.on_request_headers(&WasmHost, end))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, size: usize, end: bool) -> u32 {
    stream_action(id, |s| s.on_request_body(&WasmHost, size, end))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, _num: usize, _end: bool) -> u32 {
    stream(id, |s| s.on_response_headers(&WasmHost));
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(id: u32, size: usize, end: bool) -> u32 {
    stream(id, |s| s.on_response_body(&WasmHost, size, end));
    CONTINUE
}

// Not exported, because each export is a VM crossing on every stream that reaches it: the
// trailers callbacks, and `proxy_on_delete` (a stream is forgotten when it ends, a root when
// it has finished). Hosts skip a callback the module does not export.

/// The stream's end: its event goes out and the stream is forgotten. Envoy calls `on_log`
/// then `on_done`; the spec's order is the reverse, and a host without `on_log` calls only
/// `on_done`: whichever comes first finishes the stream, the other finds nothing.
fn finish_stream(id: u32) -> bool {
    with(false, |c| match c.streams.remove(&id) {
        Some(mut s) => {
            s.finish(&WasmHost);
            true
        }
        None => false,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    finish_stream(id);
}

/// Streams are done at once; a root may ask to finish later (then it calls `proxy_done`).
#[no_mangle]
pub extern "C" fn proxy_on_done(id: u32) -> bool {
    if finish_stream(id) {
        return true;
    }
    let done = root(id, true, |r| r.on_done(&WasmHost));
    if done {
        forget_root(id);
    }
    done
}

/// A root that has finished is not called again: without `proxy_on_delete`, it is dropped
/// here (a reconfigured plugin replaces its root, so they would otherwise pile up).
fn forget_root(id: u32) {
    with((), |c| {
        c.roots.remove(&id);
    })
}
