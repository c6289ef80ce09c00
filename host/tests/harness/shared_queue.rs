//! `dispatcher.mode: shared_queue`: worker VMs hand events to one singleton service VM over a
//! shared queue; the service batches and sends for the whole proxy.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::{Profile, Reply, Vm};
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
fn service(hub: &proxy_wasm_host::state::SharedHub) -> Vm {
    Vm::envoy()
        .hub(hub)
        .vm_id("usage_service")
        .config(cfg(true))
        .start()
        .unwrap()
}

/// A worker VM with the HTTP filter on `hub`.
fn worker(hub: &proxy_wasm_host::state::SharedHub) -> Vm {
    Vm::envoy()
        .hub(hub)
        .vm_id("usage_filter")
        .config(cfg(false))
        .start()
        .unwrap()
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
    assert_eq!(total(&all, EVENTS_CAPTURED), 15);
    assert_eq!(total(&all, EVENTS_DELIVERED), 15);
    assert_eq!(total(&all, BUFFER_EVENTS), 0);
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
        w.metric(EVENTS_DROPPED_BUFFER_FULL),
        10,
        "hand-over bounded by buffer_size"
    );
    assert_eq!(w.metric(BUFFER_EVENTS), 20);
    let mut service = service(&hub);
    service.auto_reply(|_| Reply::Status(200));
    w.advance_ms(100).unwrap();
    service.advance_ms(2000).unwrap();
    w.tick().unwrap();
    let all = [&service, &w];
    assert_eq!(total(&all, EVENTS_DELIVERED), 20);
    assert_accounting_across(&all);
}

#[test]
fn without_queue_resolution_workers_keep_their_events_bounded() {
    // Kong: no resolve_shared_queue; each worker keeps its events, at most buffer_size of
    // them, drops the rest as buffer-full, and never traps
    let hub = Vm::new_hub();
    let kong_worker = || {
        Vm::with_profile(Profile::Kong)
            .hub(&hub)
            .config(json!({
                "enabled": true, "sinks": ["http"],
                "http": {"cluster": "collector", "batch_size": 5, "buffer_size": 5},
                "dispatcher": {"mode": "shared_queue"}
            }))
            .start()
            .unwrap()
    };
    let (mut w1, mut w2) = (kong_worker(), kong_worker());
    send(&mut w1, 8);
    send(&mut w2, 6);
    w1.advance_ms(500).unwrap();
    w2.advance_ms(500).unwrap();
    for (w, dropped) in [(&w1, 3), (&w2, 1)] {
        assert!(w.trapped().is_none());
        assert!(w.callouts().is_empty(), "a worker never calls out");
        assert_eq!(w.metric(BUFFER_EVENTS), 5, "{:?}", w.metrics());
        assert_eq!(w.metric(EVENTS_DROPPED_BUFFER_FULL), dropped);
    }
    let all = [&w1, &w2];
    assert_eq!(total(&all, EVENTS_CAPTURED), 14);
    assert_accounting_across(&all);
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
