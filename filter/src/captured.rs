//! What one request's callbacks gathered, and the pure rules that decide whether it is
//! metered and what event it becomes. The stream context only reads headers and sizes.

use crate::config::Config;
use crate::event::{self, Event};

/// A request that is metered: everything its callbacks saw, as raw header bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub start_ns: u64,
    /// Bytes of `:path` up to (not including) the query.
    pub path: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub method: Option<Vec<u8>>,
    pub request_id: Option<Vec<u8>>,
    pub authority: Option<Vec<u8>>,
    /// One per configured attribute, in configuration order.
    pub attributes: Vec<Option<Vec<u8>>>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// 0 until response headers arrive: a stream that ends without a response stays 0.
    pub status: u32,
}

/// Whether a request with this `:path` is metered, and if so its path without the query
/// and its key. The key is looked up only for paths that are not excluded (a host call).
pub fn metered(
    cfg: &Config,
    raw_path: Option<Vec<u8>>,
    key: impl FnOnce() -> Option<Vec<u8>>,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut path = raw_path.unwrap_or_default();
    let len = event::strip_query(&path).len();
    path.truncate(len);
    if event::is_excluded(&path, &cfg.exclude_paths) {
        return None;
    }
    let key = key();
    if key.is_none() && cfg.require_key {
        return None;
    }
    Some((path, key))
}

impl Captured {
    pub fn set_status(&mut self, status: Option<&[u8]>) {
        self.status = status.map_or(0, event::parse_status);
    }

    /// The event this request becomes, completed at `now_ns`.
    pub fn event<'a>(&'a self, cfg: &'a Config, now_ns: u64, random: &[u8; 10]) -> Event<'a> {
        let key = self.key.as_deref().map(event::text).unwrap_or_default();
        Event {
            id: event::uuid_v7(now_ns / 1_000_000, random),
            api_path: event::text(&self.path),
            subscription_key: event::apply_key_mode(key, cfg.key_mode),
            method: self.method.as_deref().map(event::text).unwrap_or_default(),
            response_time_ms: now_ns.saturating_sub(self.start_ns) / 1_000_000,
            status_code: self.status,
            completed_unix_ns: now_ns,
            request_size: self.request_bytes,
            response_size: self.response_bytes,
            request_id: self.request_id.as_deref().map(event::text),
            authority: self.authority.as_deref().map(event::text),
            attributes: cfg
                .attributes
                .iter()
                .zip(&self.attributes)
                .filter_map(|(a, v)| v.as_deref().map(|v| (a.field.as_str(), event::text(v))))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn cfg(json: &str) -> Config {
        config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn keyed_requests_are_metered_with_the_query_stripped() {
        let c = cfg(r#"{"enabled":true}"#);
        let k = || Some(b"k".to_vec());
        assert_eq!(
            metered(&c, Some(b"/v1/x?key=1#f".to_vec()), k),
            Some((b"/v1/x".to_vec(), Some(b"k".to_vec())))
        );
        assert_eq!(metered(&c, Some(b"/v1/x".to_vec()), || None), None);
        // no :path at all is an empty path, still metered
        assert_eq!(metered(&c, None, k), Some((Vec::new(), k())));
    }

    #[test]
    fn unkeyed_requests_are_metered_when_no_key_is_required() {
        let c = cfg(r#"{"enabled":true,"require_key":false}"#);
        assert_eq!(
            metered(&c, Some(b"/a".to_vec()), || None),
            Some((b"/a".to_vec(), None))
        );
    }

    #[test]
    fn excluded_prefixes_are_not_metered() {
        let c = cfg(r#"{"enabled":true,"exclude_paths":["/health"]}"#);
        let key_read = std::cell::Cell::new(false);
        let k = || {
            key_read.set(true);
            Some(b"k".to_vec())
        };
        assert_eq!(metered(&c, Some(b"/healthz?x".to_vec()), k), None);
        assert!(!key_read.get(), "an excluded path costs no key lookup");
        assert!(metered(&c, Some(b"/api/health".to_vec()), k).is_some());
    }

    #[test]
    fn statuses_come_from_the_status_header_or_are_zero() {
        let mut c = Captured::default();
        for (raw, want) in [
            (Some(&b"200"[..]), 200),
            (Some(b"503"), 503),
            (Some(b"2x0"), 0),
            (Some(b""), 0),
            (None, 0),
        ] {
            c.set_status(raw);
            assert_eq!(c.status, want, "{raw:?}");
        }
    }

    #[test]
    fn the_event_carries_what_was_captured() {
        let c = cfg(r#"{"enabled":true,"attributes":{"org":{"header":"x-org"},"team":{"header":"x-team"}}}"#);
        let cap = Captured {
            start_ns: 1_000 * MS,
            path: b"/v1/things".to_vec(),
            key: Some(b"sk_1".to_vec()),
            method: Some(b"POST".to_vec()),
            request_id: Some(b"rid".to_vec()),
            authority: Some(b"api.example.com".to_vec()),
            attributes: vec![Some(b"acme".to_vec()), None],
            request_bytes: 12,
            response_bytes: 34,
            status: 201,
        };
        let e = cap.event(&c, 1_250 * MS + 999, &[7; 10]);
        assert_eq!(e.api_path, "/v1/things");
        assert_eq!(e.subscription_key, "sk_1");
        assert_eq!(e.method, "POST");
        assert_eq!(e.response_time_ms, 250);
        assert_eq!(e.status_code, 201);
        assert_eq!(e.completed_unix_ns, 1_250 * MS + 999);
        assert_eq!((e.request_size, e.response_size), (12, 34));
        assert_eq!(e.request_id.as_deref(), Some("rid"));
        assert_eq!(e.authority.as_deref(), Some("api.example.com"));
        assert_eq!(e.attributes, vec![("org", "acme".into())]);
        assert_eq!(e.id, event::uuid_v7(1_250, &[7; 10]));
    }

    #[test]
    fn missing_headers_become_empty_fields_not_failures() {
        let c = cfg(r#"{"enabled":true,"require_key":false}"#);
        let cap = Captured::default();
        let e = cap.event(&c, 5 * MS, &[0; 10]);
        assert_eq!(e.subscription_key, "");
        assert_eq!(e.method, "");
        assert_eq!(e.api_path, "");
        assert_eq!(e.status_code, 0);
        assert!(e.request_id.is_none() && e.authority.is_none());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let c = cfg(r#"{"enabled":true}"#);
        let cap = Captured {
            path: b"/a\xff".to_vec(),
            key: Some(b"k\xfe".to_vec()),
            ..Default::default()
        };
        let e = cap.event(&c, 0, &[0; 10]);
        assert_eq!(e.api_path, "/a\u{fffd}");
        assert_eq!(e.subscription_key, "k\u{fffd}");
    }

    #[test]
    fn key_modes_apply_to_the_event() {
        let cap = Captured {
            key: Some(b"abc".to_vec()),
            ..Default::default()
        };
        let sha = cfg(r#"{"enabled":true,"key_mode":"sha256"}"#);
        assert_eq!(
            cap.event(&sha, 0, &[0; 10]).subscription_key,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let redact = cfg(r#"{"enabled":true,"key_mode":"redact"}"#);
        assert_eq!(cap.event(&redact, 0, &[0; 10]).subscription_key, "abc…");
    }

    #[test]
    fn a_clock_that_goes_backwards_gives_zero_not_a_wrap() {
        let c = cfg(r#"{"enabled":true}"#);
        let cap = Captured {
            start_ns: 10 * MS,
            ..Default::default()
        };
        assert_eq!(cap.event(&c, 5 * MS, &[0; 10]).response_time_ms, 0);
    }
}
