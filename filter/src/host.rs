//! The host calls the filter makes, behind one small trait: `WasmHost` carries them out on
//! the proxy-wasm ABI, and native tests use a fake. Contexts receive the host as an argument
//! on every callback, so the logic around them runs the same way in both.
//!
//! Every answer is an ordinary value (absent, refused), never a panic: a panic traps the VM
//! and the proxy then fails every request.

use crate::callout::Callout;

/// proxy-wasm header map types.
// proxy-wasm's own names, kept so they can be looked up in its spec.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    RequestHeaders = 0,
    ResponseHeaders = 2,
    CallResponseHeaders = 6,
}

/// proxy-wasm buffer types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    RequestBody = 0,
    ResponseBody = 1,
    VmConfiguration = 6,
    PluginConfiguration = 7,
    CallResponseBody = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

pub trait Host {
    fn log(&self, level: Level, msg: &[u8]);
    fn header(&self, map: Map, name: &str) -> Option<Vec<u8>>;
    /// The whole map in proxy-wasm's serialized form (see `headers::HeaderMap`).
    fn header_map(&self, map: Map) -> Option<Vec<u8>>;
    fn now_ns(&self) -> u64;
    /// A host property (`path`: segments joined by NUL), as the untyped bytes the host
    /// returns; `None` when it has none.
    fn property(&self, path: &[u8]) -> Option<Vec<u8>>;
    /// Envoy keeps it as filter state `wasm.<path>` for the access logger.
    fn set_property(&self, path: &[u8], value: &[u8]) -> bool;
    fn buffer(&self, kind: BufferKind, start: usize, max: usize) -> Option<Vec<u8>>;
    /// Replaces `size` bytes of a body from `start` with `value` (`llm.force_stream_usage`).
    fn set_buffer(&self, kind: BufferKind, start: usize, size: usize, value: &[u8]) -> bool;
    /// Removes every header of that name (`llm.force_stream_usage`: a request's
    /// `content-length`, while its headers are still writable).
    fn remove_header(&self, map: Map, name: &str) -> bool;
    /// `gauge` false defines a counter.
    fn define_metric(&self, gauge: bool, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, by: i64);
    fn set_tick_period_ms(&self, ms: u32) -> bool;
    fn register_queue(&self, name: &str) -> Option<u32>;
    fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32>;
    fn enqueue(&self, queue: u32, value: &[u8]) -> bool;
    fn dequeue(&self, queue: u32) -> Option<Vec<u8>>;
    /// Starts a callout: its token, or the status the host refused it with.
    fn http_call(&self, c: &Callout) -> Result<u32, u32>;
    fn env_var(&self, name: &str) -> Option<String>;
    /// The root context finished the work `on_done` asked to finish later.
    fn done(&self);
}

/// The name of a proxy-wasm status, for log lines.
pub fn status_name(status: u32) -> &'static str {
    match status {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        11 => "BrokenConnection",
        12 => "Unimplemented",
        _ => "unknown status",
    }
}
