//! Every wire format's body, validated against its schema, with its Content-Type.
use crate::common::*;
use proxy_wasm_host::Callout;
use serde_json::{json, Value};

fn one_batch(format: &str, extra: Value) -> (Callout, Vec<(String, String, u32)>) {
    let mut http = json!({"format": format, "batch_size": 3});
    merge(&mut http, extra);
    let mut vm = http_vm_with(
        json!({"attributes": {"organization_id": {"header": "x-org"}}}),
        http,
    );
    let sent = vec![
        ("/a".to_string(), "key-a".to_string(), 200),
        ("/b".to_string(), "key-\"b\"".to_string(), 404),
        ("/c".to_string(), "key-c".to_string(), 500),
    ];
    for (p, k, s) in &sent {
        vm.request()
            .method("POST")
            .path(&format!("{p}?q=1"))
            .key(k)
            .header("x-org", "org-1")
            .body(3)
            .respond(*s)
            .unwrap();
    }
    vm.advance_ms(100).unwrap();
    let c = vm.pending();
    assert_eq!(c.len(), 1);
    (c[0].clone(), sent)
}

/// Veil's platform API: every one of the ten fields present with its type.
fn veil_receiver_accepts(e: &Value) {
    assert_veil_fields(e);
}

fn check_events(events: &[Value], sent: &[(String, String, u32)], exactly_ten: bool) {
    assert_eq!(events.len(), sent.len());
    for (e, (p, k, s)) in events.iter().zip(sent) {
        veil_receiver_accepts(e);
        assert_eq!(e["api_path"], p.as_str());
        assert_eq!(e["subscription_key"], k.as_str());
        assert_eq!(e["status_code"], *s);
        if exactly_ten {
            assert_eq!(
                e.as_object().unwrap().len(),
                10,
                "veil sends exactly the ten fields: {e}"
            );
        } else {
            assert_eq!(e["organization_id"], "org-1");
            assert!(e["billable"].is_boolean());
        }
    }
}

#[test]
fn veil() {
    let (c, sent) = one_batch("veil", json!({}));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(c.header(":method").as_deref(), Some("POST"));
    assert_eq!(c.header(":path").as_deref(), Some("/api/v1/usage/events"));
    assert_eq!(c.header(":authority").as_deref(), Some("collector"));
    let v: Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "only the events array");
    check_events(v["events"].as_array().unwrap(), &sent, true);
}

#[test]
fn json_array() {
    let (c, sent) = one_batch("json", json!({}));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/json")
    );
    let v: Value = serde_json::from_slice(&c.body).unwrap();
    check_events(v.as_array().unwrap(), &sent, false);
}

#[test]
fn ndjson() {
    let (c, sent) = one_batch("ndjson", json!({}));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let text = String::from_utf8(c.body.clone()).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object per line"))
        .collect();
    assert!(lines.iter().all(Value::is_object));
    check_events(&lines, &sent, false);
}

#[test]
fn cloudevents() {
    let (c, sent) = one_batch("cloudevents", json!({}));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/cloudevents-batch+json")
    );
    let v: Value = serde_json::from_slice(&c.body).unwrap();
    let arr = v.as_array().unwrap();
    for (ce, (_, k, _)) in arr.iter().zip(&sent) {
        // CloudEvents 1.0 required attributes
        assert_eq!(ce["specversion"], "1.0");
        for attr in ["id", "source", "type"] {
            assert!(
                ce[attr].as_str().is_some_and(|s| !s.is_empty()),
                "{attr} in {ce}"
            );
        }
        assert_eq!(ce["type"], "api.usage");
        assert_eq!(ce["subject"], k.as_str());
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["id"], ce["data"]["id"]);
        assert_eq!(ce["time"], ce["data"]["timestamp"]);
    }
    let data: Vec<Value> = arr.iter().map(|ce| ce["data"].clone()).collect();
    check_events(&data, &sent, false);
}

#[test]
fn kafka_rest() {
    let (c, sent) = one_batch("kafka-rest", json!({}));
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("application/vnd.kafka.json.v2+json")
    );
    let v: Value = serde_json::from_slice(&c.body).unwrap();
    let records = v["records"].as_array().unwrap();
    for (r, (_, k, _)) in records.iter().zip(&sent) {
        assert_eq!(r["key"], k.as_str(), "partitioned by subscription key");
        assert!(r["value"].is_object());
    }
    let values: Vec<Value> = records.iter().map(|r| r["value"].clone()).collect();
    check_events(&values, &sent, false);
}

#[test]
fn gzip_inflates_to_the_same_events() {
    for format in ["veil", "ndjson", "kafka-rest"] {
        let (plain, _) = one_batch(format, json!({}));
        let (zipped, _) = one_batch(format, json!({"compression": "gzip"}));
        assert_eq!(zipped.header("content-encoding").as_deref(), Some("gzip"));
        assert_eq!(&zipped.body[..2], &[0x1f, 0x8b], "gzip magic");
        assert!(zipped.body.len() < plain.body.len());
        // same requests, same clock: the same events but for their random ids
        assert_eq!(
            without_ids(&zipped.plain_body()),
            without_ids(&plain.body),
            "{format}"
        );
    }
}

/// The body's JSON values (one per ndjson line) with every `id` blanked.
fn without_ids(body: &[u8]) -> Vec<Value> {
    fn blank(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if let Some(id) = m.get_mut("id") {
                    *id = json!("");
                }
                m.values_mut().for_each(blank);
            }
            Value::Array(a) => a.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut out: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    out.iter_mut().for_each(blank);
    assert!(!out.is_empty());
    out
}

#[test]
fn custom_path_and_url_shortcut() {
    let (c, _) = one_batch("veil", json!({"path": "/ingest"}));
    assert_eq!(c.header(":path").as_deref(), Some("/ingest"));
    let mut vm = proxy_wasm_host::Vm::envoy()
        .cluster("collector:3000")
        .config(json!({"enabled": true, "sinks": ["http"], "http": {"url": "http://collector:3000/api/v1/usage/events", "batch_size": 1}}))
        .start()
        .unwrap();
    vm.request().key("k").respond(200).unwrap();
    vm.advance_ms(100).unwrap();
    let c = &vm.pending()[0];
    assert_eq!(c.upstream, "collector:3000");
    assert_eq!(c.header(":authority").as_deref(), Some("collector:3000"));
    assert_eq!(c.header(":path").as_deref(), Some("/api/v1/usage/events"));
}
