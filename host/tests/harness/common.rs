#![allow(dead_code)]
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::Vm;
use serde_json::{json, Value};

/// A VM with streaming on and the log sink, plus `extra` merged into the config.
pub fn logging(extra: Value) -> Vm {
    let mut cfg = json!({"enabled": true});
    merge(&mut cfg, extra);
    Vm::envoy()
        .config(cfg)
        .start()
        .unwrap_or_else(|e| panic!("start: {e}"))
}

pub fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// The ten Veil fields with their exact JSON types, as Veil's receiver checks them.
pub fn assert_veil_fields(e: &Value) {
    let s = |k: &str| assert!(e[k].is_string(), "{k} must be a string in {e}");
    let i = |k: &str| assert!(e[k].is_u64(), "{k} must be an integer in {e}");
    s("id");
    s("api_path");
    s("subscription_key");
    s("method");
    i("response_time_ms");
    i("status_code");
    assert!(
        e["success"].is_boolean(),
        "success must be a boolean in {e}"
    );
    s("timestamp");
    i("request_size");
    i("response_size");
    let id = e["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    let ts = e["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.contains('T') && ts.contains('.'),
        "RFC 3339 UTC with fraction: {ts}"
    );
}

/// A metric summed over the VMs of one proxy.
pub fn total(vms: &[&Vm], name: &str) -> i64 {
    vms.iter().map(|v| v.metric(name)).sum()
}

/// captured = delivered + dropped_buffer_full + dropped_send_failed + dropped_rejected +
/// buffered, over `vms`
/// together (a worker captures what the service delivers).
pub fn assert_accounting_across(vms: &[&Vm]) {
    let m = |n: &str| total(vms, n);
    assert_eq!(
        m(EVENTS_CAPTURED),
        m(EVENTS_DELIVERED)
            + m(EVENTS_DROPPED_BUFFER_FULL)
            + m(EVENTS_DROPPED_SEND_FAILED)
            + m(EVENTS_DROPPED_REJECTED)
            + m(BUFFER_EVENTS),
        "accounting invariant broken: {:?}",
        vms.iter().map(|v| v.metrics()).collect::<Vec<_>>()
    );
}

/// captured = delivered + dropped_buffer_full + dropped_send_failed + dropped_rejected + buffered
pub fn assert_accounting(vm: &Vm) {
    assert_accounting_across(&[vm]);
}

/// A VM delivering through the http sink to cluster `collector`, with `http` merged into
/// the http section.
pub fn http_vm(http: Value) -> Vm {
    http_vm_with(json!({}), http)
}

pub fn http_vm_with(top: Value, http: Value) -> Vm {
    let mut h = json!({"cluster": "collector"});
    merge(&mut h, http);
    let mut cfg = json!({"enabled": true, "sinks": ["http"], "http": h});
    merge(&mut cfg, top);
    Vm::envoy()
        .config(cfg)
        .start()
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// The events in a veil-format callout.
pub fn veil_events(c: &proxy_wasm_host::Callout) -> Vec<Value> {
    let v: Value =
        serde_json::from_slice(&c.plain_body()).unwrap_or_else(|e| panic!("body is not JSON: {e}"));
    v["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no events array: {v}"))
}

pub fn send(vm: &mut Vm, n: usize) {
    for i in 0..n {
        vm.request()
            .path(&format!("/r/{i}"))
            .key("k")
            .respond(200)
            .unwrap();
    }
}

/// Publishes metrics (a tick) and checks the invariant.
pub fn settle_and_check(vm: &mut Vm) {
    vm.tick().unwrap();
    assert_accounting(vm);
}
