//! The usage event: what one request becomes, and the pure rules that derive its fields.

use crate::config::KeyMode;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Everything captured about one request, borrowed from what the host handed over.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// 16 bytes of a UUID (v7 in practice).
    pub id: [u8; 16],
    pub api_path: Cow<'a, str>,
    pub subscription_key: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub response_time_ms: u64,
    pub status_code: u32,
    /// Completion time, nanoseconds since the Unix epoch.
    pub completed_unix_ns: u64,
    pub request_size: u64,
    pub response_size: u64,
    pub request_id: Option<Cow<'a, str>>,
    pub authority: Option<Cow<'a, str>>,
    /// `path_templates`: the template the path matched.
    pub api_route: Option<Cow<'a, str>>,
    pub attributes: Vec<(&'a str, AttrValue<'a>)>,
    /// What an LLM response said about its tokens (`llm` on, the response read).
    pub tokens: Option<Tokens<'a>>,
}

/// An attribute's value: text (a JSON string), or a number or boolean a property was read as
/// (written as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue<'a> {
    Text(Cow<'a, str>),
    Literal(Cow<'a, str>),
}

impl AttrValue<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            AttrValue::Text(s) | AttrValue::Literal(s) => s,
        }
    }
}

impl<'a> From<&'a str> for AttrValue<'a> {
    fn from(s: &'a str) -> Self {
        AttrValue::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<Cow<'a, str>> for AttrValue<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        AttrValue::Text(s)
    }
}

/// The model and token counts of an LLM response (see `tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens<'a> {
    pub model: Option<Cow<'a, str>>,
    /// Normalized counts, the provider, and the cost when the model is priced.
    pub usage: crate::tokens::Usage,
    /// `llm.currency`, present exactly when `usage` carries a cost.
    pub currency: Option<Cow<'a, str>>,
    /// Token counts were read, `llm.prices` is set, and none of its names matches the model
    /// (counted, not encoded, so it does not travel in a record).
    pub unpriced: bool,
}

/// What the encoder reads of an event, from either form it has: the `Event` a request just
/// became (the log line), or the `Record` it is held as (batch bodies, `record`'s impl).
/// Reading a record's fields in place saves building an `Event` from it for every element of a
/// batch, which cost about a quarter of encoding one (`bench/notes.md`).
pub trait Fields {
    fn id(&self) -> &[u8; 16];
    fn api_path(&self) -> &str;
    fn subscription_key(&self) -> &str;
    fn method(&self) -> &str;
    fn response_time_ms(&self) -> u64;
    fn status_code(&self) -> u32;
    fn completed_unix_ns(&self) -> u64;
    fn request_size(&self) -> u64;
    fn response_size(&self) -> u64;
    fn request_id(&self) -> Option<&str>;
    fn authority(&self) -> Option<&str>;
    fn api_route(&self) -> Option<&str>;
    /// Each attribute in order, until `f` returns false.
    fn each_attribute<'s>(&'s self, f: &mut dyn FnMut(&'s str, &AttrValue<'s>) -> bool);
    fn tokens(&self) -> Option<Tokens<'_>>;

    fn success(&self) -> bool {
        (200..=299).contains(&self.status_code())
    }

    fn billable(&self) -> bool {
        (200..=499).contains(&self.status_code())
    }
}

impl Fields for Event<'_> {
    fn id(&self) -> &[u8; 16] {
        &self.id
    }
    fn api_path(&self) -> &str {
        &self.api_path
    }
    fn subscription_key(&self) -> &str {
        &self.subscription_key
    }
    fn method(&self) -> &str {
        &self.method
    }
    fn response_time_ms(&self) -> u64 {
        self.response_time_ms
    }
    fn status_code(&self) -> u32 {
        self.status_code
    }
    fn completed_unix_ns(&self) -> u64 {
        self.completed_unix_ns
    }
    fn request_size(&self) -> u64 {
        self.request_size
    }
    fn response_size(&self) -> u64 {
        self.response_size
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }
    fn api_route(&self) -> Option<&str> {
        self.api_route.as_deref()
    }
    fn each_attribute<'s>(&'s self, f: &mut dyn FnMut(&'s str, &AttrValue<'s>) -> bool) {
        for (name, value) in &self.attributes {
            if !f(name, value) {
                return;
            }
        }
    }
    fn tokens(&self) -> Option<Tokens<'_>> {
        self.tokens.as_ref().map(|t| Tokens {
            model: t.model.as_deref().map(Cow::Borrowed),
            usage: t.usage,
            currency: t.currency.as_deref().map(Cow::Borrowed),
            unpriced: t.unpriced,
        })
    }
}

/// The request path without its query string (or fragment).
pub fn strip_query(path: &[u8]) -> &[u8] {
    match crate::swar::find_any(path, [b'?', b'#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

pub fn is_excluded(path: &[u8], prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| path.starts_with(p.as_bytes()))
}

/// Header bytes as text; invalid UTF-8 is replaced rather than refused, since a header is
/// client input and the request must still be metered.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    // ASCII first, then `from_utf8`: the lossy decoder walks chunks and cost several times
    // more on the valid headers that are nearly all there is.
    if crate::swar::is_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        return Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The subscription key as it should appear in the event.
pub fn apply_key_mode<'a>(key: Cow<'a, str>, mode: KeyMode) -> Cow<'a, str> {
    match mode {
        KeyMode::Raw => key,
        KeyMode::Sha256 => {
            let digest = Sha256::digest(key.as_bytes());
            let mut hex = String::with_capacity(64);
            for b in digest {
                hex.push(HEX[(b >> 4) as usize] as char);
                hex.push(HEX[(b & 15) as usize] as char);
            }
            Cow::Owned(hex)
        }
        KeyMode::Redact => {
            let mut out: String = key.chars().take(4).collect();
            out.push('…');
            Cow::Owned(out)
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The integer status of a `:status` header; anything unparsable is 0 ("no response").
pub fn parse_status(bytes: &[u8]) -> u32 {
    let s = bytes.trim_ascii();
    if s.is_empty() || s.len() > 4 || !s.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    s.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32)
}

/// A time-ordered UUID (RFC 9562 v7) from the completion time and 10 random bytes.
pub fn uuid_v7(unix_ms: u64, random: &[u8; 10]) -> [u8; 16] {
    *uuid::Builder::from_unix_timestamp_millis(unix_ms, random)
        .into_uuid()
        .as_bytes()
}

/// A random (v4) UUID, used for batch ids.
pub fn uuid_v4(random: [u8; 16]) -> [u8; 16] {
    *uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_fragment_are_stripped() {
        assert_eq!(strip_query(b"/a/b?x=1&y=2"), b"/a/b");
        assert_eq!(strip_query(b"/a#frag"), b"/a");
        assert_eq!(strip_query(b"/plain"), b"/plain");
        assert_eq!(strip_query(b"?only"), b"");
    }

    #[test]
    fn exclusion_is_by_prefix() {
        let p = vec!["/health".to_string(), "/admin/".to_string()];
        assert!(is_excluded(b"/healthz", &p));
        assert!(is_excluded(b"/admin/users", &p));
        assert!(!is_excluded(b"/api/health", &p));
        assert!(!is_excluded(b"/admin", &p));
    }

    #[test]
    fn key_modes() {
        assert_eq!(apply_key_mode("abc123".into(), KeyMode::Raw), "abc123");
        assert_eq!(
            apply_key_mode("abc".into(), KeyMode::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(apply_key_mode("abcdefgh".into(), KeyMode::Redact), "abcd…");
        assert_eq!(apply_key_mode("ab".into(), KeyMode::Redact), "ab…");
        // characters, not bytes: never cuts a UTF-8 sequence
        assert_eq!(apply_key_mode("ключ-123".into(), KeyMode::Redact), "ключ…");
    }

    #[test]
    fn success_and_billable() {
        let mut e = Event::default();
        for (code, ok, bill) in [
            (0, false, false),
            (199, false, false),
            (200, true, true),
            (204, true, true),
            (301, false, true),
            (404, false, true),
            (499, false, true),
            (500, false, false),
        ] {
            e.status_code = code;
            assert_eq!((e.success(), e.billable()), (ok, bill), "{code}");
        }
    }

    #[test]
    fn statuses_parse_or_become_zero() {
        assert_eq!(parse_status(b"200"), 200);
        assert_eq!(parse_status(b" 404 "), 404);
        assert_eq!(parse_status(b"999"), 999);
        assert_eq!(parse_status(b""), 0);
        assert_eq!(parse_status(b"abc"), 0);
        assert_eq!(parse_status(b"-1"), 0);
        assert_eq!(parse_status(b"99999999999"), 0);
    }

    #[test]
    fn uuid_v7_is_time_ordered_and_versioned() {
        let a = uuid::Uuid::from_bytes(uuid_v7(1_000, &[7; 10]));
        let b = uuid::Uuid::from_bytes(uuid_v7(2_000, &[0; 10]));
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
        let mut s = Vec::new();
        crate::encode::uuid::write_uuid(&mut s, a.as_bytes());
        assert_eq!(s.len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(std::str::from_utf8(&s).unwrap()).unwrap(),
            a
        );
        assert_eq!(
            uuid::Uuid::from_bytes(uuid_v4([9; 16])).get_version_num(),
            4
        );
    }
}
