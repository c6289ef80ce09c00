//! The books across VMs in `shared_queue` mode when a hand-over message is damaged on the
//! way: what it announced but could not deliver is counted, so captured still equals
//! delivered + dropped + buffered summed over the workers and the service.
use crate::common::{assert_accounting_across, total};
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::state::SharedHub;
use proxy_wasm_host::{Reply, Vm};
use serde_json::json;
use std::collections::VecDeque;

fn start(hub: &SharedHub, service: bool) -> Vm {
    Vm::envoy()
        .hub(hub)
        .vm_id(if service {
            "usage_service"
        } else {
            "usage_filter"
        })
        .config(json!({
            "enabled": true,
            "sinks": ["http"],
            "http": {"cluster": "collector", "batch_size": 10},
            "dispatcher": {"mode": "shared_queue", "service": service}
        }))
        .start()
        .unwrap()
}

/// A service and a worker on one hub; the worker meters a keyed request for each path and
/// hands the events over in one message, which is still in the queue.
fn handed_over(paths: &[&str], key: &str) -> (SharedHub, Vm, Vm) {
    let hub = Vm::new_hub();
    let mut service = start(&hub, true);
    let mut worker = start(&hub, false);
    service.auto_reply(|_| Reply::Status(200));
    for path in paths {
        worker.request().path(path).key(key).respond(200).unwrap();
    }
    worker.advance_ms(100).unwrap();
    (hub, service, worker)
}

/// The messages waiting in the service's queue, to be changed on the way.
fn in_queue(hub: &SharedHub, f: impl FnOnce(&mut VecDeque<Vec<u8>>)) {
    let mut h = hub.borrow_mut();
    let q = h
        .queues
        .iter_mut()
        .find(|q| q.name == "usage_events")
        .expect("the service registered its queue");
    f(&mut q.items);
}

#[test]
fn records_lost_from_a_truncated_hand_over_are_counted() {
    let paths: Vec<String> = (0..5).map(|i| format!("/v1/{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (hub, mut service, mut worker) = handed_over(&paths, "k");
    // Damage the message in the queue: cut into its last record.
    in_queue(&hub, |items| {
        let msg = items
            .pop_front()
            .expect("the worker handed its events over");
        assert!(items.is_empty(), "one message for five events");
        items.push_back(msg[..msg.len() - 10].to_vec());
    });
    service.advance_ms(3000).unwrap();
    worker.advance_ms(1000).unwrap();
    let vms = [&service, &worker];
    assert_eq!(total(&vms, EVENTS_CAPTURED), 5);
    assert_eq!(total(&vms, EVENTS_DELIVERED), 4);
    assert_eq!(total(&vms, EVENTS_DROPPED_SEND_FAILED), 1);
    assert_accounting_across(&vms);
}

#[test]
fn a_message_that_is_garbage_loses_no_event_it_did_not_have() {
    let (hub, mut service, mut worker) = handed_over(&["/v1/a"], "k");
    // Too short to announce anything: nothing is invented.
    in_queue(&hub, |items| items.push_back(vec![1, 2]));
    service.advance_ms(3000).unwrap();
    worker.advance_ms(1000).unwrap();
    let vms = [&service, &worker];
    assert_eq!(total(&vms, EVENTS_DELIVERED), 1);
    assert_eq!(total(&vms, EVENTS_DROPPED_SEND_FAILED), 0);
    assert_accounting_across(&vms);
}

/// Found by `make fuzz`: a hand-over record damaged on the way went into a batch as it was,
/// so the body was not JSON and the collector refused all of it, the sound events too.
#[test]
fn a_damaged_record_never_spoils_its_batch() {
    for damage in [b'"', 0xff, 0x01, b'\\'] {
        let (hub, mut service, mut worker) = handed_over(&["/v1/ok", "/v1/xxxx", "/v1/ok"], "kkkk");
        in_queue(&hub, |items| {
            let mut msg = items.pop_front().unwrap();
            let at = msg.windows(8).position(|w| w == b"/v1/xxxx").unwrap();
            msg[at + 4] = damage;
            items.push_back(msg);
        });
        service.advance_ms(3000).unwrap();
        for c in service.callouts() {
            let body: serde_json::Value = serde_json::from_slice(&c.body)
                .unwrap_or_else(|e| panic!("damage {damage}: the batch is not JSON: {e}"));
            assert!(body["events"].as_array().is_some_and(|e| !e.is_empty()));
        }
        worker.advance_ms(1000).unwrap();
        let vms = [&service, &worker];
        assert!(
            total(&vms, EVENTS_DELIVERED) >= 1,
            "damage {damage}: the first event is sound"
        );
        assert_eq!(
            total(&vms, EVENTS_DELIVERED) + total(&vms, EVENTS_DROPPED_SEND_FAILED),
            3,
            "damage {damage}"
        );
        assert_accounting_across(&vms);
    }
}
