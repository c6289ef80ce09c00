//! A host that will not start a callout, with any status at all, costs the filter a failed
//! attempt, never a trap: the SDK's `dispatch_http_call` panicked on statuses it did not
//! expect, and a trapped VM fails every request.
use crate::common::assert_accounting;
use host_tests::metrics::*;
use host_tests::{Reply, Vm};
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
