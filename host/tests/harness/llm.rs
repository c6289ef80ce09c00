//! `llm`: token usage read from JSON and SSE responses as they pass, in the compiled filter.
//! Bodies are shaped as the public API references show them; each is delivered in chunks
//! of every size from 1 byte to the whole body, and the event must carry the same numbers.
use crate::common::*;
use proxy_wasm_host::{Reply, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const OPENAI_SSE: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n\
data: [DONE]\n\n";

const ANTHROPIC_SSE: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-3-5-sonnet-20241022\", \"stop_reason\": null, \"usage\": {\"input_tokens\": 25, \"cache_read_input_tokens\": 7, \"output_tokens\": 1}}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\n";

const RESPONSES_JSON: &str = r#"{"id":"resp_67ccd3a9","object":"response","status":"completed","model":"gpt-4o-2024-08-06","output":[{"type":"message","content":[{"type":"output_text","text":"{\"usage\":{\"input_tokens\":1}}"}]}],"temperature":1.0,"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380}}"#;

/// Gemini `streamGenerateContent?alt=sse`: CRLF, `usageMetadata` in every chunk, no `[DONE]`.
const GEMINI_SSE: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 7,\"totalTokenCount\": 35,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";

/// Bedrock `Converse` with prompt caching (its model is in the path, not inspected here).
const BEDROCK_JSON: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":9,"totalTokens":1521,"cacheReadInputTokens":1000,"cacheWriteInputTokens":500},"metrics":{"latencyMs":618}}"#;

fn llm_vm(llm: Value) -> Vm {
    let mut l = json!({"enabled": true});
    merge(&mut l, llm);
    logging(json!({"llm": l}))
}

fn respond(vm: &mut Vm, path: &str, ct: &str, body: &str, chunk: u64) -> Value {
    vm.request()
        .method("POST")
        .path(path)
        .key("k")
        .body(40)
        .response_header("content-type", ct)
        .response_body_bytes(body.as_bytes().to_vec())
        .chunk_size(chunk)
        .respond(200)
        .unwrap();
    vm.events().pop().unwrap()
}

/// The llm fields of an event.
fn tokens(e: &Value) -> BTreeMap<String, Value> {
    let names = [
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cached_input_tokens",
        "cache_write_input_tokens",
        "reasoning_tokens",
        "cost",
        "currency",
        "tokens_truncated",
        "tokens_encoded",
    ];
    names
        .iter()
        .filter_map(|n| Some((n.to_string(), e.get(*n)?.clone())))
        .collect()
}

fn want(pairs: Value) -> BTreeMap<String, Value> {
    serde_json::from_value(pairs).unwrap()
}

#[test]
fn every_chunking_gives_the_same_tokens() {
    for (ct, body, expected) in [
        (
            "text/event-stream",
            OPENAI_SSE,
            want(
                json!({"model": "gpt-4o-mini", "provider": "openai", "input_tokens": 19,
                        "output_tokens": 10, "total_tokens": 29, "cached_input_tokens": 3}),
            ),
        ),
        (
            "text/event-stream; charset=utf-8",
            ANTHROPIC_SSE,
            want(
                // Anthropic's 25 leave out the 7 read from the cache: input_tokens counts both
                json!({"model": "claude-3-5-sonnet-20241022", "provider": "anthropic",
                        "input_tokens": 32, "output_tokens": 15, "total_tokens": 47,
                        "cached_input_tokens": 7}),
            ),
        ),
        (
            "application/json",
            RESPONSES_JSON,
            want(
                json!({"model": "gpt-4o-2024-08-06", "provider": "openai", "input_tokens": 328,
                        "output_tokens": 52, "total_tokens": 380, "cached_input_tokens": 128,
                        "reasoning_tokens": 0}),
            ),
        ),
        (
            "text/event-stream",
            GEMINI_SSE,
            want(
                json!({"model": "gemini-2.0-flash", "provider": "gemini", "input_tokens": 8,
                        "output_tokens": 27, "total_tokens": 35, "reasoning_tokens": 20,
                        "cost": 0.0000116, "currency": "USD"}),
            ),
        ),
        (
            "application/json",
            BEDROCK_JSON,
            want(
                json!({"provider": "bedrock", "input_tokens": 1512, "output_tokens": 9,
                        "total_tokens": 1521, "cached_input_tokens": 1000,
                        "cache_write_input_tokens": 500}),
            ),
        ),
    ] {
        // only Gemini is priced (by prefix): 8 × 0.1 + 27 × 0.4 = 11.6 per million
        let mut vm = llm_vm(json!({"prices": {"gemini-2.0*": {"input": 0.1, "output": 0.4}}}));
        for chunk in 1..=body.len() as u64 {
            let e = respond(&mut vm, "/v1/chat/completions", ct, body, chunk);
            assert_eq!(tokens(&e), expected, "{ct}, chunks of {chunk}");
            assert_eq!(e["response_size"], body.len());
            vm.take_logs();
        }
    }
}

/// Host calls made by one request, by import name.
fn calls(vm: &mut Vm, path: &str, ct: &str, body: &str, chunk: u64) -> BTreeMap<&'static str, u64> {
    let before = vm.host_calls().clone();
    respond(vm, path, ct, body, chunk);
    vm.host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn host_calls_per_inspected_request() {
    let mut vm = llm_vm(json!({"paths": ["/v1/chat/", "/v1/messages"], "max_scan_bytes": 400}));
    let floor = BTreeMap::from([
        ("proxy_get_header_map_pairs", 1),
        ("proxy_get_header_map_value", 1),
        ("proxy_get_current_time_nanoseconds", 2),
        ("proxy_log", 1),
    ]);
    // not inspected: exactly as without llm
    assert_eq!(
        calls(
            &mut vm,
            "/v1/embeddings",
            "application/json",
            RESPONSES_JSON,
            64
        ),
        floor
    );
    // inspected but not JSON/SSE: the response map replaces :status, nothing else
    let mut plain = floor.clone();
    plain.remove("proxy_get_header_map_value");
    plain.insert("proxy_get_header_map_pairs", 2);
    assert_eq!(
        calls(&mut vm, "/v1/chat/x", "text/plain", OPENAI_SSE, 64),
        plain
    );
    // SSE: one read per chunk until max_scan_bytes (400 bytes = 7 chunks of 64)
    let mut sse = plain.clone();
    sse.insert("proxy_get_buffer_bytes", 7);
    assert_eq!(
        calls(
            &mut vm,
            "/v1/chat/completions",
            "text/event-stream",
            OPENAI_SSE,
            64
        ),
        sse
    );
    assert_eq!(vm.events().pop().unwrap()["tokens_truncated"], true);
    // JSON: no read once the top-level object closed (here within the first chunk)
    let mut json = plain.clone();
    json.insert("proxy_get_buffer_bytes", 1);
    let small = r#"{"model":"m","usage":{"input_tokens":1,"output_tokens":2}}"#;
    let padded = format!("{small}{}", " ".repeat(300));
    assert_eq!(
        calls(&mut vm, "/v1/messages", "application/json", &padded, 64),
        json
    );
    let e = vm.events().pop().unwrap();
    assert_eq!(
        tokens(&e),
        want(json!({"model": "m", "input_tokens": 1, "output_tokens": 2, "total_tokens": 3}))
    );
}

#[test]
fn llm_off_and_veil_only_change_nothing() {
    for cfg in [json!({}), json!({"llm": {"enabled": true}})] {
        let mut vm = http_vm_with(cfg.clone(), json!({"batch_size": 1}));
        vm.auto_reply(|_| Reply::Status(200));
        let before = vm.host_calls().clone();
        vm.request()
            .key("k")
            .response_header("content-type", "text/event-stream")
            .response_body_bytes(OPENAI_SSE.as_bytes().to_vec())
            .chunk_size(16)
            .respond(200)
            .unwrap();
        let after = vm.host_calls();
        for (name, n) in [
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_header_map_value", 1),
            ("proxy_get_current_time_nanoseconds", 2),
            ("proxy_get_buffer_bytes", 0),
        ] {
            let d = after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
            assert_eq!(d, n, "{cfg}: {name}");
        }
        vm.advance_ms(1000).unwrap();
        let c = vm.callouts();
        let e = &veil_events(c.last().unwrap())[0];
        assert_eq!(e.as_object().unwrap().len(), 10, "veil keeps its ten: {e}");
    }
}

#[test]
fn tokens_reach_the_collector_in_each_format_and_through_the_shared_queue() {
    for format in ["json", "ndjson", "cloudevents", "kafka-rest"] {
        let mut vm = http_vm_with(
            json!({"llm": {"enabled": true}}),
            json!({"batch_size": 1, "format": format}),
        );
        vm.auto_reply(|_| Reply::Status(200));
        respond_http(&mut vm, ANTHROPIC_SSE, 100);
        vm.advance_ms(1000).unwrap();
        let body = String::from_utf8(vm.callouts().last().unwrap().plain_body()).unwrap();
        for field in [
            r#""model":"claude-3-5-sonnet-20241022""#,
            r#""input_tokens":32"#,
            r#""output_tokens":15"#,
            r#""cached_input_tokens":7"#,
        ] {
            assert!(body.contains(field), "{format}: {body}");
        }
    }
    let hub = Vm::new_hub();
    let cfg = |service: bool| {
        json!({"enabled": true, "sinks": ["http"], "llm": {"enabled": true},
               "http": {"cluster": "collector", "batch_size": 2, "format": "ndjson"},
               "dispatcher": {"mode": "shared_queue", "service": service}})
    };
    let mut service = Vm::envoy()
        .hub(&hub)
        .vm_id("usage_service")
        .config(cfg(true))
        .start()
        .unwrap();
    let mut worker = Vm::envoy()
        .hub(&hub)
        .vm_id("usage_filter")
        .config(cfg(false))
        .start()
        .unwrap();
    service.auto_reply(|_| Reply::Status(200));
    respond_http(&mut worker, OPENAI_SSE, 50);
    worker.request().key("k").respond(200).unwrap();
    worker.advance_ms(100).unwrap();
    service.advance_ms(100).unwrap();
    let body = String::from_utf8(service.callouts().last().unwrap().plain_body()).unwrap();
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(
        tokens(&events[0]),
        want(
            json!({"model": "gpt-4o-mini", "provider": "openai", "input_tokens": 19,
                    "output_tokens": 10, "total_tokens": 29, "cached_input_tokens": 3})
        )
    );
    assert!(tokens(&events[1]).is_empty(), "{}", events[1]);
}

fn respond_http(vm: &mut Vm, body: &str, chunk: u64) {
    vm.request()
        .method("POST")
        .path("/v1/messages")
        .key("k")
        .response_header("content-type", "text/event-stream")
        .response_body_bytes(body.as_bytes().to_vec())
        .chunk_size(chunk)
        .respond(200)
        .unwrap();
}

#[test]
fn gzip_is_said_not_read_and_bad_bodies_are_ordinary() {
    let mut vm = llm_vm(json!({}));
    let before = vm
        .host_calls()
        .get("proxy_get_buffer_bytes")
        .copied()
        .unwrap_or(0);
    vm.request()
        .key("k")
        .response_header("content-type", "application/json")
        .response_header("content-encoding", "gzip")
        .response_body_bytes(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xfe])
        .respond(200)
        .unwrap();
    assert_eq!(
        vm.host_calls()
            .get("proxy_get_buffer_bytes")
            .copied()
            .unwrap_or(0),
        before
    );
    let e = vm.events().pop().unwrap();
    assert_eq!(tokens(&e), want(json!({"tokens_encoded": true})));
    for (ct, body) in [
        (
            "application/json",
            "{\"usage\":{\"input_tokens\":12,\"output_tokens\":",
        ),
        ("application/json", "<html>502 Bad Gateway</html>"),
        (
            "text/event-stream",
            "data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
        ),
        ("text/event-stream", "\u{0}\u{ff}data:data:{{{{[[[\"\\"),
    ] {
        let e = respond(&mut vm, "/v1/chat/completions", ct, body, 5);
        let t = tokens(&e);
        assert!(
            t.is_empty() || t == want(json!({"input_tokens": 12})),
            "{body}: {t:?}"
        );
    }
    // a 5 MB single line: read up to max_scan_bytes, then flagged
    let line = format!(
        "data: {{\"pad\":\"{}\",\"usage\":{{\"prompt_tokens\":1}}}}\n\n",
        "x".repeat(5 << 20)
    );
    let e = respond(
        &mut vm,
        "/v1/chat/completions",
        "text/event-stream",
        &line,
        16 * 1024,
    );
    assert_eq!(tokens(&e), want(json!({"tokens_truncated": true})));
    assert_eq!(e["response_size"], line.len());
}
