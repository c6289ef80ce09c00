//! Encoding: an event into its JSON object, and a batch of records into each wire format,
//! written straight into the body (see `record`). The log line is the one place an event is
//! encoded on the request path.

use crate::config::Format;
use crate::event::{AttrValue, Event, Fields, Tokens};
use crate::record::Record;
use crate::tokens;
use timestamp::SecondCache;
use uuid::write_uuid;

pub mod timestamp;
pub mod uuid;

/// A JSON string. Header values almost never need escaping, so one scan decides, and the
/// common case is a single copy; anything else goes through serde_json's escaper. (Measured:
/// serde_json's writer costs ~470 fuel for a 13-byte string, the fast path a fraction.)
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_contents(out, s);
    out.push(b'"');
}

/// A JSON string's contents, between quotes the caller writes (in the event's members, as part
/// of the names around it: two calls fewer per string).
fn write_str_contents(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !needs_escape(b) {
        out.extend_from_slice(b);
    } else {
        // serde_json writes the quotes too: keep what is between them (writing into a Vec
        // cannot fail)
        let at = out.len();
        let _ = serde_json::to_writer(&mut *out, s);
        out.pop();
        out.remove(at);
    }
}

/// Whether JSON needs any byte of `b` escaped: a control character, `"` or `\\`.
fn needs_escape(b: &[u8]) -> bool {
    crate::swar::find_any_or_below(b, [b'"', b'\\'], 0x20).is_some()
}

/// Numbers below 10,000 (status, milliseconds, most sizes) two digits at a time from a table;
/// larger ones through itoa.
fn write_u64(out: &mut Vec<u8>, n: u64) {
    let pair = |p: u64| timestamp::two_digits(p as usize);
    match n {
        0..=9 => out.push(b'0' + n as u8),
        10..=99 => out.extend_from_slice(&pair(n)),
        100..=999 => {
            let [a, b] = pair(n % 100);
            out.extend_from_slice(&[b'0' + (n / 100) as u8, a, b]);
        }
        1000..=9999 => {
            let ([a, b], [c, d]) = (pair(n / 100), pair(n % 100));
            out.extend_from_slice(&[a, b, c, d]);
        }
        _ => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
    }
}

fn field(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes the event's JSON object: the ten fields in Veil's order, then (unless `core_only`,
/// the `veil` format) the extras.
fn write_event<F: Fields>(out: &mut Vec<u8>, e: &F, seconds: &mut SecondCache, core_only: bool) {
    out.push(b'{');
    write_members(out, e, seconds, core_only);
}

// Not inlined: five wire formats and the log line call it, and inlined copies cost ~25 KB of
// .wasm.
#[inline(never)]
/// The event's members and its closing brace: what `write_event` writes after the `{`, and
/// what the log line writes after its own leading members.
fn write_members<F: Fields>(out: &mut Vec<u8>, e: &F, seconds: &mut SecondCache, core_only: bool) {
    // Field names are written with their punctuation as one literal each: a call per
    // field instead of four (measured in V8: see bench/notes.md). No reserve per event: near
    // the end of a batch's scratch buffer it doubled the buffer for bytes that fitted.
    out.extend_from_slice(b"\"id\":\"");
    write_uuid(out, e.id());
    out.extend_from_slice(b"\",\"api_path\":\"");
    write_str_contents(out, e.api_path());
    out.extend_from_slice(b"\",\"subscription_key\":\"");
    write_str_contents(out, e.subscription_key());
    out.extend_from_slice(b"\",\"method\":\"");
    write_str_contents(out, e.method());
    out.extend_from_slice(b"\",\"response_time_ms\":");
    write_u64(out, e.response_time_ms());
    out.extend_from_slice(b",\"status_code\":");
    write_u64(out, e.status_code() as u64);
    out.extend_from_slice(match e.success() {
        true => b",\"success\":true,\"timestamp\":\"",
        false => b",\"success\":false,\"timestamp\":\"",
    });
    seconds.write(out, e.completed_unix_ns());
    out.extend_from_slice(b"\",\"request_size\":");
    write_u64(out, e.request_size());
    out.extend_from_slice(b",\"response_size\":");
    write_u64(out, e.response_size());
    if !core_only {
        if let Some(rid) = e.request_id() {
            field(out, "request_id");
            write_str(out, rid);
        }
        field(out, "billable");
        out.extend_from_slice(if e.billable() { b"true" } else { b"false" });
        if let Some(a) = e.authority() {
            field(out, "authority");
            write_str(out, a);
        }
        if let Some(r) = e.api_route() {
            field(out, "api_route");
            write_str(out, r);
        }
        e.each_attribute(&mut |name, value| {
            field(out, name);
            write_attr(out, value);
            true
        });
        if let Some(t) = &e.tokens() {
            write_tokens(out, t);
        }
    }
    out.push(b'}');
}

/// An attribute's value: text as a JSON string, a number or boolean as it is.
fn write_attr(out: &mut Vec<u8>, v: &AttrValue<'_>) {
    match v {
        AttrValue::Text(s) => write_str(out, s),
        AttrValue::Literal(l) => out.extend_from_slice(l.as_bytes()),
    }
}

/// The `llm` fields, each only when the response said it.
fn write_tokens(out: &mut Vec<u8>, t: &Tokens<'_>) {
    if let Some(m) = &t.model {
        field(out, "model");
        write_str(out, m);
    }
    if let Some(p) = t.usage.provider.name() {
        field(out, "provider");
        write_str(out, p);
    }
    for (i, name) in tokens::FIELDS.iter().enumerate() {
        if let Some(n) = t.usage.get(i) {
            field(out, name);
            write_u64(out, n);
        }
    }
    if let (Some(nanos), Some(c)) = (t.usage.get(tokens::COST), &t.currency) {
        field(out, "cost");
        tokens::price::write_nanos(out, nanos);
        field(out, "currency");
        write_str(out, c);
    }
    for (on, name) in [
        (t.usage.truncated(), tokens::TRUNCATED_FIELD),
        (t.usage.encoded(), tokens::ENCODED_FIELD),
    ] {
        if on {
            field(out, name);
            out.extend_from_slice(b"true");
        }
    }
}

// The filter itself writes events only into a log line or a batch body: the object alone is
// for the tests and `make bench`.

/// The event's whole JSON object (all formats but `veil` carry the extras).
#[cfg(test)]
pub fn encode_event(e: &Event<'_>) -> Vec<u8> {
    encode_event_with(e, &mut SecondCache::default())
}

/// `encode_event` reusing the caller's formatted second (one cache per VM).
#[cfg(any(test, feature = "bench"))]
pub fn encode_event_with(e: &Event<'_>, seconds: &mut SecondCache) -> Vec<u8> {
    let mut json = Vec::with_capacity(340 + strings_len(e));
    write_event(&mut json, e, seconds, false);
    json
}

fn strings_len(e: &Event<'_>) -> usize {
    e.api_path.len()
        + e.subscription_key.len()
        + e.method.len()
        + e.request_id.as_ref().map_or(0, |s| s.len())
        + e.authority.as_ref().map_or(0, |s| s.len())
        + e.api_route.as_ref().map_or(0, |s| s.len() + 14)
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.as_str().len() + 6)
            .sum::<usize>()
        + e.tokens
            .as_ref()
            .map_or(0, |t| t.model.as_ref().map_or(0, |m| m.len()) + 280)
}

/// The log sink's line, shaped like Veil's slog line: its own members first (`time` is the
/// event's timestamp), then the event's, written once into the line.
pub fn log_line(e: &Event<'_>, seconds: &mut SecondCache) -> Vec<u8> {
    let mut out = Vec::with_capacity(436 + strings_len(e));
    out.extend_from_slice(b"{\"time\":\"");
    seconds.write(&mut out, e.completed_unix_ns);
    out.extend_from_slice(
        b"\",\"level\":\"INFO\",\"msg\":\"usage_event\",\"event_type\":\"api_usage\",",
    );
    write_members(&mut out, e, seconds, false);
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

/// What of a destination's configuration the encoding of its bodies reads.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub format: Format,
    /// `http.kafka_key`: the attribute that keys each `kafka-rest` record; `None`: the
    /// subscription key.
    pub kafka_key: Option<&'a str>,
    /// `http.cloudevents.type` and `.source`.
    pub ce_type: &'a str,
    pub ce_source: &'a str,
}

impl<'a> Shape<'a> {
    pub fn of(h: &'a crate::config::Http) -> Self {
        Shape {
            format: h.format,
            kafka_key: h.kafka_key.as_deref(),
            ce_type: &h.cloudevents_type,
            ce_source: &h.cloudevents_source,
        }
    }

    /// `format` with every other key at its default.
    #[cfg(any(test, feature = "bench"))]
    pub fn default_for(format: Format) -> Shape<'static> {
        use crate::config::keys;
        Shape {
            format,
            kafka_key: None,
            ce_type: keys::CLOUDEVENTS_TYPE.default,
            ce_source: keys::CLOUDEVENTS_SOURCE.default,
        }
    }
}

/// The body of one batch in the given wire format, each record encoded straight into it.
/// (The filter reuses one buffer through `write_batch_body`; this is for the tests and `make
/// bench`.)
#[cfg(any(test, feature = "bench"))]
pub fn batch_body<'a>(
    format: Format,
    records: impl ExactSizeIterator<Item = &'a Record>,
    seconds: &mut SecondCache,
) -> Vec<u8> {
    let mut out = Vec::new();
    write_batch_body(&mut out, &Shape::default_for(format), records, seconds);
    out
}

/// `batch_body` into `out` (cleared first), so a caller can reuse one buffer for every body
/// (the dispatcher sends the buffer itself and gets it back): bodies allocated at estimated
/// sizes fragmented the heap of a long outage.
///
/// A `kafka-rest` record without the attribute `shape.kafka_key` names has `"key": null`.
pub fn write_batch_body<'a>(
    out: &mut Vec<u8>,
    shape: &Shape<'_>,
    records: impl ExactSizeIterator<Item = &'a Record>,
    seconds: &mut SecondCache,
) {
    out.clear();
    let (open, sep, close): (&[u8], &[u8], &[u8]) = match shape.format {
        Format::Veil => (b"{\"events\":[", b",", b"]}"),
        Format::Json | Format::CloudEvents => (b"[", b",", b"]"),
        Format::Ndjson => (b"", b"", b""),
        Format::KafkaRest => (b"{\"records\":[", b",", b"]}"),
    };
    out.extend_from_slice(open);
    for (i, r) in records.enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        // Destinations that share this format write an event once, whichever cuts its batch
        // first, and the others copy those bytes (`Delivery::hold_shared`).
        match r.element() {
            Some(cell) => {
                let element = cell.get_or_init(|| {
                    let mut one = Vec::with_capacity(r.weight());
                    write_element(&mut one, shape, r, seconds);
                    one
                });
                out.extend_from_slice(element);
            }
            None => write_element(out, shape, r, seconds),
        }
    }
    out.extend_from_slice(close);
}

/// One event as one element of a batch body in `shape`'s format (without the separator).
pub fn write_element<F: Fields>(
    out: &mut Vec<u8>,
    shape: &Shape<'_>,
    e: &F,
    seconds: &mut SecondCache,
) {
    match shape.format {
        Format::Veil => {
            write_event(out, e, seconds, true);
        }
        Format::Json => {
            write_event(out, e, seconds, false);
        }
        Format::Ndjson => {
            write_event(out, e, seconds, false);
            out.push(b'\n');
        }
        Format::CloudEvents => {
            out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":\"");
            write_uuid(out, e.id());
            out.extend_from_slice(b"\",\"source\":");
            write_str(out, shape.ce_source);
            out.extend_from_slice(b",\"type\":");
            write_str(out, shape.ce_type);
            out.extend_from_slice(b",\"time\":\"");
            seconds.write(out, e.completed_unix_ns());
            out.extend_from_slice(b"\",\"subject\":");
            write_str(out, e.subscription_key());
            out.extend_from_slice(b",\"datacontenttype\":\"application/json\",\"data\":");
            write_event(out, e, seconds, false);
            out.push(b'}');
        }
        Format::KafkaRest => {
            out.extend_from_slice(b"{\"key\":");
            match shape.kafka_key {
                None => write_str(out, e.subscription_key()),
                Some(key) => {
                    let mut found = false;
                    e.each_attribute(&mut |name, value| {
                        found = name == key;
                        if found {
                            write_attr(out, value);
                        }
                        !found
                    });
                    if !found {
                        out.extend_from_slice(b"null");
                    }
                }
            }
            out.extend_from_slice(b",\"value\":");
            write_event(out, e, seconds, false);
            out.push(b'}');
        }
    }
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

#[cfg(test)]
mod tests;
