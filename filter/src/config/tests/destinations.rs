//! `http` as an array of named destinations, and the CloudEvents attributes.

use super::*;

fn with_http(http: &str) -> Result<Config, ConfigError> {
    parse_str(&format!(r#"{{"sinks":["http"],"http":{http}}}"#))
}

#[test]
fn an_array_gives_each_destination_its_own_settings_in_order() {
    let c = with_http(
        r#"[{"name":"billing","cluster":"veil","batch_size":50},
            {"name":"analytics","url":"http://ch:8123/?query=x","format":"ndjson","compression":"gzip"}]"#,
    )
    .unwrap();
    assert!(c.http_named);
    let names: Vec<&str> = c.http.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["billing", "analytics"]);
    assert_eq!((c.http[0].batch_size, c.http[0].format), (50, Format::Veil));
    assert_eq!(
        (
            c.http[1].batch_size,
            c.http[1].format,
            c.http[1].compression
        ),
        (100, Format::Ndjson, Compression::Gzip)
    );
    assert_eq!(c.role(), Role::Local);
}

#[test]
fn a_single_object_named_or_not_keeps_the_plain_names() {
    let c = with_http(r#"{"cluster":"c"}"#).unwrap();
    assert!(!c.http_named);
    assert_eq!(c.http[0].name, "default");
    let c = with_http(r#"{"cluster":"c","name":"billing"}"#).unwrap();
    assert!(!c.http_named);
    assert_eq!(c.http[0].name, "billing");
}

#[test]
fn bad_arrays_and_names_are_refused_naming_the_key_and_rule() {
    let nine: Vec<String> = (0..9)
        .map(|i| format!(r#"{{"name":"d{i}","cluster":"c"}}"#))
        .collect();
    let nine = format!("[{}]", nine.join(","));
    let cases: &[(&str, &str, &str)] = &[
        (r#"[]"#, "http", "1 to 8 destinations, got 0"),
        (&nine, "http", "1 to 8 destinations, got 9"),
        (
            r#"[{"cluster":"c"}]"#,
            "http[0].name",
            "is required in an http array",
        ),
        (
            r#"[{"name":"a","cluster":"c"},{"name":"a","cluster":"d"}]"#,
            "http[1].name",
            "\"a\" is already the name of another destination",
        ),
        (
            r#"[{"name":"Billing","cluster":"c"}]"#,
            "http[0].name",
            "[a-z0-9_]",
        ),
        (r#"[{"name":"","cluster":"c"}]"#, "http[0].name", "1 to 32"),
        (
            &format!(r#"[{{"name":"{}","cluster":"c"}}]"#, "a".repeat(33)),
            "http[0].name",
            "1 to 32",
        ),
        (r#"{"name":"a-b","cluster":"c"}"#, "http.name", "[a-z0-9_]"),
        (
            r#"[{"name":"a","cluster":"c"},{"name":"b","cluster":"c","batch_size":0}]"#,
            "http[1].batch_size",
            "between 1 and 100000",
        ),
        (
            r#"[{"name":"a","cluster":"c"},{"name":"b"}]"#,
            "http[1].cluster",
            "is required",
        ),
        (
            r#"[{"name":"a","cluster":"c"},7]"#,
            "http[1]",
            "must be a JSON object",
        ),
        (
            r#""c""#,
            "http",
            "must be a JSON object or an array of them",
        ),
        (
            r#"[{"name":"a","cluster":"c","cloudevents":{"type":" "}}]"#,
            "http[0].cloudevents.type",
            "must not be empty",
        ),
        (
            r#"{"cluster":"c","cloudevents":{"subject":"x"}}"#,
            "http.cloudevents.subject",
            "unknown key (known keys: type, source)",
        ),
    ];
    for (http, key, rule) in cases {
        let e = with_http(http).expect_err(http);
        assert_eq!(&e.key, key, "{http} -> {e}");
        assert!(e.rule.contains(rule), "{http} -> {e}");
    }
}

#[test]
fn an_array_is_checked_even_when_http_is_not_a_sink() {
    let e = parse_str(r#"{"http":[{"name":"a","cluster":"c"},{"name":"a","cluster":"c"}]}"#)
        .unwrap_err();
    assert_eq!(e.key, "http[1].name");
    let c = parse_str(r#"{"http":[{"name":"a","cluster":"c"}]}"#).unwrap();
    assert!(c.http.is_empty());
    assert_eq!(c.role(), Role::LogOnly);
}

#[test]
fn kafka_key_is_checked_per_destination() {
    let e = with_http(
        r#"[{"name":"a","cluster":"c"},{"name":"k","cluster":"c","format":"kafka-rest","kafka_key":"org"}]"#,
    )
    .unwrap_err();
    assert_eq!(e.key, "http[1].kafka_key");
}

#[test]
fn cloudevents_type_and_source_default_and_are_configurable() {
    let c = with_http(r#"{"cluster":"c"}"#).unwrap();
    assert_eq!(
        (
            c.http[0].cloudevents_type.as_str(),
            c.http[0].cloudevents_source.as_str()
        ),
        ("api.usage", "usage-filter")
    );
    let c = with_http(
        r#"{"cluster":"c","cloudevents":{"type":"com.acme.api.request","source":"gw-eu-1"}}"#,
    )
    .unwrap();
    assert_eq!(
        (
            c.http[0].cloudevents_type.as_str(),
            c.http[0].cloudevents_source.as_str()
        ),
        ("com.acme.api.request", "gw-eu-1")
    );
}
