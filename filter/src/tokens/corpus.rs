//! The shapes added for one meaning across providers, as the providers' references show
//! them (Gemini `generateContent` / `streamGenerateContent?alt=sse`, Bedrock `Converse`,
//! OpenAI reasoning models, Anthropic prompt caching), each split at every byte boundary
//! and checked against the normalized numbers.

use super::tests::{by, scan_every_split, usage};
use super::*;

/// Gemini `generateContent` with thinking: output is candidates + thoughts.
const GEMINI_JSON: &str = r#"{
  "candidates": [
    {
      "content": {"parts": [{"text": "The sky is blue because of Rayleigh scattering."}], "role": "model"},
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 11,
    "candidatesTokenCount": 150,
    "totalTokenCount": 1361,
    "cachedContentTokenCount": 4,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11}],
    "thoughtsTokenCount": 1200
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "Il0taoSYJ5Cez7IPpZ2T8Qc"
}"#;

/// Gemini `streamGenerateContent?alt=sse`: every chunk repeats `usageMetadata`, the counts
/// growing; lines end in CRLF and no `[DONE]` follows.
const GEMINI_SSE: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 8}]},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1b2\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue.\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 3,\"totalTokenCount\": 31,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1b2\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 7,\"totalTokenCount\": 35,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 8}],\"candidatesTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 7}],\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1b2\"}\r\n\r\n";

/// Bedrock `Converse` with prompt caching: `inputTokens` leaves the cache parts out.
const BEDROCK_JSON: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello! How can I help you today?"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":9,"totalTokens":1521,"cacheReadInputTokens":1000,"cacheWriteInputTokens":500},"metrics":{"latencyMs":618}}"#;

/// OpenAI Responses from a reasoning model: output_tokens already counts the reasoning.
const OPENAI_REASONING_JSON: &str = r#"{"id":"resp_67ccd7eca01881908ff0b5146584e408072912b2993db808","object":"response","created_at":1741477868,"status":"completed","model":"o1-2024-12-17","output":[{"type":"reasoning","id":"rs_1","summary":[]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Here is a bash script...","annotations":[]}]}],"reasoning":{"effort":"medium","summary":null},"usage":{"input_tokens":75,"input_tokens_details":{"cached_tokens":0},"output_tokens":1186,"output_tokens_details":{"reasoning_tokens":1024},"total_tokens":1261}}"#;

const OPENAI_REASONING_SSE: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"o4-mini-2025-04-16\",\"output\":[],\"usage\":null}}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"sequence_number\":20,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"o4-mini-2025-04-16\",\"output\":[{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}],\"usage\":{\"input_tokens\":40,\"input_tokens_details\":{\"cached_tokens\":16},\"output_tokens\":300,\"output_tokens_details\":{\"reasoning_tokens\":256},\"total_tokens\":340}}}\n\n";

/// Chat Completions from a reasoning model.
const OPENAI_CHAT_REASONING_JSON: &str = r#"{"id":"chatcmpl-AB","object":"chat.completion","created":1727,"model":"o3-mini-2025-01-31","choices":[{"index":0,"message":{"role":"assistant","content":"42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":25,"completion_tokens":410,"total_tokens":435,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":384,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

/// Anthropic with a cache write (the prompt caching guide's first call).
const ANTHROPIC_CACHE_WRITE_JSON: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"The text is Pride and Prejudice."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"cache_creation_input_tokens":188086,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":188086,"ephemeral_1h_input_tokens":0},"output_tokens":393,"service_tier":"standard"}}"#;

/// Anthropic stream whose `message_delta` repeats every counter (cumulative): the last wins.
const ANTHROPIC_CACHE_SSE: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-haiku-4-5-20251001\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":2000,\"output_tokens\":57}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

fn check(framing: Framing, body: &str, want: Usage, model: Option<&str>) {
    let (u, m) = scan_every_split(framing, body.as_bytes());
    assert_eq!(u, want);
    assert_eq!(m.as_deref(), model);
}

#[test]
fn gemini_generate_content_output_counts_the_thoughts() {
    let want = by(
        Provider::Gemini,
        usage(Some(11), Some(1350), Some(1361), Some(4)),
        &[(REASONING, 1200)],
    );
    check(Framing::Json, GEMINI_JSON, want, Some("gemini-2.5-flash"));
}

#[test]
fn gemini_stream_the_last_chunk_counts() {
    let want = by(
        Provider::Gemini,
        usage(Some(8), Some(27), Some(35), None),
        &[(REASONING, 20)],
    );
    check(Framing::Sse, GEMINI_SSE, want, Some("gemini-2.0-flash"));
}

#[test]
fn bedrock_converse_input_counts_the_cache() {
    let want = by(
        Provider::Bedrock,
        usage(Some(1512), Some(9), Some(1521), Some(1000)),
        &[(CACHE_WRITE, 500)],
    );
    // no model in the body: it comes from the path (tokens::path)
    check(Framing::Json, BEDROCK_JSON, want, None);
}

#[test]
fn openai_reasoning_is_part_of_output() {
    let want = by(
        Provider::OpenAi,
        usage(Some(75), Some(1186), Some(1261), Some(0)),
        &[(REASONING, 1024)],
    );
    check(
        Framing::Json,
        OPENAI_REASONING_JSON,
        want,
        Some("o1-2024-12-17"),
    );
    let want = by(
        Provider::OpenAi,
        usage(Some(40), Some(300), Some(340), Some(16)),
        &[(REASONING, 256)],
    );
    check(
        Framing::Sse,
        OPENAI_REASONING_SSE,
        want,
        Some("o4-mini-2025-04-16"),
    );
    let want = by(
        Provider::OpenAi,
        usage(Some(25), Some(410), Some(435), Some(0)),
        &[(REASONING, 384)],
    );
    check(
        Framing::Json,
        OPENAI_CHAT_REASONING_JSON,
        want,
        Some("o3-mini-2025-01-31"),
    );
}

#[test]
fn anthropic_input_counts_cache_reads_and_writes() {
    let want = by(
        Provider::Anthropic,
        usage(Some(188_107), Some(393), Some(188_500), Some(0)),
        &[(CACHE_WRITE, 188_086)],
    );
    let model = Some("claude-sonnet-4-5-20250929");
    check(Framing::Json, ANTHROPIC_CACHE_WRITE_JSON, want, model);
    let want = by(
        Provider::Anthropic,
        usage(Some(2310), Some(57), Some(2367), Some(2000)),
        &[(CACHE_WRITE, 300)],
    );
    check(
        Framing::Sse,
        ANTHROPIC_CACHE_SSE,
        want,
        Some("claude-haiku-4-5-20251001"),
    );
}

#[test]
fn every_shape_fits_the_fixed_state_and_prices_exactly() {
    // the same cost whichever provider said it, once normalized: 1000 input of which 200
    // cached and 100 written, 50 output, at 3 / 0.3 / 3.75 / 15 per million
    let p = price::Price {
        input: 3_000_000_000,
        cached_input: 300_000_000,
        cache_write_input: 3_750_000_000,
        output: 15_000_000_000,
    };
    let anthropic = r#"{"type":"message","stop_reason":"end_turn","usage":{"input_tokens":700,"cache_read_input_tokens":200,"cache_creation_input_tokens":100,"output_tokens":50}}"#;
    let bedrock = r#"{"usage":{"inputTokens":700,"cacheReadInputTokens":200,"cacheWriteInputTokens":100,"outputTokens":50}}"#;
    for body in [anthropic, bedrock] {
        let (u, _) = scan_every_split(Framing::Json, body.as_bytes());
        assert_eq!(price::cost(&p, &u), Some(3_285_000), "{body}");
    }
}
