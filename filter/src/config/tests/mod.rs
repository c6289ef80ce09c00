use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_str(s: &str) -> Result<Config, ConfigError> {
    parse(s.as_bytes(), &no_env)
}

#[test]
fn empty_config_means_defaults_and_disabled() {
    let c = parse_str("").unwrap();
    assert_eq!(c, Config::default());
    assert!(!c.enabled);
    assert!(c.log_sink);
    assert!(c.http.is_empty());
}

#[test]
fn env_var_turns_streaming_on() {
    for v in ["true", "1", "TRUE"] {
        let env = |k: &str| (k == "ENABLE_EVENT_STREAMING").then(|| v.to_string());
        assert!(parse(b"{}", &env).unwrap().enabled, "{v}");
    }
    let env = |k: &str| (k == "ENABLE_EVENT_STREAMING").then(|| "yes".to_string());
    assert!(!parse(b"{}", &env).unwrap().enabled);
}

#[test]
fn http_defaults_follow_the_spec() {
    let c =
        parse_str(r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"collector"}}"#).unwrap();
    let h = c.http.into_iter().next().unwrap();
    assert!(!c.log_sink);
    assert_eq!(h.authority, "collector");
    assert_eq!(h.path, "/api/v1/usage/events");
    assert_eq!(h.format, Format::Veil);
    assert_eq!(
        (h.timeout_ms, h.batch_size, h.max_batch_bytes),
        (5000, 100, 1_048_576)
    );
    assert_eq!(
        (h.flush_interval_ms, h.buffer_size, h.max_in_flight),
        (1000, 10_000, 2)
    );
    assert_eq!(h.backlog_batch_size, 100, "= batch_size: off");
    assert_eq!(
        h.retry,
        Retry {
            max_attempts: 3,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000
        }
    );
    assert_eq!(h.compression, Compression::None);
}

#[test]
fn url_shortcut_sets_authority_path_and_cluster() {
    let c = parse_str(
        r#"{"sinks":["http"],"http":{"url":"http://collector:3000/api/v1/usage/events"}}"#,
    )
    .unwrap();
    let h = c.http.into_iter().next().unwrap();
    assert_eq!(h.authority, "collector:3000");
    assert_eq!(h.cluster, "collector:3000");
    assert_eq!(h.path, "/api/v1/usage/events");
    let c = parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","url":"http://x:1/e"}}"#).unwrap();
    assert_eq!(c.http.into_iter().next().unwrap().cluster, "c");
}

#[test]
fn protobuf_struct_as_envoy_hands_it_over() {
    // What Envoy 1.40 passed for `enabled: true` plus a nested http section, captured
    // from the real binary and extended by hand: fields{enabled: true,
    // sinks: ["http"], http: {cluster: "c", batch_size: 50}}
    fn len(field: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, body.len() as u8];
        v.extend_from_slice(body);
        v
    }
    fn entry(k: &str, value: Vec<u8>) -> Vec<u8> {
        let mut e = len(1, k.as_bytes());
        e.extend(len(2, &value));
        len(1, &e)
    }
    let bool_true = vec![0x20, 0x01];
    let s_http = len(3, b"http");
    let list = len(6, &len(1, &s_http));
    let mut num = vec![0x11];
    num.extend_from_slice(&50f64.to_le_bytes());
    let mut http = entry("cluster", len(3, b"c"));
    http.extend(entry("batch_size", num));
    let mut cfg = entry("enabled", bool_true);
    cfg.extend(entry("sinks", list));
    cfg.extend(entry("http", len(5, &http)));
    assert_eq!(
        &cfg[..11],
        &[0x0a, 0x0d, 0x0a, 0x07, b'e', b'n', b'a', b'b', b'l', b'e', b'd']
    );
    let c = parse(&cfg, &no_env).unwrap();
    assert!(c.enabled);
    let h = c.http.into_iter().next().unwrap();
    assert_eq!((h.cluster.as_str(), h.batch_size), ("c", 50));
    // truncated protobuf is refused, not misread
    let e = parse(&cfg[..cfg.len() - 3], &no_env).unwrap_err();
    assert_eq!(e.key, "(root)");
}

#[test]
fn struct_numbers_as_doubles_are_accepted() {
    let c = parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":50.0}}"#).unwrap();
    assert_eq!(c.http.into_iter().next().unwrap().batch_size, 50);
}

#[test]
fn header_values_come_from_the_environment() {
    let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
    let c = parse(
        br#"{"sinks":["http"],"http":{"cluster":"c","headers":{"Authorization":"${TOKEN}","x-a":"b"}}}"#,
        &env,
    )
    .unwrap();
    let h = c.http.into_iter().next().unwrap();
    assert!(h
        .headers
        .contains(&("authorization".to_string(), "s3cret".to_string())));
    assert!(h.headers.contains(&("x-a".to_string(), "b".to_string())));
}

#[test]
fn attributes_and_lowercasing() {
    let c = parse_str(
        r#"{"subscription_key_header":"X-Api-Key","attributes":{"organization_id":{"header":"X-Org"}}}"#,
    )
    .unwrap();
    assert_eq!(c.subscription_key_header, "x-api-key");
    assert_eq!(
        c.attributes,
        vec![Attribute {
            field: "organization_id".into(),
            source: Source::Header("x-org".into())
        }]
    );
}

/// Every refusal names the key and the rule.
#[test]
fn bad_configs_are_refused_with_key_and_rule() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"enabeld":true}"#, "enabeld", "unknown key"),
        (r#"{"enabled":"yes"}"#, "enabled", "must be a boolean"),
        (
            r#"{"key_mode":"md5"}"#,
            "key_mode",
            "must be one of raw, sha256, redact",
        ),
        (r#"{"sinks":["http"]}"#, "http.cluster", "is required"),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":0}}"#,
            "http.batch_size",
            "between 1 and",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","timeout_ms":-5}}"#,
            "http.timeout_ms",
            "between 1 and",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","format":"xml"}}"#,
            "http.format",
            "must be one of",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","retry":{"max_attempts":0}}}"#,
            "http.retry.max_attempts",
            "between 1 and",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","retry":{"initial_backoff_ms":500,"max_backoff_ms":100}}}"#,
            "http.retry.max_backoff_ms",
            ">= http.retry.initial_backoff_ms",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","bogus":1}}"#,
            "http.bogus",
            "unknown key",
        ),
        (r#"{"sinks":[]}"#, "sinks", "at least one sink"),
        (
            r#"{"sinks":["kafka"]}"#,
            "sinks[0]",
            "must be \"log\" or \"http\"",
        ),
        (
            r#"{"exclude_paths":["health"]}"#,
            "exclude_paths[0]",
            "must start with '/'",
        ),
        (
            r#"{"attributes":{"method":{"header":"x"}}}"#,
            "attributes.method",
            "collides",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","headers":{"authorization":"${NOPE}"}}}"#,
            "http.headers.authorization",
            "NOPE is not set",
        ),
        (
            r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":1.5}}"#,
            "http.batch_size",
            "whole number",
        ),
        (
            r#"{"sinks":["http"],"http":{"url":"ftp://x"}}"#,
            "http.url",
            "must look like",
        ),
        (r#"[1,2]"#, "(root)", "must be a JSON object"),
        (r#"{"enabled":tru"#, "(root)", "valid JSON"),
    ];
    for (json, key, rule) in cases {
        let e = parse_str(json).expect_err(json);
        assert_eq!(&e.key, key, "{json} -> {e}");
        assert!(e.rule.contains(rule), "{json} -> {e}");
        assert!(e.to_string().contains(key));
    }
}

/// The known keys come from `keys::ALL` now; the order users saw before must not change.
#[test]
fn unknown_key_lists_the_section_keys_in_table_order() {
    let e = parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","bogus":1}}"#).unwrap_err();
    assert_eq!(
        e.rule,
        "unknown key (known keys: cluster, authority, path, url, format, headers, timeout_ms, \
         batch_size, backlog_batch_size, max_batch_bytes, flush_interval_ms, buffer_size, max_in_flight, retry, \
         compression, kafka_key, name, cloudevents)"
    );
    let e = parse_str(r#"{"dispatcher":{"vm":"x"}}"#).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.rule.as_str()),
        (
            "dispatcher.vm",
            "unknown key (known keys: mode, vm_id, queue, service)"
        )
    );
    let e = parse_str(r#"{"x":1}"#).unwrap_err();
    assert!(e.rule.ends_with(
        "(known keys: enabled, subscription_key_header, require_key, key_mode, exclude_paths, \
         attributes, sinks, log_output, http, dispatcher, llm, subscription_key_property, \
         subscription_key_property_as, path_templates)"
    ));
}

mod destinations;
mod identity;
mod roles_and_numbers;
