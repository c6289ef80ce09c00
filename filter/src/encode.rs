//! Encoding: one event into its JSON object once, then batches of those objects into each
//! wire format by concatenation, so no event is ever serialised twice.

use crate::config::Format;
use crate::event::{write_uuid, Event, SecondCache};
use std::ops::Range;

/// One event as JSON, with the spans the wire formats need to lift out of it.
///
/// The ten Veil fields come first, so the `veil` format (exactly those ten) is the prefix
/// `json[..core_end]` followed by `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub json: Vec<u8>,
    pub core_end: u32,
    /// The quoted subscription key (`"abc"`), for kafka-rest keys and CloudEvents subjects.
    pub key: (u32, u32),
    /// The quoted timestamp, for the log line and CloudEvents `time`.
    pub timestamp: (u32, u32),
}

/// The id sits at a fixed place: `{"id":"` is 7 bytes, a UUID is 36.
const ID_SPAN: Range<usize> = 7..43;

impl Encoded {
    fn span(&self, s: (u32, u32)) -> &[u8] {
        self.json.get(s.0 as usize..s.1 as usize).unwrap_or(b"\"\"")
    }
    pub fn key_json(&self) -> &[u8] {
        self.span(self.key)
    }
    pub fn timestamp_json(&self) -> &[u8] {
        self.span(self.timestamp)
    }
    pub fn id(&self) -> &[u8] {
        self.json.get(ID_SPAN).unwrap_or(b"")
    }
    /// The object with only the ten Veil fields.
    pub fn write_core(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.json.get(..self.core_end as usize).unwrap_or(b"{"));
        out.push(b'}');
    }
    /// Bytes this event adds to a batch body, close enough for the byte trigger.
    pub fn weight(&self) -> usize {
        self.json.len() + 1
    }
}

/// A JSON string. Header values almost never need escaping, so one scan decides, and the
/// common case is a single copy; anything else goes through serde_json's escaper. (Measured:
/// serde_json's writer costs ~470 fuel for a 13-byte string, the fast path a fraction.)
fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else {
        // writing into a Vec cannot fail
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn field(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// The event's JSON object: the ten fields in Veil's order, then the extras.
pub fn encode_event(e: &Event<'_>) -> Encoded {
    encode_event_with(e, &mut SecondCache::default())
}

/// `encode_event` reusing the caller's formatted second (one cache per VM).
pub fn encode_event_with(e: &Event<'_>, seconds: &mut SecondCache) -> Encoded {
    // The fixed part (names, id, timestamp, numbers) is under 340 bytes; reserving it all
    // avoids a reallocation that would double what every buffered event holds.
    let strings = e.api_path.len()
        + e.subscription_key.len()
        + e.method.len()
        + e.request_id.as_ref().map_or(0, |s| s.len())
        + e.authority.as_ref().map_or(0, |s| s.len())
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    let mut out = Vec::with_capacity(340 + strings + strings / 8);
    out.extend_from_slice(b"{\"id\":\"");
    write_uuid(&mut out, &e.id);
    out.push(b'"');
    field(&mut out, "api_path");
    write_str(&mut out, &e.api_path);
    field(&mut out, "subscription_key");
    let k0 = out.len() as u32;
    write_str(&mut out, &e.subscription_key);
    let key = (k0, out.len() as u32);
    field(&mut out, "method");
    write_str(&mut out, &e.method);
    field(&mut out, "response_time_ms");
    write_u64(&mut out, e.response_time_ms);
    field(&mut out, "status_code");
    write_u64(&mut out, e.status_code as u64);
    field(&mut out, "success");
    out.extend_from_slice(if e.success() { b"true" } else { b"false" });
    field(&mut out, "timestamp");
    let t0 = out.len() as u32;
    out.push(b'"');
    seconds.write(&mut out, e.completed_unix_ns);
    out.push(b'"');
    let timestamp = (t0, out.len() as u32);
    field(&mut out, "request_size");
    write_u64(&mut out, e.request_size);
    field(&mut out, "response_size");
    write_u64(&mut out, e.response_size);
    let core_end = out.len() as u32;
    if let Some(rid) = &e.request_id {
        field(&mut out, "request_id");
        write_str(&mut out, rid);
    }
    field(&mut out, "billable");
    out.extend_from_slice(if e.billable() { b"true" } else { b"false" });
    if let Some(a) = &e.authority {
        field(&mut out, "authority");
        write_str(&mut out, a);
    }
    for (name, value) in &e.attributes {
        field(&mut out, name);
        write_str(&mut out, value);
    }
    out.push(b'}');
    Encoded {
        json: out,
        core_end,
        key,
        timestamp,
    }
}

/// The log sink's line, shaped like Veil's slog line.
pub fn log_line(e: &Encoded) -> Vec<u8> {
    let mut out = Vec::with_capacity(e.json.len() + 96);
    out.extend_from_slice(b"{\"time\":");
    out.extend_from_slice(e.timestamp_json());
    out.extend_from_slice(
        b",\"level\":\"INFO\",\"msg\":\"usage_event\",\"event_type\":\"api_usage\",",
    );
    out.extend_from_slice(e.json.get(1..).unwrap_or(b"}"));
    out
}

pub fn content_type(f: Format) -> &'static str {
    match f {
        Format::Veil | Format::Json => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::CloudEvents => "application/cloudevents-batch+json",
        Format::KafkaRest => "application/vnd.kafka.json.v2+json",
    }
}

/// CloudEvents `source` of every event this filter emits.
pub const CLOUDEVENTS_SOURCE: &str = "usage-filter";

/// The body of one batch in the given wire format.
pub fn batch_body<'a>(
    format: Format,
    events: impl ExactSizeIterator<Item = &'a Encoded>,
) -> Vec<u8> {
    let events: Vec<&Encoded> = events.collect();
    let per_event = match format {
        Format::CloudEvents => 200,
        Format::KafkaRest => 24,
        _ => 1,
    };
    let size: usize = events.iter().map(|e| e.json.len() + per_event).sum();
    let mut out = Vec::with_capacity(size + 16);
    let (open, sep, close): (&[u8], &[u8], &[u8]) = match format {
        Format::Veil => (b"{\"events\":[", b",", b"]}"),
        Format::Json | Format::CloudEvents => (b"[", b",", b"]"),
        Format::Ndjson => (b"", b"", b""),
        Format::KafkaRest => (b"{\"records\":[", b",", b"]}"),
    };
    out.extend_from_slice(open);
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        match format {
            Format::Veil => e.write_core(&mut out),
            Format::Json => out.extend_from_slice(&e.json),
            Format::Ndjson => {
                out.extend_from_slice(&e.json);
                out.push(b'\n');
            }
            Format::CloudEvents => {
                out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":\"");
                out.extend_from_slice(e.id());
                out.extend_from_slice(b"\",\"source\":\"");
                out.extend_from_slice(CLOUDEVENTS_SOURCE.as_bytes());
                out.extend_from_slice(b"\",\"type\":\"api.usage\",\"time\":");
                out.extend_from_slice(e.timestamp_json());
                out.extend_from_slice(b",\"subject\":");
                out.extend_from_slice(e.key_json());
                out.extend_from_slice(b",\"datacontenttype\":\"application/json\",\"data\":");
                out.extend_from_slice(&e.json);
                out.push(b'}');
            }
            Format::KafkaRest => {
                out.extend_from_slice(b"{\"key\":");
                out.extend_from_slice(e.key_json());
                out.extend_from_slice(b",\"value\":");
                out.extend_from_slice(&e.json);
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(close);
    out
}

/// gzip with flate2's pure-Rust backend. Level 6 (the default) is a fair trade here: the
/// body is compressed once per batch, not per request.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let mut enc = GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        Compression::default(),
    );
    // Writes into a Vec do not fail; on the impossible error send uncompressed rather than lose.
    if enc.write_all(body).is_err() {
        return body.to_vec();
    }
    enc.finish().unwrap_or_else(|_| body.to_vec())
}

/// Events packed for a shared-queue hand-over: the record count as a little-endian u32,
/// then per event six little-endian u32s (json length, core_end, key span, timestamp span)
/// and the JSON. The count lets the receiver know how many a damaged message lost.
pub fn pack<'a>(events: impl Iterator<Item = &'a Encoded> + Clone) -> Vec<u8> {
    let (count, size) = events
        .clone()
        .fold((0u32, 4), |(n, s), e| (n + 1, s + e.json.len() + 24));
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&count.to_le_bytes());
    for e in events {
        for n in [
            e.json.len() as u32,
            e.core_end,
            e.key.0,
            e.key.1,
            e.timestamp.0,
            e.timestamp.1,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&e.json);
    }
    out
}

/// What a hand-over message held: the records that decoded, and how many it announced but
/// could not deliver (truncated or inconsistent; a damaged record ends the message).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub events: Vec<Encoded>,
    pub lost: u64,
}

/// The inverse of `pack`.
pub fn unpack(bytes: &[u8]) -> Unpacked {
    let mut out = Unpacked::default();
    let Some((head, mut bytes)) = bytes.split_first_chunk::<4>() else {
        return out;
    };
    let announced = u32::from_le_bytes(*head) as u64;
    while bytes.len() >= 24 && (out.events.len() as u64) < announced {
        let mut n = [0u32; 6];
        for (i, v) in n.iter_mut().enumerate() {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
            *v = u32::from_le_bytes(a);
        }
        let len = n[0] as usize;
        // checked: on wasm32 a hostile length overflows usize
        let Some(end) = len.checked_add(24) else {
            break;
        };
        let Some(json) = bytes.get(24..end) else {
            break;
        };
        if n[1..].iter().any(|&x| x as usize > len) || n[2] > n[3] || n[4] > n[5] {
            break;
        }
        out.events.push(Encoded {
            json: json.to_vec(),
            core_end: n[1],
            key: (n[2], n[3]),
            timestamp: (n[4], n[5]),
        });
        bytes = &bytes[end..];
    }
    out.lost = announced - out.events.len() as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::borrow::Cow;

    fn sample(key: &str) -> Encoded {
        let e = Event {
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
            attributes: vec![("organization_id", "org-9".into())],
        };
        encode_event(&e)
    }

    #[test]
    fn event_json_has_the_ten_fields_and_extras() {
        let e = sample("k\"ey");
        let v: Value = serde_json::from_slice(&e.json).unwrap();
        assert_eq!(v["api_path"], "/v1/things");
        assert_eq!(v["subscription_key"], "k\"ey");
        assert_eq!(v["status_code"], 201);
        assert_eq!(v["success"], true);
        assert_eq!(v["billable"], true);
        assert_eq!(v["timestamp"], "2025-10-02T13:58:33.001748Z");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["organization_id"], "org-9");
        assert_eq!(v.as_object().unwrap().len(), 14);
        assert_eq!(e.key_json(), b"\"k\\\"ey\"");
        assert_eq!(
            uuid::Uuid::parse_str(std::str::from_utf8(e.id()).unwrap())
                .unwrap()
                .get_version_num(),
            7
        );
    }

    #[test]
    fn veil_core_is_exactly_ten_fields() {
        let e = sample("k");
        let mut core = Vec::new();
        e.write_core(&mut core);
        let v: Value = serde_json::from_slice(&core).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
        assert_eq!(keys.len(), 10, "{keys:?}");
    }

    #[test]
    fn log_line_is_veils_slog_shape() {
        let line = log_line(&sample("k"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["msg"], "usage_event");
        assert_eq!(v["event_type"], "api_usage");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["time"], v["timestamp"]);
        assert!(!line.contains(&b'\n'));
    }

    #[test]
    fn every_format_parses() {
        let evs = [sample("a"), sample("b")];
        let veil: Value = serde_json::from_slice(&batch_body(Format::Veil, evs.iter())).unwrap();
        assert_eq!(veil["events"].as_array().unwrap().len(), 2);
        let json: Value = serde_json::from_slice(&batch_body(Format::Json, evs.iter())).unwrap();
        assert_eq!(json[1]["subscription_key"], "b");
        let nd = batch_body(Format::Ndjson, evs.iter());
        let lines: Vec<Value> = nd
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let ce: Value =
            serde_json::from_slice(&batch_body(Format::CloudEvents, evs.iter())).unwrap();
        assert_eq!(ce[0]["specversion"], "1.0");
        assert_eq!(ce[0]["subject"], "a");
        assert_eq!(ce[0]["id"], ce[0]["data"]["id"]);
        let kr: Value = serde_json::from_slice(&batch_body(Format::KafkaRest, evs.iter())).unwrap();
        assert_eq!(kr["records"][1]["key"], "b");
        assert_eq!(kr["records"][1]["value"]["subscription_key"], "b");
    }

    #[test]
    fn pack_round_trips_and_survives_garbage() {
        let evs = vec![sample("a"), sample("b")];
        let packed = pack(evs.iter());
        assert_eq!(
            unpack(&packed),
            Unpacked {
                events: evs.clone(),
                lost: 0
            }
        );
        let cut = unpack(&packed[..packed.len() - 1]);
        assert_eq!((cut.events, cut.lost), (evs[..1].to_vec(), 1));
        let head_only = unpack(&packed[..4]);
        assert_eq!((head_only.events.len(), head_only.lost), (0, 2));
        let garbage = unpack(b"garbage");
        assert!(garbage.events.is_empty());
        let ff = unpack(&[0xff; 64]);
        assert!(ff.events.is_empty());
        assert_eq!(ff.lost, u32::MAX as u64);
        assert_eq!(unpack(b""), Unpacked::default());
    }

    #[test]
    fn strings_and_numbers_match_serde_json() {
        let mut cases: Vec<String> = (0u8..=127).map(|c| format!("a{}b", c as char)).collect();
        cases.extend(
            ["", "plain", "ключ-123", "emoji 🎉", "\u{7f}\u{80}\u{2028}"].map(String::from),
        );
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
        let body = batch_body(Format::Veil, [sample("a")].iter());
        let z = gzip(&body);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }
}
