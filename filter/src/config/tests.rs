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
    assert!(c.http.is_none());
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
    let h = c.http.unwrap();
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
    let h = c.http.unwrap();
    assert_eq!(h.authority, "collector:3000");
    assert_eq!(h.cluster, "collector:3000");
    assert_eq!(h.path, "/api/v1/usage/events");
    let c = parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","url":"http://x:1/e"}}"#).unwrap();
    assert_eq!(c.http.unwrap().cluster, "c");
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
    let h = c.http.unwrap();
    assert_eq!((h.cluster.as_str(), h.batch_size), ("c", 50));
    // truncated protobuf is refused, not misread
    let e = parse(&cfg[..cfg.len() - 3], &no_env).unwrap_err();
    assert_eq!(e.key, "(root)");
}

#[test]
fn struct_numbers_as_doubles_are_accepted() {
    let c = parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":50.0}}"#).unwrap();
    assert_eq!(c.http.unwrap().batch_size, 50);
}

#[test]
fn header_values_come_from_the_environment() {
    let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
    let c = parse(
        br#"{"sinks":["http"],"http":{"cluster":"c","headers":{"Authorization":"${TOKEN}","x-a":"b"}}}"#,
        &env,
    )
    .unwrap();
    let h = c.http.unwrap();
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
         batch_size, max_batch_bytes, flush_interval_ms, buffer_size, max_in_flight, retry, \
         compression, kafka_key)"
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
            "known keys: enabled, max_scan_bytes, paths",
        ),
        (r#"{"llm":true}"#, "llm", "object"),
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
        assert_eq!(c.http.unwrap().authority, authority);
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
    let h = c.http.unwrap();
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

#[test]
fn attributes_from_a_query_or_a_property() {
    let c = parse_str(
        r#"{"attributes":{
            "plan":{"query":"plan"},
            "org":{"property":["metadata","filter_metadata","envoy.filters.http.jwt_authn","jwt_payload","org"]},
            "seats":{"property":["metadata","x","seats"],"as":"double"},
            "route":{"property":["xds","route_name"],"as":"string"}}}"#,
    )
    .unwrap();
    let by = |f: &str| {
        c.attributes
            .iter()
            .find(|a| a.field == f)
            .unwrap()
            .source
            .clone()
    };
    assert_eq!(by("plan"), Source::Query("plan".into()));
    assert_eq!(
        by("org"),
        Source::Property(Property {
            path: b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload\0org"
                .to_vec(),
            as_: PropertyAs::String
        })
    );
    assert_eq!(
        by("seats"),
        Source::Property(Property {
            path: b"metadata\0x\0seats".to_vec(),
            as_: PropertyAs::Double
        })
    );
}

#[test]
fn the_key_from_a_property() {
    let c = parse_str(r#"{"subscription_key_property":["a","sub"]}"#).unwrap();
    assert_eq!(
        c.subscription_key_property,
        Some(Property {
            path: b"a\0sub".to_vec(),
            as_: PropertyAs::String
        })
    );
    let c = parse_str(
        r#"{"subscription_key_property":["a","n"],"subscription_key_property_as":"double"}"#,
    )
    .unwrap();
    assert_eq!(
        c.subscription_key_property.map(|p| p.as_),
        Some(PropertyAs::Double)
    );
}

#[test]
fn kafka_key_names_the_subscription_key_or_an_attribute() {
    let base = r#""sinks":["http"],"attributes":{"organization_id":{"header":"x-org"}}"#;
    let c = parse_str(&format!(
        r#"{{{base},"http":{{"cluster":"c","format":"kafka-rest","kafka_key":"organization_id"}}}}"#
    ))
    .unwrap();
    assert_eq!(
        c.http.unwrap().kafka_key.as_deref(),
        Some("organization_id")
    );
    let c = parse_str(&format!(
        r#"{{{base},"http":{{"cluster":"c","kafka_key":"subscription_key"}}}}"#
    ))
    .unwrap();
    assert_eq!(c.http.unwrap().kafka_key, None);
    let e = parse_str(&format!(
        r#"{{{base},"http":{{"cluster":"c","kafka_key":"org"}}}}"#
    ))
    .unwrap_err();
    assert_eq!(e.key, "http.kafka_key");
    assert!(
        e.rule.contains("attributes: [organization_id]") && e.rule.contains("\"org\""),
        "{e}"
    );
    // checked even while http is not a sink
    let e = parse_str(r#"{"http":{"cluster":"c","kafka_key":"nope"}}"#).unwrap_err();
    assert_eq!(e.key, "http.kafka_key");
}

#[test]
fn identity_keys_refuse_what_cannot_work_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"subscription_key_property":"sub"}"#,
            "subscription_key_property",
            "array of path segments",
        ),
        (
            r#"{"subscription_key_property":[]}"#,
            "subscription_key_property",
            "at least one",
        ),
        (
            r#"{"subscription_key_property":["a",""]}"#,
            "subscription_key_property[1]",
            "non-empty",
        ),
        (
            r#"{"subscription_key_property":["a",1]}"#,
            "subscription_key_property[1]",
            "must be a string",
        ),
        (
            r#"{"subscription_key_property_as":"bool"}"#,
            "subscription_key_property_as",
            "one of string, double, int",
        ),
        (
            r#"{"attributes":{"o":{}}}"#,
            "attributes.o.header",
            "is required",
        ),
        (
            r#"{"attributes":{"o":{"header":"x","query":"y"}}}"#,
            "attributes.o",
            "exactly one of",
        ),
        (
            r#"{"attributes":{"o":{"query":""}}}"#,
            "attributes.o.query",
            "parameter name",
        ),
        (
            r#"{"attributes":{"o":{"header":"x","as":"double"}}}"#,
            "attributes.o.as",
            "only for a \"property\"",
        ),
        (
            r#"{"attributes":{"o":{"property":["a"],"as":"float"}}}"#,
            "attributes.o.as",
            "one of string, double, int, bool",
        ),
        (
            r#"{"attributes":{"o":{"property":[]}}}"#,
            "attributes.o.property",
            "at least one",
        ),
        (
            r#"{"attributes":{"o":{"property":["a\u0000b"]}}}"#,
            "attributes.o.property[0]",
            "without NUL",
        ),
        (
            r#"{"attributes":{"o":{"header":"h","cookie":"c"}}}"#,
            "attributes.o.cookie",
            "unknown key",
        ),
        (
            r#"{"attributes":{"api_route":{"header":"x"}}}"#,
            "attributes.api_route",
            "collides",
        ),
        (
            r#"{"path_templates":"/v1"}"#,
            "path_templates",
            "array of route templates",
        ),
        (
            r#"{"path_templates":["/a",3]}"#,
            "path_templates[1]",
            "must be a string",
        ),
        (
            r#"{"path_templates":["/a","v1/{id}"]}"#,
            "path_templates[1]",
            "\"v1/{id}\" must start with '/'",
        ),
        (
            r#"{"path_templates":["/a/{}"]}"#,
            "path_templates[0]",
            "needs a name",
        ),
        (
            r#"{"path_templates":["/a/{*r}/b"]}"#,
            "path_templates[0]",
            "must be the last segment",
        ),
    ];
    for (json, key, rule) in cases {
        let e = parse_str(json).unwrap_err();
        assert_eq!(&e.key, key, "{json} -> {e}");
        assert!(e.rule.contains(rule), "{json} -> {e}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("\"/r{i}\"")).collect();
    let e = parse_str(&format!(r#"{{"path_templates":[{}]}}"#, many.join(","))).unwrap_err();
    assert_eq!(e.key, "path_templates");
    assert!(e.rule.contains("at most 1000"), "{e}");
    let ok: Vec<String> = (0..1000).map(|i| format!("\"/r{i}/{{id}}\"")).collect();
    let c = parse_str(&format!(r#"{{"path_templates":[{}]}}"#, ok.join(","))).unwrap();
    assert_eq!(c.routes.find(b"/r999/7"), Some(999));
}
