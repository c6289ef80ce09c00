//! `llm.force_stream_usage`: which requests to hold, and the body rewrite that makes an
//! OpenAI Chat Completions stream end with a usage chunk. No host calls.
//!
//! OpenAI sends a stream's `usage` only when the request says
//! `"stream_options":{"include_usage":true}`, and the SDKs do not by default: without it a
//! streamed chat is metered with no tokens.

use super::{framing, is_identity, Framing};
use serde_json::{Map, Value};

/// What was added: placed first in the object, so the rest of the body stays byte for byte.
const ADDED: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// A request whose body may need the rewrite: a `POST` to a Chat Completions path with an
/// uncompressed JSON body. Only these are held; every other request passes at once.
pub fn candidate(
    method: &[u8],
    path: &[u8],
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
) -> bool {
    method == b"POST"
        && path.ends_with(b"/chat/completions")
        && content_type.and_then(framing) == Some(Framing::Json)
        && is_identity(content_encoding)
}

/// What the body needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Not a stream, or the client already chose `include_usage` (either way): unchanged.
    Unchanged,
    /// The new body.
    Rewritten(Vec<u8>),
    /// Not a JSON object: it passes unchanged and is counted.
    Unparsable,
}

/// The rewrite a complete request body needs.
pub fn add_include_usage(body: &[u8]) -> Rewrite {
    // Most requests that are not streams never name `"stream"`: a byte search, no parse.
    if !contains(body, b"\"stream\"") {
        return match body.trim_ascii_start().first() {
            Some(b'{') => Rewrite::Unchanged,
            _ => Rewrite::Unparsable,
        };
    }
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else {
        return Rewrite::Unparsable;
    };
    if top.get("stream") != Some(&Value::Bool(true)) {
        return Rewrite::Unchanged;
    }
    match top.get_mut("stream_options") {
        None => {
            // the common case: inserted after the opening brace, nothing else touched
            let at = body.len() - body.trim_ascii_start().len() + 1;
            let mut out = Vec::with_capacity(body.len() + ADDED.len());
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(ADDED);
            out.extend_from_slice(&body[at..]);
            Rewrite::Rewritten(out)
        }
        Some(Value::Object(o)) if o.contains_key("include_usage") => Rewrite::Unchanged,
        Some(v @ (Value::Object(_) | Value::Null)) => {
            // rare: options without include_usage; serialized again (key order may change,
            // the meaning does not)
            let mut o = match std::mem::take(v) {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            o.insert("include_usage".into(), Value::Bool(true));
            *v = Value::Object(o);
            match serde_json::to_vec(&Value::Object(top)) {
                Ok(b) => Rewrite::Rewritten(b),
                Err(_) => Rewrite::Unparsable,
            }
        }
        // a value OpenAI would refuse anyway: the client's answer, not ours to change
        Some(_) => Rewrite::Unchanged,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(body: &str) -> String {
        match add_include_usage(body.as_bytes()) {
            Rewrite::Rewritten(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stream_without_options_gets_include_usage_first_and_the_rest_unchanged() {
        let body =
            r#" {"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let out = rewritten(body);
        assert_eq!(
            out,
            r#" {"stream_options":{"include_usage":true},"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
    }

    #[test]
    fn options_without_include_usage_get_it_and_keep_the_others() {
        let out = rewritten(r#"{"stream":true,"stream_options":{"x":1},"model":"m"}"#);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(v["stream_options"]["x"], 1);
        assert_eq!(v["model"], "m");
        let out = rewritten(r#"{"stream":true,"stream_options":null}"#);
        assert!(
            out.contains(r#""stream_options":{"include_usage":true}"#),
            "{out}"
        );
    }

    #[test]
    fn what_needs_nothing_is_unchanged() {
        for body in [
            r#"{"model":"m","messages":[]}"#,
            r#"{"stream":false}"#,
            r#"{"stream":"true"}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            r#"{"stream":true,"stream_options":7}"#,
            r#"{"messages":[{"content":"\"stream\": true"}]}"#,
        ] {
            assert_eq!(
                add_include_usage(body.as_bytes()),
                Rewrite::Unchanged,
                "{body}"
            );
        }
    }

    #[test]
    fn what_is_not_a_json_object_is_unparsable() {
        for body in [
            &b""[..],
            b"[1]",
            b"{\"stream\":true",
            b"\xff\"stream\"",
            b"x",
        ] {
            assert_eq!(add_include_usage(body), Rewrite::Unparsable, "{body:?}");
        }
    }

    #[test]
    fn only_uncompressed_json_posts_to_chat_completions_are_candidates() {
        let json = Some(&b"application/json; charset=utf-8"[..]);
        assert!(candidate(b"POST", b"/v1/chat/completions", json, None));
        assert!(candidate(
            b"POST",
            b"/openai/v1/chat/completions",
            json,
            Some(b"identity")
        ));
        assert!(!candidate(b"GET", b"/v1/chat/completions", json, None));
        assert!(!candidate(b"POST", b"/v1/responses", json, None));
        assert!(!candidate(
            b"POST",
            b"/v1/chat/completions",
            Some(b"text/plain"),
            None
        ));
        assert!(!candidate(b"POST", b"/v1/chat/completions", None, None));
        assert!(!candidate(
            b"POST",
            b"/v1/chat/completions",
            json,
            Some(b"gzip")
        ));
    }
}
