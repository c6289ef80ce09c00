//! Who and what a request is, through the root and a stream on a fake host: the key from a
//! property, attributes from a query or a property, `api_route`, `http.kafka_key`, and the
//! host calls each of them costs (none that the configuration did not ask for).
use super::*;
use crate::fake_host::FakeHost;
use serde_json::Value;

const SUB: &[u8] = b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload\0sub";
const ORG: &[u8] = b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload\0org";
const SEATS: &[u8] = b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0jwt_payload\0seats";
const JWT: &str = r#"["metadata","filter_metadata","envoy.filters.http.jwt_authn","jwt_payload""#;

fn root(host: &FakeHost, json: &str) -> Root {
    let mut root = Root::default();
    host.set_config(json);
    assert!(root.on_configure(host, host.config_len()), "{json}");
    root
}

/// One GET through a new stream; the host calls it made.
fn request(root: &Root, host: &FakeHost, path: &str, key: Option<&str>) -> u32 {
    let before = *host.host_calls.borrow();
    let mut s = root.new_stream();
    host.clear_headers(Map::RequestHeaders);
    host.set_header(Map::RequestHeaders, ":path", path.as_bytes());
    host.set_header(Map::RequestHeaders, ":method", b"GET");
    if let Some(k) = key {
        host.set_header(Map::RequestHeaders, "x-subscription-key", k.as_bytes());
    }
    s.on_request_headers(host, false);
    host.set_header(Map::ResponseHeaders, ":status", b"200");
    s.on_response_headers(host);
    s.finish(host);
    *host.host_calls.borrow() - before
}

/// The events the log sink wrote to filter state.
fn events(host: &FakeHost) -> Vec<Value> {
    host.properties
        .borrow()
        .iter()
        .filter(|(p, _)| p == b"usage_event")
        .map(|(_, v)| serde_json::from_slice(v).unwrap())
        .collect()
}

fn claims(host: &FakeHost, sub: Option<&[u8]>) {
    let mut r = host.readable.borrow_mut();
    r.clear();
    if let Some(s) = sub {
        r.insert(SUB.to_vec(), s.to_vec());
    }
    r.insert(ORG.to_vec(), b"acme".to_vec());
    r.insert(SEATS.to_vec(), 25.0f64.to_le_bytes().to_vec());
    r.insert(b"xds\0route_name".to_vec(), b"users".to_vec());
}

fn log(extra: &str) -> String {
    format!(r#"{{"enabled":true,"log_output":"filter_state"{extra}}}"#)
}

#[test]
fn the_key_is_the_verified_sub_claim_not_the_header() {
    let host = FakeHost::default();
    let r = root(
        &host,
        &log(&format!(r#","subscription_key_property":{JWT},"sub"]"#)),
    );
    claims(&host, Some(b"user-1"));
    request(&r, &host, "/v1/a", Some("forged"));
    assert_eq!(events(&host)[0]["subscription_key"], "user-1");
    // no claim: unkeyed, so no event, whatever header the client sent
    claims(&host, None);
    request(&r, &host, "/v1/a", Some("forged"));
    assert_eq!(events(&host).len(), 1);
    // an empty claim is no key either
    claims(&host, Some(b""));
    request(&r, &host, "/v1/a", None);
    assert_eq!(events(&host).len(), 1);
    // nor bytes that are not text
    claims(&host, Some(&7.0f64.to_le_bytes()[..7]));
    host.readable
        .borrow_mut()
        .insert(SUB.to_vec(), vec![0xff, 0xfe]);
    request(&r, &host, "/v1/a", None);
    assert_eq!(events(&host).len(), 1);
}

#[test]
fn key_mode_and_require_key_apply_to_the_property() {
    let host = FakeHost::default();
    let r = root(
        &host,
        &log(&format!(
            r#","key_mode":"sha256","require_key":false,"subscription_key_property":{JWT},"sub"]"#
        )),
    );
    claims(&host, Some(b"abc"));
    request(&r, &host, "/v1/a", None);
    claims(&host, None);
    request(&r, &host, "/v1/a", Some("header-is-not-read"));
    let ev = events(&host);
    assert_eq!(
        ev[0]["subscription_key"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(ev.len(), 2, "unkeyed, but no key is required");
    assert_eq!(
        ev[1]["subscription_key"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "the empty key's digest, as for a request without the header"
    );
}

#[test]
fn a_number_claim_is_the_key_in_decimal() {
    let host = FakeHost::default();
    let r = root(
        &host,
        &log(&format!(
            r#","subscription_key_property":{JWT},"sub"],"subscription_key_property_as":"double""#
        )),
    );
    claims(&host, Some(&12345.0f64.to_le_bytes()));
    request(&r, &host, "/v1/a", None);
    assert_eq!(events(&host)[0]["subscription_key"], "12345");
}

#[test]
fn attributes_from_the_query_a_property_and_the_route() {
    let host = FakeHost::default();
    let r = root(
        &host,
        &log(&format!(
            r#","attributes":{{"organization_id":{{"property":{JWT},"org"]}},
                "seats":{{"property":{JWT},"seats"],"as":"double"}},
                "route_name":{{"property":["xds","route_name"]}},
                "missing":{{"property":["xds","nope"]}},
                "plan":{{"query":"plan"}},
                "region":{{"query":"region"}}}},
              "path_templates":["/v1/users/{{id}}","/v1/{{*rest}}"]"#
        )),
    );
    claims(&host, None);
    request(&r, &host, "/v1/users/42?plan=pro+max&plan=free", Some("k"));
    request(&r, &host, "/v2/x", Some("k"));
    let ev = events(&host);
    let e = &ev[0];
    assert_eq!(e["organization_id"], "acme");
    assert_eq!(e["seats"], serde_json::json!(25), "a JSON number");
    assert_eq!(e["route_name"], "users");
    assert_eq!(e["plan"], "pro max");
    assert_eq!(e["api_route"], "/v1/users/{id}");
    assert_eq!(e["api_path"], "/v1/users/42");
    assert!(
        e.get("missing").is_none() && e.get("region").is_none(),
        "{e}"
    );
    assert!(
        ev[1].get("api_route").is_none(),
        "no template matches /v2/x"
    );
}

#[test]
fn the_request_path_makes_no_host_call_the_configuration_did_not_ask_for() {
    let calls = |json: &str, path: &str| {
        let host = FakeHost::default();
        let r = root(&host, json);
        claims(&host, Some(b"user-1"));
        let n = request(&r, &host, path, Some("k"));
        let reads = host.property_reads.borrow().len();
        (n, reads)
    };
    let (base, reads) = calls(&log(""), "/v1/users/1?plan=a");
    assert_eq!(reads, 0);
    // queries and templates are read from :path: no host call
    let q = log(r#","attributes":{"plan":{"query":"plan"}},"path_templates":["/v1/users/{id}"]"#);
    assert_eq!(calls(&q, "/v1/users/1?plan=a"), (base, 0));
    // each property is one read
    let p = log(&format!(
        r#","attributes":{{"o":{{"property":{JWT},"org"]}}}}"#
    ));
    assert_eq!(calls(&p, "/v1/users/1"), (base + 1, 1));
    let k = log(&format!(
        r#","subscription_key_property":{JWT},"sub"],"attributes":{{"o":{{"property":{JWT},"org"]}}}}"#
    ));
    assert_eq!(calls(&k, "/v1/users/1"), (base + 2, 2));
    // an excluded path reads nothing
    let x = log(&format!(
        r#","exclude_paths":["/health"],"subscription_key_property":{JWT},"sub"]"#
    ));
    assert_eq!(calls(&x, "/healthz").1, 0);
    // veil over http alone carries no attributes: their properties are not read; the key is
    let veil = format!(
        r#"{{"enabled":true,"sinks":["http"],"http":{{"cluster":"c"}},"subscription_key_property":{JWT},"sub"],"attributes":{{"o":{{"property":{JWT},"org"]}}}}}}"#
    );
    assert_eq!(calls(&veil, "/v1/a").1, 1);
}

#[test]
fn kafka_rest_records_are_keyed_by_the_attribute_named() {
    let host = FakeHost::default();
    let mut r = root(
        &host,
        &format!(
            r#"{{"enabled":true,"sinks":["http"],"subscription_key_property":{JWT},"sub"],
              "attributes":{{"organization_id":{{"property":{JWT},"org"]}},"seats":{{"property":{JWT},"seats"],"as":"double"}}}},
              "http":{{"cluster":"c","format":"kafka-rest","kafka_key":"organization_id","batch_size":3}}}}"#
        ),
    );
    claims(&host, Some(b"user-1"));
    request(&r, &host, "/v1/a", None);
    host.readable.borrow_mut().remove(ORG);
    request(&r, &host, "/v1/b", None);
    request(&r, &host, "/v1/c", None);
    r.on_tick(&host);
    let calls = host.take_callouts();
    assert_eq!(calls.len(), 1);
    let body: Value = serde_json::from_slice(&calls[0].1.body).unwrap();
    let recs = body["records"].as_array().unwrap();
    assert_eq!(recs[0]["key"], "acme");
    assert_eq!(recs[0]["value"]["subscription_key"], "user-1");
    assert_eq!(recs[0]["value"]["seats"], serde_json::json!(25));
    assert_eq!(recs[1]["key"], Value::Null, "no organization: a null key");
}
