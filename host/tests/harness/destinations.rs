//! `http` as an array of named destinations: every event goes to each, each keeps its own
//! buffer, batches, retries, format and books, and `events_captured` counts each event once.
use crate::common::*;
use proxy_wasm_host::metrics::{self, *};
use proxy_wasm_host::{Callout, Vm};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A VM (or a shared-queue VM on `hub`) with the two destinations' clusters.
fn start(cfg: Value, hub: Option<(&proxy_wasm_host::state::SharedHub, &str)>) -> Vm {
    let mut b = Vm::envoy()
        .cluster("veil")
        .cluster("clickhouse")
        .config(cfg);
    if let Some((hub, vm_id)) = hub {
        b = b.hub(hub).vm_id(vm_id);
    }
    b.start().unwrap_or_else(|e| panic!("start: {e}"))
}

fn two() -> Vm {
    start(
        json!({"enabled": true, "sinks": ["http"], "http": destinations()}),
        None,
    )
}

fn destinations() -> Value {
    json!([
        {"name": "billing", "cluster": "veil", "batch_size": 10, "flush_interval_ms": 200},
        {"name": "analytics", "cluster": "clickhouse", "format": "ndjson", "compression": "gzip",
         "batch_size": 25, "flush_interval_ms": 500, "headers": {"x-clickhouse-user": "u"}}
    ])
}

/// The event ids of a callout, whichever of the two formats it is in.
fn ids(c: &Callout) -> Vec<String> {
    let body = c.plain_body();
    let events: Vec<Value> = match c.upstream.as_str() {
        "veil" => veil_events(c),
        _ => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect(),
    };
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// captured (once) = delivered + dropped + buffered, for each destination, over `vms`.
fn books_per_destination(vms: &[&Vm], names: &[&str]) {
    let captured = total(vms, EVENTS_CAPTURED);
    for n in names {
        let m = |k: &str| total(vms, &metrics::of(n, k));
        assert_eq!(
            captured,
            m(EVENTS_DELIVERED)
                + m(EVENTS_DROPPED_BUFFER_FULL)
                + m(EVENTS_DROPPED_SEND_FAILED)
                + m(EVENTS_DROPPED_REJECTED)
                + m(BUFFER_EVENTS),
            "{n}: {:?}",
            vms.iter().map(|v| v.metrics()).collect::<Vec<_>>()
        );
    }
}

/// Answers callouts until nothing is pending: `answer(upstream, attempt)` gives each status.
/// Returns the event ids each upstream acknowledged, with their count.
fn serve(
    vm: &mut Vm,
    mut answer: impl FnMut(&str, usize) -> u32,
) -> HashMap<String, HashMap<String, usize>> {
    let mut acked: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        vm.advance_ms(100).unwrap();
        for c in vm.pending() {
            let n = seen.entry(c.upstream.clone()).or_default();
            *n += 1;
            let status = answer(&c.upstream, *n);
            vm.reply(c.token, status, &[], b"").unwrap();
            if status == 200 {
                let got = acked.entry(c.upstream.clone()).or_default();
                for id in ids(&c) {
                    *got.entry(id).or_default() += 1;
                }
            }
        }
        if vm.metric(&metrics::of("billing", BUFFER_EVENTS)) == 0
            && vm.metric(&metrics::of("analytics", BUFFER_EVENTS)) == 0
            && vm.pending().is_empty()
        {
            break;
        }
    }
    acked
}

#[test]
fn every_event_reaches_each_destination_once_in_its_own_format_and_batches() {
    let mut vm = two();
    send(&mut vm, 60);
    vm.advance_ms(100).unwrap();
    // billing's batch size (10) is reached six times; analytics' (25) twice.
    let first: Vec<(String, usize)> = vm
        .pending()
        .iter()
        .map(|c| (c.upstream.clone(), ids(c).len()))
        .collect();
    assert!(
        first
            .iter()
            .filter(|(u, _)| u == "veil")
            .all(|(_, n)| *n == 10),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .filter(|(u, _)| u == "clickhouse")
            .all(|(_, n)| *n == 25),
        "{first:?}"
    );
    let c = vm
        .pending()
        .into_iter()
        .find(|c| c.upstream == "clickhouse")
        .unwrap();
    assert_eq!(c.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    assert_eq!(c.header("x-clickhouse-user").as_deref(), Some("u"));
    let v = vm
        .pending()
        .into_iter()
        .find(|c| c.upstream == "veil")
        .unwrap();
    assert_eq!(
        v.header("x-clickhouse-user"),
        None,
        "headers are per destination"
    );
    // billing fails its first two attempts (503): retried there, analytics unaffected.
    let acked = serve(
        &mut vm,
        |up, n| if up == "veil" && n <= 2 { 503 } else { 200 },
    );
    for up in ["veil", "clickhouse"] {
        assert_eq!(acked[up].len(), 60, "{up}");
        assert!(acked[up].values().all(|&n| n == 1), "{up}: each event once");
    }
    assert_eq!(
        acked["veil"]
            .keys()
            .collect::<std::collections::BTreeSet<_>>(),
        acked["clickhouse"].keys().collect(),
        "the same events, the same ids"
    );
    vm.tick().unwrap();
    assert_eq!(
        vm.metric(EVENTS_CAPTURED),
        60,
        "captured once, not once per destination"
    );
    assert_eq!(vm.metric(&metrics::of("billing", EVENTS_DELIVERED)), 60);
    assert_eq!(vm.metric(&metrics::of("billing", BATCH_RETRIES)), 2);
    assert_eq!(vm.metric(&metrics::of("analytics", EVENTS_DELIVERED)), 60);
    assert_eq!(vm.metric(&metrics::of("analytics", BATCH_RETRIES)), 0);
    // An array's counters carry the names; the plain ones other than captured are not defined.
    let names: Vec<String> = vm.metrics().into_keys().collect();
    assert!(!names.iter().any(|n| n == EVENTS_DELIVERED), "{names:?}");
    assert!(!names.iter().any(|n| n == BUFFER_EVENTS), "{names:?}");
    books_per_destination(&[&vm], &["billing", "analytics"]);
}

#[test]
fn a_poisoned_event_costs_itself_only_at_the_destination_that_refuses_it() {
    let mut vm = two();
    for i in 0..40 {
        let path = if i == 17 {
            "/poison".to_string()
        } else {
            format!("/r/{i}")
        };
        vm.request().path(&path).key("k").respond(200).unwrap();
    }
    let mut acked: HashMap<&str, usize> = HashMap::new();
    for _ in 0..200 {
        vm.advance_ms(100).unwrap();
        for c in vm.pending() {
            let body = String::from_utf8(c.plain_body()).unwrap();
            let refuse = c.upstream == "veil" && body.contains("/poison");
            vm.reply(c.token, if refuse { 400 } else { 200 }, &[], b"bad")
                .unwrap();
            if !refuse {
                *acked
                    .entry(if c.upstream == "veil" { "veil" } else { "ch" })
                    .or_default() += ids(&c).len();
            }
        }
        if vm.pending().is_empty()
            && vm.metric(&metrics::of("billing", BUFFER_EVENTS)) == 0
            && vm.metric(&metrics::of("analytics", BUFFER_EVENTS)) == 0
        {
            break;
        }
    }
    vm.tick().unwrap();
    assert_eq!((acked["veil"], acked["ch"]), (39, 40));
    assert_eq!(
        vm.metric(&metrics::of("billing", EVENTS_DROPPED_REJECTED)),
        1
    );
    assert_eq!(
        vm.metric(&metrics::of("analytics", EVENTS_DROPPED_REJECTED)),
        0
    );
    assert!(
        vm.logs().iter().any(|l| l
            .message
            .contains("usage-filter: http billing: collector refused event")),
        "the log names the destination"
    );
    books_per_destination(&[&vm], &["billing", "analytics"]);
}

#[test]
fn one_queue_service_serves_every_destination_and_the_books_balance_across_vms() {
    let hub = Vm::new_hub();
    let cfg = |service: bool| {
        json!({"enabled": true, "sinks": ["http"], "http": destinations(),
               "dispatcher": {"mode": "shared_queue", "service": service}})
    };
    let mut service = start(cfg(true), Some((&hub, "usage_service")));
    let mut w1 = start(cfg(false), Some((&hub, "usage_filter")));
    let mut w2 = start(cfg(false), Some((&hub, "usage_filter")));
    send(&mut w1, 30);
    send(&mut w2, 20);
    w1.advance_ms(100).unwrap();
    w2.advance_ms(0).unwrap();
    // each event handed over once, whatever the number of destinations
    assert_eq!(w1.host_calls().get("proxy_enqueue_shared_queue"), Some(&1));
    let acked = serve(&mut service, |_, _| 200);
    w1.tick().unwrap();
    w2.tick().unwrap();
    for up in ["veil", "clickhouse"] {
        assert_eq!(acked[up].len(), 50, "{up}");
        assert!(acked[up].values().all(|&n| n == 1), "{up}: each event once");
    }
    let all = [&service, &w1, &w2];
    assert_eq!(total(&all, EVENTS_CAPTURED), 50);
    books_per_destination(&all, &["billing", "analytics"]);
}

#[test]
fn a_single_object_keeps_todays_metric_names_even_when_named() {
    let mut vm = http_vm(json!({"name": "billing", "batch_size": 5}));
    send(&mut vm, 5);
    vm.advance_ms(100).unwrap();
    for c in vm.pending() {
        vm.reply(c.token, 200, &[], b"").unwrap();
    }
    vm.tick().unwrap();
    assert_eq!(vm.metric(EVENTS_DELIVERED), 5);
    assert!(vm.metrics().keys().all(|k| !k.contains("billing")));
    assert_accounting(&vm);
}

#[test]
fn a_bad_array_is_refused_at_configure_time_naming_key_and_rule() {
    let nine = Value::Array(
        (0..9)
            .map(|i| json!({"name": format!("d{i}"), "cluster": "c"}))
            .collect(),
    );
    for (http, key, rule) in [
        (
            json!([{"name": "a", "cluster": "c"}, {"name": "a", "cluster": "d"}]),
            "http[1].name",
            "\"a\" is already the name of another destination",
        ),
        (
            json!([{"name": "Bad", "cluster": "c"}]),
            "http[0].name",
            "must be 1 to 32 characters of [a-z0-9_]",
        ),
        (
            nine,
            "http",
            "an array must hold 1 to 8 destinations, got 9",
        ),
    ] {
        let r = Vm::envoy()
            .config(json!({"enabled": true, "sinks": ["http"], "http": http}))
            .start();
        let e = r.err().expect("refused");
        let said = format!("invalid plugin configuration: {key}: {rule}");
        assert!(e.logs.iter().any(|l| l.message.contains(&said)), "{e}");
    }
}

#[test]
fn two_destinations_of_one_format_send_the_same_bytes_for_each_event() {
    let d = |name: &str, cluster: &str, batch: u32| json!({"name": name, "cluster": cluster, "format": "ndjson", "batch_size": batch});
    let mut vm = start(
        json!({"enabled": true, "sinks": ["http"],
               "http": [d("billing", "veil", 7), d("analytics", "clickhouse", 20)]}),
        None,
    );
    send(&mut vm, 21);
    // Different batches (7 and 20 events, then the rest), the same line for each event at both.
    let mut lines: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
    for _ in 0..15 {
        vm.advance_ms(100).unwrap();
        for c in vm.pending() {
            for l in c
                .plain_body()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let id = serde_json::from_slice::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                lines
                    .entry(c.upstream.clone())
                    .or_default()
                    .insert(id, l.to_vec());
            }
            vm.reply(c.token, 200, &[], b"").unwrap();
        }
    }
    assert_eq!((lines["veil"].len(), lines["clickhouse"].len()), (21, 21));
    for (id, line) in &lines["clickhouse"] {
        assert_eq!(&lines["veil"][id], line, "{id}");
    }
}
