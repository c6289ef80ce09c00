//! `llm.force_stream_usage` (the request's `content-length` removed, its body buffered and
//! rewritten; the headers never stopped, as Envoy would then deliver no body) and
//! `llm.filter_state` (`wasm.usage.*`) in the compiled filter, with the host calls each adds
//! only when configured.
use crate::common::*;
use proxy_wasm_host::{Outcome, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SSE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":20,\"total_tokens\":1020}}\n\ndata: [DONE]\n\n";

fn vm(llm: Value) -> Vm {
    let mut l = json!({"enabled": true});
    merge(&mut l, llm);
    logging(json!({"llm": l}))
}

/// A chat POST with this body in chunks of `chunk`; its outcome and the host calls made.
fn post(vm: &mut Vm, body: &[u8], chunk: u64) -> (Outcome, BTreeMap<&'static str, u64>) {
    let before = vm.host_calls().clone();
    let out = vm
        .request()
        .method("POST")
        .path("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("content-length", &body.len().to_string())
        .key("k")
        .body_bytes(body.to_vec())
        .response_header("content-type", "text/event-stream")
        .response_body_bytes(SSE.as_bytes().to_vec())
        .chunk_size(chunk)
        .respond(200)
        .unwrap();
    let calls = vm
        .host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    (out, calls)
}

fn header(o: &Outcome, name: &str) -> Option<String> {
    let h = o.upstream_headers.as_ref()?;
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

const STREAM: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

#[test]
fn a_stream_request_gets_include_usage_at_every_chunk_size() {
    let mut vm = vm(json!({"force_stream_usage": true}));
    let want = format!(
        r#"{{"stream_options":{{"include_usage":true}},{}"#,
        &STREAM[1..]
    );
    for chunk in 1..=STREAM.len() as u64 + 1 {
        let (o, calls) = post(&mut vm, STREAM.as_bytes(), chunk);
        assert_eq!(
            String::from_utf8_lossy(&o.upstream_body),
            want,
            "chunk {chunk}"
        );
        // removed while the headers were writable: upstream the body is chunked
        assert_eq!(header(&o, "content-length"), None);
        let n = STREAM.len().div_ceil(chunk as usize);
        // headers continued, body buffered until the last chunk, then continued once
        let mut answers = vec![0];
        answers.extend(vec![1; n - 1]);
        answers.push(0);
        assert_eq!(o.request_answers, answers, "chunk {chunk}");
        // one header removal, one read of the buffer, one write: nothing per chunk
        let response_reads = SSE.len().div_ceil(chunk as usize) as u64;
        assert_eq!(
            calls.get("proxy_get_buffer_bytes"),
            Some(&(1 + response_reads))
        );
        assert_eq!(calls.get("proxy_set_buffer_bytes"), Some(&1));
        assert_eq!(calls.get("proxy_remove_header_map_value"), Some(&1));
        assert!(!calls.contains_key("proxy_replace_header_map_value"));
        let e = vm.events().pop().unwrap();
        assert_eq!(
            (e["input_tokens"].clone(), e["request_size"].clone()),
            (json!(1000), json!(STREAM.len()))
        );
    }
}

#[test]
fn requests_it_need_not_or_cannot_change_pass_byte_for_byte() {
    let mut vm = vm(json!({"force_stream_usage": true, "max_request_bytes": 100}));
    let cases: [(&[u8], i64); 4] = [
        (br#"{"model":"m","stream":false}"#, 0),
        (
            br#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            0,
        ),
        (b"{\"stream\":true,", 1),
        (&[b' '; 150], 1),
    ];
    for (body, counted) in cases {
        let before = vm.metric("usage_filter.llm_requests_unmodified");
        let (o, calls) = post(&mut vm, body, 16);
        assert_eq!(o.upstream_body, body);
        // the body byte for byte; its content-length was removed before the body was seen
        assert_eq!(header(&o, "content-length"), None);
        assert!(!calls.contains_key("proxy_set_buffer_bytes"));
        vm.tick().unwrap();
        let after = vm.metric("usage_filter.llm_requests_unmodified");
        assert_eq!(after - before, counted, "{}", String::from_utf8_lossy(body));
    }
    // over max_request_bytes: let go at the chunk that crossed it, never read
    let (o, calls) = post(&mut vm, &[b' '; 150], 16);
    assert_eq!(o.request_answers, [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
    let response_reads = SSE.len().div_ceil(16) as u64;
    assert_eq!(calls.get("proxy_get_buffer_bytes"), Some(&response_reads));
}

#[test]
fn without_the_keys_nothing_is_held_and_no_call_is_added() {
    let mut plain = vm(json!({}));
    let (o, base) = post(&mut plain, STREAM.as_bytes(), 16);
    assert!(o.request_answers.iter().all(|a| *a == 0));
    assert_eq!(o.upstream_body, STREAM.as_bytes());
    assert!(o.filter_state.is_empty());
    // another path or method is not held either
    let mut forced = vm(json!({"force_stream_usage": true}));
    let o = forced
        .request()
        .method("POST")
        .path("/v1/embeddings")
        .header("content-type", "application/json")
        .key("k")
        .body_bytes(STREAM.as_bytes().to_vec())
        .respond(200)
        .unwrap();
    assert!(o.request_answers.iter().all(|a| *a == 0));
    // filter_state adds exactly one set_property per value, nothing else
    let mut fs = vm(json!({"filter_state": true}));
    let (o, calls) = post(&mut fs, STREAM.as_bytes(), 16);
    let mut want = base.clone();
    want.insert("proxy_set_property", 4);
    assert_eq!(calls, want);
    let state: BTreeMap<_, _> = o
        .filter_state
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        state,
        BTreeMap::from([
            ("usage.model", "gpt-4o".to_string()),
            ("usage.input_tokens", "1000".into()),
            ("usage.output_tokens", "20".into()),
            ("usage.total_tokens", "1020".into()),
        ])
    );
}

#[test]
fn filter_state_carries_the_cost_when_priced() {
    let mut vm =
        vm(json!({"filter_state": true, "prices": {"gpt-4o": {"input": 2.5, "output": 10}}}));
    let (o, _) = post(&mut vm, STREAM.as_bytes(), 1 << 20);
    assert_eq!(o.filter_state["usage.cost"], b"0.0027");
}
