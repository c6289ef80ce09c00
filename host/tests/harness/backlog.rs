//! Draining a backlog (issue 22): after an outage the buffer is full and requests keep coming
//! faster than `max_in_flight × batch_size` per round trip. Counted in round trips, so the
//! number is the filter's and not the machine's.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use serde_json::json;

/// Events arriving per collector round trip after the recovery: more than the 200 that two
/// callouts of 100 carry.
const ARRIVING: usize = 250;
/// Round trips watched after the recovery.
const ROUND_TRIPS: usize = 40;

struct Drain {
    /// The first round trip after which fewer than 1,000 events were held.
    drained_at: Option<usize>,
    /// Dropped at the full buffer after the collector was back.
    dropped_after: i64,
    largest_batch: usize,
}

/// A hung collector while 10,500 requests fill the buffer (two batches stay in flight), then
/// a healthy one: each round trip it answers every batch in flight with 200 while `ARRIVING`
/// requests come in, and each answer starts the next batch.
fn outage_then_recovery(backlog: Option<u64>) -> Drain {
    let mut http = json!({"batch_size": 100, "buffer_size": 10_000, "max_in_flight": 2});
    if let Some(b) = backlog {
        http["backlog_batch_size"] = json!(b);
    }
    let mut vm = http_vm(http);
    vm.limit_history(16);
    send(&mut vm, 10_500);
    vm.advance_ms(100).unwrap();
    assert_eq!(vm.pending().len(), 2, "the outage: two batches hang");
    settle_and_check(&mut vm);
    let before = vm.metric(EVENTS_DROPPED_BUFFER_FULL);
    assert_eq!(before, 500, "the buffer is full");
    let mut drain = Drain {
        drained_at: None,
        dropped_after: 0,
        largest_batch: 0,
    };
    for rt in 1..=ROUND_TRIPS {
        let in_flight = vm.pending();
        send(&mut vm, ARRIVING);
        for c in &in_flight {
            drain.largest_batch = drain.largest_batch.max(veil_events(c).len());
            vm.reply(c.token, 200, &[], b"{}").unwrap();
        }
        settle_and_check(&mut vm);
        if drain.drained_at.is_none() && vm.metric(BUFFER_EVENTS) < 1_000 {
            drain.drained_at = Some(rt);
        }
    }
    drain.dropped_after = vm.metric(EVENTS_DROPPED_BUFFER_FULL) - before;
    assert_eq!(
        vm.metric(EVENTS_CAPTURED),
        (10_500 + ROUND_TRIPS * ARRIVING) as i64
    );
    assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 0);
    drain
}

#[test]
fn after_an_outage_backlog_batch_size_drains_the_buffer_in_fewer_round_trips_and_drops_less() {
    let off = outage_then_recovery(None);
    let on = outage_then_recovery(Some(1_000));
    println!(
        "backlog drain, round trips to < 1,000 held / dropped after recovery / largest batch: \
         off {:?} / {} / {}, backlog_batch_size 1000 {:?} / {} / {}",
        off.drained_at,
        off.dropped_after,
        off.largest_batch,
        on.drained_at,
        on.dropped_after,
        on.largest_batch
    );
    // off: 200 per round trip against 250 arriving: the buffer never drains and drops 50 of
    // each round trip's arrivals (all 250 in the first, when the buffer is still full)
    assert_eq!(off.drained_at, None);
    assert_eq!(off.largest_batch, 100);
    assert_eq!(off.dropped_after, (250 + 50 * (ROUND_TRIPS - 1)) as i64);
    // on: batches of 1,000 while the backlog lasts; only the first round trip's arrivals,
    // which find the buffer full, are dropped
    assert_eq!(on.largest_batch, 1_000);
    assert!(
        on.drained_at.is_some_and(|rt| rt <= 7),
        "{:?}",
        on.drained_at
    );
    assert_eq!(on.dropped_after, ARRIVING as i64);
}
