//! Turning a request body into usage events, and checking each event.
//!
//! The filter can deliver a batch in four wire formats (chosen with its
//! `format` setting). All of them carry the same event object; only the
//! envelope differs. Decoding is therefore split in two steps:
//!
//! 1. [`decode_batch`] opens the envelope and returns one *candidate* per
//!    event. A body that cannot be parsed at all is a batch-level error (the
//!    sender gets a 400 and must not retry it unchanged).
//! 2. [`validate_event`] checks a candidate against the event schema. An
//!    invalid event only counts as an error in the response; the rest of the
//!    batch is still accepted, exactly like Veil's platform API.
//!
//! Events are kept as [`RawValue`]s that borrow from the body, so the out file
//! receives the event object byte-for-byte as the sender wrote it.

use std::borrow::Cow;
use std::io::Read;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The envelope formats the collector understands, keyed by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: `{"events":[...]}` (Veil's format) or a bare array.
    Json,
    /// `application/x-ndjson`: one event object per non-empty line.
    Ndjson,
    /// `application/cloudevents-batch+json`: an array of CloudEvents whose
    /// `data` is the event.
    CloudEventsBatch,
    /// `application/vnd.kafka.json.v2+json`: Kafka REST proxy records whose
    /// `value` is the event.
    KafkaRest,
}

impl Format {
    /// Picks the format from a `Content-Type` header value.
    ///
    /// Parameters such as `; charset=utf-8` are ignored and the comparison is
    /// case-insensitive, as media types are. A missing or empty header is
    /// refused: the filter always sends one, and guessing would hide a sender
    /// that lost its headers.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, String> {
        let Some(value) = content_type else {
            return Err("missing content-type".to_string());
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" => Err("missing content-type".to_string()),
            "application/json" => Ok(Format::Json),
            "application/x-ndjson" => Ok(Format::Ndjson),
            "application/cloudevents-batch+json" => Ok(Format::CloudEventsBatch),
            "application/vnd.kafka.json.v2+json" => Ok(Format::KafkaRest),
            other => Err(format!("unsupported content-type: {other}")),
        }
    }
}

/// Undoes `Content-Encoding`. Only `gzip` (and its old alias `x-gzip`) is
/// used by the filter; `identity` or no header leaves the body as it is.
///
/// `max_len` bounds the decompressed size so that a small malicious body
/// cannot expand into gigabytes (a "zip bomb").
pub fn decode_content_encoding<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    max_len: usize,
) -> Result<Cow<'a, [u8]>, String> {
    let encoding = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_len));
            // Read one byte more than allowed, to tell "exactly max" from "too big".
            let mut reader = flate2::read::MultiGzDecoder::new(body).take(max_len as u64 + 1);
            reader
                .read_to_end(&mut out)
                .map_err(|e| format!("invalid gzip body: {e}"))?;
            if out.len() > max_len {
                return Err(format!("gzip body expands beyond {max_len} bytes"));
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(format!("unsupported content-encoding: {other}")),
    }
}

/// One event as found in the envelope: either the raw event JSON, or the
/// reason the envelope entry holds no usable event (for example a CloudEvent
/// without `data`). The latter counts as an invalid event, not a bad batch.
pub type Candidate<'a> = Result<&'a RawValue, String>;

/// Opens the envelope of a (already decompressed) body.
///
/// Returns `Err` when the body as a whole cannot be parsed; the caller answers
/// 400. An empty `Vec` means the body parsed but held no events, which the
/// caller also rejects ("no events").
pub fn decode_batch(format: Format, body: &[u8]) -> Result<Vec<Candidate<'_>>, String> {
    // Borrowing RawValues needs the body as text; JSON is UTF-8 by definition.
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not valid UTF-8: {e}"))?;
    match format {
        Format::Json => decode_json(text),
        Format::Ndjson => decode_ndjson(text),
        Format::CloudEventsBatch => decode_cloudevents(text),
        Format::KafkaRest => decode_kafka(text),
    }
}

fn decode_json(text: &str) -> Result<Vec<Candidate<'_>>, String> {
    /// Veil's envelope. Other top-level fields are ignored.
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }

    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let events: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| format!("invalid JSON array: {e}"))?;
            Ok(events.into_iter().map(Ok).collect())
        }
        Some(b'{') => {
            let envelope: Envelope =
                serde_json::from_str(text).map_err(|e| format!("invalid JSON body: {e}"))?;
            Ok(envelope.events.into_iter().map(Ok).collect())
        }
        Some(_) => Err("expected {\"events\":[...]} or a JSON array of events".to_string()),
        None => Err("empty body".to_string()),
    }
}

fn decode_ndjson(text: &str) -> Result<Vec<Candidate<'_>>, String> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // `lines()` already strips "\n" and "\r\n"; blank lines are allowed.
        if line.trim().is_empty() {
            continue;
        }
        // A line that is not JSON means the framing is broken, so the whole
        // body is refused rather than guessing where the next event starts.
        let raw: &RawValue = serde_json::from_str(line)
            .map_err(|e| format!("invalid JSON on line {}: {e}", index + 1))?;
        events.push(Ok(raw));
    }
    Ok(events)
}

fn decode_cloudevents(text: &str) -> Result<Vec<Candidate<'_>>, String> {
    /// The CloudEvents attributes we check; everything else is ignored.
    /// Fields are `Value`s so that a wrong type is reported per event instead
    /// of failing the whole batch.
    #[derive(Deserialize)]
    struct CloudEvent<'a> {
        specversion: Option<Value>,
        id: Option<Value>,
        source: Option<Value>,
        #[serde(rename = "type")]
        ty: Option<Value>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }

    fn check(raw: &RawValue) -> Candidate<'_> {
        let ce: CloudEvent = serde_json::from_str(raw.get())
            .map_err(|e| format!("CloudEvent is not an object: {e}"))?;
        match &ce.specversion {
            Some(Value::String(v)) if v == "1.0" => {}
            _ => return Err("CloudEvent specversion must be \"1.0\"".to_string()),
        }
        for (name, value) in [("id", &ce.id), ("source", &ce.source), ("type", &ce.ty)] {
            match value {
                Some(Value::String(s)) if !s.is_empty() => {}
                _ => return Err(format!("CloudEvent `{name}` must be a non-empty string")),
            }
        }
        ce.data
            .ok_or_else(|| "CloudEvent has no `data`".to_string())
    }

    let elements: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| format!("expected a JSON array of CloudEvents: {e}"))?;
    Ok(elements.into_iter().map(check).collect())
}

fn decode_kafka(text: &str) -> Result<Vec<Candidate<'_>>, String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        records: Vec<&'a RawValue>,
    }
    /// A record; `key` (and `partition`) are allowed but not needed.
    #[derive(Deserialize)]
    struct Record<'a> {
        #[serde(borrow)]
        value: Option<&'a RawValue>,
    }

    fn check(raw: &RawValue) -> Candidate<'_> {
        let record: Record = serde_json::from_str(raw.get())
            .map_err(|e| format!("Kafka record is not an object: {e}"))?;
        record
            .value
            .ok_or_else(|| "Kafka record has no `value`".to_string())
    }

    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| format!("expected {{\"records\":[...]}}: {e}"))?;
    Ok(envelope.records.into_iter().map(check).collect())
}

/// The JSON type each required event field must have.
#[derive(Clone, Copy)]
enum Kind {
    String,
    /// A JSON integer that is not negative (`12`, not `12.0` or `-1`).
    Count,
    Bool,
}

/// The ten fields Veil's platform API requires. Extra fields are allowed.
const REQUIRED: [(&str, Kind); 10] = [
    ("id", Kind::String),
    ("api_path", Kind::String),
    ("subscription_key", Kind::String),
    ("method", Kind::String),
    ("response_time_ms", Kind::Count),
    ("status_code", Kind::Count),
    ("success", Kind::Bool),
    ("timestamp", Kind::String),
    ("request_size", Kind::Count),
    ("response_size", Kind::Count),
];

/// An event that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// The event's `id`, the key for de-duplication.
    pub id: String,
    /// The event as received, on one line (no trailing newline).
    pub line: String,
}

/// Checks one event against the schema and prepares its out-file line.
pub fn validate_event(raw: &RawValue) -> Result<ValidEvent, String> {
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("event is not a JSON object".to_string());
    };
    check_fields(&object)?;
    check_values(&object)?;
    let id = match object.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => unreachable!("check_fields verified `id`"),
    };
    Ok(ValidEvent {
        id,
        line: one_line(raw.get()),
    })
}

fn check_fields(object: &Map<String, Value>) -> Result<(), String> {
    for (name, kind) in REQUIRED {
        let value = object
            .get(name)
            .ok_or_else(|| format!("missing field `{name}`"))?;
        let ok = match kind {
            Kind::String => value.is_string(),
            // `is_u64` is true only for integers that are >= 0.
            Kind::Count => value.is_u64(),
            Kind::Bool => value.is_boolean(),
        };
        if !ok {
            let expected = match kind {
                Kind::String => "a string",
                Kind::Count => "a non-negative integer",
                Kind::Bool => "a boolean",
            };
            return Err(format!("field `{name}` must be {expected}"));
        }
    }
    Ok(())
}

/// The rules on values, once the types are right: `id` a UUID, `timestamp` RFC 3339,
/// `success` exactly `200 <= status_code <= 299`, `status_code` 0 or a real status.
fn check_values(object: &Map<String, Value>) -> Result<(), String> {
    let text = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
    if !is_uuid(text("id")) {
        return Err(format!("field `id` must be a UUID, got {:?}", text("id")));
    }
    if !is_rfc3339(text("timestamp")) {
        return Err(format!(
            "field `timestamp` must be an RFC 3339 date-time, got {:?}",
            text("timestamp")
        ));
    }
    let status = object
        .get("status_code")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if status != 0 && !(100..=599).contains(&status) {
        return Err(format!(
            "field `status_code` must be 0 or 100..=599, got {status}"
        ));
    }
    let success = object.get("success").and_then(Value::as_bool) == Some(true);
    if success != (200..=299).contains(&status) {
        return Err(format!(
            "field `success` is {success} but `status_code` is {status}"
        ));
    }
    Ok(())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in either case (any version).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`, with
/// the calendar checked (month lengths, leap years; a leap second `:60` allowed).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    let separators = at(4, b'-')
        && at(7, b'-')
        && matches!(b.get(10), Some(b'T' | b't'))
        && at(13, b':')
        && at(16, b':');
    if !separators {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && at(i + 3, b':')
                && num(i + 1, 2).is_some_and(|h| h <= 23)
                && num(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// Makes a raw JSON text fit on one NDJSON line.
///
/// JSON strings cannot contain raw line breaks (they must be escaped as `\n`),
/// so any CR or LF in valid JSON text is insignificant whitespace between
/// tokens and can be dropped without changing the value.
fn one_line(raw: &str) -> String {
    if raw.contains(['\n', '\r']) {
        raw.chars().filter(|c| *c != '\n' && *c != '\r').collect()
    } else {
        raw.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests;
