//! `make bench`, part (a): deterministic costs of the compiled filter in our host, in wasm fuel
//! (about one unit per wasm instruction), printed as JSON for `bench/report.py`.
//!
//! usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm> [<before.wasm>]
//!
//! With a fourth argument (another build of the filter, e.g. the last release), the per-callback
//! fuel and the host calls of both builds are measured the same way and printed side by side
//! (JSON key `before`, and a table on stderr). The reference filters found beside
//! `null_filter.wasm` (`floor_filter.wasm`, `probe_*.wasm`) get their fuel and host calls too,
//! which checks that each makes exactly the calls it claims.

use anyhow::{anyhow, Result};
use proxy_wasm_host::metrics::EVENTS_DELIVERED;
use proxy_wasm_host::{Reply, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const WARMUP: usize = 200;
const MEASURED: usize = 2000;

fn typical_get(vm: &mut Vm) -> Result<proxy_wasm_host::Outcome> {
    vm.request()
        .path("/v1/things/42?expand=owner")
        .key("sk_live_0123456789abcdef")
        .upstream_ms(3)
        .response_body(512)
        .respond(200)
}

/// Host calls one more typical request makes, by import name (after the warm-up).
fn host_calls_of_one(vm: &mut Vm) -> Result<BTreeMap<&'static str, u64>> {
    let before = vm.host_calls().clone();
    typical_get(vm)?;
    Ok(vm
        .host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// A reference filter (no configuration): fuel per request and its host calls.
fn reference(wasm: &str) -> Result<Value> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .start()
        .map_err(|e| anyhow!("{wasm}: {e}"))?;
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    let mut total = 0;
    for _ in 0..MEASURED {
        total += typical_get(&mut vm)?.total_fuel();
    }
    let calls = host_calls_of_one(&mut vm)?;
    Ok(json!({"total": total / MEASURED as u64, "host_calls": calls, "wasm_bytes": size(wasm)}))
}

fn size(p: &str) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Average fuel per request by callback, and the batch share per event.
fn per_request(wasm: &str, config: Value) -> Result<Value> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .config(config)
        .start()
        .map_err(|e| anyhow!("{wasm}: {e}"))?;
    vm.auto_reply(|_| Reply::Status(200));
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    let host_calls = host_calls_of_one(&mut vm)?;
    vm.advance_ms(1000)?;
    vm.reset_fuel();
    let mut per_cb: BTreeMap<&'static str, u64> = BTreeMap::new();
    for _ in 0..MEASURED {
        for (cb, (_, fuel)) in typical_get(&mut vm)?.fuel {
            *per_cb.entry(cb).or_default() += fuel;
        }
    }
    // the root's share: ticks, callouts and their answers, spread over the events
    vm.advance_ms(2000)?;
    let all = vm.fuel().clone();
    let root: u64 = ["on_tick", "on_http_call_response"]
        .iter()
        .filter_map(|k| all.get(k))
        .map(|(_, f)| f)
        .sum();
    let n = MEASURED as u64;
    let avg: BTreeMap<&str, u64> = per_cb.iter().map(|(k, v)| (*k, v / n)).collect();
    let g = |k: &str| avg.get(k).copied().unwrap_or(0);
    let capture = g("on_request_headers")
        + g("on_request_body")
        + g("on_response_headers")
        + g("on_response_body");
    let lifecycle = g("on_context_create") + g("on_done") + g("on_delete");
    let on_log = g("on_log");
    Ok(json!({
        "callbacks": avg,
        "capture": capture,
        "lifecycle": lifecycle,
        "on_log": on_log,
        "batch_share": root / n,
        "total": capture + lifecycle + on_log + root / n,
        "delivered": vm.metric(EVENTS_DELIVERED),
        "host_calls": host_calls,
    }))
}

/// Host calls made since `before`, by import name.
fn calls_since(
    vm: &Vm,
    before: &std::collections::HashMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    vm.host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The root's own costs with the http sink's defaults (issue 22): what an idle second costs
/// (its ticks), and what one batch of 100 events costs beyond its events' requests (the
/// callout, its answer, and the ticks while the events came), in host calls and fuel.
fn root_costs(wasm: &str) -> Result<Value> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .config(json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector"}}))
        .start()
        .map_err(|e| anyhow!("{wasm}: {e}"))?;
    vm.auto_reply(|_| Reply::Status(200));
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    vm.advance_ms(2000)?;
    // idle: ten seconds without a request
    let before = vm.host_calls().clone();
    vm.reset_fuel();
    vm.advance_ms(10_000)?;
    let idle_calls = calls_since(&vm, &before);
    let (ticks, idle_fuel) = vm.fuel().get("on_tick").copied().unwrap_or((0, 0));
    // busy: 1,000 events at once (a loaded worker: the count cuts the batches, one tick
    // starts them and each answer starts the next), then two seconds to deliver them
    let dense = |vm: &mut Vm| {
        vm.request()
            .path("/v1/things/42?expand=owner")
            .key("sk_live_0123456789abcdef")
            .response_body(512)
            .respond(200)
    };
    let before = vm.host_calls().clone();
    dense(&mut vm)?;
    let per_request = calls_since(&vm, &before);
    vm.advance_ms(2000)?;
    let delivered_before = vm.metric(EVENTS_DELIVERED);
    let before = vm.host_calls().clone();
    vm.reset_fuel();
    let n = 1000u64;
    for _ in 0..n {
        dense(&mut vm)?;
    }
    vm.advance_ms(2000)?;
    let delivered = (vm.metric(EVENTS_DELIVERED) - delivered_before).max(0) as u64;
    let batches = delivered.div_ceil(100).max(1);
    let root_calls: BTreeMap<&str, f64> = calls_since(&vm, &before)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.saturating_sub(per_request.get(k).copied().unwrap_or(0) * n),
            )
        })
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k, v as f64 / batches as f64))
        .collect();
    let root_fuel: u64 = ["on_tick", "on_http_call_response"]
        .iter()
        .filter_map(|k| vm.fuel().get(k))
        .map(|(_, f)| f)
        .sum();
    let busy_ticks = vm.fuel().get("on_tick").map_or(0, |(c, _)| *c);
    let by_callback: BTreeMap<&str, u64> = ["on_tick", "on_http_call_response"]
        .iter()
        .map(|k| (*k, vm.fuel().get(k).map_or(0, |(_, f)| *f) / batches))
        .collect();
    // memory: twenty more such seconds must not grow the linear memory (bodies built in a
    // reused buffer; records freed at their answers)
    let memory_before = vm.memory_bytes();
    for _ in 0..20 {
        for _ in 0..n {
            dense(&mut vm)?;
        }
        vm.advance_ms(1000)?;
    }
    let memory_growth = vm.memory_bytes() - memory_before;
    Ok(json!({
        "idle_ticks_per_s": ticks as f64 / 10.0,
        "idle_host_calls_per_s": idle_calls.iter().map(|(k, v)| (*k, *v as f64 / 10.0)).collect::<BTreeMap<_, _>>(),
        "idle_fuel_per_tick": idle_fuel / ticks.max(1),
        "events": delivered,
        "batches": batches,
        "ticks_while_busy": busy_ticks,
        "root_host_calls_per_batch": root_calls,
        "root_fuel_per_batch": root_fuel / batches,
        "root_fuel_per_batch_by_callback": by_callback,
        "memory_growth_bytes_over_20000_events": memory_growth,
    }))
}

/// One build's per-request figures for both sinks.
fn sinks(wasm: &str) -> Result<(Value, Value)> {
    let http = json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector"}});
    let log = json!({"enabled": true, "sinks": ["log"], "log_output": "filter_state"});
    Ok((per_request(wasm, http)?, per_request(wasm, log)?))
}

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
struct Shape {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Every shape the scanner reads, about `kb` KB each, as the providers send them (the
/// corpus in filter/src/tokens/corpus.rs): streams as many small events, JSON answers as one
/// object with a long text before the usage.
fn shapes(kb: usize) -> Vec<Shape> {
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
fn llm(wasm: &str, shape: &Shape, chunk: u64) -> Result<Value> {
    let body = &shape.body;
    let run = |llm: bool| -> Result<(u64, u64)> {
        let mut cfg = json!({"enabled": true, "sinks": ["http"],
                             "http": {"cluster": "collector", "format": "ndjson"}});
        if llm {
            cfg["llm"] = json!({"enabled": true, "max_scan_bytes": 1 << 20});
        }
        let mut vm = Vm::envoy()
            .wasm(wasm)
            .config(cfg)
            .start()
            .map_err(|e| anyhow!("{wasm}: {e}"))?;
        vm.auto_reply(|_| Reply::Status(200));
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
        for _ in 0..20 {
            one(&mut vm)?;
        }
        let n = 200;
        let mut total = 0;
        for _ in 0..n {
            total += one(&mut vm)?.total_fuel();
        }
        let before = vm.host_calls().values().sum::<u64>();
        one(&mut vm)?;
        let calls = vm.host_calls().values().sum::<u64>() - before;
        Ok((total / n, calls))
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
fn force(wasm: &str) -> Result<Value> {
    let request = br#"{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about the sea."}],"model":"gpt-4o-mini","stream":true}"#;
    let answer = sse_body(4);
    let run = |force: bool| -> Result<(u64, u64)> {
        let cfg = json!({"enabled": true, "sinks": ["http"],
                         "http": {"cluster": "collector", "format": "ndjson"},
                         "llm": {"enabled": true, "force_stream_usage": force}});
        let mut vm = Vm::envoy()
            .wasm(wasm)
            .config(cfg)
            .start()
            .map_err(|e| anyhow!("{wasm}: {e}"))?;
        vm.auto_reply(|_| Reply::Status(200));
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
        for _ in 0..20 {
            one(&mut vm)?;
        }
        let n = 200;
        let mut total = 0;
        for _ in 0..n {
            total += one(&mut vm)?.total_fuel();
        }
        let before = vm.host_calls().values().sum::<u64>();
        one(&mut vm)?;
        let calls = vm.host_calls().values().sum::<u64>() - before;
        Ok((total / n, calls))
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

/// Before and after, per callback, on stderr (the JSON on stdout is for report.py).
fn print_comparison(before: &Value, after: &Value) {
    eprintln!("fuel per typical GET, by callback (before -> after)");
    for sink in ["http", "log"] {
        let (b, a) = (&before[sink], &after[sink]);
        eprintln!("  {sink} sink");
        let mut names: Vec<String> = Vec::new();
        for v in [b, a] {
            if let Some(m) = v["callbacks"].as_object() {
                names.extend(
                    m.keys()
                        .filter(|k| !names.contains(k))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        let row = |name: &str, x: &Value, y: &Value| {
            let (x, y) = (x.as_u64().unwrap_or(0), y.as_u64().unwrap_or(0));
            eprintln!(
                "    {name:<22} {x:>8} -> {y:>8}  ({:+})",
                y as i64 - x as i64
            );
        };
        for n in &names {
            row(n, &b["callbacks"][n], &a["callbacks"][n]);
        }
        row("batch share", &b["batch_share"], &a["batch_share"]);
        row("total", &b["total"], &a["total"]);
        let calls = |v: &Value| {
            v["host_calls"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
        };
        eprintln!(
            "    {:<22} {:>8} -> {:>8}",
            "host calls",
            calls(b),
            calls(a)
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (wasm, bench_wasm, null_wasm, before_wasm) = match args.as_slice() {
        [w, b, n] => (w, b, n, None),
        [w, b, n, before] => (w, b, n, Some(before)),
        _ => {
            return Err(anyhow!(
                "usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm> [<before.wasm>]"
            ))
        }
    };

    let (http_run, log_run) = sinks(wasm)?;
    let before_build = match before_wasm {
        Some(b) => {
            let (http, log) = sinks(b)?;
            let before = json!({"path": b, "wasm_bytes": size(b), "http": http, "log": log});
            print_comparison(&before, &json!({"http": http_run, "log": log_run}));
            before
        }
        None => Value::Null,
    };

    // the reference filters built beside the null filter (bench/build.sh)
    let dir = Path::new(null_wasm.as_str())
        .parent()
        .unwrap_or(Path::new("."));
    let mut references = BTreeMap::new();
    let mut names = vec![
        "null_filter.wasm".to_string(),
        "floor_filter.wasm".to_string(),
    ];
    let mut probes: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("probe_") && n.ends_with(".wasm"))
        .collect();
    probes.sort();
    names.extend(probes);
    for name in names {
        let path = dir.join(&name);
        if path.exists() {
            let key = name
                .trim_end_matches(".wasm")
                .trim_end_matches("_filter")
                .to_string();
            references.insert(key, reference(&path.to_string_lossy())?);
        }
    }

    // the null filter: same callbacks, nothing done
    let mut null = Vm::envoy()
        .wasm(null_wasm.as_str())
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    for _ in 0..WARMUP {
        typical_get(&mut null)?;
    }
    let mut null_total = 0;
    for _ in 0..MEASURED {
        null_total += typical_get(&mut null)?.total_fuel();
    }

    // the encoder alone, from the bench build's exports
    let mut b = Vm::envoy()
        .wasm(bench_wasm.as_str())
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    b.call_export("bench_encode_event", &[10])?;
    let (_, f1) = b.call_export("bench_encode_event", &[1000])?;
    let encode_event = f1 / 1000;
    let batch = 100;
    b.call_export("bench_prepare", &[batch])?;
    let mut formats = BTreeMap::new();
    for (i, name) in [
        "veil",
        "ndjson",
        "json",
        "cloudevents",
        "kafka-rest",
        "veil+gzip",
    ]
    .iter()
    .enumerate()
    {
        b.call_export("bench_batch_body", &[i as i32])?;
        let (len, fuel) = b.call_export("bench_batch_body", &[i as i32])?;
        formats.insert(*name, json!({"fuel_per_event": fuel / batch as u64, "bytes_per_event": len.unwrap_or(0) / batch}));
    }

    // linear memory per buffered event: fill the buffer with the collector silent
    let n = 20_000;
    let mut m = Vm::envoy()
        .wasm(wasm.as_str())
        .config(
            json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector",
            "buffer_size": n, "batch_size": n, "flush_interval_ms": 3_600_000}}),
        )
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    for _ in 0..100 {
        typical_get(&mut m)?;
    }
    let before = m.memory_bytes();
    for _ in 100..n {
        typical_get(&mut m)?;
    }
    let after = m.memory_bytes();
    let per_event = (after - before) as f64 / (n - 100) as f64;

    // the first shape (OpenAI Chat SSE) in 256- and 16 KB chunks is `llm` (report.py's table);
    // every shape in 1 KB chunks is `llm_shapes`
    let all = shapes(32);
    let llm_runs = vec![llm(wasm, &all[0], 256)?, llm(wasm, &all[0], 16 * 1024)?];
    let llm_shapes = all
        .iter()
        .map(|shape| llm(wasm, shape, 1024))
        .collect::<Result<Vec<_>>>()?;

    let root = root_costs(wasm)?;
    eprintln!("root costs (http sink defaults): {root}");
    let out = json!({
        "root_costs": root,
        "llm": llm_runs,
        "llm_shapes": llm_shapes,
        "force_stream_usage": force(wasm)?,
        "http": http_run,
        "log": log_run,
        "before": before_build,
        "references": references,
        "null_total": null_total / MEASURED as u64,
        "encode_event": encode_event,
        "formats": formats,
        "memory_per_buffered_event": per_event.round(),
        "wasm_bytes": size(wasm),
        "null_wasm_bytes": size(null_wasm),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
