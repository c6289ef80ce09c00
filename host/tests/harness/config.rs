//! Configuration through the host: refused at configure time with the key and the rule in
//! the one error line, accepted in both of Envoy's encodings.
use crate::common::*;
use proxy_wasm_host::Vm;
use serde_json::json;

/// (configuration, key the message must name, words of the rule)
const BAD: &[(&str, &str, &str)] = &[
    (r#"{"enabeld": true}"#, "enabeld", "unknown key"),
    (r#"{"enabled": "yes"}"#, "enabled", "must be a boolean"),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "batch_size": 0}}"#,
        "http.batch_size",
        "between 1 and",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "timeout_ms": -1}}"#,
        "http.timeout_ms",
        "between 1 and",
    ),
    (r#"{"sinks": ["http"]}"#, "http.cluster", "is required"),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "format": "protobuf"}}"#,
        "http.format",
        "must be one of veil, ndjson, json, cloudevents, kafka-rest",
    ),
    (
        r#"{"key_mode": "md5"}"#,
        "key_mode",
        "must be one of raw, sha256, redact",
    ),
    (r#"{"sinks": "log"}"#, "sinks", "must be an array"),
    (
        r#"{"sinks": ["stdout"]}"#,
        "sinks[0]",
        "must be \"log\" or \"http\"",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "retry": {"max_attempts": 0}}}"#,
        "http.retry.max_attempts",
        "between 1 and",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "buffer_size": 10, "batch_size": 100}}"#,
        "http.batch_size",
        "must not exceed http.buffer_size",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "compression": "br"}}"#,
        "http.compression",
        "must be one of none, gzip",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "max_in_flight": 0}}"#,
        "http.max_in_flight",
        "between 1 and",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "flush_interval_ms": "1s"}}"#,
        "http.flush_interval_ms",
        "must be a whole number",
    ),
    (
        r#"{"exclude_paths": "/health"}"#,
        "exclude_paths",
        "must be an array",
    ),
    (
        r#"{"attributes": {"org": {"from": "x-org"}}}"#,
        "attributes.org.header",
        "is required",
    ),
    (
        r#"{"dispatcher": {"mode": "kafka"}}"#,
        "dispatcher.mode",
        "must be one of local, shared_queue",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "headers": {"authorization": "${MISSING_TOKEN}"}}}"#,
        "http.headers.authorization",
        "MISSING_TOKEN is not set",
    ),
    (
        r#"{"sinks": ["http"], "http": {"url": "http://collector:port/api"}}"#,
        "http.url",
        "port must be a number 1..=65535, got \"port\"",
    ),
    (
        r#"{"sinks": ["http"], "http": {"url": "http://collector:99999/api"}}"#,
        "http.url",
        "port must be a number 1..=65535, got \"99999\"",
    ),
    (
        r#"{"sinks": ["http"], "http": {"url": "http://c:/x"}}"#,
        "http.url",
        "port must be a number 1..=65535, got \"\"",
    ),
    (
        r#"{"sinks": ["http"], "http": {"cluster": "collector", "batch_size": "100.5"}}"#,
        "http.batch_size",
        "must be a whole number, got \"100.5\"",
    ),
    (r#"{"enabled": true"#, "(root)", "must be valid JSON"),
    (r#""just a string""#, "(root)", "must be a JSON object"),
];

#[test]
fn bad_configurations_are_refused_naming_key_and_rule() {
    for (cfg, key, rule) in BAD {
        let err = match Vm::envoy().config_str(cfg).start() {
            Ok(_) => panic!("accepted: {cfg}"),
            Err(e) => e,
        };
        assert!(
            err.message.contains("on_configure returned false"),
            "{cfg}: {}",
            err.message
        );
        let errors: Vec<_> = err.logs.iter().filter(|l| l.level == 4).collect();
        assert_eq!(
            errors.len(),
            1,
            "exactly one error line for {cfg}: {:?}",
            err.logs
        );
        let msg = &errors[0].message;
        assert!(
            msg.contains(&format!("{key}:")),
            "{cfg}: message must name {key}: {msg}"
        );
        assert!(
            msg.contains(rule),
            "{cfg}: message must state the rule '{rule}': {msg}"
        );
    }
}

#[test]
fn struct_config_with_doubles_takes_effect() {
    // What Envoy makes of a google.protobuf.Struct written as YAML: numbers as doubles, handed
    // to the plugin in protobuf's binary encoding (`Builder::config`).
    let mut vm = Vm::envoy()
        .config(json!({"enabled": true, "sinks": ["http"], "http": {
            "cluster": "collector", "batch_size": 3.0, "timeout_ms": 2000.0,
            "flush_interval_ms": 600000.0}}))
        .start()
        .unwrap_or_else(|e| panic!("start: {e}"));
    send(&mut vm, 5);
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert_eq!(
        c.len(),
        1,
        "one full batch of 3; 2 wait for the 10-minute flush"
    );
    assert_eq!(veil_events(&c[0]).len(), 3);
    assert_eq!(c[0].timeout_ms, 2000, "the default is 5000");
}

/// Envoy's YAML loader turns `batch_size: 100.0` (any number that is not a 32-bit integer)
/// into a Struct string, checked against the real Envoy 1.40: the plugin receives
/// `string_value: "100.0"`. A whole number spelled so takes effect.
#[test]
fn struct_whole_numbers_as_strings_take_effect() {
    let mut vm = Vm::envoy()
        .config(json!({"enabled": true, "sinks": ["http"], "http": {
            "cluster": "collector", "batch_size": "3.0", "timeout_ms": "2e3",
            "flush_interval_ms": "600000"}}))
        .start()
        .unwrap_or_else(|e| panic!("start: {e}"));
    send(&mut vm, 5);
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert_eq!(c.len(), 1, "one full batch of 3");
    assert_eq!(veil_events(&c[0]).len(), 3);
    assert_eq!(c[0].timeout_ms, 2000);
}

#[test]
fn header_secret_comes_from_vm_environment() {
    let mut vm = Vm::envoy()
        .env("COLLECTOR_TOKEN", "Bearer s3cret")
        .config_str(r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"collector","flush_interval_ms":10,"headers":{"authorization":"${COLLECTOR_TOKEN}"}}}"#)
        .start()
        .unwrap();
    vm.request().key("k").respond(200).unwrap();
    vm.advance_ms(10).unwrap();
    let c = &vm.callouts()[0];
    assert_eq!(c.header("authorization").as_deref(), Some("Bearer s3cret"));
}
