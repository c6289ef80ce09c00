//! The batch-callout bisection (issue 22, `post_*` features): what one batch of the http sink
//! costs Envoy, built up from a bare POST one thing at a time. The root keeps at most two
//! callouts in flight (the filter's `max_in_flight`), starts them on its 100 ms tick (the
//! filter's tick at `flush_interval_ms` 1000) and chains the next on each answer, one per 100
//! requests seen (`batch_size` 100), to the `collector` cluster:
//!
//! | feature | adds |
//! |---|---|
//! | `post_bare` | a POST of a real 100-event `veil` body (encoded once at start by the filter's encoder), `:method`, `:path`, `:authority`, `content-type` |
//! | `post_headers` | the filter's headers: `x-usage-batch-id`, a new UUID v4 per batch, as `String` pairs built per batch |
//! | `post_hold` | each request's event held as the filter's `Record` in its `Buffer`, 100 taken per batch (the body still the one encoded at start) |
//! | `post_encode` | the body encoded per batch from those 100 records, into a reused scratch buffer and copied out at its size, as `Dispatcher::next_send` |
//! | `post_tickwork` | the filter's tick work: a clock read and six metric increments per tick |
//! | `post_answer` | the answer read as the filter does: `:status`, and a clock read in the answer and one in the pump that follows |
//! | `post_handback` | the records kept with their callout and handed back (released, dropped) at its answer, as `Dispatcher::on_response` |
//! | `post_bodyread` | (beside `post_handback`, on `post_answer`) the answer's body read (`proxy_get_buffer_bytes`) |
//! | `post_cut` | `post_handback` with issue 22's cuts: the body sent from the reused scratch buffer (no copy at its size), one clock read per answer (the pump reuses it) |
//!
//! The encoder, record and buffer are the filter's own source files (`#[path]`), not copies.
//!
//! Burst mode (bench/callout_bench.py): a plugin configuration of one number N (a
//! `google.protobuf.StringValue`) makes each request worth N batches, so one request starts N callouts (2 in flight) and the
//! Envoy's CPU time over them, divided by N, is one batch's cost without the request path
//! around it. Each batch's 100 records are then pushed when the batch is cut.

use std::cell::RefCell;

use crate::config::Format;
use crate::record::Record;
use crate::{buffer, encode, event, hostcalls};

pub const BATCH: usize = 100;
const MAX_IN_FLIGHT: usize = 2;
const CLUSTER: &str = "collector";
const PATH: &str = "/events";
/// The http sink's default destination: `veil`.
const SHAPE: encode::Shape<'static> = encode::Shape {
    format: Format::Veil,
    kafka_key: None,
    ce_type: "",
    ce_source: "",
};
const TIMEOUT_MS: u32 = 5_000;

/// A typical keyed GET, as `bench_exports::sample` (the filter's `make bench` event).
fn sample(i: u64) -> Record {
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    Record::from_event(&event::Event {
        id: event::uuid_v7(1_763_900_000_000 + i * 7, &random),
        api_path: "/v1/things/42".into(),
        subscription_key: "bench-key-0123456789".into(),
        method: "GET".into(),
        response_time_ms: 3 + i % 40,
        status_code: 200,
        completed_unix_ns: 1_763_900_000_123_456_789 + i * 7_123_457,
        request_size: 0,
        response_size: 2,
        request_id: Some("5f0c1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f".into()),
        authority: Some("127.0.0.1:10000".into()),
        api_route: None,
        attributes: Vec::new(),
        tokens: None,
    })
}

pub struct State {
    seen: u64,
    /// Batches each request is worth (burst mode); 0: one request is one event.
    burst: u64,
    in_flight: Vec<(u32, Vec<Record>)>,
    /// `post_bare`, `post_headers`: the one body every batch sends.
    body: Vec<u8>,
    buffer: buffer::Buffer,
    scratch: Vec<u8>,
    seconds: encode::timestamp::SecondCache,
    /// The one record every request pushes (its clone: one allocation, as the filter's).
    record: Record,
    rng: u64,
    metrics: Vec<u32>,
}

thread_local! {
    pub static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

pub fn configure(config: Option<Vec<u8>>) {
    // the first number in the configuration (a StringValue: Envoy hands a Struct over as
    // binary protobuf)
    let burst = config
        .map(|c| {
            c.iter()
                .skip_while(|b| !b.is_ascii_digit())
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
        })
        .unwrap_or(0);
    let records: Vec<Record> = (0..BATCH as u64).map(sample).collect();
    let mut seconds = encode::timestamp::SecondCache::default();
    let mut body = Vec::new();
    encode::write_batch_body(&mut body, &SHAPE, records.iter(), &mut seconds);
    let mut metrics = Vec::new();
    if cfg!(feature = "post_tickwork") {
        for i in 0..6 {
            let name = format!("probe_metric_{i}");
            if let Some(id) = hostcalls::define_metric(&name) {
                metrics.push(id);
            }
        }
    }
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            seen: 0,
            burst,
            in_flight: Vec::new(),
            body,
            buffer: buffer::Buffer::new(10_000),
            scratch: Vec::new(),
            seconds,
            record: sample(0),
            rng: 0x2545_F491_4F6C_DD1D,
            metrics,
        })
    });
}

/// `on_log` of a stream: one request seen (and, from `post_encode`, its record held).
pub fn request() {
    STATE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            if st.burst > 0 {
                st.seen += st.burst * BATCH as u64;
                return;
            }
            st.seen += 1;
            if cfg!(feature = "post_hold") {
                let mut r = st.record.clone();
                r.id[..8].copy_from_slice(&st.seen.to_le_bytes());
                let _ = st.buffer.push(r, 0);
            }
        }
    });
}

pub fn tick() {
    if cfg!(feature = "post_tickwork") {
        let _ = hostcalls::now_ns();
        STATE.with(|s| {
            if let Some(st) = s.borrow().as_ref() {
                for (i, id) in st.metrics.iter().enumerate() {
                    hostcalls::increment_metric(*id, i as i64 + 1);
                }
            }
        });
    }
    pump();
}

pub fn answer(token: u32, num_headers: usize, body_size: usize) {
    if cfg!(feature = "post_answer") && num_headers > 0 {
        let status = hostcalls::header(hostcalls::CALL_RESPONSE_HEADERS, ":status");
        std::hint::black_box(status);
        let _ = hostcalls::now_ns();
    }
    if cfg!(feature = "post_bodyread") {
        std::hint::black_box(hostcalls::buffer(
            hostcalls::CALL_RESPONSE_BODY,
            0,
            body_size,
        ));
    }
    STATE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            if let Some(i) = st.in_flight.iter().position(|(t, _)| *t == token) {
                let (_, records) = st.in_flight.swap_remove(i);
                if cfg!(feature = "post_handback") {
                    st.buffer.release(records.len());
                }
                drop(records);
            }
        }
    });
    pump();
}

fn pump() {
    if cfg!(feature = "post_answer") && !cfg!(feature = "post_cut") {
        let _ = hostcalls::now_ns();
    }
    STATE.with(|s| {
        let mut guard = s.borrow_mut();
        let Some(st) = guard.as_mut() else { return };
        while st.in_flight.len() < MAX_IN_FLIGHT && st.seen >= BATCH as u64 {
            st.seen -= BATCH as u64;
            let mut records = Vec::new();
            if cfg!(feature = "post_hold") {
                if st.burst > 0 {
                    for _ in 0..BATCH {
                        st.rng = st.rng.wrapping_add(1);
                        let mut r = st.record.clone();
                        r.id[..8].copy_from_slice(&st.rng.to_le_bytes());
                        let _ = st.buffer.push(r, 0);
                    }
                }
                records = st.buffer.take(BATCH, 1 << 20);
            }
            let body: Vec<u8> = if cfg!(feature = "post_encode") {
                encode::write_batch_body(&mut st.scratch, &SHAPE, records.iter(), &mut st.seconds);
                if cfg!(feature = "post_cut") {
                    std::mem::take(&mut st.scratch)
                } else {
                    st.scratch.clone()
                }
            } else {
                st.body.clone()
            };
            if !cfg!(feature = "post_handback") {
                st.buffer.release(records.len());
                records = Vec::new();
            }
            let token = if cfg!(feature = "post_headers") {
                let mut id = [0u8; 16];
                for chunk in id.chunks_mut(8) {
                    st.rng ^= st.rng << 13;
                    st.rng ^= st.rng >> 7;
                    st.rng ^= st.rng << 17;
                    chunk.copy_from_slice(&st.rng.to_le_bytes());
                }
                let headers: Vec<(String, String)> = vec![
                    (":method".into(), "POST".into()),
                    (":path".into(), PATH.into()),
                    (":authority".into(), CLUSTER.into()),
                    (
                        "content-type".into(),
                        encode::content_type(Format::Veil).into(),
                    ),
                    (
                        "x-usage-batch-id".into(),
                        encode::uuid::uuid_string(&event::uuid_v4(id)),
                    ),
                ];
                let refs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                hostcalls::http_call(CLUSTER, &refs, &body, TIMEOUT_MS)
            } else {
                hostcalls::http_call(
                    CLUSTER,
                    &[
                        (":method", "POST"),
                        (":path", PATH),
                        (":authority", CLUSTER),
                        ("content-type", encode::content_type(Format::Veil)),
                    ],
                    &body,
                    TIMEOUT_MS,
                )
            };
            if cfg!(feature = "post_cut") {
                // the host copied the body during the call: the buffer is the next scratch
                st.scratch = body;
            }
            match token {
                Ok(t) => st.in_flight.push((t, records)),
                Err(_) => {
                    st.buffer.release(records.len());
                    return;
                }
            }
        }
    });
}
