//! The dispatcher against a receiver that refuses any batch holding a poisoned event: every
//! sound event is acknowledged exactly once, exactly the poisoned ones are dropped, and the
//! callouts stay within the bound.

use super::{extra_callouts, SHRINK_HOLD_MS};
use crate::config::Http;
use crate::dispatch::tests::{cfg, Seq};
use crate::dispatch::{Dispatcher, Outcome};
use crate::record::Record;
use std::collections::HashMap;

fn event(i: usize, poisoned: bool) -> Record {
    let mut r = Record::from_event(&crate::event::Event {
        api_path: if poisoned {
            "/poison".into()
        } else {
            "/ok".into()
        },
        ..Default::default()
    });
    r.id = [0; 16];
    r.id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    r
}

struct Run {
    /// Acknowledged: event id -> times.
    acked: HashMap<[u8; 16], usize>,
    rejected: Vec<[u8; 16]>,
    callouts: usize,
    batch_ids: Vec<[u8; 16]>,
}

/// Sends everything until the dispatcher is idle; `answer` decides each callout's status
/// from its events and the callout's number.
fn run(h: Http, events: Vec<Record>, answer: &dyn Fn(&[Record], usize) -> u32) -> Run {
    let mut d = Dispatcher::new(h);
    let mut r = Seq(1000);
    for e in events {
        assert!(d.offer(e, 0));
    }
    let mut out = Run {
        acked: HashMap::new(),
        rejected: vec![],
        callouts: 0,
        batch_ids: vec![],
    };
    let mut now = 0;
    while !d.idle() {
        now += 100_000;
        while let Some((b, _)) = d.next_send(now, false, &mut r) {
            out.callouts += 1;
            out.batch_ids.push(b.id);
            let status = answer(&b.events, out.callouts);
            let ids: Vec<_> = b.events.iter().map(|e| e.id).collect();
            d.sent(out.callouts as u32, b);
            match d.on_response(out.callouts as u32, Some(status), None, now, &mut r) {
                Outcome::Delivered { .. } => {
                    for id in ids {
                        *out.acked.entry(id).or_default() += 1;
                    }
                }
                Outcome::RejectedEvent { id, .. } => out.rejected.push(id),
                _ => {}
            }
        }
        assert!(now < 100_000_000, "never idle");
    }
    out
}

fn poison_400(evs: &[Record], _: usize) -> u32 {
    if evs.iter().any(|e| e.event().api_path == "/poison") {
        400
    } else {
        200
    }
}

#[test]
fn a_poisoned_batch_costs_exactly_the_poisoned_events_within_the_bound() {
    for (n, poisoned) in [
        (1, vec![0]),
        (2, vec![1]),
        (100, vec![37]),
        (100, vec![0, 99]),
        (100, vec![3, 4, 5, 60]),
        (64, (0..64).collect()),
        (77, (0..77).step_by(3).collect::<Vec<_>>()),
    ] {
        let mut h = cfg();
        h.batch_size = n;
        h.buffer_size = n;
        let evs: Vec<_> = (0..n).map(|i| event(i, poisoned.contains(&i))).collect();
        let out = run(h, evs.clone(), &poison_400);
        for (i, e) in evs.iter().enumerate() {
            let times = out.acked.get(&e.id).copied().unwrap_or(0);
            assert_eq!(
                times,
                usize::from(!poisoned.contains(&i)),
                "event {i} of {n}"
            );
        }
        let mut rejected: Vec<_> = poisoned.iter().map(|&i| evs[i].id).collect();
        rejected.sort();
        let mut got = out.rejected.clone();
        got.sort();
        assert_eq!(got, rejected, "exactly the poisoned ones, once each");
        let bound = extra_callouts(n, poisoned.len());
        assert!(
            out.callouts - 1 <= bound,
            "n {n} k {}: {} extra callouts, bound {bound}",
            poisoned.len(),
            out.callouts - 1
        );
        let mut ids = out.batch_ids.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), out.callouts, "every half has its own batch id");
    }
}

#[test]
fn a_half_that_fails_is_retried_with_its_own_id() {
    let mut h = cfg();
    h.batch_size = 4;
    let evs: Vec<_> = (0..4).map(|i| event(i, i == 0)).collect();
    // callout 3 (the second half, sound) fails once with 503
    let out = run(h, evs, &|e, n| if n == 3 { 503 } else { poison_400(e, n) });
    assert_eq!(out.acked.len(), 3);
    assert!(out.acked.values().all(|&t| t == 1));
    let retried = out.batch_ids[2];
    assert_eq!(
        out.batch_ids.iter().filter(|&&id| id == retried).count(),
        2,
        "the retry of a half keeps its id: {:?}",
        out.batch_ids
    );
}

#[test]
fn a_receiver_that_refuses_more_than_n_events_with_413_gets_everything() {
    let mut h = cfg();
    h.batch_size = 100;
    h.buffer_size = 1000;
    let evs: Vec<_> = (0..1000).map(|i| event(i, false)).collect();
    let out = run(h, evs, &|e, _| if e.len() > 10 { 413 } else { 200 });
    assert_eq!(out.acked.len(), 1000);
    assert!(out.acked.values().all(|&t| t == 1));
    // After the first batch was narrowed down, the rest are cut small enough at once:
    // 100 -> 50 -> 25 -> 12 -> 6 events per batch.
    assert!(out.callouts < 1000 / 6 + 20, "{} callouts", out.callouts);
    assert!(out.rejected.is_empty());
}

#[test]
fn the_lowered_batch_size_returns_after_the_hold() {
    let mut h = cfg();
    h.batch_size = 8;
    h.buffer_size = 100;
    let mut d = Dispatcher::new(h);
    let mut r = Seq(0);
    for i in 0..40 {
        d.offer(event(i, false), 0);
    }
    let (b, _) = d.next_send(0, false, &mut r).unwrap();
    assert_eq!(b.events.len(), 8);
    d.sent(1, b);
    assert_eq!(
        d.on_response(1, Some(413), None, 10, &mut r),
        Outcome::Split {
            events: 8,
            status: 413
        }
    );
    // the two halves, then new batches of 4
    for _ in 0..3 {
        let (b, _) = d.next_send(10, false, &mut r).unwrap();
        assert_eq!(b.events.len(), 4);
        d.sent(2, b);
        d.on_response(2, Some(200), None, 10, &mut r);
    }
    let (b, _) = d.next_send(10 + SHRINK_HOLD_MS, false, &mut r).unwrap();
    assert_eq!(b.events.len(), 8);
}

#[test]
fn other_refusals_are_not_split() {
    for status in [401, 403, 404] {
        let mut h = cfg();
        h.batch_size = 4;
        let evs: Vec<_> = (0..4).map(|i| event(i, false)).collect();
        let mut d = Dispatcher::new(h);
        let mut r = Seq(0);
        for e in evs {
            d.offer(e, 0);
        }
        let (b, _) = d.next_send(0, false, &mut r).unwrap();
        d.sent(1, b);
        assert_eq!(
            d.on_response(1, Some(status), None, 0, &mut r),
            Outcome::Rejected { events: 4, status }
        );
        assert!(d.idle());
    }
}
