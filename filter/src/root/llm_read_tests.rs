//! The root context with a fake host, LLM answers: which chunks the scanner reads (and only
//! where configured), encoded answers said and not read, prices → cost and the unpriced count.
use super::tests::configure;
use super::*;
use crate::fake_host::FakeHost;

/// One keyed POST whose response carries `content-type` and arrives in `chunks`.
fn llm_request(root: &Root, host: &FakeHost, path: &str, ct: &str, chunks: &[&[u8]]) {
    let mut s = root.new_stream();
    host.set_header(Map::RequestHeaders, ":path", path.as_bytes());
    host.set_header(Map::RequestHeaders, "x-subscription-key", b"k");
    s.on_request_headers(host, false);
    host.set_header(Map::ResponseHeaders, ":status", b"200");
    host.set_header(Map::ResponseHeaders, "content-type", ct.as_bytes());
    s.on_response_headers(host);
    for c in chunks {
        host.buffers
            .borrow_mut()
            .insert(crate::host::BufferKind::ResponseBody as u32, c.to_vec());
        s.on_response_body(host, c.len(), false);
    }
    s.finish(host);
    host.clear_headers(Map::ResponseHeaders);
}

const LLM: &str =
    r#"{"enabled":true,"llm":{"enabled":true,"paths":["/v1/chat/"],"max_scan_bytes":100}}"#;

#[test]
fn llm_reads_each_chunk_of_an_inspected_response_once_and_nothing_elsewhere() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, LLM));
    let sse: &[&[u8]] = &[
        b"data: {\"model\":\"m\",\"usage\":",
        b"{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
    ];
    let calls = |f: &dyn Fn()| {
        let before = *host.host_calls.borrow();
        f();
        *host.host_calls.borrow() - before
    };
    // inspected: the response map instead of :status (same one call), one read per chunk
    let n = calls(&|| {
        llm_request(
            &root,
            &host,
            "/v1/chat/completions",
            "text/event-stream",
            sse,
        )
    });
    assert_eq!(n, 5 + 2);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(
        line.ends_with(r#","model":"m","provider":"openai","input_tokens":3,"output_tokens":4,"total_tokens":7}"#),
        "{line}"
    );
    // not inspected: a path outside llm.paths, or a body that is not JSON or SSE
    let n = calls(&|| llm_request(&root, &host, "/v1/embeddings", "application/json", sse));
    assert_eq!(n, 5);
    let n = calls(&|| llm_request(&root, &host, "/v1/chat/x", "text/plain", sse));
    assert_eq!(n, 5);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(
        !line.contains("tokens") && !line.contains("model"),
        "{line}"
    );
    // past max_scan_bytes: no more reads, and the event says so
    let long: Vec<u8> = [&b"data: {\"pad\":\""[..], &[b'x'; 120], b"\"}\n\n"].concat();
    let n = calls(&|| {
        llm_request(
            &root,
            &host,
            "/v1/chat/c",
            "text/event-stream",
            &[&long, sse[0], sse[1]],
        )
    });
    assert_eq!(n, 5 + 1);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.ends_with(r#","tokens_truncated":true}"#), "{line}");
}

#[test]
fn llm_off_or_veil_only_changes_nothing() {
    for cfg in [
        r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c"},"llm":{"enabled":true}}"#,
        r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c"}}"#,
    ] {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, cfg));
        let before = *host.host_calls.borrow();
        llm_request(
            &root,
            &host,
            "/v1/chat/completions",
            "application/json",
            &[b"{\"usage\":{}}"],
        );
        assert_eq!(*host.host_calls.borrow() - before, 4, "{cfg}");
    }
}

#[test]
fn an_encoded_llm_response_is_not_read_but_said() {
    let host = FakeHost::default();
    let mut root = Root::default();
    assert!(configure(&mut root, &host, LLM));
    host.set_header(Map::ResponseHeaders, "content-encoding", b"gzip");
    let mut s = root.new_stream();
    host.set_header(Map::RequestHeaders, ":path", b"/v1/chat/completions");
    host.set_header(Map::RequestHeaders, "x-subscription-key", b"k");
    s.on_request_headers(&host, false);
    host.set_header(Map::ResponseHeaders, ":status", b"200");
    host.set_header(Map::ResponseHeaders, "content-type", b"application/json");
    s.on_response_headers(&host);
    let before = *host.host_calls.borrow();
    s.on_response_body(&host, 100, true);
    assert_eq!(*host.host_calls.borrow(), before, "no read");
    s.finish(&host);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(line.ends_with(r#","tokens_encoded":true}"#), "{line}");
}

#[test]
fn llm_prices_give_cost_and_currency_and_count_the_unpriced() {
    let host = FakeHost::default();
    let mut root = Root::default();
    let cfg = r#"{"enabled":true,"llm":{"enabled":true,"currency":"EUR","prices":{
        "us.anthropic.claude*":{"input":3,"cached_input":0.3,"cache_write_input":"3.75","output":15}}}}"#;
    assert!(configure(&mut root, &host, cfg));
    let body: &[u8] = br#"{"usage":{"inputTokens":700,"outputTokens":50,"totalTokens":750,"cacheReadInputTokens":200,"cacheWriteInputTokens":100}}"#;
    let path = "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse";
    llm_request(&root, &host, path, "application/json", &[body]);
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(
        line.ends_with(r#","model":"us.anthropic.claude-3-7-sonnet-20250219-v1:0","provider":"bedrock","input_tokens":1000,"output_tokens":50,"total_tokens":1050,"cached_input_tokens":200,"cache_write_input_tokens":100,"cost":0.003285,"currency":"EUR"}"#),
        "{line}"
    );
    let other: &[u8] = br#"{"model":"gpt-4o","usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    llm_request(
        &root,
        &host,
        "/v1/chat/completions",
        "application/json",
        &[other],
    );
    let line = host.logs.borrow().last().unwrap().1.clone();
    assert!(!line.contains("cost"), "{line}");
    root.on_tick(&host);
    assert_eq!(host.metric("usage_filter.llm_unpriced"), 1);
}
