//! Who and what: attributes from a query or a property, the key from a property, kafka_key.
use super::*;

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
        c.http.into_iter().next().unwrap().kafka_key.as_deref(),
        Some("organization_id")
    );
    let c = parse_str(&format!(
        r#"{{{base},"http":{{"cluster":"c","kafka_key":"subscription_key"}}}}"#
    ))
    .unwrap();
    assert_eq!(c.http.into_iter().next().unwrap().kafka_key, None);
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
