//! The LLM scanner's cost per shape of answer (fuel per KB, every provider's stream and JSON
//! as the corpus in filter/src/tokens/corpus.rs has them) and force_stream_usage's cost.

use super::acked_vm;
use anyhow::Result;
use proxy_wasm_host::Vm;
use serde_json::{json, Value};

/// `head`, then `delta` repeated, then `tail`: about `kb` KB.
fn repeated(kb: usize, head: &str, delta: &str, tail: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(kb * 1024 + 1024);
    body.extend_from_slice(head.as_bytes());
    while body.len() + delta.len() + tail.len() < kb * 1024 {
        body.extend_from_slice(delta.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

/// An OpenAI chat completion streamed as SSE, about `kb` KB: content deltas, then the usage.
fn sse_body(kb: usize) -> Vec<u8> {
    repeated(
        kb,
        "",
        "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-123\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}\n\ndata: [DONE]\n\n",
    )
}

/// A JSON answer whose text is one long string (`{text}` in `shape`), about `kb` KB.
fn long_text_json(kb: usize, shape: &str) -> Vec<u8> {
    let room = (kb * 1024).saturating_sub(shape.len());
    let text = "The sea is wide. ".repeat(room / 17 + 1);
    shape.replace("{text}", &text[..room]).into_bytes()
}

/// One shape of LLM answer for the scanner's cost: the path it is requested on, its content
/// type and its body.
pub(crate) struct Shape {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Every shape the scanner reads, about `kb` KB each, as the providers send them (the
/// corpus in filter/src/tokens/corpus.rs): streams as many small events, JSON answers as one
/// object with a long text before the usage.
pub(crate) fn shapes(kb: usize) -> Vec<Shape> {
    let sse = "text/event-stream";
    let json = "application/json";
    vec![
        Shape { name: "OpenAI Chat SSE", path: "/v1/chat/completions", content_type: sse, body: sse_body(kb) },
        Shape {
            name: "OpenAI Chat JSON",
            path: "/v1/chat/completions",
            content_type: json,
            body: long_text_json(kb, r#"{"id":"chatcmpl-AB","object":"chat.completion","created":1727,"model":"o3-mini-2025-01-31","choices":[{"index":0,"message":{"role":"assistant","content":"{text}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":410,"total_tokens":435,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":384,"audio_tokens":0}}}"#),
        },
        Shape {
            name: "OpenAI Responses SSE",
            path: "/v1/responses",
            content_type: sse,
            body: repeated(
                kb,
                "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"o4-mini-2025-04-16\",\"output\":[],\"usage\":null}}\n\n",
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"Hello\",\"logprobs\":[]}\n\n",
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":20,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"o4-mini-2025-04-16\",\"output\":[{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}],\"usage\":{\"input_tokens\":40,\"input_tokens_details\":{\"cached_tokens\":16},\"output_tokens\":300,\"output_tokens_details\":{\"reasoning_tokens\":256},\"total_tokens\":340}}}\n\n",
            ),
        },
        Shape {
            name: "OpenAI Responses JSON",
            path: "/v1/responses",
            content_type: json,
            body: long_text_json(kb, r#"{"id":"resp_67cc","object":"response","created_at":1741477868,"status":"completed","model":"o1-2024-12-17","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"{text}","annotations":[]}]}],"usage":{"input_tokens":75,"input_tokens_details":{"cached_tokens":0},"output_tokens":1186,"output_tokens_details":{"reasoning_tokens":1024},"total_tokens":1261}}"#),
        },
        Shape {
            name: "Anthropic SSE",
            path: "/v1/messages",
            content_type: sse,
            body: repeated(
                kb,
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            ),
        },
        Shape {
            name: "Gemini SSE",
            path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            content_type: sse,
            body: repeated(
                kb,
                "",
                "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 3,\"totalTokenCount\": 31,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"a1b2\"}\r\n\r\n",
                "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 7,\"totalTokenCount\": 35,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"a1b2\"}\r\n\r\n",
            ),
        },
        Shape {
            name: "Gemini JSON",
            path: "/v1beta/models/gemini-2.5-flash:generateContent",
            content_type: json,
            body: long_text_json(kb, r#"{"candidates":[{"content":{"parts":[{"text":"{text}"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":7,"totalTokenCount":35,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}],"thoughtsTokenCount":20},"modelVersion":"gemini-2.5-flash","responseId":"Il0t"}"#),
        },
        Shape {
            name: "Bedrock Converse JSON",
            path: "/model/anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse",
            content_type: json,
            body: long_text_json(kb, r#"{"output":{"message":{"role":"assistant","content":[{"text":"{text}"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":9,"totalTokens":1521,"cacheReadInputTokens":1000,"cacheWriteInputTokens":500},"metrics":{"latencyMs":618}}"#),
        },
    ]
}

/// `llm` on against off: fuel per response and per KB scanned, with the response in chunks
/// of `chunk` bytes (an SSE stream arrives about one event per chunk), and host calls.
pub(crate) fn llm(wasm: &str, shape: &Shape, chunk: u64) -> Result<Value> {
    let body = &shape.body;
    let run = |llm: bool| -> Result<(u64, u64)> {
        let mut cfg = json!({"enabled": true, "sinks": ["http"],
                             "http": {"cluster": "collector", "format": "ndjson"}});
        if llm {
            cfg["llm"] = json!({"enabled": true, "max_scan_bytes": 1 << 20});
        }
        let mut vm = acked_vm(wasm, cfg)?;
        let one = |vm: &mut Vm| {
            vm.request()
                .method("POST")
                .path(shape.path)
                .key("sk_live_0123456789abcdef")
                .response_header("content-type", shape.content_type)
                .response_body_bytes(body.clone())
                .chunk_size(chunk)
                .respond(200)
        };
        steady(&mut vm, one)
    };
    let (on, calls_on) = run(true)?;
    let (off, calls_off) = run(false)?;
    let per_kb = (on.saturating_sub(off) as f64 / (body.len() as f64 / 1024.0)).round();
    eprintln!(
        "llm: {}, {} bytes in {chunk}-byte chunks: {on} fuel with llm on, {off} off: \
         {per_kb} fuel per KB scanned; host calls {calls_on} vs {calls_off}",
        shape.name,
        body.len()
    );
    Ok(
        json!({"shape": shape.name, "body_bytes": body.len(), "chunk_bytes": chunk, "fuel_on": on, "fuel_off": off,
              "fuel_per_kb_scanned": per_kb, "host_calls_on": calls_on, "host_calls_off": calls_off}),
    )
}

/// `llm.force_stream_usage`: what holding and rewriting a chat request costs the filter. The
/// openai SDK's default streaming request (171 bytes, no `stream_options`) in one chunk, a 4 KB
/// streamed answer; `llm` on with and without the option: fuel and host calls per request.
pub(crate) fn force(wasm: &str) -> Result<Value> {
    let request = br#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea."}],"model":"gpt-4o-mini","stream":true}"#;
    let answer = sse_body(4);
    let run = |force: bool| -> Result<(u64, u64)> {
        let cfg = json!({"enabled": true, "sinks": ["http"],
                         "http": {"cluster": "collector", "format": "ndjson"},
                         "llm": {"enabled": true, "force_stream_usage": force}});
        let mut vm = acked_vm(wasm, cfg)?;
        let one = |vm: &mut Vm| {
            vm.request()
                .method("POST")
                .path("/v1/chat/completions")
                .key("sk_live_0123456789abcdef")
                .header("content-type", "application/json")
                .header("content-length", &request.len().to_string())
                .body_bytes(request.to_vec())
                .response_header("content-type", "text/event-stream")
                .response_body_bytes(answer.clone())
                .chunk_size(1024)
                .respond(200)
        };
        steady(&mut vm, one)
    };
    let (on, calls_on) = run(true)?;
    let (off, calls_off) = run(false)?;
    eprintln!(
        "force_stream_usage: a {} byte chat request, {} byte answer: {on} fuel with it, {off} without \
         (+{}); host calls {calls_on} vs {calls_off}",
        request.len(),
        answer.len(),
        on.saturating_sub(off)
    );
    Ok(
        json!({"request_bytes": request.len(), "answer_bytes": answer.len(), "fuel_on": on, "fuel_off": off,
              "host_calls_on": calls_on, "host_calls_off": calls_off}),
    )
}

/// A request's fuel averaged over 200 after 20 to warm up, and the host calls of one more.
fn steady(
    vm: &mut Vm,
    one: impl Fn(&mut Vm) -> Result<proxy_wasm_host::Outcome>,
) -> Result<(u64, u64)> {
    for _ in 0..20 {
        one(vm)?;
    }
    let n = 200;
    let mut total = 0;
    for _ in 0..n {
        total += one(vm)?.total_fuel();
    }
    let before = vm.host_calls().values().sum::<u64>();
    one(vm)?;
    let calls = vm.host_calls().values().sum::<u64>() - before;
    Ok((total / n, calls))
}
