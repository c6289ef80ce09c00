//! One Caddy JSON access-log entry, and the HTTP stream the filter sees for it.
//!
//! Caddy 2.11 writes, per request (`logger` `http.log.access…`, `msg` `handled request`;
//! see `caddy/FORMAT.md`): `ts` (Unix seconds, float, written at the end of the request), `request` {`method`, `host`, `uri` (with query), `headers` {Name: [values]},
//! `proto`, `remote_ip`, `tls`?}, `bytes_read`, `duration` (seconds, float), `size`
//! (response body bytes), `status`, `resp_headers`.
//!
//! The stream: request headers `:method`, `:path` (= `uri`), `:authority` (= `host`),
//! `:scheme`, then the entry's headers (names lowercased, one pair per value); a request
//! body of `bytes_read` bytes; response headers `:status` + `resp_headers`; a response body
//! of `size` bytes; `on_log`. The clock reads `ts − duration` for the request part and `ts`
//! from the response on, so the event's `response_time_ms` and `timestamp` are Caddy's.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub type Headers = Vec<(String, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub headers: Headers,
    pub bytes_read: u64,
    pub status: u32,
    pub response_headers: Headers,
    pub size: u64,
    /// When Caddy began the request (`ts − duration`), ns since the epoch.
    pub start_ns: u64,
    /// When it ended (`ts`), ns since the epoch.
    pub end_ns: u64,
}

/// Why a line is not an entry; one log line per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// Not a JSON object.
    NotJson,
    /// JSON, but not an access-log entry (no `request`).
    NotAccess,
    /// An access-log entry with a field of the wrong type.
    BadField,
    /// `ts` or `duration` is not a number of seconds (a custom `time_format`/`duration_format`).
    BadTime,
    /// A line cut short: the file was rotated or truncated, or the connection closed, mid-line.
    Partial,
    /// Longer than the agent reads (`follow::MAX_LINE`).
    TooLong,
}

impl Malformed {
    pub const ALL: [Malformed; 6] = [
        Malformed::NotJson,
        Malformed::NotAccess,
        Malformed::BadField,
        Malformed::BadTime,
        Malformed::Partial,
        Malformed::TooLong,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Malformed::NotJson => "not_json",
            Malformed::NotAccess => "not_access_entry",
            Malformed::BadField => "bad_field",
            Malformed::BadTime => "bad_time",
            Malformed::Partial => "partial",
            Malformed::TooLong => "too_long",
        }
    }
}

// Borrowed from the line wherever JSON needs no unescaping: the agent reads every entry of a
// backlog through here, and owned strings per field were a fifth of its time.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(default, borrow)]
    logger: Option<Borrowed<'a>>,
    #[serde(default, borrow)]
    msg: Option<Borrowed<'a>>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    request: Option<RawRequest<'a>>,
    #[serde(default)]
    bytes_read: u64,
    #[serde(borrow)]
    duration: Option<&'a RawValue>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    status: u32,
    #[serde(default, borrow)]
    resp_headers: HeaderMap<'a>,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default, borrow)]
    method: Borrowed<'a>,
    #[serde(default, borrow)]
    host: Borrowed<'a>,
    #[serde(default, borrow)]
    uri: Borrowed<'a>,
    #[serde(default, borrow)]
    headers: HeaderMap<'a>,
    #[serde(default)]
    tls: Option<serde::de::IgnoredAny>,
}

/// Caddy's `{Name: [values]}`, as (lowercased name, value) pairs in the order of the names
/// (as a map sorted by name would give them; a name given twice keeps its last values).
#[derive(Default)]
struct HeaderMap<'a>(Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>);

impl<'de: 'a, 'a> Deserialize<'de> for HeaderMap<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = HeaderMap<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of header names to lists of values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<Borrowed<'a>, Vec<Borrowed<'a>>>()? {
                    out.push((k.0, v.into_iter().map(|b| b.0).collect()));
                }
                // stable: of a name given twice, the later pair sorts last and is kept
                out.sort_by(|a, b| a.0.cmp(&b.0));
                let mut kept: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)> =
                    Vec::with_capacity(out.len());
                for pair in out {
                    match kept.last_mut() {
                        Some(last) if last.0 == pair.0 => *last = pair,
                        _ => kept.push(pair),
                    }
                }
                Ok(HeaderMap(kept))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string borrowed from the line when it has no escapes.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Borrowed<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl Default for Borrowed<'_> {
    fn default() -> Self {
        Borrowed(Cow::Borrowed(""))
    }
}

/// A non-negative decimal number of seconds (`1700000000.123456789`, `0.000123`,
/// `1.5e-3`) in whole nanoseconds, exactly for plain decimals.
pub fn seconds_to_ns(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    if t.contains(['e', 'E']) {
        let f: f64 = t.parse().ok()?;
        return (f.is_finite() && f >= 0.0).then(|| (f * 1e9).round() as u64);
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ns: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    ns = ns.checked_mul(1_000_000_000)?;
    let mut scale = 100_000_000u64;
    for d in frac.bytes().take(9) {
        ns += (d - b'0') as u64 * scale;
        scale /= 10;
    }
    Some(ns)
}

fn lower_pairs(map: HeaderMap, out: &mut Headers) {
    for (name, values) in map.0 {
        let name = name.to_ascii_lowercase();
        for v in values {
            out.push((name.clone(), v.as_bytes().to_vec()));
        }
    }
}

/// Parses one line (without its newline).
pub fn parse(line: &[u8]) -> Result<Entry, Malformed> {
    let raw: RawEntry = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) if e.is_data() => {
            // Valid JSON of another shape (a string where a number belongs, …).
            return match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                Ok(_) if line.trim_ascii_start().starts_with(b"{") => Err(Malformed::BadField),
                _ => Err(Malformed::NotJson),
            };
        }
        Err(_) => return Err(Malformed::NotJson),
    };
    // Other loggers' lines (over `output net`, or a shared file): `http.log.error` lines
    // carry a `request` too.
    let other_logger = raw
        .logger
        .as_ref()
        .map(|l| &*l.0)
        .is_some_and(|l| !l.starts_with("http.log.access"));
    if other_logger
        || raw
            .msg
            .as_ref()
            .map(|m| &*m.0)
            .is_some_and(|m| m != "handled request")
    {
        return Err(Malformed::NotAccess);
    }
    let req = raw.request.ok_or(Malformed::NotAccess)?;
    let end_ns = raw
        .ts
        .and_then(|v| seconds_to_ns(v.get()))
        .ok_or(Malformed::BadTime)?;
    let duration_ns = match raw.duration {
        Some(v) => seconds_to_ns(v.get()).ok_or(Malformed::BadTime)?,
        None => 0,
    };
    let mut headers: Headers = Vec::with_capacity(req.headers.0.len() + 4);
    headers.push((":method".into(), req.method.0.as_bytes().to_vec()));
    headers.push((":path".into(), req.uri.0.as_bytes().to_vec()));
    headers.push((":authority".into(), req.host.0.as_bytes().to_vec()));
    let scheme: &[u8] = if req.tls.is_some() { b"https" } else { b"http" };
    headers.push((":scheme".into(), scheme.to_vec()));
    lower_pairs(req.headers, &mut headers);
    let mut response_headers = Vec::with_capacity(raw.resp_headers.0.len());
    lower_pairs(raw.resp_headers, &mut response_headers);
    Ok(Entry {
        headers,
        bytes_read: raw.bytes_read,
        status: raw.status,
        response_headers,
        size: raw.size,
        start_ns: end_ns.saturating_sub(duration_ns),
        end_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as in Caddy 2.11's logging docs.
    const LINE: &str = r#"{"level":"info","ts":1700000000.5,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"41342","client_ip":"127.0.0.1","proto":"HTTP/1.1","method":"POST","host":"localhost:8080","uri":"/v1/orders?expand=1","headers":{"User-Agent":["curl/8.5.0"],"X-Subscription-Key":["k1"],"Accept":["a","b"]}},"bytes_read":7,"user_id":"","duration":0.0123456,"size":16,"status":201,"resp_headers":{"Server":["Caddy"],"Content-Type":["application/json"]}}"#;

    #[test]
    fn an_entry_becomes_a_stream() {
        let e = parse(LINE.as_bytes()).unwrap();
        let h = |n: &str| -> Vec<String> {
            e.headers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        assert_eq!(h(":method"), ["POST"]);
        assert_eq!(h(":path"), ["/v1/orders?expand=1"]);
        assert_eq!(h(":authority"), ["localhost:8080"]);
        assert_eq!(h(":scheme"), ["http"]);
        assert_eq!(h("x-subscription-key"), ["k1"]);
        assert_eq!(h("accept"), ["a", "b"]);
        assert_eq!(e.bytes_read, 7);
        assert_eq!(e.size, 16);
        assert_eq!(e.status, 201);
        assert_eq!(e.end_ns, 1_700_000_000_500_000_000);
        assert_eq!(e.end_ns - e.start_ns, 12_345_600);
        assert!(e
            .response_headers
            .contains(&("content-type".into(), b"application/json".to_vec())));
    }

    /// Escaped strings are unescaped (owned), plain ones borrowed: both read the same; a
    /// header name given twice keeps its last values, and names come out sorted.
    #[test]
    fn escapes_and_repeated_names() {
        let line = r#"{"ts":1,"request":{"method":"GET","uri":"/a?b=\u0026c\"","headers":{"X-B":["1"],"X-A":["\u00e9"],"X-B":["2","3"]}},"status":200}"#;
        let e = parse(line.as_bytes()).unwrap();
        let names: Vec<&str> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                ":method",
                ":path",
                ":authority",
                ":scheme",
                "x-a",
                "x-b",
                "x-b"
            ]
        );
        assert_eq!(e.headers[1].1, b"/a?b=&c\"".to_vec());
        assert_eq!(e.headers[4].1, "\u{e9}".as_bytes().to_vec());
        assert_eq!(e.headers[5].1, b"2".to_vec());
        assert_eq!(e.headers[6].1, b"3".to_vec());
    }

    #[test]
    fn exact_decimal_seconds() {
        assert_eq!(
            seconds_to_ns("1700000000.123456789"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(seconds_to_ns("0.000123"), Some(123_000));
        assert_eq!(seconds_to_ns("3"), Some(3_000_000_000));
        assert_eq!(seconds_to_ns("1.5e-3"), Some(1_500_000));
        assert_eq!(seconds_to_ns("-1"), None);
        assert_eq!(seconds_to_ns("\"2024-01-01\""), None);
    }

    #[test]
    fn malformed_kinds() {
        assert_eq!(parse(b"not json"), Err(Malformed::NotJson));
        assert_eq!(parse(br#"{"ts":1,"request":{"#), Err(Malformed::NotJson));
        assert_eq!(
            parse(br#"{"level":"info","ts":1,"msg":"server running"}"#),
            Err(Malformed::NotAccess)
        );
        assert_eq!(
            parse(br#"{"level":"error","ts":1,"logger":"http.log.error","msg":"dial tcp: refused","request":{"method":"GET"},"duration":0.1,"status":502}"#),
            Err(Malformed::NotAccess)
        );
        assert_eq!(
            parse(br#"{"ts":"2024-01-01T00:00:00Z","request":{},"duration":0.1}"#),
            Err(Malformed::BadTime)
        );
        assert_eq!(
            parse(br#"{"ts":1,"request":{},"status":"x"}"#),
            Err(Malformed::BadField)
        );
    }

    /// Real Caddy 2.11.7 output (`caddy/testdata/access.log`): every line is an entry.
    #[test]
    fn the_real_caddy_fixture_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../caddy/testdata/access.log");
        let text = std::fs::read_to_string(path).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v.get("request").is_none() {
                continue;
            }
            let e = parse(line.as_bytes()).unwrap_or_else(|k| panic!("{k:?}: {line}"));
            assert_eq!(e.status as u64, v["status"].as_u64().unwrap());
            assert_eq!(e.bytes_read, v["bytes_read"].as_u64().unwrap());
            let dur = (v["duration"].as_f64().unwrap() * 1e9) as i64;
            assert!(
                ((e.end_ns - e.start_ns) as i64 - dur).abs() < 1000,
                "{line}"
            );
            assert_eq!(e.size, v["size"].as_u64().unwrap());
            let path = e.headers.iter().find(|(k, _)| k == ":path").unwrap();
            assert_eq!(path.1, v["request"]["uri"].as_str().unwrap().as_bytes());
            n += 1;
        }
        assert!(n > 0);
    }
}
