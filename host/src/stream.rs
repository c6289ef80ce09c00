//! The host's run-time API: one HTTP stream through the filter, in Envoy's callback order:
//! context create, request headers, request body, (upstream time), response headers,
//! response body, then `on_log` -> `on_done` -> `on_delete` (Envoy's order, not the spec's).
//! As in Envoy, a callback the module does not export is skipped.
//!
//! A `Stream` says exactly what the filter is shown: nothing is added to its headers (the
//! scenario API, `Request`, adds what Envoy's connection manager would). The agent replays
//! each access-log entry as one.

use crate::abi::Headers;
use crate::state::{Profile, StreamData};
use crate::vm::{FuelLog, Vm};
use anyhow::Result;
use std::collections::HashMap;
use wasmtime::TypedFunc;

/// Envoy streams a body in chunks (16 KiB here) and, while the filter does not buffer, calls
/// the body callback once per chunk with that chunk's size.
pub const CHUNK: u64 = 16 * 1024;

/// Chunk size for bodies given as sizes (a size is an i32 in the ABI).
pub const SIZES_CHUNK: u64 = 1 << 30;

/// One HTTP stream, as `Vm::run_stream` delivers it.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The request headers exactly as given (pseudo-headers included, repeated names kept,
    /// names as given).
    pub request_headers: Headers,
    pub request_body: Body,
    /// None: the downstream resets the stream before any response.
    pub response: Option<Response>,
    pub timing: Timing,
    /// While this stream's callbacks run, `random_get` answers from these bytes first (a
    /// call the remaining bytes cannot fill falls back to the VM's generator).
    pub random_bytes: Vec<u8>,
    /// Bodies arrive in chunks of this many bytes (at least 1): `CHUNK` as Envoy does,
    /// `SIZES_CHUNK` for bodies known by their size only.
    pub chunk: u64,
}

/// A body: its bytes, or only its size (a host replaying a log that has the sizes, not the
/// bodies: the body callbacks carry the size, the body buffer reads as empty and nothing of
/// that size is allocated).
#[derive(Debug, Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    Size(u64),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Size(n) => *n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What came back: `:status` then `headers` exactly as given, and the body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The `:status` header's value.
    pub status: Vec<u8>,
    /// The `response.code` property: None when `:status` is not a number.
    pub code: Option<u32>,
    pub headers: Headers,
    pub body: Body,
}

impl Response {
    pub fn new(status: u32, headers: Headers, body: Body) -> Self {
        Response {
            status: status.to_string().into_bytes(),
            code: Some(status),
            headers,
            body,
        }
    }
}

/// When the stream happens on the VM's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// At the clock's time, and no time passes for the upstream (a local reply, an abort).
    Now,
    /// The upstream takes `ms` before its response headers: the clock advances meanwhile,
    /// firing the timer and callout deadlines that fall due (even for 0 ms). Without a
    /// response, no time passes.
    Upstream { ms: u64 },
    /// A stream that already happened: the clock reads `start_ns` from context create
    /// through the request body and `end_ns` from the response headers through `on_log`.
    /// No timer fires in between.
    Replay { start_ns: u64, end_ns: u64 },
}

/// What the host saw of one stream.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub context_id: u32,
    /// Bytes the stream's callbacks drew from WASI `random_get`.
    pub random_drawn: usize,
    /// Of those, bytes answered from `Stream::random_bytes`.
    pub random_scripted: usize,
    /// Fuel per callback for this stream alone.
    pub fuel: FuelLog,
    /// What the filter stored with `proxy_set_property` (Envoy filter state `wasm.<key>`).
    pub filter_state: HashMap<String, Vec<u8>>,
    /// The request headers as the filter let them go upstream (None: never let go).
    pub upstream_headers: Option<Headers>,
    /// The request body as it went upstream.
    pub upstream_body: Vec<u8>,
    /// What `on_request_headers` and each `on_request_body` answered (0 Continue, 1 Stop…).
    pub request_answers: Vec<i32>,
}

impl Outcome {
    pub fn total_fuel(&self) -> u64 {
        self.fuel.values().map(|(_, f)| f).sum()
    }
}

type BodyCallback = Option<TypedFunc<(i32, i32, i32), i32>>;

/// Which header maps the stream's next callback may read (see `StreamData`).
fn open_headers(vm: &mut Vm, ctx: u32, request: bool, response: bool) {
    if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
        s.request_headers_open = request;
        s.response_headers_open = response;
    }
}

fn body_chunks(
    vm: &mut Vm,
    f: &BodyCallback,
    name: &'static str,
    ctx: u32,
    len: u64,
    chunk: u64,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk);
        left -= n;
        vm.call_if(
            name,
            f.as_ref(),
            ctx,
            (ctx as i32, n as i32, (left == 0) as i32),
        )?;
    }
    Ok(())
}

fn answered(vm: &mut Vm, ctx: u32, answer: i32) {
    if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
        s.request_answers.push(answer);
    }
}

/// The request headers go upstream as they are now (once), and the filter can no longer
/// change them: Envoy forgets the map once `on_request_headers` continues.
fn release_headers(vm: &mut Vm, ctx: u32) {
    if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
        s.released = true;
        s.request_headers_open = false;
    }
}

/// The request body chunk by chunk, as Envoy 1.40's wasm filter delivers it: while the
/// filter answers `StopIterationAndBuffer` (1) each chunk is added to the buffer and the next
/// call announces (and reads) the whole buffer; `Continue` (0) sends the buffer upstream as
/// the filter left it. The request headers are no longer writable (`held` is false: Envoy
/// forgets the map once `on_request_headers` continues, and a stop there stops the body too).
/// A body given by size only is announced chunk by chunk, as before.
fn request_chunks(
    vm: &mut Vm,
    f: &BodyCallback,
    ctx: u32,
    len: u64,
    chunk: u64,
    held: bool,
) -> Result<()> {
    let body = match vm.store.data().streams.get(&ctx) {
        Some(s) if s.request_body.len() as u64 == len => s.request_body.clone(),
        _ => return body_chunks(vm, f, "on_request_body", ctx, len, chunk),
    };
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX).max(1);
    let (mut at, mut buffering) = (0, false);
    while at < body.len() {
        let end = body.len().min(at.saturating_add(chunk));
        let size = match vm.store.data_mut().streams.get_mut(&ctx) {
            Some(s) => {
                if !buffering {
                    s.request_chunk.clear();
                }
                s.request_chunk.extend_from_slice(&body[at..end]);
                s.request_headers_open = held && !s.released;
                s.request_chunk.len()
            }
            None => 0,
        };
        let last = (end == body.len()) as i32;
        let answer = vm
            .call_if(
                "on_request_body",
                f.as_ref(),
                ctx,
                (ctx as i32, size as i32, last),
            )?
            .unwrap_or(0);
        answered(vm, ctx, answer);
        buffering = answer == 1;
        if !buffering {
            release_headers(vm, ctx);
            if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
                let sent = std::mem::take(&mut s.request_chunk);
                s.upstream_body.extend_from_slice(&sent);
            }
        }
        at = end;
    }
    if buffering {
        // the stream ended while the filter still buffered: Envoy sends what it holds
        if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
            let sent = std::mem::take(&mut s.request_chunk);
            s.upstream_body.extend_from_slice(&sent);
        }
    }
    Ok(())
}

/// The response body chunk by chunk: while the filter does not buffer, Envoy's body buffer
/// holds only the chunk the callback announces, so `proxy_get_buffer_bytes` reads that chunk.
fn response_chunks(
    vm: &mut Vm,
    f: &BodyCallback,
    ctx: u32,
    body: Vec<u8>,
    chunk: u64,
) -> Result<()> {
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX).max(1);
    let mut at = 0;
    while at < body.len() {
        let end = body.len().min(at.saturating_add(chunk));
        if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
            s.response_body = body[at..end].to_vec();
            s.response_size = end as u64;
        }
        let last = (end == body.len()) as i32;
        vm.call_if(
            "on_response_body",
            f.as_ref(),
            ctx,
            (ctx as i32, (end - at) as i32, last),
        )?;
        at = end;
    }
    Ok(())
}

impl Vm {
    /// The context id the next stream gets.
    pub fn next_context_id(&self) -> u32 {
        self.next_context
    }

    /// Runs one HTTP stream through the filter, from context create to `on_delete`, then
    /// lets a scripted collector answer what it sent.
    pub fn run_stream(&mut self, stream: Stream) -> Result<Outcome> {
        let Stream {
            request_headers,
            request_body,
            response,
            timing,
            random_bytes,
            chunk,
        } = stream;
        let chunk = chunk.max(1);
        self.stream_fuel.clear();
        let ctx = self.next_context;
        self.next_context += 1;
        let n_headers = request_headers.len() as i32;
        if let Timing::Replay { start_ns, .. } = timing {
            self.set_clock_ns(start_ns);
        }
        self.store.data_mut().wasi.scripted.set(random_bytes);
        let start_ns = self.now_ns();
        let body_len = request_body.len();
        let body = match request_body {
            Body::Bytes(b) => b,
            Body::Size(_) => Vec::new(),
        };
        self.store.data_mut().streams.insert(
            ctx,
            StreamData {
                request_headers,
                request_body: body,
                start_ns,
                ..Default::default()
            },
        );
        let r = self.callbacks(ctx, n_headers, body_len, chunk, response, timing);
        let scripted = std::mem::take(&mut self.store.data_mut().wasi.scripted);
        let stream = self
            .store
            .data_mut()
            .streams
            .remove(&ctx)
            .unwrap_or_default();
        r?;
        self.settle()?;
        let fuel = std::mem::take(&mut self.stream_fuel);
        Ok(Outcome {
            context_id: ctx,
            random_drawn: scripted.drawn,
            random_scripted: scripted.used,
            fuel,
            filter_state: stream.filter_state,
            upstream_headers: match stream.upstream_headers {
                Some(h) => Some(h),
                None => stream.released.then_some(stream.request_headers),
            },
            upstream_body: stream.upstream_body,
            request_answers: stream.request_answers,
        })
    }

    /// Envoy's callbacks for one stream, from context create to `on_delete`.
    fn callbacks(
        &mut self,
        ctx: u32,
        n_headers: i32,
        body_len: u64,
        chunk: u64,
        response: Option<Response>,
        timing: Timing,
    ) -> Result<()> {
        let f = self.exports();
        let root = self.root_id;
        let id = ctx as i32;
        self.call(
            "on_context_create",
            &f.context_create,
            ctx,
            (id, root as i32),
        )?;
        open_headers(self, ctx, true, false);
        let held = self
            .call_if(
                "on_request_headers",
                f.request_headers.as_ref(),
                ctx,
                (id, n_headers, (body_len == 0) as i32),
            )?
            .unwrap_or(0);
        answered(self, ctx, held);
        // Envoy 1.40 (proxy-wasm-cpp-host) turns a StopIteration from on_request_headers
        // into StopAllIterationAndWatermark: no body callback until the plugin resumes the
        // stream. A filter that stops here without resuming hangs the request in Envoy.
        anyhow::ensure!(
            held == 0 || body_len == 0,
            "on_request_headers answered {held}: Envoy would deliver no request body until \
             proxy_continue_stream (StopIteration becomes StopAllIterationAndWatermark)"
        );
        release_headers(self, ctx);
        request_chunks(self, &f.request_body, ctx, body_len, chunk, false)?;
        release_headers(self, ctx);
        if let Timing::Replay { end_ns, .. } = timing {
            self.set_clock_ns(end_ns);
        }
        if let Some(response) = response {
            if let Timing::Upstream { ms } = timing {
                self.advance_ms(ms)?;
            }
            let Response {
                status,
                code,
                mut headers,
                body,
            } = response;
            let mut h: Headers = vec![(":status".into(), status)];
            h.append(&mut headers);
            let len = body.len();
            let n = h.len() as i32;
            if let Some(s) = self.store.data_mut().streams.get_mut(&ctx) {
                s.response_headers = h;
                s.response_code = code;
            }
            open_headers(self, ctx, false, true);
            self.call_if(
                "on_response_headers",
                f.response_headers.as_ref(),
                ctx,
                (id, n, (len == 0) as i32),
            )?;
            open_headers(self, ctx, false, false);
            match body {
                Body::Size(len) => {
                    body_chunks(self, &f.response_body, "on_response_body", ctx, len, chunk)?
                }
                Body::Bytes(bytes) => response_chunks(self, &f.response_body, ctx, bytes, chunk)?,
            }
        }
        let now = self.now_ns();
        if let Some(s) = self.store.data_mut().streams.get_mut(&ctx) {
            s.end_ns = Some(now);
        }
        // APISIX has no on_log: the stream just ends.
        if self.store.data().profile != Profile::Apisix {
            open_headers(self, ctx, true, true);
            self.call_if("on_log", f.log.as_ref(), ctx, id)?;
            open_headers(self, ctx, false, false);
        }
        self.call_if("on_done", f.done.as_ref(), ctx, id)?;
        self.call_if("on_delete", f.delete.as_ref(), ctx, id)
            .map(drop)
    }
}
