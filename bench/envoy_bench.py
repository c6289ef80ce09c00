#!/usr/bin/env python3
"""`make bench`, parts (b) and (c): what usage-filter costs the real Envoy 1.40 (V8).

One Envoy per configuration, all running side by side, each with one worker pinned to one CPU,
identical but for that configuration (see CONFIGS). wrk (one thread, pinned to the other CPU
with the demo upstream and the collector) loads one Envoy at a time. A round measures every
configuration once on every route, in an order rotated from round to round; rows report the
median of the rounds with min and max. Overhead per request = 1e6/rps - 1e6/rps(no filter),
computed within each round (median, min, max over the rounds); a ratio is the ratio of two rows'
median overheads, with the min and max of the per-round ratios beside it.

A measurement with any wrk socket error or non-2xx answer, a usage filter that captured fewer
events than wrk got answers (a trapped filter fails open and looks fast), a batch the collector
refused, a retry, a failed batch or a callout the host refused is itself refused: it is run
once more, and if that is refused too the benchmark stops with an error naming it. Nothing
refused is ever averaged in.

Settings (environment):
  BENCH_ROUNDS=5           interleaved rounds (BENCH_REPEATS is the old name)
  BENCH_SECONDS=3          wrk duration of each measurement
  BENCH_ROUTES=direct,proxy,sse,chat
  BENCH_PROBE_ROUTES=direct  routes the per-host-call probes are measured on ("" = no probes)
  BENCH_PROBES=header,clock,map,set_property,log   which probes (dist/probe_<kind>.wasm; `cel`
                           is built too)
  BENCH_CONNECTIONS=32     wrk connections (one wrk thread)
  BENCH_ENVOY_CPU=0 BENCH_LOAD_CPU=1   pinning (taskset) of the Envoys, and of wrk, the
                           upstream and the collector
  BENCH_VARIANTS=name=path,...  other builds of the filter, each run as an extra `http` sink
                           configuration `usage_http_<name>` (path: absolute, relative to the
                           repository root, or a file in dist/)
  BENCH_BEFORE=path        the "before" build: added as variant `before` (and fuel-bench's
                           fourth argument, in run.sh)
  BENCH_CONFIGS=a,b        measure only these configurations (none, null and the variants are
                           always in)

Writes bench/results/envoy.json. Standard library only.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
DIST = os.path.join(ROOT, "dist")
OUT = os.path.join(ROOT, "bench", "results")
DURATION = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", os.environ.get("BENCH_REPEATS", "5")))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
ENVOY_CPU = os.environ.get("BENCH_ENVOY_CPU", "0")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "1")
KEY = "bench-key-0123456789"
ROUTES = [r for r in os.environ.get("BENCH_ROUTES", "direct,proxy,sse,chat").split(",") if r]
PROBE_ROUTES = [r for r in os.environ.get("BENCH_PROBE_ROUTES", "direct").split(",") if r in ROUTES]

# The probes: the null filter plus one host call each (bench/probe-filter, dist/probe_<kind>.wasm).
# `cel` (Envoy's `expr_evaluate` foreign function returning every field in one call) is built but
# not measured by default: it cost 8.4 µs against the floor's 4.5 (bench/notes.md).
PROBES = [p for p in os.environ.get("BENCH_PROBES", "header,clock,map,set_property,log").split(",") if p]
# What each configuration is (report.py shows these names).
NAMES = {
    "none": "no filter",
    "null": "null wasm filter (every callback crosses, nothing done)",
    "floor": "floor: only the 4 host calls an event needs",
    "native_log": "Envoy native JSON file access log",
    "usage_log": "usage-filter, log sink",
    "usage_http": "usage-filter, http sink, `local` (default)",
    "usage_http_b10k": "usage-filter, http sink, `batch_size` 10,000 (BENCH_EXTRA)",
    # issue 22, the log sink taken apart (BENCH_EXTRA): its access logger without the CEL filter,
    # and none at all (the filter's part alone: its wasm work and the set_property)
    "usage_log_nocel": "usage-filter, log sink, access log without its CEL filter (BENCH_EXTRA)",
    "usage_log_noal": "usage-filter, log sink, no access log: the filter's part alone (BENCH_EXTRA)",
    "usage_shared_queue": "usage-filter, http sink, `shared_queue`",
    "usage_llm_off": "usage-filter, http sink, `ndjson`, `llm` off",
    "usage_llm": "usage-filter, http sink, `ndjson`, `llm` on (the stream scanned)",
    "usage_llm_force": "usage-filter, http sink, `ndjson`, `llm` on, `force_stream_usage` (the request body "
                       "buffered and rewritten)",
}
# The batch-callout bisection (issue 22, bench/probe-filter/src/batch.rs): each step differs
# from the one before by one thing; `tick` is the null filter plus the filter's 100 ms tick alone.
BISECTION = {
    "tick": "probe: null + a 100 ms tick that does nothing",
    "post_bare": "probe: null + a bare POST of a real 100-event body per 100 requests (2 in flight, tick-started)",
    "post_headers": "probe: post_bare + the filter's headers (x-usage-batch-id, String pairs)",
    "post_hold": "probe: post_headers + each request's record held, 100 taken per batch",
    "post_encode": "probe: post_hold + the body encoded per batch from those 100",
    "post_tickwork": "probe: post_encode + the tick's work (a clock read, six metric increments)",
    "post_answer": "probe: post_tickwork + the answer read (:status, two clock reads)",
    "post_handback": "probe: post_answer + the records handed back at the answer",
    "post_bodyread": "probe: post_answer + the answer's body read (proxy_get_buffer_bytes)",
    "post_cut": "probe: post_handback with issue 22's cuts (no body copy, one clock read per answer)",
}
for _p in PROBES:
    NAMES[f"probe_{_p}"] = BISECTION.get(_p, f"probe: null + one {_p} call")


def stop_all(procs):
    """SIGTERM to every process of a run, then wait for each (10 s, then SIGKILL)."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def git_commit():
    """The commit measured, as the report names it (taken now: a report may be written later)."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    try:
        rev = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "filter")
    except OSError:
        return "unknown"
    return rev + (" with uncommitted changes" if dirty else "")


def resolve(path):
    if os.path.isabs(path):
        return path
    if os.path.exists(path):
        return os.path.abspath(path)
    return os.path.join(DIST, path)


VARIANTS = {}
for v in os.environ.get("BENCH_VARIANTS", "").split(","):
    if v:
        if "=" not in v:
            sys.exit(f"BENCH_VARIANTS: {v!r} is not name=path")
        name, path = v.split("=", 1)
        VARIANTS[name] = resolve(path)
if os.environ.get("BENCH_BEFORE") and "before" not in VARIANTS:
    VARIANTS["before"] = resolve(os.environ["BENCH_BEFORE"])
for name, path in VARIANTS.items():
    if not os.path.isfile(path):
        sys.exit(f"BENCH_VARIANTS: {name}: no file {path}")
    NAMES[f"usage_http_{name}"] = f"variant `{name}`, http sink, `local` ({os.path.basename(path)})"

BASE = ["none", "null", "floor", "native_log", "usage_log", "usage_http", "usage_shared_queue"]
# The `sse` route answers a streamed chat completion (text/event-stream, with usage in its last
# event); only these configurations run on it.
LLM_KINDS = ["usage_llm_off", "usage_llm", "usage_llm_force"]
# The `chat` route: a POSTed chat request as the openai SDK sends a stream by default (no
# stream_options), proxied to a second Envoy that reads the whole body, then answers the `sse`
# route's stream. force_stream_usage cannot be measured on a `direct_response`: Envoy answers
# at the request headers, before the body, and then closes the HTTP/1.1 connection.
CHAT_KINDS = ["usage_llm", "usage_llm_force"]
if "sse" in ROUTES:
    BASE += ["usage_llm_off", "usage_llm"]
if "chat" in ROUTES:
    BASE += [k for k in CHAT_KINDS if k not in BASE]
EXTRA = [k for k in os.environ.get("BENCH_EXTRA", "").split(",") if k]
for _k in EXTRA:
    if _k not in NAMES:
        sys.exit(f"BENCH_EXTRA: unknown {_k!r}")
CONFIGS = BASE + EXTRA + [f"usage_http_{n}" for n in VARIANTS] + [f"probe_{p}" for p in PROBES]
if os.environ.get("BENCH_CONFIGS"):
    keep = set(os.environ["BENCH_CONFIGS"].split(",")) | {"none", "null"} | {f"usage_http_{n}" for n in VARIANTS}
    unknown = keep - set(CONFIGS)
    if unknown:
        sys.exit(f"BENCH_CONFIGS: unknown {sorted(unknown)}; known: {CONFIGS}")
    CONFIGS = [c for c in CONFIGS if c in keep]
if not PROBE_ROUTES:
    CONFIGS = [c for c in CONFIGS if not c.startswith("probe_")]


def routes_of(kind):
    if kind.startswith("probe_"):
        return PROBE_ROUTES
    if kind in LLM_KINDS:
        return [r for r in ROUTES if (r == "sse" and kind != "usage_llm_force") or (r == "chat" and kind in CHAT_KINDS)]
    if kind in ("none", "null"):
        return ROUTES
    return [r for r in ROUTES if r not in ("sse", "chat")]


def sends(kind):
    """Configurations that deliver to the collector."""
    return kind.startswith("usage_http") or kind in ["usage_shared_queue"] + LLM_KINDS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(port)}}]}]}}


def vm_config(vm_id, path):
    return {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}}


def struct(value):
    return {"@type": "type.googleapis.com/google.protobuf.Struct", "value": value}


def wasm_filter(path, configuration):
    cfg = {"name": "bench", "root_id": "bench", "failure_policy": "FAIL_OPEN", "vm_config": vm_config("bench", path)}
    if configuration is not None:
        cfg["configuration"] = struct(configuration)
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": cfg}}


FILTER = os.path.join(DIST, "usage_filter.wasm")
HTTP = {"enabled": True, "sinks": ["http"], "http": {"cluster": "collector"}}
# `usage_http_b10k` (BENCH_EXTRA): the http sink with batches of 10,000 (issue 9's sizing run):
# against the default it pays the per-callout costs 100 times less often for the same bytes
HTTP_B10K = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "batch_size": 10000, "buffer_size": 100000, "max_batch_bytes": 8 << 20}}


def sse_body(chunks=16):
    """An OpenAI streamed chat completion, as its API writes one (usage in the last event)."""
    head = '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1763900000,"model":"gpt-4o-mini",'
    events = [f'data: {head}"choices":[{{"index":0,"delta":{{"content":"token {i} "}},"finish_reason":null}}],"usage":null}}\n\n'
              for i in range(chunks)]
    events.append(f'data: {head}"choices":[],"usage":{{"prompt_tokens":57,"completion_tokens":{chunks},'
                  f'"total_tokens":{57 + chunks},"prompt_tokens_details":{{"cached_tokens":0}}}}}}\n\n')
    events.append("data: [DONE]\n\n")
    return "".join(events)


SSE_BODY = sse_body()
# what the openai SDK sends for client.chat.completions.create(..., stream=True) (no stream_options)
CHAT_BODY = ('{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user",'
             '"content":"Write one sentence about the sea."}],"model":"gpt-4o-mini","stream":true}')
ADDED = '"stream_options":{"include_usage":true},'
CHAT_LUA = os.path.join(OUT, "chat.lua")


def envoy_config(kind, ports, workdir):
    filters = []
    access_log = []
    bootstrap = []
    if kind in ("null", "floor"):
        filters.append(wasm_filter(os.path.join(DIST, f"{kind}_filter.wasm"), None))
    elif kind.startswith("probe_"):
        filters.append(wasm_filter(os.path.join(DIST, f"{kind}.wasm"), None))
    elif kind in ("usage_log", "usage_log_nocel", "usage_log_noal"):
        filters.append(wasm_filter(FILTER, {"enabled": True, "sinks": ["log"], "log_output": "filter_state"}))
        access_log.append({
            "name": "envoy.access_loggers.stdout",
            "filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "'wasm.usage_event' in filter_state"}}},
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                             "log_format": {"text_format_source": {"inline_string": "%FILTER_STATE(wasm.usage_event:PLAIN)%\n"}}}})
        if kind == "usage_log_nocel":
            del access_log[-1]["filter"]
        elif kind == "usage_log_noal":
            access_log.clear()
    elif kind == "usage_shared_queue":
        # as envoy/envoy-singleton.yaml: the workers hand events to one singleton service VM
        # (on the main thread, same pinned process) that batches and sends
        service = {"name": "usage_service", "root_id": "usage_service", "vm_config": vm_config("usage_service", FILTER),
                   "configuration": struct({"sinks": ["http"], "http": {"cluster": "collector"},
                                            "dispatcher": {"mode": "shared_queue", "service": True, "queue": "usage_events"}})}
        bootstrap.append({"name": "envoy.bootstrap.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService", "singleton": True, "config": service}})
        filters.append(wasm_filter(FILTER, dict(HTTP, dispatcher={"mode": "shared_queue", "vm_id": "usage_service",
                                                                  "queue": "usage_events"})))
    elif kind in LLM_KINDS:
        llm = {"enabled": kind != "usage_llm_off"}
        if kind == "usage_llm_force":
            llm["force_stream_usage"] = True
        filters.append(wasm_filter(FILTER, dict(HTTP, http={"cluster": "collector", "format": "ndjson"}, llm=llm)))
    elif kind == "usage_http_b10k":
        filters.append(wasm_filter(FILTER, HTTP_B10K))
    elif kind.startswith("usage_http"):
        filters.append(wasm_filter(VARIANTS.get(kind[len("usage_http_"):], FILTER), HTTP))
    elif kind == "native_log":
        # Envoy's own JSON file access log with the ten fields as close as its operators get
        # (no `success` boolean and the path keeps its query: Envoy has no operator for those).
        access_log.append({
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                             "path": os.path.join(workdir, "native_access.json"),
                             "log_format": {"json_format": {
                                 "id": "%REQ(X-REQUEST-ID)%", "api_path": "%REQ(:PATH)%",
                                 "subscription_key": "%REQ(X-SUBSCRIPTION-KEY)%", "method": "%REQ(:METHOD)%",
                                 "response_time_ms": "%DURATION%", "status_code": "%RESPONSE_CODE%",
                                 "success": "%RESPONSE_FLAGS%", "timestamp": "%START_TIME%",
                                 "request_size": "%BYTES_RECEIVED%", "response_size": "%BYTES_SENT%"}}}})
    elif kind != "none":
        raise ValueError(kind)
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "bench", "http_filters": filters,
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/direct/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
               {"match": {"prefix": "/proxy/"}, "route": {"cluster": "upstream"}},
               {"match": {"prefix": "/chat/"}, "route": {"cluster": "sse_upstream"}},
               {"match": {"prefix": "/sse/"}, "direct_response": {"status": 200, "body": {"inline_string": SSE_BODY}},
                "response_headers_to_add": [{"header": {"key": "content-type", "value": "text/event-stream"},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}]}}
    if access_log:
        hcm["access_log"] = access_log
    cfg = {"admin": {"address": addr(ports["admin"])},
           "static_resources": {
               "listeners": [{"name": "l", "address": addr(ports["listener"]), "filter_chains": [{"filters": [
                   {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
               "clusters": [cluster("upstream", ports["upstream"]), cluster("collector", ports["collector"]),
                            cluster("sse_upstream", ports["sse_upstream"])]}}
    if bootstrap:
        cfg["bootstrap_extensions"] = bootstrap
    return cfg


def sse_upstream_config(ports, workdir):
    """The `chat` route's upstream: an Envoy that reads the whole request body first (the
    buffer filter: answering before it ends would close the connection) and answers the `sse`
    route's stream. Requests carrying `x-bench-check` are logged: the check's name and the body
    bytes received (not the content-length header: the buffer filter sets it)."""
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    buffer = {"name": "envoy.filters.http.buffer",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                               "max_request_bytes": 65536}}
    log = {"name": "envoy.access_loggers.file",
           "filter": {"header_filter": {"header": {"name": "x-bench-check", "present_match": True}}},
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": os.path.join(workdir, "chat_check.log"),
                            "log_format": {"text_format_source": {
                                "inline_string": "%REQ(X-BENCH-CHECK)% %BYTES_RECEIVED%\n"}}}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "sse_upstream", "http_filters": [buffer, router], "access_log": [log],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": SSE_BODY}},
                "response_headers_to_add": [{"header": {"key": "content-type", "value": "text/event-stream"},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}]}}
    return {"admin": {"address": addr(ports["admin"])},
            "static_resources": {"listeners": [{"name": "l", "address": addr(ports["listener"]), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}}


def check_chat(envoys, workdir):
    """One `chat` request (as wrk sends them, plus `x-bench-check`) through `usage_llm` and
    `usage_llm_force`: the client gets the whole stream, and the upstream gets the body as
    sent, or 40 bytes longer (`"stream_options":{"include_usage":true},` added): the rewrite
    measured is the one that happens. Returns what the upstream logged."""
    want = {}
    for kind in [k for k in CHAT_KINDS if k in envoys]:
        conn = http.client.HTTPConnection("127.0.0.1", envoys[kind]["listener"], timeout=10)
        conn.request("POST", "/chat/v1/chat/completions", body=CHAT_BODY,
                     headers={"content-type": "application/json", "x-subscription-key": KEY, "x-bench-check": kind})
        r = conn.getresponse()
        body = r.read().decode()
        conn.close()
        if r.status != 200 or body != SSE_BODY:
            raise RuntimeError(f"chat check {kind}: status {r.status}, {len(body)} bytes")
        n = len(CHAT_BODY.encode())
        want[kind] = f"{kind} {n + len(ADDED) if kind == 'usage_llm_force' else n}"
    path = os.path.join(workdir, "chat_check.log")
    deadline = time.time() + 10
    while True:  # Envoy flushes its access log file every second
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        if len(lines) >= len(want) or time.time() > deadline:
            break
        time.sleep(0.1)
    if sorted(lines) != sorted(want.values()):
        raise RuntimeError(f"chat check: the upstream logged {lines}, expected {sorted(want.values())}")
    return lines


def envoy_command(envoy, cfg_path, cpu, flush=False):
    """How every bench script starts an Envoy: one worker, pinned to `cpu`, errors only; `flush`:
    stdout lines written every 100 ms, not every 10 s (the default), for the log sink's lines."""
    cmd = ["taskset", "-c", cpu, envoy, "-c", cfg_path, "--concurrency", "1", "--disable-hot-restart",
           "--log-level", "error"]
    return cmd + (["--file-flush-interval-msec", "100"] if flush else [])


def wait_ready(admin_port, proc, kind, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy for {kind} exited during startup (see bench/results/run/{kind}.stderr)")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"envoy for {kind} not ready after {timeout}s")


def wrk(port, route, seconds, connections=CONNECTIONS):
    path = f"/{route}/v1/things/42?expand=owner"
    script = []
    if route == "chat":  # POST CHAT_BODY (bench/results/chat.lua)
        path, script = "/chat/v1/chat/completions", ["-s", CHAT_LUA]
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          *script, "-H", f"x-subscription-key: {KEY}", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    return {**parse_wrk(out), "wrk_output": out}


def parse_wrk(out):
    """wrk's report (with --latency for the percentiles): rate, requests, p50 and p99, and what
    makes a measurement refused (non-2xx answers, socket errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    sock_counts = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", sock.group(1))} if sock else {}
    return {"rps": rps, "requests": requests, "p50_us": pct(50), "p99_us": pct(99),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": {k: v for k, v in sock_counts.items() if v}}


def metrics(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=wasmcustom", timeout=5) as r:
        text = r.read().decode()
    return {k.split("usage_filter.")[-1]: int(v) for k, v in re.findall(r"^(\S+): (\d+)$", text, re.M)}


def cluster_stats(admin_port):
    """Connections opened and requests sent to the collector and the upstream: does each
    callout open a connection?"""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=^cluster\\.(collector|upstream)\\."
                                "upstream_(cx_total|rq_total|cx_destroy|cx_active)$", timeout=5) as r:
        text = r.read().decode()
    return {k: int(v) for k, v in re.findall(r"^cluster\.(\S+): (\d+)$", text, re.M)}


def answered(admin_port):
    """The requests this Envoy answered since it started (its one listener, every route)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=^http\\.bench\\.downstream_rq_completed$",
                                timeout=5) as r:
        return int(re.search(r": (\d+)$", r.read().decode().strip()).group(1))


def collector_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


DROPS = ("events_dropped_buffer_full", "events_dropped_send_failed")


def settle(kind, admin_port, timeout=8.0):
    """Waits until a usage filter has published everything the last load produced (its
    metrics go out on its tick: every 100 ms with the http sink, every second with the log
    sink alone) and, when it sends, until every event is delivered or dropped."""
    if not kind.startswith("usage_"):
        return {}
    quiet = 1.2 if kind.startswith("usage_log") else 0.3
    prev, changed, deadline = None, time.time(), time.time() + timeout
    while True:
        m = metrics(admin_port)
        now = time.time()
        if m != prev:
            prev, changed = m, now
        done = now - changed >= quiet
        if sends(kind):
            accounted = sum(m.get(k, 0) for k in ("events_delivered",) + DROPS)
            done = done and m.get("buffer_events", 0) == 0 and accounted == m.get("events_captured", 0)
        if done or now > deadline:
            return m
        time.sleep(0.1)


def balanced(kind, m):
    """A filter's books from its metrics: captured = delivered + dropped + buffered (a sink that
    does not send has nothing to balance)."""
    if not sends(kind):
        return True
    return m.get("events_captured") == sum(m.get(k, 0) for k in ("events_delivered", "buffer_events") + DROPS)


def delta(after, before, key):
    return after.get(key, 0) - before.get(key, 0)


def cpu_seconds(pid):
    """CPU time (user + system, every thread) the process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def refusals(kind, r, before, after, connections=CONNECTIONS):
    """Why one wrk run `r` of `kind` is refused, from the filter's metrics before and after it
    (part (b) and part (b3) refuse on the same grounds)."""
    refused = []
    if r["socket_errors"]:
        refused.append(f"wrk socket errors {r['socket_errors']}")
    if r["non2xx"]:
        refused.append(f"{r['non2xx']} non-2xx/3xx responses")
    if kind.startswith("usage_"):
        captured = delta(after, before, "events_captured")
        # every answered request is an event; requests still open when wrk stopped may add
        # up to one per connection
        if not r["requests"] <= captured <= r["requests"] + connections:
            refused.append(f"{captured} events captured for {r['requests']} answered requests")
    if sends(kind):
        for k in ("batches_failed", "batch_retries", "callouts_refused"):
            if delta(after, before, k):
                refused.append(f"{k} +{delta(after, before, k)}")
        if after.get("buffer_events", 0):
            refused.append(f"{after['buffer_events']} events still buffered after the load (settle timed out)")
    return refused


def collector_refusals(before, after):
    """A batch the collector refused, or an invalid event it saw, between two of its /stats."""
    return [f"collector {k} +{after.get(k, 0) - before.get(k, 0)}"
            for k in ("rejected_batches", "invalid_events") if after.get(k, 0) != before.get(k, 0)]


def measure(kind, ports, route, coll_port, before):
    """One wrk run, checked. Returns (result, reasons it is refused, the metrics after it).
    Besides the rate, the Envoy's own CPU time per answered request (`cpu_us`, its batches to
    the collector included): less disturbed than the rate by other work on the machine, which
    takes CPU time from the Envoy but adds little to what the Envoy spends."""
    coll_before = collector_stats(coll_port)
    cpu_before = cpu_seconds(ports["pid"])
    r = wrk(ports["listener"], route, DURATION)
    after = settle(kind, ports["admin"])
    r["cpu_us"] = (cpu_seconds(ports["pid"]) - cpu_before) * 1e6 / max(r["requests"], 1)
    coll_after = collector_stats(coll_port)
    refused = refusals(kind, r, before, after) + collector_refusals(coll_before, coll_after)
    if kind.startswith("usage_"):
        r["captured"] = delta(after, before, "events_captured")
    if sends(kind):
        r["delivered"] = delta(after, before, "events_delivered")
        r["drops"] = sum(delta(after, before, k) for k in DROPS)
        r["batches"] = delta(after, before, "batches_sent")
        # the batches carrying this measurement's events, tail included, per second of load
        r["callouts_per_s"] = r["batches"] / DURATION
    return r, refused, after


def main():
    os.makedirs(OUT, exist_ok=True)
    envoy = subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    for kind in CONFIGS:
        if kind in ("null", "floor") or kind.startswith("probe_"):
            path = os.path.join(DIST, f"{kind}_filter.wasm" if kind in ("null", "floor") else f"{kind}.wasm")
            if not os.path.isfile(path):
                sys.exit(f"{path} missing: run bench/build.sh")
    workdir = os.path.join(OUT, "run")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    procs = []
    plan = [(route, kind) for route in ROUTES for kind in CONFIGS if route in routes_of(kind)]
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before the run: other work shares the CPUs, "
              "the figures will be noisy", flush=True)
    print(f"{len(CONFIGS)} configurations, {len(plan)} measurements per round, {ROUNDS} rounds of "
          f"{DURATION}s (about {len(plan) * ROUNDS * (DURATION + 0.6) / 60:.1f} min)", flush=True)
    try:
        up_port, coll_port = free_port(), free_port()
        procs.append(subprocess.Popen(["taskset", "-c", LOAD_CPU, os.path.join(BIN, "demo-upstream"), "--listen",
                                       f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["taskset", "-c", LOAD_CPU, os.path.join(BIN, "collector"), "--listen",
                                       f"127.0.0.1:{coll_port}", "--out", os.path.join(workdir, "events.ndjson")],
                                      stderr=open(os.path.join(workdir, "collector.stderr"), "wb")))
        sse_up_port = free_port()
        chat_check = None
        if "chat" in ROUTES:
            with open(CHAT_LUA, "w") as f:
                f.write(f"wrk.method = \"POST\"\nwrk.body = '{CHAT_BODY}'\n"
                        f"wrk.headers[\"Content-Type\"] = \"application/json\"\n")
            up = {"listener": sse_up_port, "admin": free_port()}
            cfg_path = os.path.join(workdir, "sse_upstream.json")
            with open(cfg_path, "w") as f:
                json.dump(sse_upstream_config(up, workdir), f)
            p = subprocess.Popen(envoy_command(envoy, cfg_path, LOAD_CPU),
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(workdir, "sse_upstream.stderr"), "wb"))
            procs.append(p)
            wait_ready(up["admin"], p, "sse_upstream")
        envoys = {}
        for kind in CONFIGS:
            ports = {"listener": free_port(), "admin": free_port(), "upstream": up_port, "collector": coll_port,
                     "sse_upstream": sse_up_port}
            cfg_path = os.path.join(workdir, f"{kind}.json")
            with open(cfg_path, "w") as f:
                json.dump(envoy_config(kind, ports, workdir), f)
            stdout = open(os.path.join(workdir, f"{kind}.stdout"), "wb")
            p = subprocess.Popen(envoy_command(envoy, cfg_path, ENVOY_CPU, flush=True),
                                 stdout=stdout, stderr=open(os.path.join(workdir, f"{kind}.stderr"), "wb"))
            procs.append(p)
            wait_ready(ports["admin"], p, kind)
            ports["pid"] = p.pid
            envoys[kind] = ports
        if "chat" in ROUTES:
            chat_check = check_chat(envoys, workdir)
        for route, kind in plan:  # warm up every VM and connection pool
            wrk(envoys[kind]["listener"], route, 1)
        last = {kind: settle(kind, envoys[kind]["admin"]) for kind in CONFIGS}
        # for bench/perf_split.py: when the rounds start, and each Envoy's requests answered by then
        rounds_from, answered_before = time.monotonic(), {k: answered(envoys[k]["admin"]) for k in CONFIGS}
        runs, refusals = [], []
        for rnd in range(ROUNDS):
            for route in ROUTES:
                kinds = [k for k in CONFIGS if route in routes_of(k)]
                order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
                for kind in order:
                    for attempt in (1, 2):
                        r, refused, after = measure(kind, envoys[kind], route, coll_port, last[kind])
                        last[kind] = after
                        if not refused:
                            break
                        where = f"round {rnd} {route} {kind}"
                        refusals.append({"round": rnd, "route": route, "config": kind, "attempt": attempt,
                                         "reasons": refused})
                        with open(os.path.join(workdir, f"refused-{rnd}-{route}-{kind}-{attempt}.txt"), "w") as f:
                            f.write("\n".join(refused) + "\n\n" + r["wrk_output"])
                        print(f"REFUSED ({where}, attempt {attempt}): {'; '.join(refused)}", flush=True)
                        if attempt == 2:
                            raise RuntimeError(f"measurement refused twice, benchmark stopped: {where}: "
                                               f"{'; '.join(refused)} (wrk output in bench/results/run/)")
                    del r["wrk_output"]
                    r.update(config=kind, route=route, round=rnd)
                    runs.append(r)
                    extra = f"  {r['callouts_per_s']:5.0f} callouts/s" if sends(kind) else ""
                    print(f"round {rnd} {route:6} {kind:20} {r['rps']:9.0f} req/s  cpu {r['cpu_us']:6.1f}us/req  "
                          f"p50 {r['p50_us']:6.0f}us  "
                          f"p99 {r['p99_us']:6.0f}us{extra}", flush=True)
        final = {k: metrics(envoys[k]["admin"]) for k in CONFIGS if k.startswith("usage_")}
        clusters = {k: cluster_stats(envoys[k]["admin"]) for k in CONFIGS}
        log_lines = None
        if "usage_log" in CONFIGS:
            # the access logger's lines reach the file within its flush interval: wait for them
            want = final["usage_log"].get("events_captured")
            for _ in range(100):
                log_lines = sum(1 for _ in open(os.path.join(workdir, "usage_log.stdout"), "rb"))
                if log_lines == want:
                    break
                time.sleep(0.1)
        coll_final = collector_stats(coll_port)
        served = {k: {"pid": envoys[k]["pid"], "requests": answered(envoys[k]["admin"]) - answered_before[k]}
                  for k in CONFIGS}
    finally:
        stop_all(procs)
    result = summarize(runs)
    result.update(refusals=refusals, final_metrics=final, cluster_stats=clusters, collector=coll_final, chat_check=chat_check,
                  envoys=served, rounds_from_monotonic=rounds_from,
                  load_average={"before": load_before[0], "after": os.getloadavg()[0]})
    problems = [f"{kind}: accounting does not hold ({m})" for kind, m in final.items() if not balanced(kind, m)]
    if log_lines is not None:
        result["log_sink"] = {"lines": log_lines, "captured": final["usage_log"].get("events_captured")}
        if log_lines != result["log_sink"]["captured"]:
            problems.append(f"usage_log: {log_lines} lines on stdout for {result['log_sink']['captured']} events")
    result["problems"] = problems
    with open(os.path.join(OUT, "envoy.json"), "w") as f:
        json.dump(result, f, indent=2)
    if problems:
        raise RuntimeError("; ".join(problems))


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs):
    by = {(r["round"], r["route"], r["config"]): r for r in runs}

    def per_round(_route, fn):
        """fn(round) for every round in which all it needs was measured."""
        out = []
        for rnd in range(ROUNDS):
            try:
                out.append(fn(rnd))
            except (KeyError, ZeroDivisionError):
                pass
        return stats(out) if out else None

    def over(rnd, route, kind):
        return 1e6 / by[(rnd, route, kind)]["rps"] - 1e6 / by[(rnd, route, "none")]["rps"]

    def cpu_over(rnd, route, kind):
        return by[(rnd, route, kind)]["cpu_us"] - by[(rnd, route, "none")]["cpu_us"]

    def ratio(route, a, b, over=over):
        """The ratio of the two rows' median overheads, and the min and max of the per-round
        ratios (their spread; a headline outside it says the rounds disagree). By the rate;
        with `over=cpu_over`, by each Envoy's own CPU time per request."""
        pairs = []
        for n in range(ROUNDS):
            try:
                pairs.append((over(n, route, a), over(n, route, b)))
            except KeyError:
                pass
        per = [x / y for x, y in pairs if y]
        den = statistics.median(y for _, y in pairs) if pairs else 0
        if not per or not den:
            return None
        return {"value": statistics.median(x for x, _ in pairs) / den, "min": min(per), "max": max(per),
                "per_round": per}

    summary = {}
    for route in ROUTES:
        for kind in CONFIGS:
            rs = [r for r in runs if r["route"] == route and r["config"] == kind]
            if not rs:
                continue
            row = {"rps": stats([r["rps"] for r in rs]), "cpu_us": stats([r["cpu_us"] for r in rs]),
                   "p50_us": statistics.median(r["p50_us"] for r in rs),
                   "p99_us": statistics.median(r["p99_us"] for r in rs), "runs": [round(r["rps"]) for r in rs]}
            if kind != "none":
                row["overhead_us"] = per_round(route, lambda n: over(n, route, kind))
                row["cpu_overhead_us"] = per_round(route, lambda n: cpu_over(n, route, kind))
                if kind != "null":
                    row["vs_null"] = ratio(route, kind, "null")
                if kind not in ("null", "floor") and "floor" in CONFIGS:
                    row["vs_floor"] = ratio(route, kind, "floor")
            summary[f"{route}/{kind}"] = row

    # the goals, each from the same interleaved rounds
    goals = []
    # issue 22's targets (issue 9's were 1.2 and 1.3); the proxied one is issue 9's
    for label, route, a, b, target in [
            ("http sink ÷ floor, direct_response", "direct", "usage_http", "floor", 1.1),
            ("http sink ÷ null filter, proxied route", "proxy", "usage_http", "null", 1.5),
            ("log sink ÷ http sink, direct_response", "direct", "usage_log", "usage_http", 1.2),
            ("`shared_queue` ÷ floor, direct_response", "direct", "usage_shared_queue", "floor", 1.1)]:
        if route in ROUTES and a in CONFIGS and b in CONFIGS:
            by_cpu = ratio(route, a, b, over=cpu_over)
            goals.append({"label": label, "route": route, "a": a, "b": b, "goal": target, **ratio(route, a, b),
                          "by_cpu": by_cpu and by_cpu["value"]})
    ratios = []  # more of the same kind, for reading, no goal
    for route in ROUTES:
        for a, b in [("usage_shared_queue", "floor"), ("usage_shared_queue", "usage_http"),
                     ("usage_llm_force", "usage_llm"),
                     ("usage_log", "usage_http"), ("floor", "null")] + \
                [(f"usage_http_{n}", "floor") for n in VARIANTS] + \
                [("usage_http", f"usage_http_{n}") for n in VARIANTS]:
            if a in CONFIGS and b in CONFIGS and not any(g["route"] == route and g["a"] == a and g["b"] == b for g in goals):
                r = ratio(route, a, b)
                if r:
                    ratios.append({"route": route, "a": a, "b": b, **r})

    # force_stream_usage: what holding and rewriting the request body adds, per request, within
    # each round (µs: force − llm on, both on the `chat` route)
    force_cost = None
    if "chat" in ROUTES and all(k in CONFIGS for k in CHAT_KINDS):
        force_cost = {
            "rate": per_round("chat", lambda n: 1e6 / by[(n, "chat", "usage_llm_force")]["rps"]
                              - 1e6 / by[(n, "chat", "usage_llm")]["rps"]),
            "cpu": per_round("chat", lambda n: by[(n, "chat", "usage_llm_force")]["cpu_us"]
                             - by[(n, "chat", "usage_llm")]["cpu_us"])}

    # one host call = probe - null, in the same round
    host_calls = []
    for route in PROBE_ROUTES:
        for p in PROBES:
            kind = f"probe_{p}"
            if kind in CONFIGS:
                c = per_round(route, lambda n: 1e6 / by[(n, route, kind)]["rps"] - 1e6 / by[(n, route, "null")]["rps"])
                if c:
                    host_calls.append({"route": route, "call": p, **c})
        if "floor" in CONFIGS:
            c = per_round(route, lambda n: 1e6 / by[(n, route, "floor")]["rps"] - 1e6 / by[(n, route, "null")]["rps"])
            host_calls.append({"route": route, "call": "floor (map + :status + 2 clock)", **c})

    # delivery: the fastest measurement without drops, every figure from that one measurement
    delivery = {}
    for kind in CONFIGS:
        if sends(kind):
            ok = [r for r in runs if r["config"] == kind and r["drops"] == 0]
            best = max(ok, key=lambda r: r["rps"], default=None)
            delivery[kind] = {
                "measurements": len([r for r in runs if r["config"] == kind]),
                "with_drops": len([r for r in runs if r["config"] == kind and r["drops"]]),
                "best": {k: best[k] for k in ("route", "round", "rps", "requests", "captured", "delivered", "drops",
                                               "batches", "callouts_per_s")} if best else None}
    return {"commit": git_commit(), "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "duration_s": DURATION, "rounds": ROUNDS, "connections": CONNECTIONS, "routes": ROUTES,
            "probe_routes": PROBE_ROUTES, "pinning": {"envoy_cpu": ENVOY_CPU, "load_cpu": LOAD_CPU},
            "configs": CONFIGS, "names": {k: NAMES[k] for k in CONFIGS}, "variants": VARIANTS,
            "summary": summary, "goals": goals, "ratios": ratios, "host_calls": host_calls, "force_cost": force_cost,
            "delivery": delivery, "runs": runs}


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
