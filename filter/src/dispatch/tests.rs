use super::*;
use crate::config::{Compression, Format, Retry};

pub(crate) struct Seq(pub u64);
impl Random for Seq {
    fn bytes16(&mut self) -> [u8; 16] {
        self.0 += 1;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0.to_le_bytes());
        b
    }
}

pub(crate) fn cfg() -> Http {
    Http {
        cluster: "c".into(),
        authority: "c".into(),
        path: "/e".into(),
        format: Format::Veil,
        headers: vec![],
        timeout_ms: 1000,
        batch_size: 3,
        backlog_batch_size: 3,
        max_batch_bytes: 1 << 20,
        flush_interval_ms: 1000,
        buffer_size: 10,
        max_in_flight: 2,
        retry: Retry {
            max_attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        },
        kafka_key: None,
        compression: Compression::None,
        name: "default".into(),
        cloudevents_type: "api.usage".into(),
        cloudevents_source: "usage-filter".into(),
    }
}

pub(crate) fn ev() -> Record {
    Record::from_event(&crate::event::Event {
        api_path: "/x".into(),
        ..Default::default()
    })
}

fn send(d: &mut Dispatcher, now: u64, r: &mut Seq) -> Option<Batch> {
    d.next_send(now, false, r).map(|(b, _)| b)
}

#[test]
fn count_trigger_cuts_full_batches_up_to_max_in_flight() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    for _ in 0..10 {
        d.offer(ev(), 0);
    }
    let b1 = send(&mut d, 0, &mut r).unwrap();
    assert_eq!(b1.events.len(), 3);
    d.sent(1, b1);
    let b2 = send(&mut d, 0, &mut r).unwrap();
    d.sent(2, b2);
    assert!(send(&mut d, 0, &mut r).is_none(), "max_in_flight");
    assert_eq!(
        d.on_response(1, Some(200), None, 5, &mut r),
        Outcome::Delivered { events: 3 }
    );
    let b3 = send(&mut d, 5, &mut r).unwrap();
    d.sent(3, b3);
    // one event left, not due until the flush interval
    d.on_response(2, Some(200), None, 5, &mut r);
    d.on_response(3, Some(200), None, 5, &mut r);
    assert!(send(&mut d, 999, &mut r).is_none());
    assert_eq!(send(&mut d, 1000, &mut r).unwrap().events.len(), 1);
}

#[test]
fn a_body_goes_out_as_the_reused_buffer_and_comes_back() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    for _ in 0..9 {
        d.offer(ev(), 0);
    }
    let (b1, c1) = d.next_send(0, false, &mut r).unwrap();
    let first = c1.body.as_ptr();
    let want = c1.body.clone();
    d.sent(1, b1);
    d.recycle(c1.body);
    let (b2, c2) = d.next_send(0, false, &mut r).unwrap();
    assert_eq!(
        c2.body.as_ptr(),
        first,
        "no body of its own: the same buffer"
    );
    assert_eq!(c2.body.len(), want.len());
    d.sent(2, b2);
    // a body that does not come back costs a new buffer, never a wrong body
    let (_, c3) = d.next_send(0, true, &mut r).unwrap();
    assert_eq!(c3.body.len(), want.len());
    // gzip: the compressed body is its own, the buffer stays
    let mut d = Dispatcher::new(Http {
        compression: Compression::Gzip,
        ..cfg()
    });
    for _ in 0..3 {
        d.offer(ev(), 0);
    }
    let (_, c) = d.next_send(0, false, &mut r).unwrap();
    assert_eq!(c.header("content-encoding"), Some("gzip"));
    assert!(d.scratch.capacity() > 0);
}

#[test]
fn the_callout_is_complete_and_the_same_on_every_attempt() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    for _ in 0..3 {
        d.offer(ev(), 0);
    }
    let (b, first) = d.next_send(0, false, &mut r).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["api_path"] == "/x"));
    assert_eq!(first.upstream, "c");
    assert_eq!(first.timeout_ms, 1000);
    d.sent(1, b);
    d.on_response(1, Some(503), None, 0, &mut r);
    let (_, again) = d.next_send(10_000, false, &mut r).unwrap();
    assert_eq!(again, first);
}

#[test]
fn retry_keeps_the_batch_id_and_waits_for_backoff() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    for _ in 0..3 {
        d.offer(ev(), 0);
    }
    let b = send(&mut d, 0, &mut r).unwrap();
    let id = b.id;
    d.sent(7, b);
    let Outcome::Retrying { attempt: 2, at_ms } = d.on_response(7, Some(503), None, 10, &mut r)
    else {
        panic!()
    };
    assert!((110..=210).contains(&at_ms));
    assert!(send(&mut d, at_ms - 1, &mut r).is_none());
    let b = send(&mut d, at_ms, &mut r).unwrap();
    assert_eq!(b.id, id);
    d.sent(8, b);
    d.on_response(8, None, None, at_ms, &mut r);
    let b = send(&mut d, at_ms + 10_000, &mut r).unwrap();
    d.sent(9, b);
    assert_eq!(
        d.on_response(9, Some(500), None, 0, &mut r),
        Outcome::Exhausted {
            events: 3,
            attempts: 3
        }
    );
    assert_eq!(d.buffered(), 0);
}

#[test]
fn rejected_batches_are_not_retried() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    d.offer(ev(), 0);
    let b = send(&mut d, 1000, &mut r).unwrap();
    d.sent(1, b);
    assert_eq!(
        d.on_response(1, Some(401), None, 0, &mut r),
        Outcome::Rejected {
            events: 1,
            status: 401
        }
    );
    assert!(d.next_send(100_000, true, &mut r).is_none());
    assert!(d.idle());
}

#[test]
fn full_buffer_refuses_the_newest() {
    let mut d = Dispatcher::new(cfg());
    let accepted = (0..15).filter(|_| d.offer(ev(), 0)).count();
    assert_eq!(accepted, 10);
    assert_eq!(d.buffered(), 10);
}

#[test]
fn unknown_tokens_change_nothing() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    d.offer(ev(), 0);
    assert_eq!(
        d.on_response(42, Some(200), None, 0, &mut r),
        Outcome::Unknown
    );
    assert_eq!(d.buffered(), 1);
}

#[test]
fn flushing_ignores_triggers_and_in_flight_limit() {
    let mut d = Dispatcher::new(cfg());
    let mut r = Seq(0);
    for _ in 0..8 {
        d.offer(ev(), 0);
    }
    let mut n = 0;
    while let Some((b, _)) = d.next_send(0, true, &mut r) {
        n += b.events.len();
        d.sent(n as u32, b);
    }
    assert_eq!(n, 8);
    assert_eq!(d.in_flight(), 3);
}

/// `cfg()` with a backlog size: batches of 3, up to 6 while more than 2 × 3 events wait.
fn backlog_cfg(backlog_batch_size: usize) -> Http {
    Http {
        backlog_batch_size,
        buffer_size: 100,
        ..cfg()
    }
}

/// Sends batches until `max_in_flight` is reached; their sizes.
fn cut_all(d: &mut Dispatcher, now: u64, r: &mut Seq, token: &mut u32) -> Vec<usize> {
    let mut sizes = Vec::new();
    while let Some(b) = send(d, now, r) {
        sizes.push(b.events.len());
        *token += 1;
        d.sent(*token, b);
    }
    sizes
}

#[test]
fn batches_grow_to_backlog_batch_size_only_while_a_backlog_waits() {
    let mut d = Dispatcher::new(backlog_cfg(6));
    let (mut r, mut t) = (Seq(0), 0);
    for _ in 0..20 {
        d.offer(ev(), 0);
    }
    // 20 wait, then 14: both more than 2 × 3
    assert_eq!(cut_all(&mut d, 0, &mut r, &mut t), [6, 6]);
    for tok in 1..=2 {
        d.on_response(tok, Some(200), None, 1, &mut r);
    }
    // 8 wait (a backlog), then 2: not one any more, and 2 are not due before the interval
    assert_eq!(cut_all(&mut d, 1, &mut r, &mut t), [6]);
    d.on_response(3, Some(200), None, 2, &mut r);
    for _ in 0..5 {
        d.offer(ev(), 2);
    }
    // 7 wait: a backlog; then 1
    assert_eq!(cut_all(&mut d, 2, &mut r, &mut t), [6]);
    d.on_response(4, Some(200), None, 3, &mut r);
    for _ in 0..5 {
        d.offer(ev(), 3);
    }
    // exactly 2 × 3 wait: no backlog, batch_size batches
    assert_eq!(cut_all(&mut d, 3, &mut r, &mut t), [3, 3]);
    // off (the default, = batch_size): the same load never cuts more than batch_size
    let mut d = Dispatcher::new(backlog_cfg(3));
    for _ in 0..20 {
        d.offer(ev(), 0);
    }
    assert_eq!(cut_all(&mut d, 0, &mut r, &mut t), [3, 3]);
}

#[test]
fn a_backlog_batch_stays_within_max_batch_bytes() {
    let weight = ev().weight();
    let mut d = Dispatcher::new(Http {
        max_batch_bytes: 4 * weight,
        ..backlog_cfg(50)
    });
    let (mut r, mut t) = (Seq(0), 0);
    for _ in 0..60 {
        d.offer(ev(), 0);
    }
    assert_eq!(cut_all(&mut d, 0, &mut r, &mut t), [4, 4]);
}

#[test]
fn a_413_on_a_backlog_batch_splits_it_and_lowers_backlog_batches() {
    let mut d = Dispatcher::new(backlog_cfg(8));
    let (mut r, mut t) = (Seq(0), 0);
    for _ in 0..40 {
        d.offer(ev(), 0);
    }
    assert_eq!(cut_all(&mut d, 0, &mut r, &mut t), [8, 8]);
    assert_eq!(
        d.on_response(1, Some(413), None, 1, &mut r),
        Outcome::Split {
            events: 8,
            status: 413
        }
    );
    // the halves go first, then backlog batches of at most half the refused one
    assert_eq!(cut_all(&mut d, 1, &mut r, &mut t), [4]);
    d.on_response(2, Some(200), None, 1, &mut r);
    d.on_response(3, Some(200), None, 1, &mut r);
    assert_eq!(cut_all(&mut d, 1, &mut r, &mut t), [4, 4]);
    d.on_response(4, Some(200), None, 1, &mut r);
    d.on_response(5, Some(200), None, 1, &mut r);
    assert_eq!(
        cut_all(&mut d, 1, &mut r, &mut t),
        [4, 4],
        "24 wait: a backlog"
    );
    // a 413 at 4 lowers the limit below batch_size: every batch is 2 now
    assert!(matches!(
        d.on_response(6, Some(413), None, 2, &mut r),
        Outcome::Split { events: 4, .. }
    ));
    d.on_response(7, Some(200), None, 2, &mut r);
    assert_eq!(cut_all(&mut d, 2, &mut r, &mut t), [2, 2]);
    d.on_response(8, Some(200), None, 2, &mut r);
    d.on_response(9, Some(200), None, 2, &mut r);
    assert_eq!(cut_all(&mut d, 2, &mut r, &mut t), [2, 2]);
    // after the hold, backlog batches again
    let later = 2 + crate::isolate::SHRINK_HOLD_MS;
    d.on_response(10, Some(200), None, later, &mut r);
    d.on_response(11, Some(200), None, later, &mut r);
    assert_eq!(cut_all(&mut d, later, &mut r, &mut t), [8]);
}

/// The outage story of issue 22 in round trips: a full buffer of 10,000, events arriving at
/// 250 per round trip, more than `max_in_flight × batch_size` (200) carries. Off, the buffer
/// never drains and keeps dropping; with `backlog_batch_size` 1,000 it drains in a few round
/// trips and drops nothing after its first round trip. Every event is accounted for either way.
#[test]
fn after_an_outage_a_backlog_drains_in_fewer_round_trips_and_nothing_more_is_dropped() {
    let run = |backlog: usize| {
        let mut d = Dispatcher::new(Http {
            batch_size: 100,
            backlog_batch_size: backlog,
            buffer_size: 10_000,
            max_in_flight: 2,
            ..cfg()
        });
        let (mut r, mut t) = (Seq(0), 0);
        // events offered and dropped at the full buffer
        let arrive = |d: &mut Dispatcher, n: usize, now: u64| {
            (
                n as u64,
                (0..n).filter(|_| !d.offer(ev(), now)).count() as u64,
            )
        };
        let (mut offered, mut dropped) = arrive(&mut d, 10_000, 0);
        let mut delivered = 0u64;
        let full = dropped;
        let mut drained_at = None;
        for rt in 1..=50u64 {
            let tokens: Vec<u32> = (t + 1..)
                .take(cut_all(&mut d, rt, &mut r, &mut t).len())
                .collect();
            let (o, x) = arrive(&mut d, 250, rt);
            (offered, dropped) = (offered + o, dropped + x);
            for tok in tokens {
                if let Outcome::Delivered { events } =
                    d.on_response(tok, Some(200), None, rt, &mut r)
                {
                    delivered += events as u64;
                }
            }
            if drained_at.is_none() && d.buffered() < 1_000 {
                drained_at = Some(rt);
            }
        }
        assert_eq!(
            offered,
            delivered + dropped + d.buffered() as u64,
            "the books"
        );
        (drained_at, dropped - full)
    };
    let (off_drained, off_dropped) = run(100);
    let (on_drained, on_dropped) = run(1_000);
    assert_eq!(
        off_drained, None,
        "off: 200 per round trip never catches up with 250"
    );
    assert!(
        off_dropped > 2_000,
        "off: {off_dropped} dropped after recovery"
    );
    assert!(on_drained.is_some_and(|rt| rt <= 7), "{on_drained:?}");
    // only the first round trip's arrivals: the buffer still holds the batches in flight
    assert_eq!(on_dropped, 250);
}
