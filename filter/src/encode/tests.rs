//! The wire formats' bodies and the log line, and the encoder's fast paths against the
//! straightforward versions they replace.
use super::*;
use serde_json::Value;
use std::borrow::Cow;

fn event(key: &str) -> Event<'static> {
    Event {
        id: crate::event::uuid_v7(1_759_413_513_001, &[1; 10]),
        api_path: "/v1/things".into(),
        subscription_key: Cow::Owned(key.to_string()),
        method: "POST".into(),
        response_time_ms: 12,
        status_code: 201,
        completed_unix_ns: 1_759_413_513_001_748_000,
        request_size: 10,
        response_size: 20,
        request_id: Some("rid-1".into()),
        authority: Some("api.example.com".into()),
        api_route: None,
        attributes: vec![("organization_id", "org-9".into())],
        tokens: None,
    }
}

#[test]
fn the_escape_scan_agrees_with_a_byte_by_byte_one() {
    let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for len in 0..40 {
        for _ in 0..400 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // mostly printable ASCII, sometimes the bytes that matter or high ones
                    match x % 16 {
                        0 => b'"',
                        1 => b'\\',
                        2 => (x >> 8) as u8 % 0x20,
                        3 => 0x80 | (x >> 8) as u8,
                        _ => 0x20 + (x >> 8) as u8 % 0x5f,
                    }
                })
                .collect();
            assert_eq!(needs_escape(&b), slow(&b), "{b:?}");
        }
    }
    for c in 0..=255u8 {
        let mut b = [b'a'; 11];
        b[9] = c;
        assert_eq!(needs_escape(&b), slow(&b), "{c}");
        b[9] = b'a';
        b[3] = c;
        assert_eq!(needs_escape(&b), slow(&b), "{c}");
    }
}

fn body(format: Format, keys: &[&str]) -> Vec<u8> {
    let recs: Vec<Record> = keys.iter().map(|k| Record::from_event(&event(k))).collect();
    batch_body(format, recs.iter(), &mut SecondCache::default())
}

fn llm_event() -> Event<'static> {
    // input, output, cached; truncated
    let usage = tokens::Usage {
        numbers: [25, 15, 0, 7, 0, 0, 0],
        flags: 0b1_0000_1011,
        provider: tokens::Provider::Anthropic,
    };
    Event {
        tokens: Some(Tokens {
            model: Some("claude-3-5-sonnet-20241022".into()),
            usage,
            currency: None,
            unpriced: false,
        }),
        ..event("k")
    }
}

#[test]
fn llm_fields_ride_every_format_but_veil_and_only_when_found() {
    let rec = Record::from_event(&llm_event());
    for format in [
        Format::Json,
        Format::Ndjson,
        Format::CloudEvents,
        Format::KafkaRest,
        Format::Veil,
    ] {
        let body = batch_body(format, [&rec].into_iter(), &mut SecondCache::default());
        let text = String::from_utf8(body).unwrap();
        let v: Value = match format {
            Format::Ndjson => serde_json::from_str(text.trim()).unwrap(),
            _ => serde_json::from_str(&text).unwrap(),
        };
        let e = match format {
            Format::Json => v[0].clone(),
            Format::Ndjson => v,
            Format::CloudEvents => v[0]["data"].clone(),
            Format::KafkaRest => v["records"][0]["value"].clone(),
            Format::Veil => v["events"][0].clone(),
        };
        if format == Format::Veil {
            assert_eq!(e.as_object().unwrap().len(), 10);
            continue;
        }
        assert_eq!(e["model"], "claude-3-5-sonnet-20241022", "{format:?}");
        assert_eq!(e["input_tokens"], 25);
        assert_eq!(e["output_tokens"], 15);
        assert_eq!(e["cached_input_tokens"], 7);
        assert_eq!(e["tokens_truncated"], true);
        assert!(e.get("total_tokens").is_none() && e.get("tokens_encoded").is_none());
    }
    let line = log_line(&llm_event(), &mut SecondCache::default());
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        (v["input_tokens"].clone(), v["msg"].clone()),
        (25.into(), "usage_event".into())
    );
    // an event without tokens has none of the fields
    let v: Value = serde_json::from_slice(&encode_event(&event("k"))).unwrap();
    assert!(v.get("model").is_none() && v.get("input_tokens").is_none());
}

#[test]
fn event_json_has_the_ten_fields_and_extras() {
    let e = encode_event(&event("k\"ey"));
    let v: Value = serde_json::from_slice(&e).unwrap();
    assert_eq!(v["api_path"], "/v1/things");
    assert_eq!(v["subscription_key"], "k\"ey");
    assert_eq!(v["status_code"], 201);
    assert_eq!(v["success"], true);
    assert_eq!(v["billable"], true);
    assert_eq!(v["timestamp"], "2025-10-02T13:58:33.001748Z");
    assert_eq!(v["request_id"], "rid-1");
    assert_eq!(v["organization_id"], "org-9");
    assert_eq!(v.as_object().unwrap().len(), 14);
    let id = v["id"].as_str().unwrap();
    assert_eq!(::uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[test]
fn veil_is_exactly_ten_fields() {
    let v: Value = serde_json::from_slice(&body(Format::Veil, &["k"])).unwrap();
    let keys: Vec<&str> = v["events"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
}

#[test]
fn log_line_is_veils_slog_shape() {
    let line = log_line(&event("k"), &mut SecondCache::default());
    let v: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["msg"], "usage_event");
    assert_eq!(v["event_type"], "api_usage");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["time"], v["timestamp"]);
    assert!(!line.contains(&b'\n'));
    // exactly the event's own object behind the slog members
    let whole = encode_event(&event("k"));
    let head = format!(
        "{{\"time\":\"{}\",\"level\":\"INFO\",\"msg\":\"usage_event\",\"event_type\":\"api_usage\",",
        v["timestamp"].as_str().unwrap()
    );
    assert_eq!(line, [head.as_bytes(), &whole[1..]].concat());
}

#[test]
fn every_format_parses_and_carries_the_same_event() {
    let whole: Value = serde_json::from_slice(&encode_event(&event("b"))).unwrap();
    let veil: Value = serde_json::from_slice(&body(Format::Veil, &["a", "b"])).unwrap();
    assert_eq!(veil["events"].as_array().unwrap().len(), 2);
    assert_eq!(veil["events"][1]["timestamp"], whole["timestamp"]);
    let json: Value = serde_json::from_slice(&body(Format::Json, &["a", "b"])).unwrap();
    assert_eq!(json[1], whole);
    let nd = body(Format::Ndjson, &["a", "b"]);
    let lines: Vec<Value> = nd
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines, vec![json[0].clone(), whole.clone()]);
    let ce: Value = serde_json::from_slice(&body(Format::CloudEvents, &["a", "b"])).unwrap();
    assert_eq!(ce[0]["specversion"], "1.0");
    assert_eq!(ce[0]["subject"], "a");
    assert_eq!(ce[1]["data"], whole);
    assert_eq!(ce[1]["id"], whole["id"]);
    assert_eq!(ce[1]["time"], whole["timestamp"]);
    let kr: Value = serde_json::from_slice(&body(Format::KafkaRest, &["a", "b"])).unwrap();
    assert_eq!(kr["records"][1]["key"], "b");
    assert_eq!(kr["records"][1]["value"], whole);
}

#[test]
fn strings_and_numbers_match_serde_json() {
    let mut cases: Vec<String> = (0u8..=127).map(|c| format!("a{}b", c as char)).collect();
    cases.extend(["", "plain", "ключ-123", "emoji 🎉", "\u{7f}\u{80}\u{2028}"].map(String::from));
    for s in &cases {
        let mut ours = Vec::new();
        write_str(&mut ours, s);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(s).unwrap(),
            "{s:?}"
        );
    }
    for n in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
        let mut ours = Vec::new();
        write_u64(&mut ours, n);
        assert_eq!(String::from_utf8(ours).unwrap(), n.to_string());
    }
}

#[test]
fn gzip_round_trips() {
    use std::io::Read;
    let body = body(Format::Veil, &["a"]);
    let z = gzip(&body);
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, body);
}

#[test]
fn cloudevents_type_and_source_are_the_configured_ones_escaped_as_json() {
    let rec = Record::from_event(&event("k"));
    let shape = Shape {
        ce_type: "com.acme.api\"call",
        ce_source: "gw-eu-1",
        ..Shape::default_for(Format::CloudEvents)
    };
    let mut out = Vec::new();
    write_batch_body(
        &mut out,
        &shape,
        [&rec].into_iter(),
        &mut SecondCache::default(),
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["type"], "com.acme.api\"call");
    assert_eq!(v[0]["source"], "gw-eu-1");
    // The defaults write what the filter always wrote.
    let plain = body(Format::CloudEvents, &["k"]);
    assert!(String::from_utf8(plain)
        .unwrap()
        .contains(r#""source":"usage-filter","type":"api.usage","time":""#));
}

#[test]
fn numbers_are_written_as_their_decimal_text() {
    let edges = [0, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 65_535, u64::MAX];
    for n in (0..12_000).chain(edges) {
        let mut out = b"x".to_vec();
        write_u64(&mut out, n);
        assert_eq!(&out[1..], format!("{n}").as_bytes());
    }
}

#[test]
fn strings_between_the_members_quotes_are_escaped_as_serde_json_escapes_them() {
    for s in [
        "plain",
        "",
        "a\"b",
        "back\\slash",
        "tab\tnew\nline",
        "\u{1}",
        "ключ \"q\"",
    ] {
        let mut out = b"{\"k\":\"".to_vec();
        write_str_contents(&mut out, s);
        out.extend_from_slice(b"\"}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["k"], s);
        let mut quoted = Vec::new();
        write_str(&mut quoted, s);
        assert_eq!(quoted, serde_json::to_vec(s).unwrap(), "{s:?}");
    }
}
