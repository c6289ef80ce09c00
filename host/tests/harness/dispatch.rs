//! The http sink: batching triggers, the bounded buffer, retries, and shutdown.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::{CalloutState, Reply};
use serde_json::json;

fn ms_between(a: &proxy_wasm_host::Callout, b: &proxy_wasm_host::Callout) -> u64 {
    (b.sent_at_ns - a.sent_at_ns) / 1_000_000
}

#[test]
fn count_trigger() {
    let mut vm = http_vm(json!({"batch_size": 10, "flush_interval_ms": 1000}));
    send(&mut vm, 25);
    assert!(
        vm.callouts().is_empty(),
        "nothing is sent from the request path"
    );
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert_eq!(c.len(), 2, "two full batches (max_in_flight 2)");
    assert!(c.iter().all(|c| veil_events(c).len() == 10));
    for c in &c {
        vm.reply(c.token, 200, &[], b"{}").unwrap();
    }
    vm.advance_ms(100).unwrap();
    assert_eq!(
        vm.pending().len(),
        0,
        "5 left: not a full batch and not old enough"
    );
    vm.advance_ms(800).unwrap();
    let c = vm.pending();
    assert_eq!(c.len(), 1);
    assert_eq!(veil_events(&c[0]).len(), 5);
    vm.reply(c[0].token, 200, &[], b"{}").unwrap();
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 25);
    assert_eq!(vm.metric(BATCHES_SENT), 3);
}

#[test]
fn bytes_trigger() {
    let mut vm =
        http_vm(json!({"batch_size": 1000, "max_batch_bytes": 1024, "flush_interval_ms": 60000}));
    send(&mut vm, 2);
    vm.advance_ms(100).unwrap();
    assert!(vm.pending().is_empty(), "two events are under 1024 bytes");
    send(&mut vm, 6);
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert!(!c.is_empty(), "bytes reached before count or time");
    for c in &c {
        let n = veil_events(c).len();
        assert!((1..8).contains(&n), "{n}");
        // the bound is on the events' encoded size; the veil wrapper adds a few bytes
        assert!(c.body.len() <= 1024 + 16, "{}", c.body.len());
    }
}

#[test]
fn time_trigger() {
    let mut vm = http_vm(json!({"batch_size": 100, "flush_interval_ms": 1000}));
    send(&mut vm, 3);
    vm.advance_ms(900).unwrap();
    assert!(vm.pending().is_empty());
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert_eq!(c.len(), 1);
    assert_eq!(veil_events(&c[0]).len(), 3);
}

#[test]
fn max_in_flight_is_respected_under_a_burst() {
    let mut vm = http_vm(
        json!({"batch_size": 5, "max_in_flight": 2, "buffer_size": 1000, "timeout_ms": 600000}),
    );
    send(&mut vm, 100);
    for _ in 0..10 {
        vm.advance_ms(100).unwrap();
        assert_eq!(vm.pending().len(), 2);
    }
    // each answer frees one slot, which the root fills at once
    let first = vm.pending()[0].token;
    vm.reply(first, 200, &[], b"").unwrap();
    assert_eq!(vm.pending().len(), 2);
    assert_eq!(vm.callouts().len(), 3);
}

#[test]
fn full_buffer_drops_exactly_the_overflow() {
    let mut vm = http_vm(
        json!({"batch_size": 10, "buffer_size": 50, "max_in_flight": 1, "timeout_ms": 600000}),
    );
    send(&mut vm, 20);
    vm.advance_ms(100).unwrap();
    assert_eq!(vm.pending().len(), 1, "collector hangs on the first batch");
    send(&mut vm, 60);
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_CAPTURED), 80);
    assert_eq!(vm.metric(EVENTS_DROPPED_BUFFER_FULL), 30);
    assert_eq!(vm.metric(BUFFER_EVENTS), 50);
    // the collector recovers: everything held is delivered
    vm.auto_reply(|_| Reply::Status(200));
    let t = vm.pending()[0].token;
    vm.reply(t, 200, &[], b"").unwrap();
    vm.advance_ms(2000).unwrap();
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 50);
    assert_eq!(vm.metric(BUFFER_EVENTS), 0);
}

#[test]
fn retry_503_503_200_same_batch_id_and_backoff_in_bounds() {
    let mut vm = http_vm(
        json!({"batch_size": 4, "retry": {"max_attempts": 3, "initial_backoff_ms": 200, "max_backoff_ms": 10000}}),
    );
    // the collector answers each attempt the moment it arrives: 503, 503, then 200
    let mut script = vec![200, 503, 503];
    vm.auto_reply(move |_| Reply::Status(script.pop().unwrap_or(200)));
    send(&mut vm, 4);
    vm.advance_ms(5000).unwrap();
    let all = vm.callouts();
    assert_eq!(all.len(), 3);
    let states: Vec<_> = all.iter().map(|c| c.state.clone()).collect();
    assert_eq!(
        states,
        vec![
            CalloutState::Answered(503),
            CalloutState::Answered(503),
            CalloutState::Answered(200)
        ]
    );
    let ids: Vec<_> = all
        .iter()
        .map(|c| c.header("x-usage-batch-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert!(
        all.iter().all(|c| c.body == all[0].body),
        "same body on every attempt"
    );
    // first retry waits [200, 400] ms, the second [200, 800] ms; the timer adds up to 100 ms
    let d1 = ms_between(&all[0], &all[1]);
    let d2 = ms_between(&all[1], &all[2]);
    assert!((200..=500).contains(&d1), "{d1}");
    assert!((200..=900).contains(&d2), "{d2}");
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 4);
    assert_eq!(vm.metric(BATCH_RETRIES), 2);
    assert_eq!(vm.metric(BATCHES_SENT), 1);
    let ids: std::collections::HashSet<_> = veil_events(&all[2])
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids.len(), 4, "every event once");
}

#[test]
fn connect_failure_and_reset_then_200() {
    let mut vm = http_vm(json!({"batch_size": 1}));
    send(&mut vm, 1);
    vm.advance_ms(100).unwrap();
    vm.refuse(vm.pending()[0].token).unwrap(); // Envoy's own 503
    vm.advance_ms(1000).unwrap();
    vm.reset(vm.pending()[0].token).unwrap(); // on_http_call_response(token, 0, 0, 0)
    vm.advance_ms(2000).unwrap();
    vm.reply(vm.pending()[0].token, 200, &[], b"").unwrap();
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 1);
    assert_eq!(vm.metric(BATCH_RETRIES), 2);
}

#[test]
fn timeout_is_retried() {
    let mut vm = http_vm(json!({"batch_size": 1, "timeout_ms": 500}));
    send(&mut vm, 1);
    vm.advance_ms(100).unwrap();
    let first = vm.pending()[0].clone();
    assert_eq!(first.timeout_ms, 500);
    vm.advance_ms(500).unwrap();
    assert_eq!(
        vm.callouts()[0].state,
        CalloutState::TimedOut,
        "Envoy answers 504 at the deadline"
    );
    // the retry goes out 200-400 ms later (and would itself time out 500 ms after that)
    vm.advance_ms(600).unwrap();
    let again = vm.pending();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].header("x-usage-batch-id"),
        first.header("x-usage-batch-id")
    );
    vm.reply(again[0].token, 200, &[], b"").unwrap();
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 1);
}

#[test]
fn retry_after_429_is_honoured() {
    let mut vm = http_vm(json!({"batch_size": 1}));
    send(&mut vm, 1);
    vm.advance_ms(100).unwrap();
    vm.reply(
        vm.pending()[0].token,
        429,
        &[("retry-after", "2")],
        b"slow down",
    )
    .unwrap();
    vm.advance_ms(1900).unwrap();
    assert!(vm.pending().is_empty(), "not before 2 s");
    vm.advance_ms(200).unwrap();
    let all = vm.callouts();
    assert_eq!(all.len(), 2);
    assert!(ms_between(&all[0], &all[1]) >= 2000);
}

#[test]
fn exhausted_attempts_are_counted_as_send_failures() {
    let mut vm = http_vm(json!({"batch_size": 2, "retry": {"max_attempts": 3}}));
    vm.auto_reply(|_| Reply::Status(500));
    send(&mut vm, 2);
    vm.advance_ms(20_000).unwrap();
    assert_eq!(vm.callouts().len(), 3);
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 2);
    assert_eq!(vm.metric(BATCH_RETRIES), 2);
    assert_eq!(vm.metric(BATCHES_FAILED), 1);
    assert_eq!(vm.metric(BUFFER_EVENTS), 0);
}

#[test]
fn unknown_cluster_counts_as_a_failed_attempt() {
    let mut vm = http_vm(
        json!({"cluster": "nowhere", "batch_size": 1, "retry": {"max_attempts": 2, "initial_backoff_ms": 10}}),
    );
    send(&mut vm, 1);
    vm.advance_ms(1000).unwrap();
    settle_and_check(&mut vm);
    assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 1);
    assert!(vm.logs().iter().any(|l| l
        .message
        .contains("refused to start a callout to cluster \"nowhere\"")));
    assert_eq!(vm.metric(CALLOUTS_REFUSED), 2);
}

#[test]
fn both_sinks() {
    let mut vm = http_vm_with(json!({"sinks": ["log", "http"]}), json!({"batch_size": 2}));
    send(&mut vm, 2);
    vm.advance_ms(100).unwrap();
    assert_eq!(vm.events().len(), 2);
    assert_eq!(veil_events(&vm.pending()[0]).len(), 2);
}

#[test]
fn shutdown_flushes_what_is_buffered() {
    let mut vm =
        http_vm(json!({"batch_size": 100, "flush_interval_ms": 60000, "max_in_flight": 1}));
    send(&mut vm, 250);
    assert!(vm.callouts().is_empty());
    let done_now = vm.shutdown().unwrap();
    assert!(!done_now, "in-flight callouts: done later");
    let c = vm.pending();
    assert_eq!(
        c.len(),
        3,
        "everything goes out at once, regardless of max_in_flight"
    );
    assert_eq!(c.iter().map(|c| veil_events(c).len()).sum::<usize>(), 250);
    for c in &c {
        vm.reply(c.token, 200, &[], b"").unwrap();
    }
    assert!(vm.done_called(), "proxy_done once everything is answered");
    assert_accounting(&vm);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 250);
}

#[test]
fn shutdown_with_nothing_buffered_is_done_at_once() {
    let mut vm = http_vm(json!({}));
    assert!(vm.shutdown().unwrap());
}
