//! `dispatcher.mode: shared_queue`: worker VMs hand events to one singleton service VM over a
//! shared queue; the service batches and sends for the whole proxy.
use crate::common::*;
use host_tests::{Profile, Reply, Vm};
use serde_json::{json, Value};

fn cfg(service: bool) -> Value {
    json!({
        "enabled": true,
        "sinks": ["http"],
        "http": {"cluster": "collector", "batch_size": 10},
        "dispatcher": {"mode": "shared_queue", "service": service}
    })
}

/// The singleton service VM (`vm_id` usage_service) on `hub`.
fn service(hub: &host_tests::state::SharedHub) -> Vm {
    Vm::envoy()
        .hub(hub)
        .vm_id("usage_service")
        .config(cfg(true))
        .start()
        .unwrap()
}

/// A worker VM with the HTTP filter on `hub`.
fn worker(hub: &host_tests::state::SharedHub) -> Vm {
    Vm::envoy()
        .hub(hub)
        .vm_id("usage_filter")
        .config(cfg(false))
        .start()
        .unwrap()
}

fn total(vms: &[&Vm], name: &str) -> i64 {
    vms.iter()
        .map(|v| v.metric(&format!("usage_filter.{name}")))
        .sum()
}

#[test]
fn workers_hand_over_and_the_service_delivers() {
    let hub = Vm::new_hub();
    let mut service = service(&hub);
    let mut w1 = worker(&hub);
    let mut w2 = worker(&hub);
    send(&mut w1, 7);
    send(&mut w2, 8);
    assert!(
        w1.callouts().is_empty() && w2.callouts().is_empty(),
        "workers never call out"
    );
    w1.advance_ms(100).unwrap();
    w2.advance_ms(0).unwrap();
    // one message per worker per tick, not one per event
    assert_eq!(w1.host_calls().get("proxy_enqueue_shared_queue"), Some(&1));
    service.advance_ms(100).unwrap();
    let c = service.pending();
    assert_eq!(c.len(), 1);
    assert_eq!(
        veil_events(&c[0]).len(),
        10,
        "one batch across both workers' events"
    );
    service.auto_reply(|_| Reply::Status(200));
    let t = c[0].token;
    service.reply(t, 200, &[], b"").unwrap();
    service.advance_ms(1000).unwrap();
    w1.tick().unwrap();
    w2.tick().unwrap();
    let all = [&service, &w1, &w2];
    assert_eq!(total(&all, "events_captured"), 15);
    assert_eq!(total(&all, "events_delivered"), 15);
    assert_eq!(total(&all, "buffer_events"), 0);
}

#[test]
fn worker_resolves_the_queue_lazily_and_bounds_its_handoff() {
    let hub = Vm::new_hub();
    // the worker starts first (Envoy's main thread): the queue does not exist yet
    let mut w = Vm::envoy()
        .hub(&hub)
        .vm_id("usage_filter")
        .config(json!({
            "enabled": true, "sinks": ["http"],
            "http": {"cluster": "collector", "batch_size": 5, "buffer_size": 20},
            "dispatcher": {"mode": "shared_queue"}
        }))
        .start()
        .unwrap();
    send(&mut w, 30);
    w.advance_ms(100).unwrap();
    assert_eq!(
        w.metric("usage_filter.events_dropped_buffer_full"),
        10,
        "hand-over bounded by buffer_size"
    );
    assert_eq!(w.metric("usage_filter.buffer_events"), 20);
    let mut service = service(&hub);
    service.auto_reply(|_| Reply::Status(200));
    w.advance_ms(100).unwrap();
    service.advance_ms(2000).unwrap();
    w.tick().unwrap();
    let all = [&service, &w];
    assert_eq!(total(&all, "events_delivered"), 20);
    assert_eq!(
        total(&all, "events_captured"),
        total(&all, "events_delivered")
            + total(&all, "events_dropped_buffer_full")
            + total(&all, "events_dropped_send_failed")
            + total(&all, "buffer_events")
    );
}

#[test]
fn without_queue_resolution_workers_keep_their_events_bounded() {
    // Kong: no resolve_shared_queue; the worker keeps its events (bounded) and never traps
    let mut w = Vm::with_profile(Profile::Kong)
        .config(cfg(false))
        .start()
        .unwrap();
    send(&mut w, 3);
    w.advance_ms(500).unwrap();
    assert!(w.trapped().is_none());
    assert_eq!(w.metric("usage_filter.buffer_events"), 3);
    assert_accounting(&w);
}

#[test]
fn service_sends_nothing_from_on_done() {
    // Envoy 1.40 tears the singleton down only at exit and crashes on a callout made then
    // (tried in make e2e): the service says what it held and reports done at once.
    let hub = Vm::new_hub();
    let mut service = service(&hub);
    let mut w = worker(&hub);
    send(&mut w, 4);
    w.advance_ms(100).unwrap();
    service.poll_queues().unwrap();
    assert!(service.shutdown().unwrap(), "done at once");
    assert!(service.callouts().is_empty());
    assert!(service
        .logs()
        .iter()
        .any(|l| l.level == 3 && l.message.contains("4 buffered events cannot be sent")));
}
