#!/usr/bin/env python3
"""LLM token metering in the real Envoy 1.40 (V8) with dist/usage_filter.wasm (or
$USAGE_FILTER_WASM): a fake LLM upstream (Python standard library, in this process) answers
OpenAI Chat Completions and Anthropic Messages, streamed as SSE events sent one by one with
a delay between them, or as JSON; OpenAI Responses and Gemini streams and Bedrock Converse,
sent at once in pieces cut inside keys and numbers. The official `openai`, `anthropic` and
`google-genai` SDKs (PyPI, in .tools/llm-venv: envoy/install-llm-sdks.sh) are the clients,
through Envoy's listener.

Checked, in one run of four Envoys (llm on with llm.filter_state, llm on with
llm.force_stream_usage, llm off, filter off), each sent the same requests:
- exactly one event per request at the reference collector (counted by subscription key, every
  request having its own key but the 230 of the round-trip measure), none with the filter off;
- with `llm` on, the events carry the exact model and normalized token counts the upstream sent
  (streamed and not, every API; google-genai's SSE and openai's Responses SSE through their
  SDKs), `cost` equal to a Decimal computation, and a gzip-encoded answer is flagged `tokens_encoded`, not read; with
  `llm` off, no event carries a token field;
- force_stream_usage: the openai SDK's default stream (no stream_options) and the same body in
  pieces reach the upstream with `"stream_options":{"include_usage":true},` inserted after the
  opening brace, chunked (content-length removed), the SDK gets the usage chunk and the event the
  tokens; without the key the upstream gets the SDK's bytes and the event has no counts;
  include_usage false, a non-stream chat and bodies over llm.max_request_bytes arrive byte for
  byte, the large ones counted in Envoy's /stats;
- filter_state: a file access log on the listener printing %FILTER_STATE(wasm.usage.*:PLAIN)%
  carries each request's event values (`-` with filter_state off);
- a token budget per key (examples/llm-token-limit/envoy.yaml, Envoy's global rate limit
  filter, a fake gRPC rate limit service): each request charged its total tokens from
  %FILTER_STATE(wasm.usage.total_tokens:PLAIN)% when its stream is done, 429 once the budget is
  spent; on the route's own rate_limits no hits_addend is sent, and the local rate limit filter
  charges no tokens (what docs/events.md says of both);
- the SDKs receive every streamed event before the upstream sends the next (nothing
  buffered), and the lateness of each event (arrival minus the upstream's send time) with the
  filter on is that of the same Envoy with the filter off, within noise.

Envoy's configuration is envoy/envoy.yaml with its ports and plugin configuration replaced
(tests/e2e_lib's EnvoyStack, the fake LLM as its upstream). Usage:
.tools/llm-venv/bin/python envoy/e2e_llm.py [name ...] (make e2e-llm). Ends with
`e2e-llm: N passed, M failed`.
"""
import gzip
import http.client
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import httpx2
import openai
from google import genai
from google.genai import types as genai_types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import runner  # noqa: E402
from e2e_lib.envoy import (EnvoyStack, assert_no_replays, envoy_binary, envoy_config, replace_ports,  # noqa: E402
                           settled)
from e2e_lib.procs import ROOT  # noqa: E402
from e2e_lib.ratelimit import OK, OVER_LIMIT, RateLimitService  # noqa: E402
from e2e_lib.wait import wait_for  # noqa: E402

DELAY = 0.08  # seconds between two streamed events
DELTAS = ["Hel", "lo", ", ", "wor", "ld", "!"]
OPENAI_USAGE = {"prompt_tokens": 37, "completion_tokens": 6, "total_tokens": 43,
                "prompt_tokens_details": {"cached_tokens": 12, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}}
OPENAI_WANT = {"model": "gpt-4o-mini-2024-07-18", "provider": "openai", "input_tokens": 37, "output_tokens": 6,
               "total_tokens": 43, "cached_input_tokens": 12, "reasoning_tokens": 0}
# Anthropic sends 25 uncached, 7 read from and 100 written to the cache: input_tokens counts all three
ANTHROPIC_WANT = {"model": "claude-3-5-sonnet-20241022", "provider": "anthropic", "input_tokens": 132,
                  "output_tokens": 15, "total_tokens": 147, "cached_input_tokens": 7, "cache_write_input_tokens": 100}
GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_WANT = {"model": GEMINI_MODEL, "provider": "gemini", "input_tokens": 8, "output_tokens": 27,
               "total_tokens": 35, "reasoning_tokens": 20}
RESPONSES_MODEL = "o4-mini-2025-04-16"
RESPONSES_USAGE = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 16}, "output_tokens": 300,
                   "output_tokens_details": {"reasoning_tokens": 256}, "total_tokens": 340}
RESPONSES_WANT = {"model": RESPONSES_MODEL, "provider": "openai", "input_tokens": 40, "output_tokens": 300,
                  "total_tokens": 340, "cached_input_tokens": 16, "reasoning_tokens": 256}
BEDROCK_PATH = "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
BEDROCK_WANT = {"model": "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "provider": "bedrock",
                "input_tokens": 1512, "output_tokens": 9, "total_tokens": 1521, "cached_input_tokens": 1000,
                "cache_write_input_tokens": 500}
# per million tokens; strings as well as numbers, as Envoy's YAML loader would pass them
PRICES = {"gpt-4o-mini*": {"input": 0.15, "cached_input": 0.075, "output": 0.6},
          "claude-3-5-sonnet*": {"input": 3, "cached_input": "0.3", "cache_write_input": 3.75, "output": 15},
          "gemini-2.5-flash": {"input": 0.3, "output": 2.5},
          "o4-mini*": {"input": 1.1, "cached_input": "0.275", "output": 4.4},
          "us.anthropic.claude-3-7*": {"input": 3, "cached_input": 0.3, "cache_write_input": 3.75, "output": 15}}
ROUND_TRIP = {}  # tag -> (median, p90) ms of a 32 KB SSE answer
MAX_REQUEST_BYTES = 2048  # llm.max_request_bytes with force_stream_usage
STATE_FIELDS = ["model", "input_tokens", "output_tokens", "total_tokens", "cost"]  # wasm.usage.<field>
SDK_SENT = {}  # request key -> the body the SDK sent
LLM_FIELDS = ["model", "provider", "input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
              "cache_write_input_tokens", "reasoning_tokens", "tokens_truncated", "tokens_encoded"]


def sse(event, data):
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n").encode()


def openai_stream(usage=True):
    """As OpenAI streams a chat: the usage chunk only when the request set
    `stream_options.include_usage` (`usage`)."""
    base = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1700000000,
            "model": OPENAI_WANT["model"], "system_fingerprint": "fp_e2e"}
    yield sse(None, dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}], usage=None))
    for d in DELTAS:
        yield sse(None, dict(base, choices=[{"index": 0, "delta": {"content": d}, "logprobs": None,
                                             "finish_reason": None}], usage=None))
    yield sse(None, dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                         usage=None))
    if usage:
        yield sse(None, dict(base, choices=[], usage=OPENAI_USAGE))
    yield sse(None, "[DONE]")


def openai_json():
    return {"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1700000000,
            "model": OPENAI_WANT["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(DELTAS), "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": OPENAI_USAGE, "system_fingerprint": "fp_e2e"}


def anthropic_stream():
    yield sse("message_start", {"type": "message_start", "message": {
        "id": "msg_e2e", "type": "message", "role": "assistant", "content": [], "model": ANTHROPIC_WANT["model"],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 7,
                  "output_tokens": 1}}})
    yield sse("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
    yield sse("ping", {"type": "ping"})
    for d in DELTAS:
        yield sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": d}})
    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 15}})
    yield sse("message_stop", {"type": "message_stop"})


def anthropic_json():
    return {"id": "msg_e2e", "type": "message", "role": "assistant", "model": ANTHROPIC_WANT["model"],
            "content": [{"type": "text", "text": "".join(DELTAS)}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 15, "cache_creation_input_tokens": 100,
                      "cache_read_input_tokens": 7}}


def gemini_stream():
    """streamGenerateContent?alt=sse as Gemini sends it: CRLF, usageMetadata in every chunk, no [DONE]."""
    for i, (text, usage) in enumerate([
            ("Hel", {"promptTokenCount": 8, "totalTokenCount": 8}),
            ("lo", {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 31,
                    "thoughtsTokenCount": 20}),
            ("!", {"promptTokenCount": 8, "candidatesTokenCount": 7, "totalTokenCount": 35,
                   "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}], "thoughtsTokenCount": 20})]):
        cand = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if i == 2:
            cand["finishReason"] = "STOP"
        chunk = {"candidates": [cand], "usageMetadata": usage, "modelVersion": GEMINI_MODEL, "responseId": "r1"}
        yield ("data: " + json.dumps(chunk) + "\r\n\r\n").encode()


def responses_stream():
    """An OpenAI Responses stream (`client.responses.create(stream=True)`) from a reasoning
    model, as the API sends one: typed events, `usage` only in `response.completed`."""
    resp = {"id": "resp_e2e", "object": "response", "created_at": 1741477868, "status": "in_progress",
            "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
            "model": RESPONSES_MODEL, "output": [], "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": {"effort": "medium", "summary": None}, "store": True, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "usage": None, "user": None, "metadata": {}}
    reasoning = {"id": "rs_e2e", "type": "reasoning", "summary": []}
    text = "".join(DELTAS)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    message = {"id": "msg_e2e", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    done_message = dict(message, status="completed", content=[dict(part, text=text)])
    events = [("response.created", {"response": resp}), ("response.in_progress", {"response": resp}),
              ("response.output_item.added", {"output_index": 0, "item": reasoning}),
              ("response.output_item.done", {"output_index": 0, "item": reasoning}),
              ("response.output_item.added", {"output_index": 1, "item": message}),
              ("response.content_part.added", {"item_id": "msg_e2e", "output_index": 1, "content_index": 0,
                                               "part": part})]
    events += [("response.output_text.delta", {"item_id": "msg_e2e", "output_index": 1, "content_index": 0,
                                               "delta": d, "logprobs": []}) for d in DELTAS]
    events += [("response.output_text.done", {"item_id": "msg_e2e", "output_index": 1, "content_index": 0,
                                              "text": text, "logprobs": []}),
               ("response.content_part.done", {"item_id": "msg_e2e", "output_index": 1, "content_index": 0,
                                               "part": dict(part, text=text)}),
               ("response.output_item.done", {"output_index": 1, "item": done_message}),
               ("response.completed", {"response": dict(resp, status="completed", output=[reasoning, done_message],
                                                        usage=RESPONSES_USAGE)})]
    for n, (kind, data) in enumerate(events):
        yield sse(kind, dict({"type": kind, "sequence_number": n}, **data))


def bedrock_json():
    return {"output": {"message": {"role": "assistant", "content": [{"text": "".join(DELTAS)}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 1521, "cacheReadInputTokens": 1000,
                      "cacheWriteInputTokens": 500},
            "metrics": {"latencyMs": 618}}


def awkward(data, sizes=(1, 7, 2, 13, 3)):
    """`data` cut at awkward places: inside keys, numbers and the CRLF."""
    i, n = 0, 0
    while i < len(data):
        step = sizes[n % len(sizes)]
        yield data[i:i + step]
        i, n = i + step, n + 1


FAST_SSE = b"".join(list(openai_stream())[1:2] * 130) + b"".join(list(openai_stream())[-2:])


class FakeLLM(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each event leaves when written (no 40 ms delayed-ACK wait)
    sent = {}  # request key -> send times (monotonic) of each streamed event
    received = {}  # request key -> (content-length header or None, the body's bytes as received)
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return raw
                raw += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_POST(self):
        raw = self.read_body()
        with self.lock:
            self.received[self.headers.get("x-subscription-key", "")] = (self.headers.get("content-length"), raw)
        body = json.loads(raw or b"{}")  # a body cut short or made longer than its length fails here
        openai_api = self.path.startswith("/v1/chat/completions")
        key = self.headers.get("x-subscription-key", "")
        if ":streamGenerateContent" in self.path or self.path.endswith("/converse") or \
                self.path.startswith("/v1/responses"):
            # sent at once in awkward pieces (keys, numbers and line ends cut)
            gemini = ":streamGenerateContent" in self.path
            if self.path.startswith("/v1/responses"):
                data = b"".join(responses_stream())
            else:
                data = b"".join(gemini_stream()) if gemini else json.dumps(bedrock_json()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json" if self.path.endswith("/converse")
                             else "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in awkward(data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            times = []
            with self.lock:
                self.sent[key] = times  # filled as events go (the client may finish first)
            usage = (body.get("stream_options") or {}).get("include_usage") is True
            for i, event in enumerate(openai_stream(usage) if openai_api else anthropic_stream()):
                if i:
                    time.sleep(DELAY)  # pace: the upstream streams an event every DELAY
                times.append(time.monotonic())
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if self.headers.get("x-fake-fast"):
            # a 32 KB streamed chat completion at once, in 256-byte chunks: the filter's cost
            data = FAST_SSE
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 256):
                part = data[i:i + 256]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        data = json.dumps(openai_json() if openai_api else anthropic_json()).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if self.headers.get("x-fake-gzip"):
            data = gzip.compress(data)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LlmStack(EnvoyStack):
    """The library's Envoy stack with the fake LLM (in this process) as the upstream."""

    def start_upstream(self):
        self.ports["upstream"] = FAKE.server_address[1]


def filter_value(enabled, llm, force=False, filter_state=False):
    value = {"enabled": enabled, "sinks": ["http"],
             "http": {"cluster": "collector", "format": "ndjson", "flush_interval_ms": 100,
                      "headers": {"authorization": "${COLLECTOR_TOKEN}"}},
             "llm": {"enabled": llm, "paths": ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1beta/models/",
                                       "/v1/models/", "/model/"],
                     "prices": PRICES, "currency": "USD", "filter_state": filter_state}}
    if force:
        value["llm"].update(force_stream_usage=True, max_request_bytes=MAX_REQUEST_BYTES)
    return value


def with_access_log(text, path):
    """Envoy's configuration with a file access log on the listener printing each request's key
    and the filter state `llm.filter_state` writes, `|`-separated (`-` for what is not set)."""
    line = "|".join(["%REQ(X-SUBSCRIPTION-KEY)%"] + [f"%FILTER_STATE(wasm.usage.{f}:PLAIN)%" for f in STATE_FIELDS])
    entry = ["          - name: envoy.access_loggers.file",
             "            typed_config:",
             '              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
             f"              path: {path}",
             "              log_format:",
             "                text_format_source:",
             f'                  inline_string: "{line}\\n"']
    marker = "          access_log:\n"
    assert text.count(marker) == 1, "envoy.yaml: the listener's access_log list moved"
    return text.replace(marker, marker + "\n".join(entry) + "\n")


def sdk_sent(key):
    """httpx2's request hook (the SDK's HTTP client): keeps the body the SDK sent under the request's key."""
    def hook(request):
        SDK_SENT[key] = request.content
    return httpx2.Client(event_hooks={"request": [hook]})


def stream_openai(st, key, stream_options=None, content="hi", want_usage=True):
    """One streamed chat through the official SDK; `stream_options` None is the SDK's default
    call (no stream_options). Whether the SDK received the usage chunk must be `want_usage`."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{st.ports['listener']}/v1", api_key="sk-e2e",
                           default_headers={"x-subscription-key": key}, max_retries=0, http_client=sdk_sent(key))
    t0 = time.monotonic()
    arrivals, text, usage = [], "", None
    extra = {} if stream_options is None else {"stream_options": stream_options}
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}],
                                            stream=True, **extra)
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == "".join(DELTAS), text
    if want_usage:
        assert usage and usage.prompt_tokens == 37 and usage.completion_tokens == 6, (key, usage)
    else:
        assert usage is None, (key, usage)
    return t0, arrivals


def stream_anthropic(st, key):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{st.ports['listener']}", api_key="sk-ant-e2e",
                                 default_headers={"x-subscription-key": key}, max_retries=0)
    t0 = time.monotonic()
    arrivals, text, kinds = [], "", []
    stream = client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=64, stream=True,
                                    messages=[{"role": "user", "content": "hi"}])
    for event in stream:
        arrivals.append(time.monotonic())
        kinds.append(event.type)
        if event.type == "content_block_delta":
            text += event.delta.text
    assert text == "".join(DELTAS), text
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    return t0, arrivals


def stream_genai(st, key):
    """Gemini's streamGenerateContent?alt=sse through the official `google-genai` SDK (3.x
    calls `/v1/models/…`, hence that prefix in llm.paths): the text and the last
    usage_metadata it yielded (its own parse of what passed through Envoy)."""
    client = genai.Client(api_key="AIza-e2e", http_options=genai_types.HttpOptions(
        base_url=f"http://127.0.0.1:{st.ports['listener']}", headers={"x-subscription-key": key}))
    text, usage = "", None
    for chunk in client.models.generate_content_stream(model=GEMINI_MODEL, contents="hi"):
        text += chunk.text or ""
        usage = chunk.usage_metadata or usage
    return {"text": text, "prompt": usage.prompt_token_count, "candidates": usage.candidates_token_count,
            "thoughts": usage.thoughts_token_count}


def stream_responses(st, key):
    """An OpenAI Responses stream through the official `openai` SDK
    (`client.responses.create(stream=True)`): the text of its output_text deltas, the event
    types, and the usage of `response.completed` as the SDK parsed them."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{st.ports['listener']}/v1", api_key="sk-e2e",
                           default_headers={"x-subscription-key": key}, max_retries=0, http_client=sdk_sent(key))
    text, kinds, usage = "", [], None
    for event in client.responses.create(model="o4-mini", input="hi", stream=True):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            u = event.response.usage
            usage = (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens,
                     u.output_tokens_details.reasoning_tokens, u.total_tokens)
    return {"text": text, "first": kinds[0], "last": kinds[-1], "usage": usage}


def lateness(key, arrivals, skipped=()):
    """Per streamed event: arrival at the SDK minus the upstream's send time, in ms, and the
    events that arrived only after the upstream sent the next (held back, or a starved client).
    `skipped`: indexes of events the SDK does not yield (Anthropic's `ping`; OpenAI's `[DONE]`
    is last)."""
    sent = FakeLLM.sent[key]
    pairs = [(t, sent[i + 1] if i + 1 < len(sent) else None) for i, t in enumerate(sent) if i not in skipped]
    assert len(arrivals) in (len(pairs), len(pairs) - 1), (len(arrivals), len(pairs))
    late, after = [], []
    for i, (at, (t, nxt)) in enumerate(zip(arrivals, pairs)):
        late.append((at - t) * 1000)
        if nxt is not None and at >= nxt:
            after.append(i)
    return late, after


def timed_stream(key, stream, skipped=()):
    """`stream()` (one SDK stream with `key`) and its events' lateness; every event must arrive
    before the upstream sends the next. A stream whose event came later is streamed once more
    before that fails: a filter holding events back is late in both, a loaded machine (the
    Python client starved for a DELAY) rarely twice. Returns the lateness and how many
    requests were made."""
    for attempt in (1, 2):
        late, after = lateness(key, stream()[1], skipped)
        if not after:
            return late, attempt
        assert attempt == 1, f"{key}: events {after} arrived after the upstream sent the next, twice"
        print(f"  {key}: events {after} arrived after the upstream sent the next; streamed again", flush=True)


def tokens(e):
    return {k: e[k] for k in LLM_FIELDS if k in e}


def request_ms(st, sent, n=200):
    """Median and 90th percentile of a 32 KB SSE answer's round trip through Envoy, in ms (the
    upstream sends it at once): the filter's cost per streamed response, with Python's noise."""
    times = []
    for i in range(n + 30):
        t = time.perf_counter()
        status, body = st.request("POST", "/v1/chat/completions", key="fast", body=b"{}",
                                  headers={"x-fake-fast": "1", "content-type": "application/json"})
        sent["fast"] += 1
        if i >= 30:
            times.append((time.perf_counter() - t) * 1000)
        assert status == 200 and len(body) == len(FAST_SSE), (status, len(body))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


# tag -> filter enabled, llm.enabled, llm.force_stream_usage, llm.filter_state
CONFIGS = {"on": (True, True, False, True), "force": (True, True, True, False), "meter": (True, False, False, False),
           "off": (False, False, False, False)}
NAMES = {"on": "llm on", "force": "force_stream_usage on", "meter": "llm off", "off": "filter off"}
RESULTS = {}  # tag -> Run


def pieces(body, cut):
    """`body` in pieces cut at `cut`, a pause before each but the first: Envoy gets the request
    body in several reads, so a held one is buffered across several `on_request_body` calls."""
    for i, (a, b) in enumerate(zip([0] + cut, cut + [len(body)])):
        if i:
            time.sleep(0.05)  # pace: the client sends its body slowly, in pieces
        yield body[a:b]


def raw_stream(st, key, body, cut, chunked):
    """A chat stream POSTed by hand, its body in pieces (with content-length, or chunked without):
    the SSE events the client got, as JSON (`[DONE]` left out)."""
    conn = http.client.HTTPConnection("127.0.0.1", st.ports["listener"], timeout=30)
    SDK_SENT[key] = body
    headers = {"content-type": "application/json", "x-subscription-key": key}
    if not chunked:
        headers["content-length"] = str(len(body))
    try:
        conn.request("POST", "/v1/chat/completions", body=pieces(body, cut), headers=headers, encode_chunked=chunked)
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    assert r.status == 200, (key, r.status, data[:200])
    events = [l[6:] for l in data.decode().split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]", (key, events[-3:])
    return [json.loads(e) for e in events[:-1]]


def chat_body(content="hi", **extra):
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "stream": True,
                       **extra}).encode()


class Run:
    """One Envoy (`tag` of CONFIGS), sent the same requests: the round-trip measure, both SDKs
    streaming three times, the openai SDK streaming twice by default (no stream_options), both
    SDKs without streaming, Gemini and Bedrock, a gzip-encoded answer; with force_stream_usage
    also the requests it must leave alone or buffer across reads. What each request's key was
    sent (`sent`), the per-event lateness of the streams, what the collector got once the filter
    holds nothing more, and Envoy's access log lines by key."""

    def __init__(self, tag):
        enabled, llm, force, state = CONFIGS[tag]
        self.tag, self.late, self.default_late, self.sent = tag, [], [], Counter()
        self.streams = {}  # key -> the SSE events a hand-made request got
        self.sdk = {}  # key -> what google-genai's or openai's Responses stream yielded
        fv = filter_value(enabled, llm, force, state)
        with LlmStack(config_text=lambda st, ports: with_access_log(envoy_config(ports, fv),
                                                                     st.path("access.log"))) as st:
            ROUND_TRIP[tag] = request_ms(st, self.sent)
            for i in range(3):
                k = f"{tag}-openai-{i}"
                late, n = timed_stream(k, lambda: stream_openai(st, k, {"include_usage": True}))
                self.late += late
                self.sent[k] += n
                k = f"{tag}-anthropic-{i}"
                late, n = timed_stream(k, lambda: stream_anthropic(st, k), skipped={2})
                self.late += late
                self.sent[k] += n
            for i in range(2):
                # the SDK's default call: a usage chunk only when force_stream_usage added the option
                k = f"{tag}-default-{i}"
                late, n = timed_stream(k, lambda: stream_openai(st, k, want_usage=force))
                self.default_late += late
                self.sent[k] += n
            oa = openai.OpenAI(base_url=f"http://127.0.0.1:{st.ports['listener']}/v1", api_key="sk-e2e",
                               default_headers={"x-subscription-key": f"{tag}-openai-json"}, max_retries=0,
                               http_client=sdk_sent(f"{tag}-openai-json"))
            r = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert r.usage.total_tokens == 43
            self.sent[f"{tag}-openai-json"] += 1
            an = anthropic.Anthropic(base_url=f"http://127.0.0.1:{st.ports['listener']}", api_key="sk-ant-e2e",
                                     default_headers={"x-subscription-key": f"{tag}-anthropic-json"}, max_retries=0)
            m = an.messages.create(model="claude-3-5-sonnet-latest", max_tokens=64,
                                   messages=[{"role": "user", "content": "hi"}])
            assert m.usage.output_tokens == 15
            self.sent[f"{tag}-anthropic-json"] += 1
            for name, path in (("gemini", f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent?alt=sse"),
                               ("bedrock", BEDROCK_PATH)):
                status, body = st.request("POST", path, key=f"{tag}-{name}", body=b"{}",
                                          headers={"content-type": "application/json"})
                assert status == 200 and b"Hel" in body, (name, status, body[:80])
                self.sent[f"{tag}-{name}"] += 1
            # the official SDKs of the newer shapes, the upstream cutting its stream awkwardly
            self.sdk[f"{tag}-genai-sdk"] = stream_genai(st, f"{tag}-genai-sdk")
            self.sent[f"{tag}-genai-sdk"] += 1
            self.sdk[f"{tag}-responses-sdk"] = stream_responses(st, f"{tag}-responses-sdk")
            self.sent[f"{tag}-responses-sdk"] += 1
            status, body = st.request("POST", "/v1/chat/completions", key=f"{tag}-gzip", body=b"{}",
                                      headers={"x-fake-gzip": "1", "content-type": "application/json"})
            assert status == 200 and body[:2] == b"\x1f\x8b", (status, body[:20])
            self.sent[f"{tag}-gzip"] += 1
            if force:
                self.force_requests(st)
            if enabled:
                # every request captured (more than one event for a request is for
                # test_exactly_one_event_per_request to name, not a timeout here) and nothing
                # held: nothing more can arrive
                n = sum(self.sent.values())
                wait_for(lambda: st.metrics().get("events_captured", 0) >= n, 30, f"{n} events captured")
                self.metrics = settled(st)
                self.unmodified = st.stat("wasmcustom.usage_filter.llm_requests_unmodified")
            self.events = st.collector_events()
            self.attempts = st.collector_attempts()
            self.collector_stats = st.collector_stats()
            self.filter_log = st.filter_log()
            # Envoy writes its file access log a second after at the latest (file_flush_interval)
            path, n = st.path("access.log"), sum(self.sent.values())
            self.access_log = wait_for(
                lambda: (lambda ls: ls if len(ls) == n else None)(
                    open(path).read().splitlines() if os.path.exists(path) else []),
                10, f"{n} access log lines")
        self.by_key = {e["subscription_key"]: e for e in self.events}

    def force_requests(self, st):
        """What force_stream_usage must leave alone, and bodies that reach it in pieces."""
        tag = self.tag
        stream_openai(st, f"{tag}-false", {"include_usage": False}, want_usage=False)
        stream_openai(st, f"{tag}-big", content="x" * (MAX_REQUEST_BYTES + 2000), want_usage=False)
        small = chat_body()
        big = chat_body("y" * (MAX_REQUEST_BYTES + 1000))
        for key, body, cut, chunked in ((f"{tag}-split", small, [5, 40], False),
                                        (f"{tag}-chunked", small, [1, 30, 31], True),
                                        (f"{tag}-split-big", big, [100, MAX_REQUEST_BYTES + 500], False),
                                        (f"{tag}-chunked-big", big, [MAX_REQUEST_BYTES - 10, MAX_REQUEST_BYTES + 900],
                                         True)):
            self.streams[key] = raw_stream(st, key, body, cut, chunked)
        for k in ("false", "big", "split", "chunked", "split-big", "chunked-big"):
            self.sent[f"{tag}-{k}"] += 1


def result(tag):
    if tag not in RESULTS:
        RESULTS[tag] = Run(tag)
    return RESULTS[tag]


def reference_cost(want):
    """The cost as Decimal arithmetic says, from the same prices: what the filter's integers must equal."""
    model = want["model"]
    name = model if model in PRICES else max((p for p in PRICES if p.endswith("*") and model.startswith(p[:-1])),
                                             key=len)
    p = {k: Decimal(str(v)) for k, v in PRICES[name].items()}
    cached, write = want.get("cached_input_tokens", 0), want.get("cache_write_input_tokens", 0)
    cost = ((want["input_tokens"] - cached - write) * p["input"] + cached * p.get("cached_input", p["input"])
            + write * p.get("cache_write_input", p["input"]) + want["output_tokens"] * p["output"]) / Decimal(10**6)
    return cost.quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)


def test_exact_tokens_with_llm_on():
    for tag in ("on", "force"):
        r = result(tag)
        for api, want in (("openai", OPENAI_WANT), ("anthropic", ANTHROPIC_WANT)):
            for k in [f"{tag}-{api}-{i}" for i in range(3)] + [f"{tag}-{api}-json"]:
                assert tokens(r.by_key[k]) == want, (k, tokens(r.by_key[k]))
        for name, want in (("gemini", GEMINI_WANT), ("bedrock", BEDROCK_WANT)):
            assert tokens(r.by_key[f"{tag}-{name}"]) == want, (name, tokens(r.by_key[f"{tag}-{name}"]))
        assert tokens(r.by_key[f"{tag}-gzip"]) == {"tokens_encoded": True}, r.by_key[f"{tag}-gzip"]


def test_official_sdks_gemini_sse_and_responses_sse():
    """google-genai's generate_content_stream (streamGenerateContent?alt=sse) and openai's
    responses.create(stream=True), the upstream sending each in pieces of 1-13 bytes: each SDK
    gets the whole text and the usage the upstream sent (through Envoy, with the filter on or
    off), and with llm on the event has the exact normalized numbers (Gemini: output =
    candidates 7 + thoughts 20; Responses: reasoning 256 within output 300, cached 16 within
    input 40) and a cost equal to the Decimal reference; with llm off, none of them."""
    for tag in CONFIGS:
        r = result(tag)
        g, o = r.sdk[f"{tag}-genai-sdk"], r.sdk[f"{tag}-responses-sdk"]
        assert g == {"text": "Hello!", "prompt": 8, "candidates": 7, "thoughts": 20}, (tag, g)
        assert o == {"text": "".join(DELTAS), "first": "response.created", "last": "response.completed",
                     "usage": (40, 16, 300, 256, 340)}, (tag, o)
        assert json.loads(SDK_SENT[f"{tag}-responses-sdk"])["stream"] is True
    for tag in ("on", "force"):
        r = result(tag)
        for key, want in ((f"{tag}-genai-sdk", GEMINI_WANT), (f"{tag}-responses-sdk", RESPONSES_WANT)):
            e = r.by_key[key]
            assert tokens(e) == want, (key, tokens(e))
            assert Decimal(repr(e["cost"])) == reference_cost(want) and e["currency"] == "USD", \
                (key, e.get("cost"), reference_cost(want))
    for key in ("meter-genai-sdk", "meter-responses-sdk"):
        assert tokens(result("meter").by_key[key]) == {}, result("meter").by_key[key]


COUNTS = ("input_tokens", "output_tokens", "total_tokens")
ADDED = b'"stream_options":{"include_usage":true},'


def received(key):
    """What the fake upstream got for `key`: its content-length header (None when chunked), the
    body's bytes, and the body parsed."""
    length, raw = FakeLLM.received[key]
    assert length is None or int(length) == len(raw), (key, length, len(raw))
    return length, raw, json.loads(raw)


def test_force_stream_usage_adds_include_usage():
    """force_stream_usage on: the openai SDK's default streaming call (no stream_options), and
    the same body reaching Envoy in pieces (with content-length, or chunked), arrive upstream
    with `"stream_options":{"include_usage":true},` inserted after the opening brace, every other
    byte as sent, chunked (the filter removed content-length: it cannot hold Envoy's headers);
    the client gets the usage chunk and the event carries the exact tokens."""
    r = result("force")
    for k in ("force-default-0", "force-default-1", "force-split", "force-chunked"):
        length, raw, body = received(k)
        sent = SDK_SENT[k]
        assert "stream_options" not in json.loads(sent), (k, sent)
        assert raw == sent[:1] + ADDED + sent[1:], (k, sent, raw)
        assert body["stream_options"] == {"include_usage": True} and body["stream"] is True, (k, body)
        assert length is None, (k, length)
        assert tokens(r.by_key[k]) == OPENAI_WANT, (k, tokens(r.by_key[k]))
    for k in ("force-split", "force-chunked"):
        assert r.streams[k][-1]["usage"] == OPENAI_USAGE and r.streams[k][-1]["choices"] == [], r.streams[k][-1]


def test_force_stream_usage_leaves_the_rest_alone():
    """force_stream_usage on: a client's own include_usage false, a non-stream chat, and bodies
    over llm.max_request_bytes (in one read or in pieces crossing it) reach the upstream byte
    for byte (chunked: content-length goes before the body is seen); the large ones are counted in usage_filter.llm_requests_unmodified (Envoy's
    /stats), and none of these streams is metered with tokens."""
    r = result("force")
    for k in ("force-false", "force-big", "force-split-big", "force-chunked-big", "force-openai-json"):
        length, raw, body = received(k)
        assert raw == SDK_SENT[k], (k, SDK_SENT[k][:200], raw[:200])
        assert length is None, (k, length)  # removed before the body was seen: chunked upstream
    # not a chat completion: not buffered, its content-length kept
    assert received("force-anthropic-json")[0] is not None
    assert received("force-false")[2]["stream_options"] == {"include_usage": False}
    for k in ("force-false", "force-big", "force-split-big", "force-chunked-big"):
        assert not any(f in r.by_key[k] for f in COUNTS), (k, tokens(r.by_key[k]))
    for k in ("force-split-big", "force-chunked-big"):
        assert all(e.get("usage") is None for e in r.streams[k]), (k, r.streams[k][-1])
    assert tokens(r.by_key["force-openai-json"]) == OPENAI_WANT
    assert r.unmodified == 3 and r.metrics["llm_requests_unmodified"] == 3, (r.unmodified, r.metrics)


def test_without_force_the_default_stream_is_unchanged_and_has_no_tokens():
    r = result("on")
    for k in ("on-default-0", "on-default-1"):
        _, raw, body = received(k)
        assert raw == SDK_SENT[k] and "stream_options" not in body, (k, raw)
        assert not any(f in r.by_key[k] for f in COUNTS), (k, tokens(r.by_key[k]))
    assert r.unmodified == 0, r.unmodified


def state_fields(e):
    """An event's llm fields as the access log prints its filter state (cost as a Decimal)."""
    out = []
    for f in STATE_FIELDS:
        v = e.get(f)
        out.append("-" if v is None else Decimal(repr(v)) if f == "cost" else str(v))
    return tuple(out)


def test_filter_state_in_the_access_log():
    """Envoy's file access log with %FILTER_STATE(wasm.usage.<field>:PLAIN)%: with
    llm.filter_state on, each request's line carries its event's model, counts and cost; with it
    off (or llm off, or the filter off), `-` for each."""
    for tag in CONFIGS:
        r = result(tag)
        state = CONFIGS[tag][3]
        got = Counter()
        for line in r.access_log:
            key, *fields = line.split("|")
            got[(key, *(Decimal(v) if f == "cost" and v != "-" else v for f, v in zip(STATE_FIELDS, fields)))] += 1
        want = Counter()
        for key, n in r.sent.items():
            want[(key, *(state_fields(r.by_key[key]) if state else ("-",) * len(STATE_FIELDS)))] += n
        assert got == want, f"{NAMES[tag]}: access log lines differ from the events: more {dict(got - want)}, " \
                            f"fewer {dict(want - got)}"
    by_key = {l.split("|")[0]: l for l in result("on").access_log}
    line = by_key["on-openai-0"].split("|")
    assert line[:5] == ["on-openai-0", OPENAI_WANT["model"], "37", "6", "43"], line
    assert Decimal(line[5]) == reference_cost(OPENAI_WANT), line
    assert by_key["on-bedrock"].split("|")[2:5] == ["1512", "9", "1521"], by_key["on-bedrock"]


def test_cost_equals_the_decimal_reference():
    r = result("on")
    for key, want in (("on-openai-json", OPENAI_WANT), ("on-anthropic-0", ANTHROPIC_WANT),
                      ("on-gemini", GEMINI_WANT), ("on-bedrock", BEDROCK_WANT)):
        e = r.by_key[key]
        # json.loads made the number a float; its shortest repr is the filter's text (at most 9
        # decimals), so the Decimal of it is exact
        got = Decimal(repr(e["cost"]))
        assert got == reference_cost(want) and e["currency"] == "USD", (key, got, reference_cost(want))
    assert r.metrics.get("llm_unpriced", 0) == 0, r.metrics


def test_no_token_fields_with_llm_off():
    r = result("meter")
    with_tokens = [e for e in r.events if tokens(e)]
    assert not with_tokens, f"llm off, yet {len(with_tokens)} of {len(r.events)} events carry token fields, " \
                            f"e.g. {with_tokens[:2]}"
    assert any("configured: enabled=true" in l for l in r.filter_log), r.filter_log[:3]


def test_no_events_with_the_filter_off():
    """The filter loaded with enabled false: not one event, not one batch attempt, after every
    request had its answer (with the filter on, the first batch leaves 100 ms after the first
    of these requests, seconds before the last)."""
    r = result("off")
    assert r.events == [] and r.attempts == [], \
        f"the filter is off, yet the collector got {len(r.events)} events in {len(r.attempts)} attempts"
    assert any("configured: enabled=false" in l for l in r.filter_log), r.filter_log[:3]


def test_exactly_one_event_per_request():
    """With the filter on (llm on and off), the collector holds one event per request: counted
    per key (each request has its own, but the round-trip measure's), ids unique, none sent
    twice (the collector's dedupe would hide an event sent again under its id), and the filter
    captured as many as there were requests."""
    for tag in ("on", "force", "meter"):
        r = result(tag)
        got = Counter(e["subscription_key"] for e in r.events)
        assert got == r.sent, f"{NAMES[tag]}: events per key differ from requests per key: " \
                              f"more {dict(got - r.sent)}, fewer {dict(r.sent - got)}"
        assert len({e["id"] for e in r.events}) == len(r.events), f"{NAMES[tag]}: an event id twice"
        assert_no_replays(r.collector_stats, f"{NAMES[tag]}: the collector")
        assert r.metrics["events_captured"] == sum(r.sent.values()), (tag, r.metrics)


def test_streams_are_not_delayed():
    late = {NAMES[t]: result(t).late for t in ("on", "force", "meter", "off")}
    med = {n: statistics.median(v) for n, v in late.items()}
    worst = {n: max(v) for n, v in late.items()}
    print("  per streamed event, arrival at the SDK minus the upstream's send (ms): "
          + "; ".join(f"{n} median {med[n]:.2f} max {worst[n]:.2f}" for n in med), flush=True)
    # Noise on loopback is a fraction of a millisecond; a held-back event would be late by
    # DELAY (80 ms) or more, and the per-event check (timed_stream) already refuses that.
    assert med["llm on"] - med["filter off"] < 5, med
    assert med["force_stream_usage on"] - med["filter off"] < 5, med


TOKEN_LIMIT = os.path.join(ROOT, "examples", "llm-token-limit", "envoy.yaml")
BUDGET = 100  # tokens per key at the fake rate limit service


def route_level(text):
    """The example with its two rate_limits moved from the rate limit filter's per-route
    configuration to the route's own `rate_limits` (RouteAction), the older place."""
    head, rest = text.split("                typed_per_filter_config:\n", 1)
    block, tail = rest.split("          http_filters:\n", 1)
    limits = block[block.index("                    rate_limits:"):].replace("\n  ", "\n")[2:]
    head = head.replace("                route: { cluster: upstream }\n",
                        "                route:\n                  cluster: upstream\n" + limits)
    assert "rate_limits:" in head, "examples/llm-token-limit/envoy.yaml: the route moved"
    return head + "          http_filters:\n" + tail


def token_limit_run(tag="limit"):
    """examples/llm-token-limit/envoy.yaml as it is (its ports replaced; with `tag`
    "route-level", its rate limits on the route instead), with the fake rate limit service
    (budget 100 tokens per key): requests one after the other, each request's stream-done call
    awaited at the service before the next is sent. Returns what each request got (key,
    status), the service's calls, and the events by key."""
    if tag in RESULTS:
        return RESULTS[tag]
    rls = RateLimitService(BUDGET)

    def config(st, ports):
        with open(TOKEN_LIMIT) as f:
            text = replace_ports(f.read(), ports)
        if tag == "route-level":
            text = route_level(text)
        assert text.count("port_value: 8081 ") == 1
        return text.replace("port_value: 8081 ", f"port_value: {rls.port} ")

    def calls(key, done):
        """The calls for `key`: at the request (hits_addend 0) or, `done`, at the stream's end."""
        return [c for c in rls.calls if c["descriptors"][0]["entries"] == [("subscription_key", key)]
                and (c["descriptors"][0]["hits_addend"] != 0) == done]

    got = []
    try:
        with LlmStack(config_text=config) as st:
            def send(key, path, body, headers=(), charged=True):
                status, data = st.request("POST", path, key=key, body=body,
                                          headers=dict({"content-type": "application/json"}, **dict(headers)))
                got.append((key, status))
                if status == 200 and charged:
                    n = len([k for k, s in got if k == key and s == 200])
                    wait_for(lambda: len(calls(key, True)) >= n, 10, f"{key}: the stream-done call")
                return status
            chat = json.dumps({"model": "gpt-4o-mini", "messages": []}).encode()
            if tag == "route-level":
                # no hits_addend reaches the service here: its two calls are told apart by order
                send("limit-a", "/v1/chat/completions", chat, charged=False)
                wait_for(lambda: len(rls.calls) >= 2, 10, "the stream-done call")
            else:
                for _ in range(4):  # 43 tokens each: 0, 43, 86 admitted (<= 100), 129 refused
                    send("limit-a", "/v1/chat/completions", chat)
                send("limit-b", "/v1/chat/completions", chat)  # another key: its own budget
                stream = json.dumps({"model": "claude-3-5-sonnet-latest", "stream": True, "messages": []}).encode()
                for _ in range(2):  # a streamed answer of 147 tokens: admitted at 0, refused at 147
                    send("limit-c", "/v1/messages", stream)
                # an answer without token counts (gzip, not read): no stream-done call; the next
                # request's calls leave the same worker's connection to the service after it
                send("limit-d", "/v1/chat/completions", b"{}", {"x-fake-gzip": "1"}, charged=False)
                send("limit-e", "/v1/chat/completions", chat)
            settled(st, len(got))
            events = {}
            for e in st.collector_events():
                events.setdefault(e["subscription_key"], []).append(e)
            stats = {k: st.stat(f"cluster.upstream.ratelimit.{k}") for k in ("ok", "over_limit", "error")}
    finally:
        rls.close()
    RESULTS[tag] = {"got": got, "calls": list(rls.calls), "events": events, "stats": stats,
                    "checks": lambda key: calls(key, False), "done_calls": lambda key: calls(key, True)}
    return RESULTS[tag]


def test_token_limit_charges_tokens_at_stream_done():
    """examples/llm-token-limit/envoy.yaml in Envoy 1.40 with a fake rate limit service: each
    admitted request is checked at its start with hits_addend 0 and charged when its stream is
    done with hits_addend = its total tokens read from %FILTER_STATE(wasm.usage.total_tokens)%
    (43 for the chat JSON, 147 for Anthropic's stream), equal to its event's total_tokens; a key
    whose charges passed its budget of 100 is refused with 429 (after 3 x 43, after 1 x 147),
    the refused request metered as an event with status 429 and never charged; another key is
    not affected; an answer without a token count makes no stream-done call."""
    r = token_limit_run()
    assert r["got"] == [("limit-a", 200)] * 3 + [("limit-a", 429), ("limit-b", 200), ("limit-c", 200),
                                                 ("limit-c", 429), ("limit-d", 200), ("limit-e", 200)], r["got"]
    for call in r["calls"]:
        assert call["domain"] == "llm_tokens" and len(call["descriptors"]) == 1, call
    for key, admitted, tokens_each in (("limit-a", 3, 43), ("limit-b", 1, 43), ("limit-c", 1, 147),
                                       ("limit-e", 1, 43)):
        checks = r["checks"](key)
        done = r["done_calls"](key)
        events = r["events"][key]
        assert len(checks) == len(events), (key, checks, events)  # every request checked, refused or not
        assert [c["descriptors"][0]["hits_addend"] for c in done] == [tokens_each] * admitted, (key, done)
        assert sorted(e["total_tokens"] for e in events if e["status_code"] == 200) == [tokens_each] * admitted
        assert all(c["answer"] == OK for c in done[:-1]), (key, done)
    assert [e["status_code"] for e in r["events"]["limit-a"]].count(429) == 1, r["events"]["limit-a"]
    assert "total_tokens" not in [e for e in r["events"]["limit-a"] if e["status_code"] == 429][0]
    assert [c["answer"] for c in r["done_calls"]("limit-a")] == [OK, OK, OVER_LIMIT]
    assert r["done_calls"]("limit-d") == [] and r["events"]["limit-d"][0].get("tokens_encoded") is True
    # Envoy's counters of the request-time calls (the stream-done ones are not counted)
    assert r["stats"] == {"ok": 7, "over_limit": 2, "error": None}, r["stats"]


def test_token_limit_on_the_route_itself_gets_no_hits_addend():
    """The same two rate limits on the route's own `rate_limits` (RouteAction) rather than in
    the rate limit filter's per-route configuration: Envoy 1.40 accepts them and makes both
    calls (at the request and at the stream's end), but sends no hits_addend in either, the
    number 0 as well as the format: each call would count 1 (what docs/events.md says)."""
    r = token_limit_run("route-level")
    assert r["got"] == [("limit-a", 200)], r["got"]
    assert len(r["calls"]) == 2, r["calls"]
    for c in r["calls"]:
        assert c["descriptors"] == [{"entries": [("subscription_key", "limit-a")], "hits_addend": None}] \
            and c["hits_addend"] == 0, c
    assert r["events"]["limit-a"][0]["total_tokens"] == 43


LOCAL_LIMIT = """          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: tokens
              token_bucket: {max_tokens: 100000, tokens_per_fill: 100000, fill_interval: 3600s}
              filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
              filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}}
              always_consume_default_token_bucket: false
              descriptors:
              - entries: [{key: subscription_key, value: local-a}]
                token_bucket: {max_tokens: 100, tokens_per_fill: 100, fill_interval: 3600s}
              rate_limits:
              - actions:
                - request_headers: {header_name: x-subscription-key, descriptor_key: subscription_key}
                %s
"""


def local_limit_statuses(policy):
    """The example with Envoy's local rate limit filter instead of the global one (a bucket of
    100 for the key local-a, the policy's `hits_addend` and `apply_on_stream_done` given):
    the statuses of five chat requests (43 tokens each) of that key, one after the other."""
    def config(st, ports):
        with open(TOKEN_LIMIT) as f:
            text = replace_ports(f.read(), ports)
        head, rest = text.split("                typed_per_filter_config:\n", 1)
        rest = rest[rest.index("          http_filters:\n"):]
        a, b = rest.index("          - name: envoy.filters.http.ratelimit"), rest.index("          - name: envoy.filters.http.router")
        return head + rest[:a] + LOCAL_LIMIT % policy + rest[b:]
    chat = json.dumps({"model": "gpt-4o-mini", "messages": []}).encode()
    with LlmStack(config_text=config) as st:
        return [st.request("POST", "/v1/chat/completions", key="local-a", body=chat,
                           headers={"content-type": "application/json"})[0] for _ in range(5)]


def test_local_rate_limit_cannot_charge_tokens():
    """Envoy 1.40's local rate limit filter, same policy: a fixed hits_addend of 43 is charged
    at the request (100 -> 57 -> 14, the third refused), but the filter-state format charges
    nothing, at the request (the answer has not come) or with apply_on_stream_done (the local
    filter never evaluates at the stream's end): every request passes."""
    assert local_limit_statuses("hits_addend: {number: 43}") == [200, 200, 429, 429, 429]
    fmt = 'hits_addend: {format: "%FILTER_STATE(wasm.usage.total_tokens:PLAIN)%"}'
    assert local_limit_statuses(fmt) == [200] * 5
    assert local_limit_statuses(fmt + "\n                apply_on_stream_done: true") == [200] * 5


def round_trips():
    if ROUND_TRIP:
        print(f"a {len(FAST_SSE)} byte SSE answer sent at once, round trip through Envoy (ms, median / p90): "
              + "; ".join(f"{NAMES[t]} {ROUND_TRIP[t][0]:.3f} / {ROUND_TRIP[t][1]:.3f}" for t in ROUND_TRIP),
              flush=True)


TESTS = [test_exact_tokens_with_llm_on, test_official_sdks_gemini_sse_and_responses_sse,
         test_cost_equals_the_decimal_reference, test_no_token_fields_with_llm_off,
         test_no_events_with_the_filter_off, test_exactly_one_event_per_request,
         test_force_stream_usage_adds_include_usage, test_force_stream_usage_leaves_the_rest_alone,
         test_without_force_the_default_stream_is_unchanged_and_has_no_tokens, test_filter_state_in_the_access_log,
         test_streams_are_not_delayed, test_token_limit_charges_tokens_at_stream_done,
         test_token_limit_on_the_route_itself_gets_no_hits_addend, test_local_rate_limit_cannot_charge_tokens]

if __name__ == "__main__":
    envoy_binary()
    FAKE = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    threading.Thread(target=FAKE.serve_forever, daemon=True).start()
    runner.main(TESTS, "e2e-llm", after=round_trips)
