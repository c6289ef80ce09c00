//! Exports for `make bench` only (feature `bench`, never in `dist/usage_filter.wasm`): let the
//! host measure the pure encoder's cost in fuel, apart from host calls and the SDK.
use crate::config::Format;
use crate::encode;
use crate::event::Event;
use crate::record::Record;
use std::cell::RefCell;

thread_local! {
    static PREPARED: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
}

/// A typical keyed GET, as the capture would build it.
fn sample() -> Event<'static> {
    Event {
        id: crate::event::uuid_v7(1_763_900_000_000, &[7; 10]),
        api_path: "/v1/things/42".into(),
        subscription_key: "sk_live_0123456789abcdef".into(),
        method: "GET".into(),
        response_time_ms: 12,
        status_code: 200,
        completed_unix_ns: 1_763_900_000_123_456_789,
        request_size: 0,
        response_size: 512,
        request_id: Some("5f0c1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f".into()),
        authority: Some("api.example.com".into()),
        api_route: None,
        attributes: Vec::new(),
        tokens: None,
    }
}

/// Encodes the sample event `n` times (the log line's JSON, on the request path).
#[no_mangle]
pub extern "C" fn bench_encode_event(n: u32) -> u32 {
    let e = sample();
    let mut seconds = crate::encode::timestamp::SecondCache::default();
    (0..n)
        .map(|_| encode::encode_event_with(&e, &mut seconds).len() as u32)
        .sum()
}

/// Prepares `n` records for `bench_batch_body`.
#[no_mangle]
pub extern "C" fn bench_prepare(n: u32) {
    // Each its own id, time and duration, as real events are: identical copies made the
    // gzip row look far better than real traffic compresses.
    let records = (0..n as u64).map(|i| {
        let mut e = sample();
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        e.id = crate::event::uuid_v7(1_763_900_000_000 + i * 7, &random);
        e.completed_unix_ns += i * 7_123_457;
        e.response_time_ms = 3 + i % 40;
        Record::from_event(&e)
    });
    PREPARED.with(|p| *p.borrow_mut() = records.collect());
}

/// One batch body of the prepared events: format 0 veil, 1 ndjson, 2 json, 3 cloudevents,
/// 4 kafka-rest, 5 veil + gzip. Returns the body's length.
#[no_mangle]
pub extern "C" fn bench_batch_body(format: u32) -> u32 {
    let f = match format {
        1 => Format::Ndjson,
        2 => Format::Json,
        3 => Format::CloudEvents,
        4 => Format::KafkaRest,
        _ => Format::Veil,
    };
    PREPARED.with(|p| {
        let p = p.borrow();
        let body = encode::batch_body(
            f,
            p.iter(),
            &mut crate::encode::timestamp::SecondCache::default(),
        );
        if format == 5 {
            encode::gzip(&body).len() as u32
        } else {
            body.len() as u32
        }
    })
}
