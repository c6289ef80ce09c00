//! What one request's callbacks gathered, and the pure rules that decide whether it is
//! metered and what event it becomes. The stream context only reads the request's header
//! map, the status, the sizes and the clock.

use crate::config::{Config, Source};
use crate::event::{self, AttrValue, Event, Tokens};
use crate::headers::HeaderMap;
use crate::tokens::{self, Scanner};
use crate::{property, query};
use std::borrow::Cow;
use std::ops::Range;

/// A request that is metered: everything its callbacks saw. Header values stay in the one
/// request map the host handed over; the fields are ranges into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub start_ns: u64,
    pub headers: HeaderMap,
    /// `:path` up to (not including) the query.
    pub path: Range<usize>,
    /// `:path`'s query, after the `?` and before any `#` (read only when extras are).
    pub query: Range<usize>,
    /// The key header's value (not read when the key is a property).
    pub key: Option<Range<usize>>,
    /// The key `subscription_key_property` gave at the end of the request, as text.
    pub key_property: Option<String>,
    pub method: Option<Range<usize>>,
    pub request_id: Option<Range<usize>>,
    pub authority: Option<Range<usize>>,
    /// One per configured attribute, in configuration order: a header attribute's value,
    /// `None` for the other sources (empty when no output carries attributes).
    pub attributes: Vec<Option<Range<usize>>>,
    /// One per property attribute, in configuration order, read at the end of the request
    /// (empty when no output carries attributes).
    pub properties: Vec<Option<Vec<u8>>>,
    /// The position of the first of `path_templates` the path matched.
    pub route: Option<u32>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// 0 until response headers arrive: a stream that ends without a response stays 0.
    pub status: u32,
    /// The response's token scan, when `llm` inspects this path and an output carries the
    /// fields; dropped at the response headers unless the body is JSON or SSE.
    pub llm: Option<Box<Scanner>>,
    /// `llm.filter_state` was written (or had nothing to write): it is written once.
    pub state_published: bool,
}

impl Captured {
    /// The request as its headers describe it, when it is metered: not excluded by path,
    /// and keyed when a key is required (a key read from a property is decided at the end,
    /// by `set_key_property`). `extras` reads the fields only some outputs carry.
    pub fn begin(cfg: &Config, headers: HeaderMap, start_ns: u64, extras: bool) -> Option<Self> {
        let [full, key, method] =
            headers.find_each([":path", &cfg.subscription_key_header, ":method"]);
        let full = full.unwrap_or_default();
        let bare = event::strip_query(headers.slice(&full)).len();
        let path = full.start..full.start + bare;
        if event::is_excluded(headers.slice(&path), &cfg.exclude_paths) {
            return None;
        }
        let by_property = cfg.subscription_key_property.is_some();
        let key = if by_property { None } else { key };
        if key.is_none() && cfg.require_key && !by_property {
            return None;
        }
        let [request_id, authority] = match extras {
            true => headers.find_each(["x-request-id", ":authority"]),
            false => [None, None],
        };
        let attributes = match extras {
            true => cfg
                .attributes
                .iter()
                .map(|a| match &a.source {
                    Source::Header(h) => headers.find(h),
                    Source::Query(_) | Source::Property(_) => None,
                })
                .collect(),
            false => Vec::new(),
        };
        let query = match extras {
            true => {
                let q = query::of_path(headers.slice(&full)).len();
                // the query, when there is one, ends the path's bytes up to a fragment
                let start = path.end + 1;
                start..start + q
            }
            false => 0..0,
        };
        let route = match extras {
            true => cfg.routes.find(headers.slice(&path)),
            false => None,
        };
        let llm = match &cfg.llm {
            Some(l) if extras && l.inspects(headers.slice(&path)) => {
                Some(Box::new(Scanner::new(l.max_scan_bytes)))
            }
            _ => None,
        };
        Some(Captured {
            start_ns,
            path,
            query,
            key,
            method,
            request_id,
            authority,
            attributes,
            route,
            headers,
            llm,
            ..Default::default()
        })
    }

    /// The key `subscription_key_property` gave (`None`: the host had no such property, or
    /// not one readable as configured; an empty string counts as none). False when the
    /// request is then not metered: no key while a key is required.
    pub fn set_key_property(&mut self, cfg: &Config, bytes: Option<&[u8]>) -> bool {
        let key = match (&cfg.subscription_key_property, bytes) {
            (Some(p), Some(b)) => property::decode(b, p.as_).map(|d| d.into_text().into_owned()),
            _ => None,
        };
        self.key_property = key.filter(|k| !k.is_empty());
        self.key_property.is_some() || !cfg.require_key
    }

    /// The response headers of a request whose response is inspected, as one map: the
    /// status, and whether the body is one to read.
    pub fn set_response_headers(&mut self, map: &HeaderMap) {
        let [status, ct, ce] = map.find_each([":status", "content-type", "content-encoding"]);
        self.set_status(status.map(|r| map.slice(&r)));
        if let Some(s) = &mut self.llm {
            if !s.start(ct.map(|r| map.slice(&r)), ce.map(|r| map.slice(&r))) {
                self.llm = None;
            }
        }
    }

    pub fn set_status(&mut self, status: Option<&[u8]>) {
        self.status = status.map_or(0, event::parse_status);
    }

    fn text(&self, r: &Range<usize>) -> Cow<'_, str> {
        event::text(self.headers.slice(r))
    }

    /// The event this request becomes, completed at `now_ns`.
    pub fn event<'a>(&'a self, cfg: &'a Config, now_ns: u64, random: &[u8; 10]) -> Event<'a> {
        let key = match &self.key_property {
            Some(k) => Cow::Borrowed(k.as_str()),
            None => self.key.as_ref().map(|k| self.text(k)).unwrap_or_default(),
        };
        Event {
            id: event::uuid_v7(now_ns / 1_000_000, random),
            api_path: self.text(&self.path),
            subscription_key: event::apply_key_mode(key, cfg.key_mode),
            method: self
                .method
                .as_ref()
                .map(|m| self.text(m))
                .unwrap_or_default(),
            response_time_ms: now_ns.saturating_sub(self.start_ns) / 1_000_000,
            status_code: self.status,
            completed_unix_ns: now_ns,
            request_size: self.request_bytes,
            response_size: self.response_bytes,
            request_id: self.request_id.as_ref().map(|r| self.text(r)),
            authority: self.authority.as_ref().map(|r| self.text(r)),
            api_route: self
                .route
                .and_then(|i| cfg.routes.template(i))
                .map(Cow::Borrowed),
            attributes: self.attribute_values(cfg),
            tokens: self.tokens(cfg),
        }
    }

    /// The configured attributes this request has, in configuration order.
    fn attribute_values<'a>(&'a self, cfg: &'a Config) -> Vec<(&'a str, AttrValue<'a>)> {
        // collecting from no attributes still cost ~120 instructions a request
        if cfg.attributes.is_empty() {
            return Vec::new();
        }
        let mut properties = self.properties.iter();
        cfg.attributes
            .iter()
            .zip(&self.attributes)
            .filter_map(|(a, header)| {
                let v = match &a.source {
                    Source::Header(_) => header.as_ref().map(|r| self.text(r).into()),
                    Source::Query(name) => {
                        query::param(self.headers.slice(&self.query), name).map(|v| {
                            AttrValue::Text(match v {
                                Cow::Borrowed(b) => event::text(b),
                                Cow::Owned(b) => Cow::Owned(match String::from_utf8(b) {
                                    Ok(s) => s,
                                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                                }),
                            })
                        })
                    }
                    Source::Property(p) => properties
                        .next()
                        .and_then(Option::as_deref)
                        .and_then(|b| property::decode(b, p.as_))
                        .map(|d| match d {
                            property::Decoded::Text(t) => AttrValue::Text(t),
                            property::Decoded::Literal(l) => AttrValue::Literal(Cow::Owned(l)),
                        }),
                };
                v.map(|v| (a.field.as_str(), v))
            })
            .collect()
    }

    /// `llm.filter_state`: the values to publish as filter state, once (the property path is
    /// one element, `usage.input_tokens`: Envoy stores it as `wasm.usage.input_tokens`).
    /// Empty when not configured, already published, or nothing was read.
    pub fn usage_state(&mut self, cfg: &Config) -> Vec<(&'static [u8], Vec<u8>)> {
        if self.state_published || !cfg.llm.as_ref().is_some_and(|l| l.filter_state) {
            return Vec::new();
        }
        self.state_published = true;
        let Some(t) = self.tokens(cfg) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(m) = &t.model {
            out.push((&b"usage.model"[..], m.as_bytes().to_vec()));
        }
        for (i, path) in [
            (tokens::INPUT, &b"usage.input_tokens"[..]),
            (tokens::OUTPUT, b"usage.output_tokens"),
            (tokens::TOTAL, b"usage.total_tokens"),
        ] {
            if let Some(n) = t.usage.get(i) {
                out.push((path, n.to_string().into_bytes()));
            }
        }
        if let Some(nanos) = t.usage.get(tokens::COST) {
            let mut v = Vec::new();
            tokens::price::write_nanos(&mut v, nanos);
            out.push((&b"usage.cost"[..], v));
        }
        out
    }

    /// The event's `llm` fields: the normalized counts, the model (from the response, else
    /// from the path for Bedrock and Gemini), and the cost when `llm.prices` prices it.
    fn tokens<'a>(&'a self, cfg: &'a Config) -> Option<Tokens<'a>> {
        let s = self.llm.as_ref()?;
        let mut usage = s.usage();
        let model = s.model().map(event::text).or_else(|| {
            tokens::path::model(usage.provider, self.headers.slice(&self.path)).map(Cow::Owned)
        });
        if model.is_none() && usage.is_empty() {
            return None;
        }
        let (mut currency, mut unpriced) = (None, false);
        if let Some(l) = cfg
            .llm
            .as_ref()
            .filter(|l| !l.prices.is_empty() && usage.has_tokens())
        {
            match model.as_deref().and_then(|m| l.prices.find(m)) {
                Some(p) => {
                    usage = tokens::price::priced(p, usage);
                    currency = usage
                        .get(tokens::COST)
                        .map(|_| Cow::Borrowed(l.currency.as_str()));
                }
                None => unpriced = true,
            }
        }
        Some(Tokens {
            model,
            usage,
            currency,
            unpriced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callout::serialize_map;
    use crate::config;

    fn cfg(json: &str) -> Config {
        config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        HeaderMap::new(serialize_map(pairs))
    }

    fn begin(c: &Config, pairs: &[(&str, &[u8])]) -> Option<Captured> {
        Captured::begin(c, map(pairs), 0, true)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn keyed_requests_are_metered_with_the_query_stripped() {
        let c = cfg(r#"{"enabled":true}"#);
        let cap = begin(
            &c,
            &[(":path", b"/v1/x?key=1#f"), ("x-subscription-key", b"k")],
        )
        .unwrap();
        assert_eq!(cap.headers.slice(&cap.path), b"/v1/x");
        assert!(
            begin(&c, &[(":path", b"/v1/x")]).is_none(),
            "no key, no event"
        );
        // no :path at all is an empty path, still metered
        let cap = begin(&c, &[("x-subscription-key", b"k")]).unwrap();
        assert_eq!(cap.event(&c, 0, &[0; 10]).api_path, "");
    }

    #[test]
    fn unkeyed_requests_are_metered_when_no_key_is_required() {
        let c = cfg(r#"{"enabled":true,"require_key":false}"#);
        assert!(begin(&c, &[(":path", b"/a")]).is_some());
    }

    #[test]
    fn excluded_prefixes_are_not_metered() {
        let c = cfg(r#"{"enabled":true,"exclude_paths":["/health"]}"#);
        let k: (&str, &[u8]) = ("x-subscription-key", b"k");
        assert!(begin(&c, &[(":path", b"/healthz?x"), k]).is_none());
        assert!(begin(&c, &[(":path", b"/api/health"), k]).is_some());
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
        let c = cfg(
            r#"{"enabled":true,"attributes":{"org":{"header":"x-org"},"team":{"header":"x-team"}}}"#,
        );
        let mut cap = Captured::begin(
            &c,
            map(&[
                (":path", b"/v1/things?x=1"),
                (":method", b"POST"),
                (":authority", b"api.example.com"),
                ("x-subscription-key", b"sk_1"),
                ("x-request-id", b"rid"),
                ("x-org", b"acme"),
            ]),
            1_000 * MS,
            true,
        )
        .unwrap();
        cap.request_bytes = 12;
        cap.response_bytes = 34;
        cap.status = 201;
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
    fn extras_are_left_out_when_no_output_carries_them() {
        let c = cfg(r#"{"enabled":true,"attributes":{"org":{"header":"x-org"}}}"#);
        let pairs: &[(&str, &[u8])] = &[
            ("x-subscription-key", b"k"),
            ("x-request-id", b"rid"),
            ("x-org", b"acme"),
        ];
        let cap = Captured::begin(&c, map(pairs), 0, false).unwrap();
        let e = cap.event(&c, 0, &[0; 10]);
        assert!(e.request_id.is_none() && e.authority.is_none() && e.attributes.is_empty());
    }

    #[test]
    fn missing_headers_become_empty_fields_not_failures() {
        let c = cfg(r#"{"enabled":true,"require_key":false}"#);
        let cap = begin(&c, &[]).unwrap();
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
        let cap = begin(
            &c,
            &[(":path", b"/a\xff"), ("x-subscription-key", b"k\xfe")],
        )
        .unwrap();
        let e = cap.event(&c, 0, &[0; 10]);
        assert_eq!(e.api_path, "/a\u{fffd}");
        assert_eq!(e.subscription_key, "k\u{fffd}");
    }

    #[test]
    fn the_first_of_repeated_key_headers_counts() {
        let c = cfg(r#"{"enabled":true}"#);
        let cap = begin(
            &c,
            &[("x-subscription-key", b"a"), ("x-subscription-key", b"b")],
        )
        .unwrap();
        assert_eq!(cap.event(&c, 0, &[0; 10]).subscription_key, "a");
    }

    #[test]
    fn key_modes_apply_to_the_event() {
        let sha = cfg(r#"{"enabled":true,"key_mode":"sha256"}"#);
        let k: &[(&str, &[u8])] = &[("x-subscription-key", b"abc")];
        assert_eq!(
            begin(&sha, k)
                .unwrap()
                .event(&sha, 0, &[0; 10])
                .subscription_key,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let redact = cfg(r#"{"enabled":true,"key_mode":"redact"}"#);
        let cap = begin(&redact, k).unwrap();
        assert_eq!(cap.event(&redact, 0, &[0; 10]).subscription_key, "abc…");
    }

    #[test]
    fn a_clock_that_goes_backwards_gives_zero_not_a_wrap() {
        let c = cfg(r#"{"enabled":true,"require_key":false}"#);
        let cap = Captured::begin(&c, map(&[]), 10 * MS, false).unwrap();
        assert_eq!(cap.event(&c, 5 * MS, &[0; 10]).response_time_ms, 0);
    }
}
