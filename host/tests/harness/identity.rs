//! Who and what a request is, on the compiled filter: the key and attributes from host
//! properties, query attributes, `path_templates` (fuel with 10 and 500 templates), and the
//! host calls each costs. Envoy's profile answers `request.headers.<name>` as a property,
//! which stands in here for a JWT claim in dynamic metadata (the e2e reads the real one);
//! Kong's and APISIX's answer no such property.
use crate::common::*;
use proxy_wasm_host::{Profile, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Host calls made by one more request, by import name.
fn one_more(vm: &mut Vm, path: &str) -> (BTreeMap<&'static str, u64>, u64) {
    let before = vm.host_calls().clone();
    let out = vm
        .request()
        .path(path)
        .key("k")
        .header("x-user", "user-7")
        .header("x-org", "acme")
        .respond(200)
        .unwrap();
    let calls = vm
        .host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    (calls, out.total_fuel())
}

fn prop(name: &str) -> Value {
    json!(["request", "headers", name])
}

/// 500 templates of a real API's shape: every one under `/v1/`, so an index by first
/// segment alone would still scan them all.
fn templates(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 4 {
            0 => format!("/v1/resource{i}"),
            1 => format!("/v1/resource{i}/{{id}}"),
            2 => format!("/v1/resource{i}/{{id}}/items/{{item_id}}"),
            _ => format!("/v1/resource{i}/{{id}}/files/{{*path}}"),
        })
        .collect()
}

#[test]
fn the_key_and_attributes_come_from_properties_and_the_query() {
    let mut vm = logging(json!({
        "subscription_key_property": prop("x-user"),
        "attributes": {
            "organization_id": {"property": prop("x-org")},
            "plan": {"query": "plan"},
            "absent": {"property": ["xds", "no_such"]}
        },
        "path_templates": ["/v1/users/{id}", "/v1/{*rest}"]
    }));
    vm.request()
        .path("/v1/users/42?plan=team%20pro")
        .key("forged")
        .header("x-user", "user-7")
        .header("x-org", "acme")
        .respond(200)
        .unwrap();
    // no x-user: the property is missing, the request is unkeyed, no event
    vm.request()
        .path("/v1/users/43")
        .key("forged")
        .respond(200)
        .unwrap();
    let ev = vm.events();
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!(e["subscription_key"], "user-7");
    assert_eq!(e["organization_id"], "acme");
    assert_eq!(e["plan"], "team pro");
    assert_eq!(e["api_route"], "/v1/users/{id}");
    assert!(e.get("absent").is_none(), "{e}");
}

/// Kong and APISIX answer no request property: a key configured as one never arrives, so no
/// request is metered there (use `subscription_key_header` on those hosts).
#[test]
fn hosts_without_envoys_properties_meter_nothing_keyed_by_one() {
    for profile in [Profile::Kong, Profile::Apisix] {
        let mut vm = Vm::with_profile(profile)
            .config(json!({"enabled": true, "log_output": "host_log",
                "subscription_key_property": prop("x-user")}))
            .start()
            .unwrap_or_else(|e| panic!("start: {e}"));
        vm.request()
            .key("k")
            .header("x-user", "u")
            .respond(200)
            .unwrap();
        assert!(vm.events().is_empty(), "{profile:?}");
        let mut vm = Vm::with_profile(profile)
            .config(json!({"enabled": true, "log_output": "host_log",
                "attributes": {"org": {"property": prop("x-org")}, "plan": {"query": "plan"}}}))
            .start()
            .unwrap_or_else(|e| panic!("start: {e}"));
        vm.request()
            .path("/a?plan=p")
            .key("k")
            .header("x-org", "o")
            .respond(200)
            .unwrap();
        let e = &vm.events()[0];
        assert!(e.get("org").is_none(), "{profile:?}: {e}");
        assert_eq!(e["plan"], "p", "{profile:?}: the query needs no host");
    }
}

/// "The request path makes no host call the configuration did not ask for": the floor
/// without the new keys; queries and templates add none; each property adds one.
#[test]
fn host_calls_with_and_without_the_identity_keys() {
    let floor = BTreeMap::from([
        ("proxy_get_header_map_pairs", 1),
        ("proxy_get_header_map_value", 1),
        ("proxy_get_current_time_nanoseconds", 2),
        ("proxy_set_property", 1),
    ]);
    let calls = |extra: Value| {
        let mut vm = logging(json!({"log_output": "filter_state"}).tap(extra));
        vm.request().key("k").respond(200).unwrap();
        one_more(&mut vm, "/v1/resource1/42?plan=pro").0
    };
    assert_eq!(calls(json!({})), floor);
    assert_eq!(
        calls(json!({"attributes": {"plan": {"query": "plan"}},
            "path_templates": templates(500)})),
        floor,
        "queries and templates are read from :path"
    );
    let mut one = floor.clone();
    one.insert("proxy_get_property", 1);
    assert_eq!(
        calls(json!({"attributes": {"org": {"property": prop("x-org")}}})),
        one
    );
    assert_eq!(
        calls(json!({"subscription_key_property": prop("x-user")})),
        one
    );
    let mut two = floor.clone();
    two.insert("proxy_get_property", 2);
    assert_eq!(
        calls(json!({"subscription_key_property": prop("x-user"),
            "attributes": {"org": {"property": prop("x-org")}}})),
        two
    );
}

trait Tap {
    fn tap(self, extra: Value) -> Value;
}
impl Tap for Value {
    fn tap(mut self, extra: Value) -> Value {
        merge(&mut self, extra);
        self
    }
}

/// Fuel per request with 0, 10 and 500 templates: the trie walks the path's own segments,
/// so 500 cost about what 10 do. The figures are in docs/identity.md.
#[test]
fn template_matching_fuel_does_not_grow_with_the_number_of_templates() {
    let mut fuel = BTreeMap::new();
    for n in [0usize, 10, 500] {
        let mut vm = logging(json!({"path_templates": templates(n)}));
        vm.request().key("k").respond(200).unwrap();
        // a matching path deep in the list, and one that matches nothing
        for path in [
            "/v1/resource6/42/items/7",
            "/v1/resource499/1/files/a/b",
            "/v2/nothing/here",
        ] {
            // the least of five: a request now and then also refills the random pool
            let f = (0..5).map(|_| one_more(&mut vm, path).1).min().unwrap();
            fuel.insert((n, path), f);
        }
        let ev = vm.events();
        if n == 500 {
            let routes: Vec<&Value> = ev.iter().map(|e| &e["api_route"]).collect();
            assert_eq!(routes[1], "/v1/resource6/{id}/items/{item_id}");
            assert_eq!(routes[6], "/v1/resource499/{id}/files/{*path}");
            assert!(ev[11].get("api_route").is_none());
        }
    }
    for ((n, path), f) in &fuel {
        println!("fuel per request, {n} templates, {path}: {f}");
    }
    for path in ["/v1/resource6/42/items/7", "/v2/nothing/here"] {
        let (f10, f500) = (fuel[&(10, path)], fuel[&(500, path)]);
        assert!(
            f500 < f10 + f10 / 10,
            "{path}: 500 templates cost {f500} fuel, 10 cost {f10}"
        );
    }
}
