//! Malformed input is ordinary input: the VM never traps and the request is still metered.
use crate::common::*;
use proxy_wasm_host::{Profile, Vm};
use serde_json::json;

#[test]
fn non_utf8_header_values() {
    let mut vm = logging(json!({"attributes": {"org": {"header": "x-org"}}}));
    vm.request()
        .header_bytes(":path", b"/caf\xe9?x=\xff")
        .header_bytes("x-subscription-key", b"k\xff\xfe")
        .header_bytes("x-org", b"\xc3\x28")
        .header_bytes(":method", b"G\x80T")
        .respond(200)
        .unwrap();
    let e = &vm.events()[0];
    assert_veil_fields(e);
    assert_eq!(e["api_path"], "/caf\u{FFFD}");
    assert_eq!(e["subscription_key"], "k\u{FFFD}\u{FFFD}");
    assert!(vm.trapped().is_none());
}

#[test]
fn missing_path_and_method() {
    let mut vm = logging(json!({}));
    vm.request()
        .without(":path")
        .without(":method")
        .without(":authority")
        .key("k")
        .respond(200)
        .unwrap();
    let e = &vm.events()[0];
    assert_eq!(e["api_path"], "");
    assert_eq!(e["method"], "");
    assert!(e.get("authority").is_none());
}

#[test]
fn huge_header_values() {
    let big = "k".repeat(64 * 1024);
    let path = format!("/{}", "p".repeat(64 * 1024));
    let mut vm = logging(json!({"key_mode": "redact"}));
    vm.request()
        .path(&path)
        .header("x-subscription-key", &big)
        .header("x-request-id", &big)
        .respond(200)
        .unwrap();
    let e = &vm.events()[0];
    assert_eq!(e["api_path"].as_str().unwrap().len(), path.len());
    assert_eq!(e["subscription_key"], "kkkk…");
    // the VM can go on
    vm.request().key("k").respond(200).unwrap();
    assert_eq!(vm.events().len(), 2);
}

#[test]
fn odd_statuses() {
    let mut vm = logging(json!({}));
    vm.request().key("k").respond(0).unwrap();
    vm.request().key("k").respond(999).unwrap();
    vm.request().key("k").respond(100).unwrap();
    let codes: Vec<_> = vm
        .events()
        .iter()
        .map(|e| (e["status_code"].clone(), e["success"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!(0), json!(false)),
            (json!(999), json!(false)),
            (json!(100), json!(false))
        ]
    );
}

#[test]
fn hosts_without_envoy_properties_still_get_status_and_sizes() {
    // Kong's ngx_wasm_module has no response.code / request.size properties; the filter
    // never needs them: the status comes from :status, sizes from the body callbacks.
    let mut vm = Vm::with_profile(Profile::Kong)
        .config(json!({"enabled": true}))
        .start()
        .unwrap();
    vm.request()
        .key("k")
        .body(5)
        .response_body(7)
        .respond(404)
        .unwrap();
    vm.request().key("k").respond_raw_status(b"abc").unwrap();
    let ev = vm.events();
    assert_eq!(ev[0]["status_code"], 404);
    assert_eq!(
        (
            ev[0]["request_size"].clone(),
            ev[0]["response_size"].clone()
        ),
        (json!(5), json!(7))
    );
    assert_eq!(ev[1]["status_code"], 0, "unparsable :status");
    assert!(vm.trapped().is_none());
}

#[test]
fn large_bodies_arrive_in_chunks_and_are_summed() {
    let mut vm = logging(json!({}));
    let out = vm
        .request()
        .method("POST")
        .key("k")
        .body(100_000)
        .response_body(40_000)
        .respond(200)
        .unwrap();
    assert_eq!(out.fuel["on_request_body"].0, 7, "16 KiB chunks");
    let e = &vm.events()[0];
    assert_eq!(
        (e["request_size"].clone(), e["response_size"].clone()),
        (json!(100_000), json!(40_000))
    );
}

#[test]
fn malformed_plugin_config_bytes() {
    let err = Vm::envoy()
        .config_str("\u{0}\u{1}garbage")
        .start()
        .err()
        .expect("refused");
    assert!(err.logs.iter().any(|l| l.message.contains("(root)")));
    // and an empty configuration is all defaults (disabled), not an error
    assert!(Vm::envoy().config_str("").start().is_ok());
}
