//! What the campaign generates: plugin configurations (valid ones for the scenarios, and
//! anything at all for the configuration decoder), requests, collector answers.

use crate::rng::Rng;
use serde_json::{json, Map, Value};

pub const FORMATS: [&str; 5] = ["veil", "ndjson", "json", "cloudevents", "kafka-rest"];

/// A number as a user (or Envoy's YAML loader) may write it: `12`, `12.0` or `"12.0"`.
fn num(r: &mut Rng, n: u64) -> Value {
    match r.below(8) {
        0 => json!(n as f64),
        1 => Value::String(format!("{n}.0")),
        _ => json!(n),
    }
}

/// `num` of a value in lo..=hi.
fn int(r: &mut Rng, lo: u64, hi: u64) -> Value {
    let n = r.range(lo, hi);
    num(r, n)
}

/// A valid http section for a scenario: small enough that batches, timeouts and retries all
/// happen within a few simulated seconds.
pub fn http_section(r: &mut Rng) -> Value {
    let batch_size = r.range(1, 40);
    let buffer_size = r.range(batch_size, 600);
    let initial = r.range(1, 300);
    let mut h = json!({
        "cluster": "collector",
        "format": *r.pick(&FORMATS),
        "compression": if r.chance(30) { "gzip" } else { "none" },
        "batch_size": num(r, batch_size),
        "buffer_size": num(r, buffer_size),
        "max_batch_bytes": int(r, 1024, 64 * 1024),
        "flush_interval_ms": int(r, 1, 1500),
        "timeout_ms": int(r, 1, 3000),
        "max_in_flight": int(r, 1, 4),
        "retry": {"max_attempts": int(r, 1, 5), "initial_backoff_ms": num(r, initial),
                  "max_backoff_ms": int(r, initial, 2000)},
    });
    if r.chance(20) {
        h["headers"] = json!({"authorization": "Bearer t", "x-tenant": r.string(8)});
    }
    if r.chance(10) {
        h["path"] = json!("/ingest");
    }
    h
}

/// The upstream clusters of the destinations of an `http` array, in order (the first is the
/// single object's too); every VM of a scenario has them all.
pub const CLUSTERS: [&str; 3] = ["collector", "collector_b", "collector_c"];

/// The name of destination `i` of an `http` array.
pub fn dest_name(i: usize) -> String {
    format!("d{i}")
}

/// `http` for a scenario of `dests` destinations: one object when 0 (sometimes named: it must
/// keep the plain metric names all the same), else an array of that many, each its own
/// settings, name and cluster.
pub fn http_value(r: &mut Rng, dests: usize) -> Value {
    let one = |r: &mut Rng, i: usize| {
        let mut h = http_section(r);
        h["cluster"] = json!(CLUSTERS[i]);
        if r.chance(20) {
            // CloudEvents attributes as configured (check.rs accepts these two types).
            h["cloudevents"] = json!({"type": "fuzz.usage", "source": r.string(6)});
        }
        h
    };
    if dests == 0 {
        let mut h = one(r, 0);
        if r.chance(20) {
            h["name"] = json!("solo");
        }
        return h;
    }
    Value::Array(
        (0..dests)
            .map(|i| {
                let mut h = one(r, i);
                h["name"] = json!(dest_name(i));
                h
            })
            .collect(),
    )
}

/// The top level of a valid configuration, `http` included when given.
pub fn top(r: &mut Rng, http: Option<Value>, log: bool) -> Value {
    let mut c = json!({
        "enabled": true,
        "key_mode": *r.pick(&["raw", "sha256", "redact"]),
        "require_key": r.chance(70),
    });
    if r.chance(30) {
        c["exclude_paths"] = json!(["/health", "/admin/"]);
    }
    if r.chance(30) {
        c["attributes"] = json!({"organization_id": {"header": "x-org"}});
    }
    if r.chance(20) {
        c["subscription_key_header"] = json!("x-api-key");
    }
    if r.chance(30) {
        let mut l = json!({"enabled": r.chance(80), "max_scan_bytes": int(r, 1, 70_000)});
        if r.chance(30) {
            l["paths"] = json!(["/v1/", "/api/"]);
        }
        c["llm"] = l;
    }
    let mut sinks = Vec::new();
    if log {
        sinks.push("log");
        c["log_output"] = json!(*r.pick(&["host_log", "filter_state", "both"]));
    }
    if let Some(h) = http {
        sinks.push("http");
        c["http"] = h;
    }
    c["sinks"] = json!(sinks);
    c
}

/// Any JSON value at all, shallow.
fn junk_value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(r.chance(50)),
        2 => json!(r.next_u64() as i64 >> r.below(64)),
        3 => json!((r.next_u64() as f64) / (r.range(1, 1 << 20) as f64) - 1e12),
        4 => Value::String(r.string_upto(40)),
        5 => Value::String(format!("{}.{}", r.below(100_000), r.below(10))),
        6 => Value::Array((0..r.below(4)).map(|_| junk_value(r, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                m.insert(r.string_in(1, 12), junk_value(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A valid configuration, then mutated: keys dropped, values replaced by junk, junk keys,
/// wrong sections. Mostly close to real ones, so the walker's every branch is reached.
pub fn mutated_config(r: &mut Rng) -> Value {
    let (h, log) = (http_section(r), r.chance(50));
    let mut c = top(r, Some(h), log);
    if r.chance(20) {
        c["dispatcher"] = json!({"mode": *r.pick(&["local", "shared_queue", "kafka"]),
                                 "service": r.chance(50), "queue": r.string(6)});
    }
    if r.chance(10) {
        c["http"]["url"] = json!(*r.pick(&[
            "http://collector:3000/e",
            "http://c:port/x",
            "http://c:99999/x",
            "http://c:/x",
            "https://[::1]:8443/x",
            "ftp://x",
            "http://",
        ]));
    }
    for _ in 0..r.below(4) {
        mutate(r, &mut c, 0);
    }
    c
}

fn mutate(r: &mut Rng, v: &mut Value, depth: u32) {
    let Value::Object(m) = v else {
        *v = junk_value(r, depth);
        return;
    };
    let keys: Vec<String> = m.keys().cloned().collect();
    match r.below(5) {
        0 if !keys.is_empty() => {
            m.remove(r.pick(&keys));
        }
        1 => {
            m.insert(r.string_in(1, 10), junk_value(r, depth));
        }
        2 if !keys.is_empty() => {
            let k = r.pick(&keys).clone();
            if let Some(x) = m.get_mut(&k) {
                mutate(r, x, depth + 1);
            }
        }
        _ if !keys.is_empty() => {
            let k = r.pick(&keys).clone();
            m.insert(k, junk_value(r, depth));
        }
        _ => {}
    }
}

/// Bytes for `on_configure`: JSON text, Envoy's binary Struct, either damaged, or noise.
pub fn config_bytes(r: &mut Rng) -> Vec<u8> {
    let mut b = match r.below(10) {
        0..=2 => serde_json::to_vec(&mutated_config(r)).unwrap_or_default(),
        3..=6 => proxy_wasm_host::abi::encode_struct(&mutated_config(r)),
        7 => {
            let mut b = r.bytes_upto(300);
            if r.chance(50) && !b.is_empty() {
                b[0] = if r.chance(50) { b'{' } else { 0x0a };
            }
            b
        }
        8 => proxy_wasm_host::abi::encode_struct(&junk_value(r, 0)),
        _ => serde_json::to_vec(&junk_value(r, 0)).unwrap_or_default(),
    };
    // Damage: flips, cuts, insertions, duplicated spans.
    if r.chance(50) {
        for _ in 0..r.range(1, 4) {
            if b.is_empty() {
                break;
            }
            let i = r.below(b.len() as u64) as usize;
            match r.below(4) {
                0 => b[i] ^= 1 << r.below(8),
                1 => b.truncate(i),
                2 => {
                    let n = r.range(1, 8) as usize;
                    let junk = r.bytes(n);
                    b.splice(i..i, junk);
                }
                _ => {
                    let j = (i + r.below(16) as usize).min(b.len());
                    let span = b[i..j].to_vec();
                    b.splice(i..i, span);
                }
            }
        }
    }
    b
}

/// A collector answer's headers: retry-after in every spelling, and noise.
pub fn answer_headers(r: &mut Rng) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if r.chance(40) {
        let v = match r.below(7) {
            0 => r.below(5).to_string(),
            1 => r.next_u64().to_string(),
            2 => "Wed, 21 Oct 2015 07:28:00 GMT".to_string(),
            3 => "-1".to_string(),
            4 => "1.5".to_string(),
            5 => String::new(),
            _ => r.string_upto(64),
        };
        h.push(("retry-after".to_string(), v));
    }
    for _ in 0..r.below(4) {
        let name = format!("x-{}", r.below(1000));
        h.push((name, r.string_upto(2048)));
    }
    h
}

/// A collector status: mostly the usual ones, sometimes anything.
pub fn answer_status(r: &mut Rng) -> u32 {
    match r.below(10) {
        0..=4 => *r.pick(&[200, 201, 202, 204]),
        5 => *r.pick(&[429, 503, 500, 502, 408]),
        6 => *r.pick(&[400, 401, 404, 413, 422]),
        7 => r.below(1000) as u32,
        8 => *r.pick(&[0, 1, 99, 100, 199, 299, 300, 599, 600, 999, 1000, u32::MAX]),
        _ => 200,
    }
}

/// Pieces of LLM answers (SSE lines, JSON usage objects at various depths, numbers too big,
/// escapes, junk), for a response body made of a random sequence of them.
const LLM_PIECES: &[&str] = &[
    "data: ",
    "data:",
    "event: message_delta\n",
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    ": ping\n\n",
    "data: [DONE]\n\n",
    "{\"model\":\"gpt-4o-mini\",",
    "{\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":25,",
    "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,",
    "\"prompt_tokens_details\":{\"cached_tokens\":3}",
    "\"output_tokens\":18446744073709551616",
    "\"output_tokens\":-1.5e3",
    "\"usage\":null",
    "\"choices\":[{\"delta\":{\"content\":\"}\\\"{[\"}}],",
    "\"model\":\"a\\u0041\\\"\"",
    "}",
    "}}",
    "]",
    "[[[[",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "12345678901234567890",
];

/// A response body shaped like an LLM answer, more or less.
pub fn llm_body(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..r.size(60) {
        if r.chance(5) {
            let n = r.size(20) as usize;
            out.extend(r.bytes(n));
        } else {
            out.extend_from_slice(r.pick(LLM_PIECES).as_bytes());
        }
    }
    if r.chance(5) {
        let n = r.size(200_000) as usize;
        out.extend(std::iter::repeat_n(b'x', n));
    }
    out
}
