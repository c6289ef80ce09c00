//! The VM's role is decided once, from the configuration: combinations that mean nothing
//! are refused at configure time, naming the key, instead of giving the VM two roles.
use proxy_wasm_host::{Reply, Vm};
use serde_json::json;

#[test]
fn a_service_in_local_mode_is_refused_naming_the_key() {
    let err = Vm::envoy()
        .config(json!({
            "enabled": true,
            "sinks": ["http"],
            "http": {"cluster": "collector"},
            "dispatcher": {"mode": "local", "service": true}
        }))
        .start()
        .err()
        .expect("refused");
    let logs: Vec<_> = err.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("dispatcher.service") && l.contains("shared_queue")),
        "{logs:?}"
    );
}

#[test]
fn a_local_dispatcher_flushes_what_it_holds_at_shutdown() {
    let mut vm = Vm::envoy()
        .config(json!({
            "enabled": true,
            "sinks": ["http"],
            "http": {"cluster": "collector", "batch_size": 100}
        }))
        .start()
        .unwrap();
    vm.auto_reply(|_| Reply::Status(200));
    for _ in 0..3 {
        vm.request().path("/v1/x").key("k").respond(200).unwrap();
    }
    assert!(vm.callouts().is_empty(), "not due before shutdown");
    vm.shutdown().unwrap();
    assert_eq!(vm.metric(proxy_wasm_host::metrics::EVENTS_DELIVERED), 3);
    assert!(vm.done_called());
}
