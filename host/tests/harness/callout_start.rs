//! A host that will not start a callout, with any status at all, costs the filter a failed
//! attempt, never a trap: the SDK's `dispatch_http_call` panicked on statuses it did not
//! expect, and a trapped VM fails every request.
use crate::common::assert_accounting;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::{Reply, Vm};
use serde_json::json;

#[test]
fn any_refusal_status_is_a_failed_attempt_and_delivery_resumes() {
    for status in [1, 2, 10, 12, 99, -1] {
        let mut vm = Vm::envoy()
            .config(json!({"enabled": true, "sinks": ["http"],
                           "http": {"cluster": "collector", "batch_size": 1,
                                    "retry": {"max_attempts": 10, "initial_backoff_ms": 10}}}))
            .start()
            .unwrap();
        vm.auto_reply(|_| Reply::Status(200));
        vm.refuse_callouts_with(Some(status));
        vm.request().path("/a").key("k").respond(200).unwrap();
        vm.advance_ms(250).unwrap();
        assert!(
            vm.trapped().is_none(),
            "status {status}: {:?}",
            vm.trapped()
        );
        assert!(vm.metric(BATCH_RETRIES) >= 1, "status {status}");
        vm.refuse_callouts_with(None);
        vm.request().path("/b").key("k").respond(200).unwrap();
        vm.advance_ms(1000).unwrap();
        assert_eq!(vm.metric(EVENTS_DELIVERED), 2, "status {status}");
        assert_accounting(&vm);
    }
}

/// A cluster the host does not know (Envoy: BadArgument) may still appear through CDS, so its
/// callouts stay failed attempts; but the operator is told once, loudly, naming the cluster,
/// and `usage_filter.callouts_refused` counts every refused start.
#[test]
fn an_unknown_cluster_is_said_once_loudly_and_counted() {
    let mut vm = Vm::envoy()
        .config(json!({"enabled": true, "sinks": ["http"],
                       "http": {"cluster": "nowhere", "batch_size": 1, "flush_interval_ms": 10,
                                "retry": {"max_attempts": 3, "initial_backoff_ms": 10,
                                          "max_backoff_ms": 20}}}))
        .start()
        .unwrap();
    for _ in 0..4 {
        vm.request().path("/a").key("k").respond(200).unwrap();
        vm.advance_ms(500).unwrap();
    }
    let loud: Vec<_> = vm
        .logs()
        .iter()
        .filter(|l| l.level >= 3 && l.message.contains("nowhere"))
        .collect();
    assert_eq!(
        loud.len(),
        1,
        "one warning or error, not one per attempt: {loud:?}"
    );
    let msg = &loud[0].message;
    assert!(
        msg.contains("cluster \"nowhere\"") && msg.contains("does not exist on this host"),
        "{msg}"
    );
    assert!(
        msg.contains(CALLOUTS_REFUSED),
        "points at the metric: {msg}"
    );
    // 4 batches of one event, 3 attempts each, every one refused.
    assert_eq!(vm.metric(CALLOUTS_REFUSED), 12);
    assert_eq!(vm.metric(EVENTS_DROPPED_SEND_FAILED), 4);
    assert_eq!(vm.metric(BATCH_RETRIES), 8);
    assert_accounting(&vm);
}

/// Once the cluster is there (CDS added it), delivery resumes; a later refusal is said once
/// again, as a new outage.
#[test]
fn a_refusal_that_clears_is_said_again_when_it_returns() {
    let mut vm = Vm::envoy()
        .config(json!({"enabled": true, "sinks": ["http"],
                       "http": {"cluster": "collector", "batch_size": 1, "flush_interval_ms": 10,
                                "retry": {"max_attempts": 10, "initial_backoff_ms": 10,
                                          "max_backoff_ms": 20}}}))
        .start()
        .unwrap();
    vm.auto_reply(|_| Reply::Status(200));
    let loud = |vm: &Vm| {
        vm.logs()
            .iter()
            .filter(|l| l.level >= 3 && l.message.contains("\"collector\""))
            .count()
    };
    vm.refuse_callouts_with(Some(2));
    vm.request().path("/a").key("k").respond(200).unwrap();
    vm.advance_ms(100).unwrap();
    assert_eq!(loud(&vm), 1);
    let refused = vm.metric(CALLOUTS_REFUSED);
    assert!(refused >= 2, "{refused}");
    vm.refuse_callouts_with(None);
    vm.advance_ms(100).unwrap();
    assert_eq!(vm.metric(EVENTS_DELIVERED), 1);
    assert_eq!(vm.metric(CALLOUTS_REFUSED), refused);
    vm.refuse_callouts_with(Some(10));
    vm.request().path("/b").key("k").respond(200).unwrap();
    vm.advance_ms(100).unwrap();
    assert_eq!(loud(&vm), 2, "{:?}", vm.logs());
    assert!(vm
        .logs()
        .iter()
        .any(|l| l.level >= 3 && l.message.contains("InternalFailure")));
    assert_accounting(&vm);
}
