#!/usr/bin/env python3
"""`make bench`, parts (b) and (c): what usage-filter costs the real Envoy 1.40 (V8).

Five Envoys run side by side, each with one worker pinned to CPU 0, identical but for one
configuration: no filter, the null wasm filter, Envoy's native JSON file access log,
usage-filter with the log sink, usage-filter with the http sink delivering to the collector.
wrk (one thread, 32 connections, pinned to CPU 1) loads one at a time, interleaved, on a
direct_response route and on a route proxied to the demo upstream; every combination is
repeated and medians reported. Overhead per request = 1e6/rps - 1e6/rps(no filter).

Writes bench/results/envoy.json. Standard library only.
"""
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
OUT = os.path.join(ROOT, "bench", "results")
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
CONNECTIONS = 32
KEY = "bench-key-0123456789"

CONFIGS = ["none", "null", "native_log", "usage_log", "usage_http"]
ROUTES = os.environ.get("BENCH_ROUTES", "direct,proxy").split(",")
# Extra usage_http variants from other builds, compared in the same interleaved run:
# BENCH_VARIANTS="o3=usage_filter_o3.wasm" adds config "usage_http_o3" (files in dist/).
VARIANTS = dict(v.split("=", 1) for v in os.environ.get("BENCH_VARIANTS", "").split(",") if v)
CONFIGS += [f"usage_http_{name}" for name in VARIANTS]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addr(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(port)}}]}]}}


def wasm_filter(code, configuration):
    cfg = {"name": "bench", "root_id": "bench", "failure_policy": "FAIL_OPEN",
           "vm_config": {"vm_id": "bench", "runtime": "envoy.wasm.runtime.v8",
                         "code": {"local": {"filename": os.path.join(ROOT, "dist", code)}}}}
    if configuration is not None:
        cfg["configuration"] = {"@type": "type.googleapis.com/google.protobuf.Struct", "value": configuration}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": cfg}}


def envoy_config(kind, ports, workdir):
    filters = []
    access_log = []
    if kind == "null":
        filters.append(wasm_filter("null_filter.wasm", None))
    elif kind == "usage_log":
        filters.append(wasm_filter("usage_filter.wasm", {"enabled": True, "sinks": ["log"], "log_output": "filter_state"}))
        access_log.append({
            "name": "envoy.access_loggers.stdout",
            "filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "'wasm.usage_event' in filter_state"}}},
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                             "log_format": {"text_format_source": {"inline_string": "%FILTER_STATE(wasm.usage_event:PLAIN)%\n"}}}})
    elif kind.startswith("usage_http"):
        code = VARIANTS.get(kind[len("usage_http_"):], "usage_filter.wasm")
        filters.append(wasm_filter(code, {"enabled": True, "sinks": ["http"], "http": {"cluster": "collector"}}))
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
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "bench", "http_filters": filters,
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/direct/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
               {"match": {"prefix": "/proxy/"}, "route": {"cluster": "upstream"}}]}]}}
    if access_log:
        hcm["access_log"] = access_log
    return {"admin": {"address": addr(ports["admin"])},
            "static_resources": {
                "listeners": [{"name": "l", "address": addr(ports["listener"]), "filter_chains": [{"filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
                "clusters": [cluster("upstream", ports["upstream"]), cluster("collector", ports["collector"])]}}


def wait_ready(admin_port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("envoy exited during startup")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("envoy not ready")


def wrk(port, route, seconds):
    path = f"/{route}/v1/things/42?expand=owner"
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
                          "-H", f"x-subscription-key: {KEY}", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_us": pct(50), "p99_us": pct(99),
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else ""}


def metrics(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=wasmcustom", timeout=5) as r:
        text = r.read().decode()
    return {k.split("usage_filter.")[-1]: int(v) for k, v in re.findall(r"^(\S+): (\d+)$", text, re.M)}


def main():
    os.makedirs(OUT, exist_ok=True)
    envoy = subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    workdir = os.path.join(OUT, "run")
    os.makedirs(workdir, exist_ok=True)
    procs = []
    try:
        up_port, coll_port = free_port(), free_port()
        procs.append(subprocess.Popen(["taskset", "-c", "1", os.path.join(BIN, "demo-upstream"), "--listen",
                                       f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["taskset", "-c", "1", os.path.join(BIN, "collector"), "--listen",
                                       f"127.0.0.1:{coll_port}", "--out", os.path.join(workdir, "events.ndjson")],
                                      stderr=subprocess.DEVNULL))
        envoys = {}
        for kind in CONFIGS:
            ports = {"listener": free_port(), "admin": free_port(), "upstream": up_port, "collector": coll_port}
            cfg_path = os.path.join(workdir, f"{kind}.json")
            with open(cfg_path, "w") as f:
                json.dump(envoy_config(kind, ports, workdir), f)
            stdout = open(os.path.join(workdir, f"{kind}.stdout"), "wb")
            p = subprocess.Popen(["taskset", "-c", "0", envoy, "-c", cfg_path, "--concurrency", "1",
                                  "--disable-hot-restart", "--log-level", "error"], stdout=stdout,
                                 stderr=open(os.path.join(workdir, f"{kind}.stderr"), "wb"))
            procs.append(p)
            wait_ready(ports["admin"], p)
            envoys[kind] = ports
        for kind, ports in envoys.items():  # warm up every VM and connection pool
            for route in ROUTES:
                wrk(ports["listener"], route, 1)
        runs = []
        for rep in range(REPEATS):
            for route in ROUTES:
                order = CONFIGS[rep % len(CONFIGS):] + CONFIGS[:rep % len(CONFIGS)]
                for kind in order:
                    before = metrics(envoys[kind]["admin"]) if kind.startswith("usage_http") else {}
                    r = wrk(envoys[kind]["listener"], route, DURATION)
                    if kind.startswith("usage_http"):
                        after = metrics(envoys[kind]["admin"])
                        r["callouts_per_s"] = (after.get("batches_sent", 0) - before.get("batches_sent", 0)) / DURATION
                        r["drops"] = sum(after.get(k, 0) - before.get(k, 0) for k in
                                         ("events_dropped_buffer_full", "events_dropped_send_failed"))
                    r.update(config=kind, route=route, rep=rep)
                    runs.append(r)
                    print(f"rep {rep} {route:6} {kind:11} {r['rps']:9.0f} req/s  p50 {r['p50_us']:7.0f}us  "
                          f"p99 {r['p99_us']:7.0f}us", flush=True)
        time.sleep(2.5)  # let the http sink's last batches go out
        final = metrics(envoys["usage_http"]["admin"])
        log_lines = sum(1 for _ in open(os.path.join(workdir, "usage_log.stdout"), "rb"))
        log_metrics = metrics(envoys["usage_log"]["admin"])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    summary = {}
    for route in ROUTES:
        base = statistics.median(r["rps"] for r in runs if r["route"] == route and r["config"] == "none")
        null = statistics.median(r["rps"] for r in runs if r["route"] == route and r["config"] == "null")
        null_over = 1e6 / null - 1e6 / base
        for kind in CONFIGS:
            rs = [r for r in runs if r["route"] == route and r["config"] == kind]
            rps = statistics.median(r["rps"] for r in rs)
            over = 1e6 / rps - 1e6 / base
            summary[f"{route}/{kind}"] = {
                "rps": rps, "p50_us": statistics.median(r["p50_us"] for r in rs),
                "p99_us": statistics.median(r["p99_us"] for r in rs),
                "overhead_us": over, "vs_null": (over / null_over) if kind != "none" and null_over > 0 else None,
                "runs": [round(r["rps"]) for r in rs],
            }
    http_runs = [r for r in runs if r["config"] == "usage_http"]
    best = max(http_runs, key=lambda r: r["rps"])
    result = {
        "duration_s": DURATION, "repeats": REPEATS, "connections": CONNECTIONS,
        "summary": summary, "runs": runs,
        "delivery": {
            "max_rps_zero_drops": max((r["rps"] for r in http_runs if r["drops"] == 0), default=0),
            "callouts_per_s_at_max": best["callouts_per_s"], "drops_at_max": best["drops"],
            "final_metrics": final,
            "accounting_holds": final.get("events_captured") == sum(final.get(k, 0) for k in (
                "events_delivered", "events_dropped_buffer_full", "events_dropped_send_failed", "buffer_events")),
        },
        "log_sink": {"lines": log_lines, "captured": log_metrics.get("events_captured")},
    }
    with open(os.path.join(OUT, "envoy.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
