//! `llm.filter_state` and `llm.force_stream_usage` through a stream, with a fake host:
//! what is written, and the host calls each costs only when configured.
use super::*;
use crate::fake_host::FakeHost;
use crate::host::{BufferKind, Map};
use crate::stream::{CONTINUE, STOP_AND_BUFFER};

fn configure(root: &mut Root, host: &FakeHost, llm: &str) {
    host.set_config(&format!(r#"{{"enabled":true,"llm":{llm}}}"#));
    assert!(root.on_configure(host, host.config_len()));
}

/// A streamed chat POST whose body arrives in `chunks`: the answers of the request
/// callbacks, and the host calls they made.
fn post(root: &Root, host: &FakeHost, body: &[u8], chunks: usize) -> (Vec<u32>, u32) {
    let mut s = root.new_stream();
    host.clear_headers(Map::RequestHeaders);
    for (k, v) in [
        (":path", &b"/v1/chat/completions"[..]),
        (":method", b"POST"),
        ("content-type", b"application/json"),
        ("content-length", body.len().to_string().as_bytes()),
        ("x-subscription-key", b"k"),
    ] {
        host.set_header(Map::RequestHeaders, k, v);
    }
    let before = *host.host_calls.borrow();
    let mut answers = vec![s.on_request_headers(host, false)];
    let step = body.len().div_ceil(chunks);
    let mut at = 0;
    while at < body.len() {
        at = (at + step).min(body.len());
        // what Envoy's buffer holds: everything so far while the filter buffers
        host.buffers
            .borrow_mut()
            .insert(BufferKind::RequestBody as u32, body[..at].to_vec());
        answers.push(s.on_request_body(host, at, at == body.len()));
    }
    let calls = *host.host_calls.borrow() - before;
    s.finish(host);
    (answers, calls)
}

const STREAM: &[u8] = br#"{"model":"gpt-4o","messages":[],"stream":true}"#;

#[test]
fn a_stream_request_loses_its_content_length_is_buffered_and_given_include_usage() {
    let host = FakeHost::default();
    let mut root = Root::default();
    configure(
        &mut root,
        &host,
        r#"{"enabled":true,"force_stream_usage":true}"#,
    );
    let (answers, calls) = post(&root, &host, STREAM, 3);
    // the headers continue (Envoy would not deliver the body after a StopIteration)
    assert_eq!(
        answers,
        [CONTINUE, STOP_AND_BUFFER, STOP_AND_BUFFER, CONTINUE]
    );
    let body = host.buffers.borrow()[&(BufferKind::RequestBody as u32)].clone();
    let want = br#"{"stream_options":{"include_usage":true},"model":"gpt-4o","messages":[],"stream":true}"#;
    assert_eq!(body, want);
    let key = (Map::RequestHeaders as u32, "content-length".to_string());
    assert!(!host.headers.borrow().contains_key(&key));
    // map + clock + content-length removed, then one read and one write
    assert_eq!(calls, 5);
    // not a stream: buffered, read, let go unchanged and not counted
    let (answers, calls) = post(&root, &host, br#"{"model":"m"}"#, 1);
    assert_eq!((answers, calls), (vec![CONTINUE, CONTINUE], 4));
    // too large for max_request_bytes or not JSON: unchanged and counted
    configure(
        &mut root,
        &host,
        r#"{"enabled":true,"force_stream_usage":true,"max_request_bytes":10}"#,
    );
    let (answers, calls) = post(&root, &host, STREAM, 3);
    assert_eq!(
        (answers, calls),
        (vec![CONTINUE, CONTINUE, CONTINUE, CONTINUE], 3)
    );
    configure(
        &mut root,
        &host,
        r#"{"enabled":true,"force_stream_usage":true}"#,
    );
    post(&root, &host, b"{\"stream\":true", 1);
    root.on_tick(&host);
    assert_eq!(host.metric("usage_filter.llm_requests_unmodified"), 2);
}

#[test]
fn without_force_stream_usage_nothing_is_held_or_read() {
    let host = FakeHost::default();
    let mut root = Root::default();
    configure(&mut root, &host, r#"{"enabled":true}"#);
    let (answers, calls) = post(&root, &host, STREAM, 2);
    assert_eq!((answers, calls), (vec![CONTINUE, CONTINUE, CONTINUE], 2));
}

#[test]
fn filter_state_is_written_once_at_the_body_end_and_only_when_configured() {
    for on in [true, false] {
        let host = FakeHost::default();
        let mut root = Root::default();
        configure(
            &mut root,
            &host,
            &format!(
                r#"{{"enabled":true,"filter_state":{on},"prices":{{"gpt-4o":{{"input":2.5,"output":10}}}}}}"#
            ),
        );
        let mut s = root.new_stream();
        host.set_header(Map::RequestHeaders, ":path", b"/v1/chat/completions");
        host.set_header(Map::RequestHeaders, "x-subscription-key", b"k");
        s.on_request_headers(&host, true);
        host.set_header(Map::ResponseHeaders, ":status", b"200");
        host.set_header(Map::ResponseHeaders, "content-type", b"application/json");
        s.on_response_headers(&host);
        let body = br#"{"model":"gpt-4o","usage":{"prompt_tokens":1000,"completion_tokens":20}}"#;
        host.buffers
            .borrow_mut()
            .insert(BufferKind::ResponseBody as u32, body.to_vec());
        s.on_response_body(&host, body.len(), true);
        let written: Vec<(String, String)> = host
            .properties
            .borrow()
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect();
        s.finish(&host);
        if !on {
            assert!(host.properties.borrow().is_empty());
            continue;
        }
        let want = [
            ("usage.model", "gpt-4o"),
            ("usage.input_tokens", "1000"),
            ("usage.output_tokens", "20"),
            ("usage.total_tokens", "1020"),
            ("usage.cost", "0.0027"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(written, want);
        assert_eq!(host.properties.borrow().len(), 5, "not again at the end");
    }
}
