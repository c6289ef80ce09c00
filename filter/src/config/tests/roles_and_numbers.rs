//! The llm section, roles, URLs and the numbers Envoy hands over as strings.
use super::*;

#[test]
fn the_llm_section_is_off_by_default_and_validated_like_every_key() {
    assert_eq!(parse_str("{}").unwrap().llm, None);
    let c = parse_str(r#"{"llm":{"max_scan_bytes":10}}"#).unwrap();
    assert_eq!(c.llm, None, "validated but off");
    let c = parse_str(r#"{"llm":{"enabled":true}}"#).unwrap();
    let l = c.llm.unwrap();
    assert_eq!((l.max_scan_bytes, l.paths.len()), (65_536, 0));
    assert!(l.inspects(b"/anything"));
    let c = parse_str(
        r#"{"llm":{"enabled":true,"paths":["/v1/chat/","/v1/messages"],"max_scan_bytes":1024}}"#,
    )
    .unwrap();
    let l = c.llm.unwrap();
    assert_eq!(l.max_scan_bytes, 1024);
    assert!(l.inspects(b"/v1/messages") && l.inspects(b"/v1/chat/completions"));
    assert!(!l.inspects(b"/v1/embeddings"));
    for (json, key, rule) in [
        (
            r#"{"llm":{"enabled":"yes"}}"#,
            "llm.enabled",
            "must be a boolean",
        ),
        (
            r#"{"llm":{"max_scan_bytes":0}}"#,
            "llm.max_scan_bytes",
            "between 1 and",
        ),
        (
            r#"{"llm":{"paths":[]}}"#,
            "llm.paths",
            "at least one path prefix",
        ),
        (
            r#"{"llm":{"paths":["v1"]}}"#,
            "llm.paths[0]",
            "must start with '/'",
        ),
        (
            r#"{"llm":{"paths":"/v1"}}"#,
            "llm.paths",
            "array of path prefixes",
        ),
        (
            r#"{"llm":{"enable":true}}"#,
            "llm.enable",
            "known keys: enabled, max_scan_bytes, paths, prices, currency, force_stream_usage, max_request_bytes, filter_state",
        ),
        (r#"{"llm":true}"#, "llm", "object"),
        (
            r#"{"llm":{"prices":{"gpt-4o":{"input":-1,"output":10}}}}"#,
            "llm.prices[\"gpt-4o\"].input",
            "at most 9 decimals, got -1",
        ),
        (
            r#"{"llm":{"prices":{"gpt-4o":{"input":1,"output":0.0000000001}}}}"#,
            "llm.prices[\"gpt-4o\"].output",
            "at most 9 decimals",
        ),
        (
            r#"{"llm":{"prices":{"gpt-4o":{"input":1}}}}"#,
            "llm.prices[\"gpt-4o\"].output",
            "is required",
        ),
        (
            r#"{"llm":{"prices":{"gpt-4o":{"input":1,"output":2,"cache_read":1}}}}"#,
            "llm.prices[\"gpt-4o\"].cache_read",
            "unknown price",
        ),
        (
            r#"{"llm":{"prices":{"gpt*4o":{"input":1,"output":2}}}}"#,
            "llm.prices[\"gpt*4o\"]",
            "'*' may only end it",
        ),
        (
            r#"{"llm":{"prices":{"gpt-4o":{"input":true,"output":2}}}}"#,
            "llm.prices[\"gpt-4o\"].input",
            "must be a number",
        ),
        (r#"{"llm":{"prices":[]}}"#, "llm.prices", "object"),
        (
            r#"{"llm":{"currency":" "}}"#,
            "llm.currency",
            "not be empty",
        ),
        (
            r#"{"llm":{"enabled":true},"attributes":{"model":{"header":"x-model"}}}"#,
            "attributes.model",
            "llm event field",
        ),
    ] {
        let e = parse_str(json).unwrap_err();
        assert_eq!(e.key, key, "{json}: {e}");
        assert!(e.rule.contains(rule), "{json}: {e}");
    }
    // prices as numbers or as the strings Envoy's YAML loader makes of them, exactly
    let c = parse_str(r#"{"llm":{"enabled":true,"prices":{"m*":{"input":"0.3","output":1e-9}}}}"#)
        .unwrap();
    let l = c.llm.unwrap();
    let p = l.prices.find("m1").unwrap();
    assert_eq!(
        (p.input, p.cached_input, p.output),
        (300_000_000, 300_000_000, 1)
    );
    assert_eq!(l.currency, "USD");
    // without llm, "model" is an ordinary attribute name
    assert!(parse_str(r#"{"attributes":{"model":{"header":"x-model"}}}"#).is_ok());
}

#[test]
fn role_is_decided_by_sinks_mode_and_service() {
    let http = r#""sinks":["http"],"http":{"cluster":"c""#;
    let cases = [
        ("{}".to_string(), Role::LogOnly),
        (
            r#"{"dispatcher":{"service":false}}"#.to_string(),
            Role::LogOnly,
        ),
        (format!("{{{http}}}}}"), Role::Local),
        (
            format!(r#"{{{http}}},"dispatcher":{{"mode":"local"}}}}"#),
            Role::Local,
        ),
        (
            format!(r#"{{{http}}},"dispatcher":{{"mode":"shared_queue"}}}}"#),
            Role::QueueWorker,
        ),
        (
            format!(r#"{{{http}}},"dispatcher":{{"mode":"shared_queue","service":true}}}}"#),
            Role::QueueService,
        ),
    ];
    for (json, role) in cases {
        assert_eq!(parse_str(&json).unwrap().role(), role, "{json}");
    }
}

/// Accepted before: the root context then built a local dispatcher but shut down as the
/// service does, reporting done at once and dropping what the dispatcher still held.
#[test]
fn service_in_local_mode_is_refused() {
    for json in [
        r#"{"sinks":["http"],"http":{"cluster":"c"},"dispatcher":{"service":true}}"#,
        r#"{"sinks":["http"],"http":{"cluster":"c"},"dispatcher":{"mode":"local","service":true}}"#,
        r#"{"dispatcher":{"service":true}}"#,
    ] {
        let e = parse_str(json).unwrap_err();
        assert_eq!(e.key, "dispatcher.service", "{e}");
        assert!(e.rule.contains("dispatcher.mode \"shared_queue\""), "{e}");
    }
}

/// A service without the http sink would drain the queue into nothing. Refused before too,
/// but only through the shared_queue rule and blamed on dispatcher.mode; in local mode it
/// was accepted. Now it is refused for what it is, in any mode.
#[test]
fn service_without_the_http_sink_is_refused() {
    for json in [
        r#"{"dispatcher":{"mode":"shared_queue","service":true}}"#,
        r#"{"sinks":["log"],"http":{"cluster":"c"},"dispatcher":{"mode":"shared_queue","service":true}}"#,
    ] {
        let e = parse_str(json).unwrap_err();
        assert_eq!(e.key, "dispatcher.service", "{e}");
        assert!(e.rule.contains("\"http\" in sinks"), "{e}");
    }
}

/// Already refused before `Role`, and kept: a worker queues events for the http sink only,
/// so without it nothing would ever be handed over and "shared_queue" would silently mean
/// "log only".
#[test]
fn shared_queue_worker_without_the_http_sink_is_refused_as_it_has_nothing_to_queue() {
    let e = parse_str(r#"{"sinks":["log"],"dispatcher":{"mode":"shared_queue"}}"#).unwrap_err();
    assert_eq!(e.key, "dispatcher.mode");
    assert!(e.rule.contains("needs \"http\" in sinks"), "{e}");
}

/// A port that is not a number 1..=65535 would make every callout fail with BadArgument and
/// every event a send failure: it is refused at configure time instead.
#[test]
fn url_with_a_bad_port_is_refused_naming_http_url() {
    for url in [
        "http://collector:port/api",
        "http://collector:99999/api",
        "http://collector:65536/api",
        "http://collector:0/api",
        "http://c:/x",
        "http://collector:-1/api",
        "http://collector:+80/api",
        "http://[::1]:abc/api",
        "http://::1:3000/api",
        "http://[::1/api",
    ] {
        let json = format!(r#"{{"sinks":["http"],"http":{{"url":"{url}"}}}}"#);
        let e = parse_str(&json).expect_err(url);
        assert_eq!(e.key, "http.url", "{url} -> {e}");
        assert!(e.rule.contains(url), "{url} -> {e}");
    }
    for (url, authority) in [
        ("http://collector:3000/api", "collector:3000"),
        ("http://collector:65535/api", "collector:65535"),
        ("http://collector/api", "collector"),
        ("https://[::1]:8443/api", "[::1]:8443"),
        ("http://[::1]/api", "[::1]"),
    ] {
        let json = format!(r#"{{"sinks":["http"],"http":{{"url":"{url}"}}}}"#);
        let c = parse_str(&json).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(c.http.into_iter().next().unwrap().authority, authority);
    }
}

/// Envoy turns a YAML number that is not a 32-bit integer (`100.0`, `1e3`, `3000000000`)
/// into a Struct *string* ("Proto3 JSON mapping allows use string for double"), so a whole
/// number written that way is accepted; one that is not whole says what arrived.
#[test]
fn whole_numbers_envoy_turned_into_strings_are_accepted() {
    let c = parse_str(
        r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":"100.0","timeout_ms":"2e3","buffer_size":"20000"}}"#,
    )
    .unwrap();
    let h = c.http.into_iter().next().unwrap();
    assert_eq!(
        (h.batch_size, h.timeout_ms, h.buffer_size),
        (100, 2000, 20_000)
    );
    let cases = [
        ("\"100.5\"", "must be a whole number, got \"100.5\""),
        (
            "\"3000000000\"",
            "must be between 1 and 600000, got 3000000000",
        ),
        ("\"-5.0\"", "must be between 1 and 600000, got -5"),
        ("\"1s\"", "must be a whole number, got a string (\"1s\")"),
        ("\"NaN\"", "must be a whole number"),
        ("\"inf\"", "must be a whole number"),
        ("\"\"", "must be a whole number"),
    ];
    for (v, rule) in cases {
        let json = format!(r#"{{"sinks":["http"],"http":{{"cluster":"c","timeout_ms":{v}}}}}"#);
        let e = parse_str(&json).expect_err(v);
        assert_eq!(e.key, "http.timeout_ms", "{v} -> {e}");
        assert!(e.rule.contains(rule), "{v} -> {e}");
    }
}

/// `http.backlog_batch_size`: `batch_size` unless set, so off by default and for a receiver
/// that caps events per request; refused where it would shrink batches, exceed the buffer or
/// never apply, naming the key and the rule.
#[test]
fn backlog_batch_size_defaults_to_batch_size_and_is_held_to_its_rules() {
    let http = |extra: &str| {
        parse_str(&format!(
            r#"{{"sinks":["http"],"http":{{"cluster":"c","batch_size":50{extra}}}}}"#
        ))
    };
    let h = |extra: &str| http(extra).unwrap().http.remove(0);
    assert_eq!(h("").backlog_batch_size, 50, "follows batch_size");
    assert_eq!(h(r#","backlog_batch_size":1000"#).backlog_batch_size, 1000);
    assert_eq!(
        h(r#","backlog_batch_size":"2000.0""#).backlog_batch_size,
        2000
    );
    assert_eq!(h(r#","backlog_batch_size":50"#).backlog_batch_size, 50);
    for (extra, rule) in [
        (
            r#","backlog_batch_size":0"#,
            "must be between 1 and 100000, got 0",
        ),
        (r#","backlog_batch_size":100001"#, "between 1 and 100000"),
        (r#","backlog_batch_size":1.5"#, "whole number"),
        (
            r#","backlog_batch_size":49"#,
            "must be at least http.batch_size (50), got 49",
        ),
        (
            r#","backlog_batch_size":20000"#,
            "must not exceed http.buffer_size (10000), got 20000",
        ),
        (
            r#","backlog_batch_size":60,"buffer_size":100"#,
            "has no effect: a backlog is more than http.max_in_flight × http.batch_size (100)",
        ),
    ] {
        let e = http(extra).expect_err(extra);
        assert_eq!(e.key, "http.backlog_batch_size", "{extra} -> {e}");
        assert!(e.rule.contains(rule), "{extra} -> {e}");
    }
    // off (= batch_size) is fine whatever the buffer
    assert_eq!(h(r#","buffer_size":100"#).backlog_batch_size, 50);
    // one more waiting event than two full batches makes a backlog: accepted
    assert_eq!(
        h(r#","backlog_batch_size":51,"buffer_size":101"#).backlog_batch_size,
        51
    );
    let e = parse_str(
        r#"{"sinks":["http"],"http":[{"name":"a","cluster":"c"},
            {"name":"b","cluster":"c","backlog_batch_size":10}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.key, "http[1].backlog_batch_size", "{e}");
}
