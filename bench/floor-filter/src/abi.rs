//! The proxy-wasm ABI v0.2.1 exports of the reference filters (the null filter, the floor and
//! the probes), owned by the module as the filter's `abi.rs` owns its own (issue 22): the same
//! exports, so Envoy makes the same crossings per request (no `proxy_on_delete`, no trailers
//! callbacks: the SDK's dispatcher exported every callback), and the same context table (ids
//! hashed by one multiply, a stream dropped at its end). What the filter does inside its
//! callbacks is then the only difference between it and these. One file for both crates (the
//! probe takes it by `#[path]`); each crate's `Root` and `Stream` say what it does.
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Root, Stream};

/// What a root context does; every callback does nothing unless a crate says otherwise.
pub trait RootContext: Default {
    fn on_configure(&mut self, _size: usize) -> bool {
        true
    }
    fn on_tick(&mut self) {}
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, _body: usize) {}
}

/// What an HTTP context does at each point of a request; nothing unless a crate says otherwise.
pub trait StreamContext: Default {
    fn on_request_headers(&mut self) {}
    fn on_response_headers(&mut self) {}
    /// The stream's end (Envoy's `on_log`, or `on_done` on a host without it).
    fn on_log(&mut self) {}
}

/// The filter's `IdHasher`: context ids are small integers the host hands out.
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
            c.roots.insert(id, Default::default());
        } else {
            c.streams.insert(id, Default::default());
        }
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_id: u32, _size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
    root(id, false, |r| r.on_configure(size))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    root(id, (), |r| r.on_tick())
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_id: u32, _queue: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    root(id, (), |r| {
        r.on_http_call_response(token, num_headers, body_size)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _num: usize, _end: bool) -> u32 {
    stream(id, |s| s.on_request_headers());
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, _size: usize, _end: bool) -> u32 {
    stream(id, |_| {});
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, _num: usize, _end: bool) -> u32 {
    stream(id, |s| s.on_response_headers());
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(id: u32, _size: usize, _end: bool) -> u32 {
    stream(id, |_| {});
    CONTINUE
}

/// As the filter: whichever of `on_log` and `on_done` comes first ends the stream.
fn finish_stream(id: u32) -> bool {
    with(false, |c| match c.streams.remove(&id) {
        Some(mut s) => {
            s.on_log();
            true
        }
        None => false,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    finish_stream(id);
}

#[no_mangle]
pub extern "C" fn proxy_on_done(id: u32) -> bool {
    if finish_stream(id) {
        return true;
    }
    with((), |c| {
        c.roots.remove(&id);
    });
    true
}
