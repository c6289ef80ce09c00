//! One callout, complete: where it goes, every header, the body and the timeout. The
//! dispatcher decides all of it; the root context only hands it to the host.

use crate::config::{Compression, Http};
use crate::encode;
use crate::encode::uuid::uuid_string;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    /// The host's upstream (Envoy cluster) name.
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Callout {
    /// A batch's POST: `x-usage-batch-id` stays the same on every attempt so receivers can
    /// drop a batch they already have.
    pub fn batch(h: &Http, batch_id: &[u8; 16], plain_body: Vec<u8>) -> Callout {
        let mut headers: Vec<(String, String)> = vec![
            (":method".into(), "POST".into()),
            (":path".into(), h.path.clone()),
            (":authority".into(), h.authority.clone()),
            ("content-type".into(), encode::content_type(h.format).into()),
            ("x-usage-batch-id".into(), uuid_string(batch_id)),
        ];
        let body = match h.compression {
            Compression::Gzip => {
                headers.push(("content-encoding".into(), "gzip".into()));
                encode::gzip(&plain_body)
            }
            Compression::None => plain_body,
        };
        headers.extend(h.headers.iter().cloned());
        Callout {
            upstream: h.cluster.clone(),
            headers,
            body,
            timeout_ms: h.timeout_ms,
        }
    }

    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// proxy-wasm's serialized header map: count, then each key and value length, then each
/// key and value followed by a NUL.
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let len = |b: &dyn AsRef<[u8]>| b.as_ref().len();
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + len(k) + len(v))
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(len(k) as u32).to_le_bytes());
        out.extend_from_slice(&(len(v) as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, Retry};

    fn http(compression: Compression) -> Http {
        Http {
            cluster: "collector".into(),
            authority: "collector:8080".into(),
            path: "/events".into(),
            format: Format::Ndjson,
            headers: vec![("authorization".into(), "Bearer t".into())],
            timeout_ms: 1234,
            batch_size: 10,
            backlog_batch_size: 10,
            max_batch_bytes: 1 << 20,
            flush_interval_ms: 1000,
            buffer_size: 100,
            max_in_flight: 2,
            retry: Retry {
                max_attempts: 3,
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            },
            kafka_key: None,
            compression,
            name: "default".into(),
            cloudevents_type: "api.usage".into(),
            cloudevents_source: "usage-filter".into(),
        }
    }

    #[test]
    fn a_batch_callout_carries_everything_the_host_needs() {
        let c = Callout::batch(&http(Compression::None), &[0xab; 16], b"{}\n".to_vec());
        assert_eq!(c.upstream, "collector");
        assert_eq!(c.timeout_ms, 1234);
        assert_eq!(c.body, b"{}\n");
        assert_eq!(c.header(":method"), Some("POST"));
        assert_eq!(c.header(":path"), Some("/events"));
        assert_eq!(c.header(":authority"), Some("collector:8080"));
        assert_eq!(c.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(
            c.header("x-usage-batch-id"),
            Some("abababab-abab-abab-abab-abababababab")
        );
        assert_eq!(c.header("authorization"), Some("Bearer t"));
        assert_eq!(c.header("content-encoding"), None);
    }

    #[test]
    fn gzip_is_declared_and_inflates_to_the_body() {
        use std::io::Read;
        let plain = b"{\"a\":1}\n".repeat(50);
        let c = Callout::batch(&http(Compression::Gzip), &[1; 16], plain.clone());
        assert_eq!(c.header("content-encoding"), Some("gzip"));
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&c.body[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn header_map_serialization_matches_the_abi() {
        let m = serialize_map(&[("a", "bc")]);
        assert_eq!(
            m,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]
        );
        assert_eq!(serialize_map::<&str, &str>(&[]), [0, 0, 0, 0]);
    }
}
