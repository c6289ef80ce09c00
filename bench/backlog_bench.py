#!/usr/bin/env python3
"""Draining a backlog after an outage (issue 22, item 5), in the real Envoy with the real
collector: how long a full buffer takes to drain once the collector is back, and how many
events are dropped at the full buffer after it is back, with and without
`http.backlog_batch_size`.

One Envoy per variant (one worker, pinned to BENCH_ENVOY_CPU), the same http sink settings
(batch_size 100, buffer_size 10,000, max_in_flight 2, timeout_ms 1,000, retries of
100 … 1,000 ms) but for
`backlog_batch_size`. wrk, the demo upstream and the collector share BENCH_LOAD_CPU. The load
is held to a rate by the upstream, not by wrk: BACKLOG_CONNECTIONS connections on the proxied
route, each request answered after BACKLOG_UPSTREAM_MS, so about connections / delay requests
per second whatever the variant. One measurement:

1. outage: the collector hangs (answers after a minute; the filter's timeout_ms is 1,000) for
   BACKLOG_OUTAGE_S seconds under load, and the buffer fills;
2. recovery: the collector answers every batch 200 after BACKLOG_COLLECTOR_MS (a collector a
   round trip away; on loopback it would answer in well under a millisecond, faster than any
   load here fills a batch); the load goes on for BACKLOG_RECOVERY_S seconds.

Drain time: from the recovery until the filter's `buffer_events` gauge (published every
100 ms) is below BACKLOG_DRAINED events, polled every 50 ms. Dropped after recovery: the
growth of `events_dropped_buffer_full` from the recovery to the end. Rounds interleave the
variants; rows give the median with min and max, and the load average of the machine.

Settings (environment): BACKLOG_ROUNDS=3 BACKLOG_VARIANTS=100,1000 (backlog_batch_size; 100 is
off) BACKLOG_CONNECTIONS=25 BACKLOG_UPSTREAM_MS=5 BACKLOG_COLLECTOR_MS=50 BACKLOG_OUTAGE_S=5
BACKLOG_RECOVERY_S=15 BACKLOG_DRAINED=1000. Writes bench/results/backlog.json and prints a
table. Standard library only.
"""
import json
import re
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envoy_bench as eb  # noqa: E402

ENV = os.environ.get
ROUNDS = int(ENV("BACKLOG_ROUNDS", "3"))
VARIANTS = [int(v) for v in ENV("BACKLOG_VARIANTS", "100,1000").split(",") if v]
CONNECTIONS = int(ENV("BACKLOG_CONNECTIONS", "25"))
UPSTREAM_MS = int(ENV("BACKLOG_UPSTREAM_MS", "5"))
COLLECTOR_MS = int(ENV("BACKLOG_COLLECTOR_MS", "50"))
OUTAGE_S = float(ENV("BACKLOG_OUTAGE_S", "5"))
RECOVERY_S = float(ENV("BACKLOG_RECOVERY_S", "15"))
DRAINED = int(ENV("BACKLOG_DRAINED", "1000"))
HTTP = {"cluster": "collector", "batch_size": 100, "buffer_size": 10_000, "max_in_flight": 2, "timeout_ms": 1000,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 1000}}


def faults(coll_port, method, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{coll_port}/faults", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def measure(e, coll_port):
    """One outage and recovery under load on Envoy `e`."""
    faults(coll_port, "DELETE")
    # hung, not refusing: a refused batch fails in a millisecond and frees its slot, so new
    # batches are cut and retried until dropped and the buffer never fills; a hung one holds
    # its slot until timeout_ms, and events wait uncut, as in the soak's slow phases
    faults(coll_port, "POST", {"delay_ms": 60_000, "count": -1})
    before = eb.metrics(e["admin"])
    path = f"/proxy/v1/things/42?delay_ms={UPSTREAM_MS}"
    seconds = int(OUTAGE_S + RECOVERY_S + 0.999)
    load = subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
                             "-H", f"x-subscription-key: {eb.KEY}", f"http://127.0.0.1:{e['listener']}{path}"],
                            stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    # pace: the outage lasts OUTAGE_S under load
    time.sleep(OUTAGE_S)
    faults(coll_port, "DELETE")
    faults(coll_port, "POST", {"delay_ms": COLLECTOR_MS, "count": -1})
    back = time.time()
    at_recovery = eb.metrics(e["admin"])
    drained_s, peak = None, at_recovery.get("buffer_events", 0)
    while load.poll() is None:
        m = eb.metrics(e["admin"])
        peak = max(peak, m.get("buffer_events", 0))
        if drained_s is None and m.get("buffer_events", 0) < DRAINED:
            drained_s = time.time() - back
        # poll: the gauge is published every 100 ms
        time.sleep(0.05)
    out = load.communicate()[0]
    faults(coll_port, "DELETE")
    after = eb.settle("usage_http", e["admin"], timeout=30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    d = lambda m, k: m.get(k, 0) - at_recovery.get(k, 0)  # noqa: E731
    return {"drain_s": drained_s, "dropped_after_recovery": d(after, "events_dropped_buffer_full"),
            "captured_after_recovery": d(after, "events_captured"),
            "dropped_in_outage": at_recovery.get("events_dropped_buffer_full", 0)
            - before.get("events_dropped_buffer_full", 0),
            "held_at_recovery": at_recovery.get("buffer_events", 0), "peak_held": peak,
            "send_failed": eb.delta(after, before, "events_dropped_send_failed"), "rps": rps,
            "wall_s": time.time() - t0,
            "books": after.get("events_captured", 0) == sum(after.get(k, 0) for k in (
                "events_delivered", "events_dropped_buffer_full", "events_dropped_send_failed",
                "events_dropped_rejected")) + after.get("buffer_events", 0)}


def row(name, vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return f"{name}: —"
    return f"{name} {fmt(statistics.median(vals))} ({fmt(min(vals))} … {fmt(max(vals))})"


def main():
    envoy = subprocess.check_output([os.path.join(eb.ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    workdir = os.path.join(eb.OUT, "backlog")
    os.makedirs(workdir, exist_ok=True)
    procs, results = [], {v: [] for v in VARIANTS}
    load_before = os.getloadavg()
    try:
        coll_port, up_port = eb.free_port(), eb.free_port()
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "collector"), "--listen",
                                       f"127.0.0.1:{coll_port}", "--out", os.path.join(workdir, "events.ndjson")],
                                      stderr=open(os.path.join(workdir, "collector.stderr"), "wb")))
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "demo-upstream"), "--listen",
                                       f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL))
        envoys = {}
        for v in VARIANTS:
            ports = {"listener": eb.free_port(), "admin": eb.free_port(), "upstream": up_port,
                     "collector": coll_port, "sse_upstream": eb.free_port()}
            cfg = eb.envoy_config("usage_http", ports, workdir)
            hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["http_filters"][0]["typed_config"]["config"]["configuration"] = eb.struct(
                {"enabled": True, "sinks": ["http"], "http": dict(HTTP, backlog_batch_size=v)})
            path = os.path.join(workdir, f"backlog_{v}.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            p = subprocess.Popen(eb.envoy_command(envoy, path, eb.ENVOY_CPU),
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"backlog_{v}.stderr"), "wb"))
            procs.append(p)
            eb.wait_ready(ports["admin"], p, f"backlog_{v}")
            envoys[v] = ports
        for r in range(ROUNDS):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for v in order:
                m = measure(envoys[v], coll_port)
                m["loadavg"] = os.getloadavg()[0]
                results[v].append(m)
                print(f"round {r + 1} backlog_batch_size {v}: {json.dumps(m)}", flush=True)
    finally:
        eb.stop_all(procs)
    load_after = os.getloadavg()
    summary = {"settings": {"rounds": ROUNDS, "connections": CONNECTIONS, "upstream_ms": UPSTREAM_MS,
                            "collector_ms": COLLECTOR_MS, "outage_s": OUTAGE_S, "recovery_s": RECOVERY_S,
                            "drained_below": DRAINED, "http": HTTP},
               "loadavg_before": load_before, "loadavg_after": load_after,
               "runs": {str(v): rs for v, rs in results.items()}}
    with open(os.path.join(eb.OUT, "backlog.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nbacklog drain, {ROUNDS} rounds, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"median (min … max)")
    for v, rs in results.items():
        name = "off (= batch_size 100)" if v == HTTP["batch_size"] else f"backlog_batch_size {v}"
        undrained = sum(1 for m in rs if m["drain_s"] is None)
        print(f"- {name}: " + "; ".join([
            row("drain s", [m["drain_s"] for m in rs], lambda x: f"{x:.2f}")
            + (f", not drained in {RECOVERY_S:.0f} s in {undrained} of {len(rs)}" if undrained else ""),
            row("dropped after recovery", [m["dropped_after_recovery"] for m in rs], lambda x: f"{x:,.0f}"),
            row("of captured after recovery %", [100 * m["dropped_after_recovery"] / max(1, m["captured_after_recovery"])
                                                 for m in rs], lambda x: f"{x:.1f}"),
            row("req/s", [m["rps"] for m in rs], lambda x: f"{x:,.0f}"),
            f"books balanced {sum(m['books'] for m in rs)}/{len(rs)}"]))


if __name__ == "__main__":
    main()
