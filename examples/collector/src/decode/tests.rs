use super::*;
use serde_json::json;
use std::io::Write;

/// A deterministic UUID that carries a short test name in its last group.
pub(crate) fn uid(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("00000000-0000-7000-8000-{hex:0>12}")
}

/// The name [`uid`] carried.
fn name_of(id: &str) -> String {
    let hex = id[24..].trim_start_matches('0');
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as char)
        .collect()
}

pub(crate) fn event(name: &str) -> Value {
    json!({
        "id": uid(name),
        "api_path": "/v1/things",
        "subscription_key": "sk_test",
        "method": "GET",
        "response_time_ms": 12,
        "status_code": 200,
        "success": true,
        "timestamp": "2024-01-01T00:00:00Z",
        "request_size": 0,
        "response_size": 16
    })
}

/// Decodes and validates, returning (valid ids, invalid count).
fn run(format: Format, body: &[u8]) -> Result<(Vec<String>, usize), String> {
    let candidates = decode_batch(format, body)?;
    let mut ids = Vec::new();
    let mut invalid = 0;
    for c in candidates {
        match c.and_then(validate_event) {
            Ok(ev) => ids.push(name_of(&ev.id)),
            Err(_) => invalid += 1,
        }
    }
    Ok((ids, invalid))
}

#[test]
fn content_type_ignores_parameters_and_case() {
    assert_eq!(
        Format::from_content_type(Some("application/json; charset=utf-8")),
        Ok(Format::Json)
    );
    assert_eq!(
        Format::from_content_type(Some("Application/X-NDJSON")),
        Ok(Format::Ndjson)
    );
    assert_eq!(
        Format::from_content_type(Some("application/cloudevents-batch+json;charset=UTF-8")),
        Ok(Format::CloudEventsBatch)
    );
    assert_eq!(
        Format::from_content_type(Some("application/vnd.kafka.json.v2+json")),
        Ok(Format::KafkaRest)
    );
    assert!(Format::from_content_type(None).is_err());
    assert!(Format::from_content_type(Some(" ; charset=utf-8")).is_err());
    assert!(Format::from_content_type(Some("text/plain")).is_err());
}

#[test]
fn veil_envelope_and_bare_array() {
    let body = json!({"events": [event("a"), event("b")]}).to_string();
    assert_eq!(
        run(Format::Json, body.as_bytes()),
        Ok((vec!["a".into(), "b".into()], 0))
    );
    let body = json!([event("c")]).to_string();
    assert_eq!(
        run(Format::Json, body.as_bytes()),
        Ok((vec!["c".into()], 0))
    );
}

#[test]
fn json_errors_are_batch_level() {
    assert!(decode_batch(Format::Json, b"{not json").is_err());
    assert!(decode_batch(Format::Json, b"{\"other\":[]}").is_err());
    assert!(decode_batch(Format::Json, b"\"string\"").is_err());
    assert!(decode_batch(Format::Json, b"").is_err());
    assert!(decode_batch(Format::Json, b"\xff\xfe").is_err());
    // Parses, but holds nothing: the server turns this into "no events".
    assert_eq!(
        decode_batch(Format::Json, b"{\"events\":[]}")
            .unwrap()
            .len(),
        0
    );
    assert_eq!(decode_batch(Format::Json, b" [ ] ").unwrap().len(), 0);
}

#[test]
fn ndjson_lines() {
    let body = format!("{}\n\n{}\r\n", event("a"), event("b"));
    assert_eq!(
        run(Format::Ndjson, body.as_bytes()),
        Ok((vec!["a".into(), "b".into()], 0))
    );
    // A non-object line is parseable JSON, so it is an invalid event...
    let body = format!("{}\n42\n", event("a"));
    assert_eq!(
        run(Format::Ndjson, body.as_bytes()),
        Ok((vec!["a".into()], 1))
    );
    // ...but broken JSON breaks the framing and rejects the batch.
    let body = format!("{}\n{{\"id\":\n", event("a"));
    assert!(run(Format::Ndjson, body.as_bytes())
        .unwrap_err()
        .contains("line 2"));
    assert_eq!(decode_batch(Format::Ndjson, b"\n \n").unwrap().len(), 0);
}

#[test]
fn cloudevents_batch() {
    let ce = |id: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "usage-filter",
               "type": "com.example.usage", "datacontenttype": "application/json", "data": data})
    };
    let mut bad_version = ce("x", event("bv"));
    bad_version["specversion"] = json!("0.3");
    let mut empty_id = ce("", event("ei"));
    empty_id["id"] = json!("");
    let mut no_source = ce("y", event("ns"));
    no_source.as_object_mut().unwrap().remove("source");
    let mut no_data = ce("z", json!(null));
    no_data.as_object_mut().unwrap().remove("data");
    let mut numeric_type = ce("w", event("nt"));
    numeric_type["type"] = json!(7);
    let body = json!([
        ce("ce-1", event("a")),
        bad_version,
        empty_id,
        no_source,
        no_data,
        numeric_type,
        "not an object",
        ce("ce-2", event("b")),
    ])
    .to_string();
    assert_eq!(
        run(Format::CloudEventsBatch, body.as_bytes()),
        Ok((vec!["a".into(), "b".into()], 6))
    );
    assert!(decode_batch(Format::CloudEventsBatch, b"{\"events\":[]}").is_err());
}

#[test]
fn cloudevents_data_is_written_not_the_envelope() {
    let body =
        json!([{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": event("a")}])
            .to_string();
    let candidates = decode_batch(Format::CloudEventsBatch, body.as_bytes()).unwrap();
    let ev = validate_event(candidates[0].clone().unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&ev.line).unwrap(), event("a"));
}

#[test]
fn kafka_rest_records() {
    let body = json!({"records": [
        {"key": "sk_test", "value": event("a")},
        {"value": event("b")},
        {"key": "no value"},
        17
    ]})
    .to_string();
    assert_eq!(
        run(Format::KafkaRest, body.as_bytes()),
        Ok((vec!["a".into(), "b".into()], 2))
    );
    assert!(decode_batch(Format::KafkaRest, b"[]").is_err());
    assert_eq!(
        decode_batch(Format::KafkaRest, b"{\"records\":[]}")
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn gzip_bodies() {
    let plain = json!({"events": [event("a")]}).to_string();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(plain.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();

    let body = decode_content_encoding(&gz, Some("gzip"), 1 << 20).unwrap();
    assert_eq!(&*body, plain.as_bytes());
    assert_eq!(run(Format::Json, &body), Ok((vec!["a".into()], 0)));
    assert_eq!(
        &*decode_content_encoding(&gz, Some(" GZIP "), 1 << 20).unwrap(),
        plain.as_bytes()
    );

    // Identity passes through; garbage, unknown codings and bombs are refused.
    assert_eq!(&*decode_content_encoding(b"abc", None, 10).unwrap(), b"abc");
    assert_eq!(
        &*decode_content_encoding(b"abc", Some("identity"), 10).unwrap(),
        b"abc"
    );
    assert!(decode_content_encoding(b"not gzip", Some("gzip"), 1 << 20).is_err());
    assert!(decode_content_encoding(b"abc", Some("br"), 10).is_err());
    assert!(decode_content_encoding(&gz, Some("gzip"), plain.len() - 1).is_err());
    assert!(decode_content_encoding(&gz, Some("gzip"), plain.len()).is_ok());
}

#[test]
fn every_missing_field_is_rejected() {
    for (name, _) in REQUIRED {
        let mut ev = event("a");
        ev.as_object_mut().unwrap().remove(name);
        let raw = RawValue::from_string(ev.to_string()).unwrap();
        let err = validate_event(&raw).unwrap_err();
        assert!(err.contains(name), "{name}: {err}");
    }
}

#[test]
fn every_wrong_type_is_rejected() {
    for (name, kind) in REQUIRED {
        let wrong: &[Value] = match kind {
            Kind::String => &[
                json!(1),
                json!(null),
                json!(true),
                json!(["a"]),
                json!({"a": 1}),
            ],
            Kind::Count => &[
                json!("12"),
                json!(12.0),
                json!(1.5),
                json!(-1),
                json!(null),
                json!(true),
            ],
            Kind::Bool => &[json!("true"), json!(1), json!(0), json!(null)],
        };
        for value in wrong {
            let mut ev = event("a");
            ev[name] = value.clone();
            let raw = RawValue::from_string(ev.to_string()).unwrap();
            assert!(
                validate_event(&raw).is_err(),
                "{name} = {value} was accepted"
            );
        }
    }
}

#[test]
fn non_objects_are_rejected_and_extra_fields_kept() {
    for text in ["[]", "1", "\"s\"", "null"] {
        assert!(validate_event(&RawValue::from_string(text.into()).unwrap()).is_err());
    }
    let mut ev = event("a");
    ev["custom"] = json!({"tier": "gold"});
    ev["status_code"] = json!(0);
    ev["success"] = json!(false);
    let raw = RawValue::from_string(ev.to_string()).unwrap();
    let valid = validate_event(&raw).unwrap();
    assert_eq!(valid.id, uid("a"));
    assert!(valid.line.contains("\"tier\":\"gold\""));
}

#[test]
fn pretty_printed_events_become_one_line_byte_for_byte() {
    let pretty = serde_json::to_string_pretty(&event("a")).unwrap();
    let body = format!("[{pretty}]");
    let candidates = decode_batch(Format::Json, body.as_bytes()).unwrap();
    let valid = validate_event(candidates[0].clone().unwrap()).unwrap();
    assert!(!valid.line.contains('\n'));
    assert_eq!(valid.line, pretty.replace('\n', ""));
    // Key order is the sender's, not sorted.
    let raw = RawValue::from_string(
        r#"{"z":1,"id":"ID","api_path":"/","subscription_key":"s","method":"GET","response_time_ms":1,"status_code":200,"success":true,"timestamp":"2024-02-29T23:59:60.5+01:00","request_size":0,"response_size":0}"#.replace("ID", &uid("k")),
    )
    .unwrap();
    assert!(validate_event(&raw)
        .unwrap()
        .line
        .starts_with(&format!(r#"{{"z":1,"id":"{}""#, uid("k"))));
}

#[test]
fn values_are_checked_not_only_types() {
    let bad: &[(&str, Value)] = &[
        ("id", json!("")),
        ("id", json!("a")),
        ("id", json!("0190abcd-0000-7000-8000-00000000006")),
        ("id", json!("0190abcd-0000-7000-8000-0000000000zz")),
        ("id", json!("0190abcd00000-7000-8000-000000000061")),
        ("timestamp", json!("t")),
        ("timestamp", json!("")),
        ("timestamp", json!("2024-01-01")),
        ("timestamp", json!("2024-01-01 00:00:00Z")),
        ("timestamp", json!("2024-01-01T00:00:00")),
        ("timestamp", json!("2024-13-01T00:00:00Z")),
        ("timestamp", json!("2023-02-29T00:00:00Z")),
        ("timestamp", json!("2024-01-01T24:00:00Z")),
        ("timestamp", json!("2024-01-01T00:00:00.Z")),
        ("timestamp", json!("2024-01-01T00:00:00+1:00")),
        ("timestamp", json!("2024-01-01T00:00:00Zjunk")),
        ("timestamp", json!("1700000000")),
        ("success", json!(false)),
        ("status_code", json!(700)),
        ("status_code", json!(42)),
    ];
    for (name, value) in bad {
        let mut ev = event("a");
        ev[*name] = value.clone();
        let raw = RawValue::from_string(ev.to_string()).unwrap();
        let err = validate_event(&raw).expect_err(&format!("{name} = {value} was accepted"));
        assert!(err.contains(name), "{name}: {err}");
    }
    // success must follow status_code both ways, and 0 (no response) is not a success.
    for (status, success, ok) in [
        (200, true, true),
        (299, true, true),
        (300, true, false),
        (199, false, true),
        (404, false, true),
        (0, false, true),
        (0, true, false),
        (503, false, true),
    ] {
        let mut ev = event("a");
        ev["status_code"] = json!(status);
        ev["success"] = json!(success);
        let raw = RawValue::from_string(ev.to_string()).unwrap();
        assert_eq!(validate_event(&raw).is_ok(), ok, "{status} {success}");
    }
    for good in [
        "2026-11-23T19:48:34.618061Z",
        "2024-02-29T00:00:00Z",
        "2000-02-29T00:00:00z",
        "2024-01-01t00:00:00-05:30",
        "2024-06-30T23:59:60Z",
    ] {
        assert!(is_rfc3339(good), "{good}");
    }
    assert!(is_uuid("019AB2F0-5c1e-7a43-9f0e-3b1c2d4e5f60"));
}
