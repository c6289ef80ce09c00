//! One downstream request through the filter, in Envoy's callback order:
//! context create, request headers, request body, (upstream time), response headers,
//! response body, then `on_log` -> `on_done` -> `on_delete` (Envoy's order, not the spec's).
//! As in Envoy, a callback the module does not export is skipped.

use crate::abi::Headers;
use crate::state::{Profile, StreamData};
use crate::vm::{FuelLog, Vm};
use anyhow::Result;
use std::collections::HashMap;

enum Ending {
    Respond { status: Vec<u8>, code: Option<u32> },
    LocalReply(u32),
    Abort,
}

pub struct Request<'a> {
    vm: &'a mut Vm,
    headers: Headers,
    body: Vec<u8>,
    response_headers: Headers,
    response_body: Vec<u8>,
    upstream_ms: u64,
    timed: Option<(u64, u64)>,
    random: Option<Vec<u8>>,
    exact: bool,
    sizes: Option<(u64, u64)>,
    chunk: Option<u64>,
}

/// What the host saw of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub context_id: u32,
    /// Bytes the stream's callbacks drew from WASI `random_get`.
    pub random_drawn: usize,
    /// Of those, bytes answered from `Request::random_bytes`.
    pub random_scripted: usize,
    /// Fuel per callback for this request alone.
    pub fuel: FuelLog,
    /// What the filter stored with `proxy_set_property` (Envoy filter state `wasm.<key>`).
    pub filter_state: HashMap<String, Vec<u8>>,
}

impl Outcome {
    pub fn total_fuel(&self) -> u64 {
        self.fuel.values().map(|(_, f)| f).sum()
    }
}

/// Envoy streams a body in chunks (16 KiB here) and, while the filter does not buffer, calls
/// the body callback once per chunk with that chunk's size.
pub const CHUNK: usize = 16 * 1024;

/// Chunk size for `Request::body_sizes` (a size is an i32 in the ABI).
const SIZES_CHUNK: u64 = 1 << 30;

/// Which header maps the stream's next callback may read (see `StreamData`).
fn open_headers(vm: &mut Vm, ctx: u32, request: bool, response: bool) {
    if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
        s.request_headers_open = request;
        s.response_headers_open = response;
    }
}

fn body_chunks(
    vm: &mut Vm,
    f: &Option<wasmtime::TypedFunc<(i32, i32, i32), i32>>,
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
            f.clone(),
            ctx,
            (ctx as i32, n as i32, (left == 0) as i32),
        )?;
    }
    Ok(())
}

/// The response body chunk by chunk: while the filter does not buffer, Envoy's body buffer
/// holds only the chunk the callback announces, so `proxy_get_buffer_bytes` reads that chunk.
fn response_chunks(
    vm: &mut Vm,
    f: &Option<wasmtime::TypedFunc<(i32, i32, i32), i32>>,
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
            f.clone(),
            ctx,
            (ctx as i32, (end - at) as i32, last),
        )?;
        at = end;
    }
    Ok(())
}

impl<'a> Request<'a> {
    pub(crate) fn new(vm: &'a mut Vm) -> Self {
        Request {
            vm,
            headers: vec![
                (":method".into(), b"GET".to_vec()),
                (":path".into(), b"/".to_vec()),
                (":authority".into(), b"api.example.com".to_vec()),
                (":scheme".into(), b"http".to_vec()),
            ],
            body: Vec::new(),
            response_headers: Vec::new(),
            response_body: Vec::new(),
            upstream_ms: 0,
            timed: None,
            random: None,
            exact: false,
            sizes: None,
            chunk: None,
        }
    }

    fn set(mut self, name: &str, value: Vec<u8>) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value));
        self
    }

    pub fn method(self, m: &str) -> Self {
        self.set(":method", m.as_bytes().to_vec())
    }
    pub fn path(self, p: &str) -> Self {
        self.set(":path", p.as_bytes().to_vec())
    }
    pub fn authority(self, a: &str) -> Self {
        self.set(":authority", a.as_bytes().to_vec())
    }
    /// Header names are lowercased as Envoy does.
    pub fn header(self, k: &str, v: &str) -> Self {
        let k = k.to_ascii_lowercase();
        self.set(&k, v.as_bytes().to_vec())
    }
    pub fn header_bytes(self, k: &str, v: &[u8]) -> Self {
        let k = k.to_ascii_lowercase();
        self.set(&k, v.to_vec())
    }
    pub fn key(self, v: &str) -> Self {
        self.header("x-subscription-key", v)
    }
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self
    }
    pub fn body(mut self, n: usize) -> Self {
        self.body = vec![b'q'; n];
        self
    }
    pub fn response_body(mut self, n: usize) -> Self {
        self.response_body = vec![b'r'; n];
        self
    }
    /// The response body, these exact bytes (served chunk by chunk, see `chunk_size`).
    pub fn response_body_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.response_body = bytes.into();
        self
    }
    pub fn response_header(mut self, k: &str, v: &str) -> Self {
        self.response_headers
            .push((k.to_ascii_lowercase(), v.as_bytes().to_vec()));
        self
    }
    /// Time the upstream takes before its response headers (ticks fire meanwhile).
    pub fn upstream_ms(mut self, ms: u64) -> Self {
        self.upstream_ms = ms;
        self
    }

    // ---- for a host replaying finished requests (the agent) ----

    /// A request that already happened: the clock reads `start_ns` from context create
    /// through the request body and `end_ns` from the response headers through `on_log`.
    /// No timer fires in between (`upstream_ms` is ignored).
    pub fn timed(mut self, start_ns: u64, end_ns: u64) -> Self {
        self.timed = Some((start_ns, end_ns));
        self
    }
    /// While this stream's callbacks run, `random_get` answers from these bytes first
    /// (a call the remaining bytes cannot fill falls back to the VM's generator).
    pub fn random_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.random = Some(bytes);
        self
    }
    /// Exactly these request headers (pseudo-headers included, repeated names kept, names
    /// as given); no `x-request-id` is added and the response gets only `:status` and
    /// `response_header`s.
    pub fn headers_exact(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self.exact = true;
        self
    }
    /// Body sizes only (a host replaying a log that has the sizes, not the bodies): the
    /// body callbacks carry the sizes, in chunks of up to 1 GiB; the body buffers read as
    /// empty and nothing of that size is allocated.
    pub fn body_sizes(mut self, request: u64, response: u64) -> Self {
        self.sizes = Some((request, response));
        self
    }

    /// Bodies arrive in chunks of `n` bytes (default `CHUNK`; at least 1).
    pub fn chunk_size(mut self, n: u64) -> Self {
        self.chunk = Some(n.max(1));
        self
    }

    /// The upstream answers with this status.
    pub fn respond(self, status: u32) -> Result<Outcome> {
        self.run(Ending::Respond {
            status: status.to_string().into_bytes(),
            code: Some(status),
        })
    }
    /// The upstream answers with a `:status` that is not a number (Envoy would have
    /// replaced it; other hosts might not).
    pub fn respond_raw_status(self, status: &[u8]) -> Result<Outcome> {
        self.run(Ending::Respond {
            status: status.to_vec(),
            code: None,
        })
    }
    /// Envoy answers itself (no healthy upstream, direct response, a later filter's reply).
    pub fn local_reply(self, status: u32) -> Result<Outcome> {
        self.run(Ending::LocalReply(status))
    }
    /// The downstream resets the stream before any response.
    pub fn abort(self) -> Result<Outcome> {
        self.run(Ending::Abort)
    }

    fn run(self, ending: Ending) -> Result<Outcome> {
        let Request {
            vm,
            mut headers,
            body,
            response_headers,
            response_body,
            upstream_ms,
            timed,
            random,
            exact,
            sizes,
            chunk: chunk_size,
        } = self;
        // Envoy's connection manager adds x-request-id unless told not to.
        if !exact && !headers.iter().any(|(k, _)| k == "x-request-id") {
            let id = format!("req-{}", vm.next_context);
            headers.push(("x-request-id".into(), id.into_bytes()));
        }
        let before = vm.fuel().clone();
        let ctx = vm.next_context;
        vm.next_context += 1;
        let n_headers = headers.len() as i32;
        if let Some((start, _)) = timed {
            vm.set_clock_ns(start);
        }
        vm.store
            .data_mut()
            .wasi
            .scripted
            .set(random.unwrap_or_default());
        let start_ns = vm.now_ns();
        let (body_len, response_len, chunk) = match sizes {
            Some((req, resp)) => (req, Some(resp), SIZES_CHUNK),
            None => (body.len() as u64, None, CHUNK as u64),
        };
        let chunk = chunk_size.unwrap_or(chunk);
        vm.store.data_mut().streams.insert(
            ctx,
            StreamData {
                request_headers: headers,
                request_body: body,
                start_ns,
                ..Default::default()
            },
        );
        let r = Self::callbacks(
            vm,
            ctx,
            n_headers,
            (body_len, response_len, chunk),
            ending,
            timed,
            upstream_ms,
            exact,
            response_headers,
            response_body,
        );
        let scripted = std::mem::take(&mut vm.store.data_mut().wasi.scripted);
        let stream = vm.store.data_mut().streams.remove(&ctx).unwrap_or_default();
        r?;
        vm.settle()?;
        let mut fuel = vm.fuel().clone();
        for (k, (calls, used)) in fuel.iter_mut() {
            if let Some((c0, u0)) = before.get(k) {
                *calls -= c0;
                *used -= u0;
            }
        }
        fuel.retain(|_, (c, _)| *c > 0);
        Ok(Outcome {
            context_id: ctx,
            random_drawn: scripted.drawn,
            random_scripted: scripted.used,
            fuel,
            filter_state: stream.filter_state,
        })
    }

    /// Envoy's callbacks for one stream, from context create to `on_delete`.
    #[allow(clippy::too_many_arguments)]
    fn callbacks(
        vm: &mut Vm,
        ctx: u32,
        n_headers: i32,
        (body_len, response_len, chunk): (u64, Option<u64>, u64),
        ending: Ending,
        timed: Option<(u64, u64)>,
        upstream_ms: u64,
        exact: bool,
        mut response_headers: Headers,
        mut response_body: Vec<u8>,
    ) -> Result<()> {
        let f = vm.exports();
        let root = vm.root_id;
        let id = ctx as i32;
        vm.call(
            "on_context_create",
            f.context_create,
            ctx,
            (id, root as i32),
        )?;
        open_headers(vm, ctx, true, false);
        vm.call_if(
            "on_request_headers",
            f.request_headers,
            ctx,
            (id, n_headers, (body_len == 0) as i32),
        )?;
        open_headers(vm, ctx, false, false);
        body_chunks(vm, &f.request_body, "on_request_body", ctx, body_len, chunk)?;
        if let Some((_, end)) = timed {
            vm.set_clock_ns(end);
        }
        let respond = match ending {
            Ending::Respond { status, code } => {
                if timed.is_none() {
                    vm.advance_ms(upstream_ms)?;
                }
                Some((status, code))
            }
            Ending::LocalReply(code) => {
                response_body = b"no healthy upstream".to_vec();
                response_headers = vec![("content-type".into(), b"text/plain".to_vec())];
                Some((code.to_string().into_bytes(), Some(code)))
            }
            Ending::Abort => None,
        };
        if let Some((status, code)) = respond {
            let mut h: Headers = vec![(":status".into(), status)];
            h.append(&mut response_headers);
            let len = response_len.unwrap_or(response_body.len() as u64);
            if !exact {
                h.push(("content-length".into(), len.to_string().into_bytes()));
            }
            let n = h.len() as i32;
            if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
                s.response_headers = h;
                s.response_code = code;
            }
            open_headers(vm, ctx, false, true);
            vm.call_if(
                "on_response_headers",
                f.response_headers,
                ctx,
                (id, n, (len == 0) as i32),
            )?;
            open_headers(vm, ctx, false, false);
            if response_len.is_some() {
                body_chunks(vm, &f.response_body, "on_response_body", ctx, len, chunk)?;
            } else {
                response_chunks(vm, &f.response_body, ctx, response_body, chunk)?;
            }
        }
        let now = vm.now_ns();
        if let Some(s) = vm.store.data_mut().streams.get_mut(&ctx) {
            s.end_ns = Some(now);
        }
        // APISIX has no on_log: the stream just ends.
        if vm.store.data().profile != Profile::Apisix {
            open_headers(vm, ctx, true, true);
            vm.call_if("on_log", f.log, ctx, id)?;
            open_headers(vm, ctx, false, false);
        }
        vm.call_if("on_done", f.done, ctx, id)?;
        vm.call_if("on_delete", f.delete, ctx, id).map(drop)
    }
}
