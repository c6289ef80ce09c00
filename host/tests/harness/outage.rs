//! A long collector outage: memory stays flat, every event is accounted for.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::Reply;
use serde_json::json;

#[test]
fn million_requests_against_a_failing_collector_keep_memory_flat() {
    let mut vm = http_vm(json!({}));
    vm.auto_reply(|_| Reply::Status(503));
    vm.limit_history(16);
    // The reference is taken once the heap has settled: since batch bodies stopped being
    // copied out of the dispatcher's buffer (issue 22), dlmalloc takes one more 64 KB page
    // at ~0.6M requests of this outage and none after it (measured to 4M requests).
    let mut at_1m = 0;
    for i in 1..=2_000_000u32 {
        vm.request()
            .path("/v1/things")
            .key("key-123")
            .respond(200)
            .unwrap();
        // ~10k requests/s of simulated time: the timer and the retries keep running
        if i % 10 == 0 {
            vm.advance_ms(1).unwrap();
        }
        if i == 1_000_000 {
            at_1m = vm.memory_bytes();
            settle_and_check(&mut vm);
            // the buffer saturates; exhausted batches free room that new events refill
            assert!(vm.metric(BUFFER_EVENTS) > 5_000, "{:?}", vm.metrics());
            assert!(vm.metric(EVENTS_DROPPED_BUFFER_FULL) > 0);
        }
    }
    let at_2m = vm.memory_bytes();
    settle_and_check(&mut vm);
    println!(
        "linear memory: {at_1m} bytes after 1M requests, {at_2m} after 2M; metrics {:?}",
        vm.metrics()
    );
    assert_eq!(at_2m, at_1m, "linear memory grew during the outage");
    assert_eq!(vm.metric(EVENTS_CAPTURED), 2_000_000);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 0);
    // both ways of losing events during an outage happened, and nothing else
    assert!(vm.metric(EVENTS_DROPPED_BUFFER_FULL) > 0);
    assert!(vm.metric(EVENTS_DROPPED_SEND_FAILED) > 0);
}
