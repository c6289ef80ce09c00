//! What must hold after every step: delivered bodies valid in their format, each event id
//! acknowledged in one batch only, and the books.

use proxy_wasm_host::Callout;
use serde_json::Value;
use std::collections::HashMap;

type Check = Result<(), String>;

fn fail<T>(msg: String) -> Result<T, String> {
    Err(msg)
}

/// A UUID as RFC 9562 writes it: 8-4-4-4-12 lowercase hex, a known version.
pub fn uuid_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && matches!(b[14], b'1'..=b'8')
}

/// RFC 3339, UTC, sub-second: `2023-11-14T22:13:20.123Z`.
fn timestamp_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 22
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..b.len() - 1)
        && b[b.len() - 1] == b'Z'
}

const CORE: [&str; 10] = [
    "id",
    "api_path",
    "subscription_key",
    "method",
    "response_time_ms",
    "status_code",
    "success",
    "timestamp",
    "request_size",
    "response_size",
];

/// Events checked that carried llm fields (so a run shows the scanner was reached).
pub static WITH_TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// Events may come from a hand-over message damaged on the way: then only their shape is
    /// checked, not the values (a flipped bit makes any id, status or size).
    pub static DAMAGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One event object; its id.
pub fn event(v: &Value, veil: bool) -> Result<String, String> {
    let lenient = DAMAGED.with(|d| d.get());
    let Some(o) = v.as_object() else {
        return fail(format!("event is not an object: {v}"));
    };
    for k in CORE {
        if !o.contains_key(k) {
            return fail(format!("event lacks {k}: {v}"));
        }
    }
    if veil && o.len() != 10 {
        return fail(format!("a veil event has exactly the ten fields: {v}"));
    }
    let str_of = |k: &str| o[k].as_str();
    let id = str_of("id").unwrap_or("");
    if !(uuid_ok(id) || (lenient && id.len() == 36)) {
        return fail(format!("bad id: {v}"));
    }
    let (Some(path), Some(_), Some(_), Some(ts)) = (
        str_of("api_path"),
        str_of("subscription_key"),
        str_of("method"),
        str_of("timestamp"),
    ) else {
        return fail(format!("string fields: {v}"));
    };
    if path.contains('?') && !lenient {
        return fail(format!("api_path keeps its query: {v}"));
    }
    if !timestamp_ok(ts) && !lenient {
        return fail(format!("bad timestamp: {v}"));
    }
    let status = o["status_code"].as_u64();
    let (Some(status), Some(_), Some(_), Some(_)) = (
        status,
        o["response_time_ms"].as_u64(),
        o["request_size"].as_u64(),
        o["response_size"].as_u64(),
    ) else {
        return fail(format!("integer fields: {v}"));
    };
    if o["success"].as_bool() != Some((200..=299).contains(&status)) && !lenient {
        return fail(format!("success disagrees with status_code: {v}"));
    }
    let llm_ok = [
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cached_input_tokens",
    ]
    .iter()
    .all(|k| o.get(*k).is_none_or(|n| n.as_u64().is_some()))
        && o.get("model")
            .is_none_or(|m| m.as_str().is_some_and(|m| !m.is_empty()))
        && ["tokens_truncated", "tokens_encoded"]
            .iter()
            .all(|k| o.get(*k).is_none_or(|b| b == &Value::Bool(true)));
    if !llm_ok && !lenient {
        return fail(format!("llm fields: {v}"));
    }
    if o.contains_key("model")
        || o.contains_key("tokens_truncated")
        || o.contains_key("tokens_encoded")
    {
        WITH_TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if !veil {
        if let Some(b) = o.get("billable") {
            if b.as_bool() != Some((200..=499).contains(&status)) && !lenient {
                return fail(format!("billable disagrees with status_code: {v}"));
            }
        }
    }
    Ok(id.to_string())
}

/// A callout's body in its wire format: (batch id, event ids).
pub fn body(c: &Callout) -> Result<(String, Vec<String>), String> {
    let batch = c.header("x-usage-batch-id").unwrap_or_default();
    if !uuid_ok(&batch) {
        return fail(format!("bad x-usage-batch-id {batch:?}"));
    }
    let plain = if c.header("content-encoding").as_deref() == Some("gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        if let Err(e) = flate2::read::GzDecoder::new(&c.body[..]).read_to_end(&mut out) {
            return fail(format!("gzip body does not inflate: {e}"));
        }
        out
    } else {
        c.body.clone()
    };
    let ct = c.header("content-type").unwrap_or_default();
    let parse = |b: &[u8]| -> Result<Value, String> {
        serde_json::from_slice(b).map_err(|e| {
            format!(
                "{ct} body is not JSON ({e}): {}",
                String::from_utf8_lossy(&b[..b.len().min(300)])
            )
        })
    };
    let mut ids = Vec::new();
    match ct.as_str() {
        "application/x-ndjson" => {
            let text = std::str::from_utf8(&plain).map_err(|e| format!("ndjson not UTF-8: {e}"))?;
            if !text.ends_with('\n') {
                return fail("ndjson body does not end with a newline".into());
            }
            for line in text.lines() {
                ids.push(event(&parse(line.as_bytes())?, false)?);
            }
        }
        "application/json" => match parse(&plain)? {
            Value::Object(o) if o.len() == 1 && o.contains_key("events") => {
                let Some(events) = o["events"].as_array() else {
                    return fail("veil: events is not an array".into());
                };
                for e in events {
                    ids.push(event(e, true)?);
                }
            }
            Value::Array(events) => {
                for e in &events {
                    ids.push(event(e, false)?);
                }
            }
            v => return fail(format!("application/json body of no known shape: {v}")),
        },
        "application/cloudevents-batch+json" => {
            let Value::Array(items) = parse(&plain)? else {
                return fail("cloudevents: not an array".into());
            };
            for ce in &items {
                let id = event(&ce["data"], false)?;
                if ce["specversion"] != "1.0"
                    || (ce["type"] != "api.usage" && ce["type"] != "fuzz.usage")
                    || ce["source"].as_str().is_none_or(|s| s.is_empty())
                    || ce["id"] != id.as_str()
                    || ce["subject"] != ce["data"]["subscription_key"]
                    || ce["time"] != ce["data"]["timestamp"]
                {
                    return fail(format!("cloudevent envelope: {ce}"));
                }
                ids.push(id);
            }
        }
        "application/vnd.kafka.json.v2+json" => {
            let v = parse(&plain)?;
            let Some(records) = v["records"].as_array() else {
                return fail(format!("kafka-rest: no records: {v}"));
            };
            for rec in records {
                let id = event(&rec["value"], false)?;
                if rec["key"] != rec["value"]["subscription_key"] {
                    return fail(format!("kafka-rest key: {rec}"));
                }
                ids.push(id);
            }
        }
        other => return fail(format!("unknown content-type {other:?}")),
    }
    if ids.is_empty() {
        return fail("a batch with no events".into());
    }
    Ok((batch, ids))
}

/// Every event id acknowledged, with the batch that carried it: an id acknowledged in two
/// different batches was delivered twice. (A batch re-sent after a timeout keeps its id.)
/// Events refused alone (a one-event batch answered 400, 413 or 422) are dropped: never
/// acknowledged, before or after, and counted by the filter in `events_dropped_rejected`.
#[derive(Default)]
pub struct Acks {
    by_id: HashMap<String, String>,
    pub events: u64,
    refused_alone: std::collections::HashSet<String>,
}

impl Acks {
    /// The collector refused a batch with `status`: a one-event batch refused for its content
    /// is the filter's to drop.
    pub fn refuse(&mut self, status: u32, ids: &[String]) -> Check {
        if let ([id], 400 | 413 | 422) = (ids, status) {
            if self.by_id.contains_key(id) {
                return fail(format!(
                    "event {id} refused alone after it was acknowledged"
                ));
            }
            self.refused_alone.insert(id.clone());
        }
        Ok(())
    }

    pub fn refused_alone(&self) -> u64 {
        self.refused_alone.len() as u64
    }

    pub fn ack(&mut self, batch: &str, ids: &[String]) -> Check {
        for id in ids {
            if self.refused_alone.contains(id) {
                return fail(format!(
                    "event {id} acknowledged in batch {batch} after it was refused alone"
                ));
            }
            if let Some(old) = self.by_id.insert(id.clone(), batch.to_string()) {
                if old != batch {
                    return fail(format!(
                        "event {id} acknowledged twice, in batch {old} and in batch {batch}"
                    ));
                }
                return fail(format!("event {id} twice in batch {batch}"));
            }
        }
        self.events += ids.len() as u64;
        Ok(())
    }
}

/// A scenario's result: the failure, described.
pub type R<T = ()> = Result<T, String>;

/// A host call's error as a scenario failure.
pub fn trap<T>(what: &str, r: anyhow::Result<T>) -> R<T> {
    r.map_err(|e| format!("{what}: {e:#}"))
}

/// A log-sink line: Veil's slog shape around a valid event.
pub fn log_line(line: &[u8]) -> R {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        format!(
            "log line is not JSON ({e}): {}",
            String::from_utf8_lossy(line)
        )
    })?;
    if v["msg"] != "usage_event" || v["event_type"] != "api_usage" || v["level"] != "INFO" {
        return Err(format!("log line shape: {v}"));
    }
    event(&v, false).map(|_| ())
}

/// A refused configuration is one error line, naming a key.
pub fn one_refusal_line(logs: &[proxy_wasm_host::LogLine]) -> R {
    let errors: Vec<_> = logs.iter().filter(|l| l.level >= 4).collect();
    if errors.len() != 1 || !errors[0].message.contains("usage-filter: ") {
        return Err(format!(
            "a refused configuration must say so in one error line: {logs:?}"
        ));
    }
    Ok(())
}
