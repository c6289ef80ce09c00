//! The scenario API: one downstream request written the way a test reads, with Envoy's
//! defaults (a GET of `/` to `api.example.com`, an `x-request-id` from the connection manager,
//! `content-length` on the response, the upstream's time on the VM's clock). It builds a
//! `Stream` and runs it with `Vm::run_stream`.

use crate::abi::Headers;
use crate::stream::{Body, Outcome, Response, Stream, Timing, CHUNK, SIZES_CHUNK};
use crate::vm::Vm;
use anyhow::Result;

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

impl Vm {
    /// A request with Envoy's defaults, to be shaped and then ended (`respond`, ...).
    pub fn request(&mut self) -> Request<'_> {
        Request::new(self)
    }
}

impl<'a> Request<'a> {
    fn new(vm: &'a mut Vm) -> Self {
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
    /// The request body, these exact bytes (served chunk by chunk, see `chunk_size`).
    pub fn body_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = bytes.into();
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
    /// A request that already happened (`Timing::Replay`); `upstream_ms` is ignored.
    pub fn timed(mut self, start_ns: u64, end_ns: u64) -> Self {
        self.timed = Some((start_ns, end_ns));
        self
    }
    /// `Stream::random_bytes`.
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
    /// Body sizes only (`Body::Size`), in chunks of up to 1 GiB.
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
            mut response_headers,
            mut response_body,
            upstream_ms,
            timed,
            random,
            exact,
            sizes,
            chunk,
        } = self;
        // Envoy's connection manager adds x-request-id unless told not to.
        if !exact && !headers.iter().any(|(k, _)| k == "x-request-id") {
            let id = format!("req-{}", vm.next_context_id());
            headers.push(("x-request-id".into(), id.into_bytes()));
        }
        let mut timing = match timed {
            Some((start_ns, end_ns)) => Timing::Replay { start_ns, end_ns },
            None => Timing::Upstream { ms: upstream_ms },
        };
        let (status, code) = match ending {
            Ending::Respond { status, code } => (Some(status), code),
            Ending::LocalReply(code) => {
                response_body = b"no healthy upstream".to_vec();
                response_headers = vec![("content-type".into(), b"text/plain".to_vec())];
                if timed.is_none() {
                    timing = Timing::Now;
                }
                (Some(code.to_string().into_bytes()), Some(code))
            }
            Ending::Abort => (None, None),
        };
        let (request_body, response_len) = match sizes {
            Some((req, resp)) => (Body::Size(req), Some(resp)),
            None => (Body::Bytes(body), None),
        };
        let response = status.map(|status| {
            let body = match response_len {
                Some(n) => Body::Size(n),
                None => Body::Bytes(response_body),
            };
            if !exact {
                let len = body.len().to_string().into_bytes();
                response_headers.push(("content-length".into(), len));
            }
            Response {
                status,
                code,
                headers: response_headers,
                body,
            }
        });
        let default_chunk = if sizes.is_some() { SIZES_CHUNK } else { CHUNK };
        vm.run_stream(Stream {
            request_headers: headers,
            request_body,
            response,
            timing,
            random_bytes: random.unwrap_or_default(),
            chunk: chunk.unwrap_or(default_chunk),
        })
    }
}
