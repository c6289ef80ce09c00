//! What one request becomes: the event's fields for the shapes of traffic Envoy sees.
use crate::common::*;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::{MetricKind, Profile, Vm};
use serde_json::json;
use sha2::{Digest, Sha256};

#[test]
fn get_event_has_every_field() {
    let mut vm = logging(json!({}));
    vm.request()
        .path("/v1/things")
        .key("key-1")
        .upstream_ms(37)
        .response_body(120)
        .respond(200)
        .unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_veil_fields(e);
    assert_eq!(e["api_path"], "/v1/things");
    assert_eq!(e["subscription_key"], "key-1");
    assert_eq!(e["method"], "GET");
    assert_eq!(e["response_time_ms"], 37);
    assert_eq!(e["status_code"], 200);
    assert_eq!(e["success"], true);
    assert_eq!(e["billable"], true);
    assert_eq!(e["request_size"], 0);
    assert_eq!(e["response_size"], 120);
    assert_eq!(e["authority"], "api.example.com");
    assert!(e["request_id"].as_str().unwrap().starts_with("req-"));
    assert_eq!(e["msg"], "usage_event");
    assert_eq!(e["event_type"], "api_usage");
    // UUID v7: version nibble
    assert_eq!(&e["id"].as_str().unwrap()[14..15], "7");
}

#[test]
fn post_event_counts_both_bodies() {
    let mut vm = logging(json!({}));
    vm.request()
        .method("POST")
        .path("/v1/orders")
        .key("k")
        .header("x-request-id", "abc-123")
        .body(2048)
        .response_body(77)
        .respond(201)
        .unwrap();
    let e = &vm.events()[0];
    assert_veil_fields(e);
    assert_eq!(e["method"], "POST");
    assert_eq!(e["request_size"], 2048);
    assert_eq!(e["response_size"], 77);
    assert_eq!(e["status_code"], 201);
    assert_eq!(e["request_id"], "abc-123");
}

#[test]
fn timestamp_is_completion_time_in_utc() {
    let mut vm = logging(json!({}));
    vm.skip_ms(1500);
    vm.request().key("k").upstream_ms(250).respond(200).unwrap();
    // EPOCH 2023-11-14T22:13:20Z + 1.5 s + 0.25 s
    assert_eq!(vm.events()[0]["timestamp"], "2023-11-14T22:13:21.750000Z");
}

#[test]
fn query_string_is_stripped() {
    let mut vm = logging(json!({}));
    vm.request()
        .path("/search?q=secret&page=2")
        .key("k")
        .respond(200)
        .unwrap();
    vm.request()
        .path("/a/b#frag")
        .key("k")
        .respond(200)
        .unwrap();
    let ev = vm.events();
    assert_eq!(ev[0]["api_path"], "/search");
    assert_eq!(ev[1]["api_path"], "/a/b");
}

#[test]
fn upstream_404_and_401_are_events_but_not_success() {
    let mut vm = logging(json!({}));
    vm.request().key("k").response_body(9).respond(404).unwrap();
    vm.request().key("k").respond(401).unwrap();
    vm.request().key("k").respond(503).unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 3);
    for (e, code, billable) in [
        (&ev[0], 404, true),
        (&ev[1], 401, true),
        (&ev[2], 503, false),
    ] {
        assert_eq!(e["status_code"], code);
        assert_eq!(e["success"], false);
        assert_eq!(e["billable"], billable);
    }
    assert_eq!(ev[0]["response_size"], 9);
}

#[test]
fn local_reply_is_an_event_with_envoys_status() {
    let mut vm = logging(json!({}));
    vm.request().key("k").local_reply(503).unwrap();
    let e = &vm.events()[0];
    assert_eq!(e["status_code"], 503);
    assert_eq!(e["success"], false);
    assert_eq!(e["response_size"], "no healthy upstream".len());
}

#[test]
fn aborted_stream_is_status_zero() {
    let mut vm = logging(json!({}));
    vm.request()
        .method("POST")
        .key("k")
        .body(10)
        .abort()
        .unwrap();
    let e = &vm.events()[0];
    assert_veil_fields(e);
    assert_eq!(e["status_code"], 0);
    assert_eq!(e["success"], false);
    assert_eq!(e["billable"], false);
    assert_eq!(e["request_size"], 10);
    assert_eq!(e["response_size"], 0);
}

#[test]
fn excluded_paths_produce_nothing() {
    let mut vm = logging(json!({"exclude_paths": ["/health", "/admin/"]}));
    vm.request().path("/healthz").key("k").respond(200).unwrap();
    vm.request()
        .path("/admin/users?x")
        .key("k")
        .respond(200)
        .unwrap();
    vm.request()
        .path("/api/health")
        .key("k")
        .respond(200)
        .unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["api_path"], "/api/health");
}

#[test]
fn require_key_skips_unkeyed_requests() {
    let mut vm = logging(json!({}));
    vm.request().path("/anon").respond(200).unwrap();
    vm.request().path("/keyed").key("k").respond(401).unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 1, "only the keyed request, 4xx included");
    assert_eq!(ev[0]["api_path"], "/keyed");

    let mut vm = logging(json!({"require_key": false}));
    vm.request().path("/anon").respond(200).unwrap();
    assert_eq!(vm.events()[0]["subscription_key"], "");
}

#[test]
fn custom_key_header() {
    let mut vm = logging(json!({"subscription_key_header": "X-Api-Key"}));
    vm.request()
        .header("x-api-key", "abc")
        .respond(200)
        .unwrap();
    vm.request().key("ignored").respond(200).unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["subscription_key"], "abc");
}

#[test]
fn key_modes() {
    let key = "sk_live_123456";
    // sha256: lowercase hex of the key's digest, computed here independently of the filter
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cases = [
        ("raw", key.to_string()),
        ("sha256", digest),
        ("redact", "sk_l…".to_string()),
    ];
    for (mode, want) in cases {
        let mut vm = logging(json!({"key_mode": mode}));
        vm.request().key(key).respond(200).unwrap();
        assert_eq!(vm.events()[0]["subscription_key"], want, "{mode}");
    }
}

#[test]
fn attributes_come_from_headers() {
    let mut vm = logging(
        json!({"attributes": {"organization_id": {"header": "x-organization-id"}, "plan": {"header": "x-plan"}}}),
    );
    vm.request()
        .key("k")
        .header("x-organization-id", "org-42")
        .respond(200)
        .unwrap();
    let e = &vm.events()[0];
    assert_eq!(e["organization_id"], "org-42");
    assert!(e.get("plan").is_none(), "absent header, absent field: {e}");
}

#[test]
fn disabled_by_default() {
    let mut vm = Vm::envoy().start().unwrap();
    vm.request().key("k").respond(200).unwrap();
    vm.advance_ms(5000).unwrap();
    assert!(vm.events().is_empty());
    assert_eq!(vm.metric(EVENTS_CAPTURED), 0);
    assert_eq!(vm.tick_period_ms(), 0, "a disabled filter sets no timer");
}

#[test]
fn enabled_by_environment_variable() {
    for v in ["true", "1"] {
        let mut vm = Vm::envoy()
            .env("ENABLE_EVENT_STREAMING", v)
            .start()
            .unwrap();
        vm.request().key("k").respond(200).unwrap();
        assert_eq!(vm.events().len(), 1, "ENABLE_EVENT_STREAMING={v}");
    }
    let mut vm = Vm::envoy()
        .env("ENABLE_EVENT_STREAMING", "no")
        .start()
        .unwrap();
    vm.request().key("k").respond(200).unwrap();
    assert!(vm.events().is_empty());
}

#[test]
fn filter_state_output_for_envoy_stdout() {
    let mut vm = logging(json!({"log_output": "filter_state"}));
    let out = vm.request().key("k").respond(200).unwrap();
    assert!(vm.events().is_empty(), "nothing in the host log");
    let line = out
        .filter_state
        .get("usage_event")
        .expect("filter state set");
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    assert_eq!(v["msg"], "usage_event");
    assert!(!line.contains(&b'\n'));
}

#[test]
fn metrics_after_a_sequence_of_requests() {
    let mut vm = logging(json!({"exclude_paths": ["/health"]}));
    for m in ALL {
        assert!(
            vm.metrics().contains_key(m),
            "{m} defined at configure time"
        );
    }
    assert_eq!(vm.metric_kind(BUFFER_EVENTS), Some(MetricKind::Gauge));
    assert_eq!(vm.metric_kind(EVENTS_CAPTURED), Some(MetricKind::Counter));
    for _ in 0..5 {
        vm.request().key("k").respond(200).unwrap();
    }
    vm.request().path("/health").key("k").respond(200).unwrap();
    vm.request().respond(200).unwrap();
    vm.request().key("k").abort().unwrap();
    // published on the timer
    vm.advance_ms(1000).unwrap();
    assert_eq!(vm.metric(EVENTS_CAPTURED), 6);
    assert_eq!(vm.metric(EVENTS_DELIVERED), 6);
    assert_eq!(vm.metric(BUFFER_EVENTS), 0);
    assert_accounting(&vm);
    vm.request().key("k").respond(200).unwrap();
    vm.advance_ms(1000).unwrap();
    assert_eq!(vm.metric(EVENTS_CAPTURED), 7);
}

#[test]
fn callback_order_is_envoys_and_fuel_is_counted() {
    let mut vm = logging(json!({}));
    vm.take_call_trace();
    let out = vm
        .request()
        .key("k")
        .body(1)
        .response_body(1)
        .respond(200)
        .unwrap();
    // Envoy's order: on_log, on_done, on_delete after the last body callback (the spec puts
    // on_done first); every callback runs as the stream's context. The filter exports no
    // on_delete (a VM crossing on every stream), so the host, like Envoy, skips it.
    let order = [
        "on_context_create",
        "on_request_headers",
        "on_request_body",
        "on_response_headers",
        "on_response_body",
        "on_log",
        "on_done",
    ];
    let want: Vec<_> = order.iter().map(|cb| (*cb, out.context_id)).collect();
    assert_eq!(vm.take_call_trace(), want);
    for cb in order {
        assert!(
            out.fuel
                .get(cb)
                .is_some_and(|(calls, fuel)| *calls == 1 && *fuel > 0),
            "{cb}: {:?}",
            out.fuel
        );
    }
    assert_eq!(vm.events()[0]["status_code"], 200, "read at the end");
    println!("fuel per GET: {} {:?}", out.total_fuel(), out.fuel);
}

/// A host that never calls `on_log` (APISIX) ends each stream with `on_done` alone: the event
/// is taken there, once, and the stream is not kept.
#[test]
fn a_host_without_on_log_gets_each_event_at_on_done() {
    let mut vm = Vm::with_profile(Profile::Apisix)
        .config(json!({"enabled": true, "log_output": "host_log"}))
        .start()
        .unwrap_or_else(|e| panic!("start: {e}"));
    vm.request().key("k").path("/a").respond(201).unwrap();
    let before = vm.memory_bytes();
    for _ in 0..2000 {
        vm.request().key("k").path("/b").respond(200).unwrap();
    }
    let ev = vm.events();
    assert_eq!(ev.len(), 2001);
    assert_eq!(
        (&ev[0]["api_path"], &ev[0]["status_code"]),
        (&json!("/a"), &json!(201))
    );
    assert_eq!(vm.memory_bytes(), before, "no stream is kept");
}

/// Host calls per request, the filter's main cost in Envoy: a regression here is a slowdown.
#[test]
fn host_calls_per_request() {
    use std::collections::BTreeMap;
    // Host calls made by one more request, by import name.
    fn one_more(vm: &mut Vm) -> BTreeMap<&'static str, u64> {
        let before = vm.host_calls().clone();
        vm.request()
            .key("k")
            .body(10)
            .response_body(10)
            .respond(200)
            .unwrap();
        vm.host_calls()
            .iter()
            .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
    // The floor a complete event needs: the request map, :status, the clock twice.
    let floor = BTreeMap::from([
        ("proxy_get_header_map_pairs", 1),
        ("proxy_get_header_map_value", 1),
        ("proxy_get_current_time_nanoseconds", 2),
    ]);
    let mut vm = http_vm(json!({}));
    vm.request().key("k").respond(200).unwrap();
    assert_eq!(one_more(&mut vm), floor);
    // The log sink reads nothing more (the extras are in the same map) and writes once.
    let mut vm = logging(json!({"log_output": "filter_state"}));
    vm.request().key("k").respond(200).unwrap();
    let mut with_log = floor.clone();
    with_log.insert("proxy_set_property", 1);
    assert_eq!(one_more(&mut vm), with_log);
}
