#!/usr/bin/env python3
"""The batch-callout bisection (issue 22) in burst mode: what one batch callout costs Envoy,
step by step, without the request path around it.

One Envoy per probe (bench/probe-filter, features `post_*`: dist/probe_<step>.wasm), each with
one worker pinned to BENCH_ENVOY_CPU, the collector on BENCH_LOAD_CPU. The probes are configured
with N (a StringValue): one request starts N batch callouts of a real 100-event body, two in
flight, each answer starting the next. A measurement sends that one request and waits until the
collector has N more batches; the Envoy's CPU time over the measurement (every thread, from
/proc/<pid>/task/*/schedstat, in ns), less the null filter's for the same wait, divided by N is one batch's
cost in µs of Envoy CPU. Rounds are interleaved, the order rotated; rows give the median of
the rounds with min and max, and each step's difference to the step before it within a round.

Settings (environment): CALLOUT_ROUNDS=15 CALLOUT_BATCHES=1000 CALLOUT_STEPS=post_bare,...
Writes bench/results/callouts.json and prints a table. Standard library only.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envoy_bench as eb  # noqa: E402

ROUNDS = int(os.environ.get("CALLOUT_ROUNDS", "15"))
N = int(os.environ.get("CALLOUT_BATCHES", "1000"))
STEPS = [s for s in os.environ.get(
    "CALLOUT_STEPS", "post_bare,post_headers,post_hold,post_encode,post_tickwork,post_answer,post_handback,post_bodyread,post_cut").split(",") if s]
# each step's predecessor (post_bodyread branches off post_answer)
PREV = {"post_headers": "post_bare", "post_hold": "post_headers", "post_encode": "post_hold", "post_tickwork": "post_encode",
        "post_answer": "post_tickwork", "post_handback": "post_answer", "post_bodyread": "post_answer",
        "post_cut": "post_handback"}


def cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def batches(coll_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{coll_port}/stats", timeout=5) as r:
        s = json.loads(r.read())
    return s["batches"]


def one_request(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/direct/x", headers={"x-subscription-key": eb.KEY})
    c.getresponse().read()
    c.close()


def measure(kind, e, coll_port, want):
    before_b = batches(coll_port)
    before = cpu_ns(e["pid"])
    t0 = time.time()
    one_request(e["listener"])
    if want:
        while batches(coll_port) - before_b < want:
            if time.time() - t0 > 60:
                raise RuntimeError(f"{kind}: {batches(coll_port) - before_b} of {want} batches after 60 s")
            time.sleep(0.02)
    else:
        time.sleep(0.3)
    wall = time.time() - t0
    return {"cpu_us": (cpu_ns(e["pid"]) - before) / 1e3, "wall_s": wall,
            "batches": batches(coll_port) - before_b}


def main():
    envoy = subprocess.check_output([os.path.join(eb.ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    workdir = os.path.join(eb.OUT, "callouts")
    os.makedirs(workdir, exist_ok=True)
    procs = []
    kinds = ["null"] + STEPS
    results = {k: [] for k in kinds}
    try:
        coll_port = eb.free_port()
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "collector"), "--listen",
                                       f"127.0.0.1:{coll_port}", "--out", os.path.join(workdir, "events.ndjson")],
                                      stderr=open(os.path.join(workdir, "collector.stderr"), "wb")))
        envoys = {}
        for kind in kinds:
            ports = {"listener": eb.free_port(), "admin": eb.free_port(), "upstream": eb.free_port(),
                     "collector": coll_port, "sse_upstream": eb.free_port()}
            cfg = eb.envoy_config("null" if kind == "null" else f"probe_{kind}", ports, workdir)
            if kind != "null":
                hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                hcm["http_filters"][0]["typed_config"]["config"]["configuration"] = {
                    "@type": "type.googleapis.com/google.protobuf.StringValue", "value": str(N)}
            path = os.path.join(workdir, f"{kind}.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            p = subprocess.Popen(eb.envoy_command(envoy, path, eb.ENVOY_CPU),
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"{kind}.stderr"), "wb"))
            procs.append(p)
            eb.wait_ready(ports["admin"], p, kind)
            ports["pid"] = p.pid
            envoys[kind] = ports
        # warm-up: every probe sends a burst (connections, VM code)
        for kind in STEPS:
            measure(kind, envoys[kind], coll_port, N)
        for rnd in range(ROUNDS):
            order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
            for kind in order:
                r = measure(kind, envoys[kind], coll_port, 0 if kind == "null" else N)
                r["round"] = rnd
                results[kind].append(r)
                print(f"round {rnd:2} {kind:14} {r['cpu_us'] / max(r['batches'], 1) if kind != 'null' else r['cpu_us']:8.1f} "
                      f"{'µs/batch' if kind != 'null' else 'µs idle'}  {r['wall_s']:.2f} s", flush=True)
        clusters = {k: eb.cluster_stats(envoys[k]["admin"]) for k in kinds}
    finally:
        eb.stop_all(procs)

    def per_batch(kind, rnd):
        r = results[kind][rnd]
        idle = results["null"][rnd]["cpu_us"] / 0.3 * r["wall_s"]  # the null filter's CPU for as long a wait
        return (r["cpu_us"] - idle) / r["batches"]

    rows = {}
    for kind in STEPS:
        v = [per_batch(kind, n) for n in range(ROUNDS)]
        row = {"median": statistics.median(v), "min": min(v), "max": max(v)}
        if kind in PREV and PREV[kind] in STEPS:
            d = [per_batch(kind, n) - per_batch(PREV[kind], n) for n in range(ROUNDS)]
            row["step"] = {"from": PREV[kind], "median": statistics.median(d), "min": min(d), "max": max(d),
                           "positive_rounds": sum(1 for x in d if x > 0)}
        rows[kind] = row
    per_round = {k: [per_batch(k, n) for n in range(ROUNDS)] for k in STEPS}
    out = {"rounds": ROUNDS, "per_round": per_round, "batches_per_measurement": N, "rows": rows, "raw": results, "cluster_stats": clusters,
           "load_average": os.getloadavg()[0], "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    with open(os.path.join(eb.OUT, "callouts.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nµs of Envoy CPU per batch callout, median (min … max) of {ROUNDS} rounds; step = this − the step before, per round")
    for kind, row in rows.items():
        st = row.get("step")
        extra = (f"   step {st['median']:+7.1f} ({st['min']:+.1f} … {st['max']:+.1f}), > 0 in {st['positive_rounds']}/{ROUNDS}"
                 if st else "")
        print(f"{kind:14} {row['median']:7.1f} ({row['min']:.1f} … {row['max']:.1f}){extra}")
    for k, v in clusters.items():
        if v.get("collector.upstream_rq_total"):
            print(f"  {k:14} collector connections {v['collector.upstream_cx_total']}, requests {v['collector.upstream_rq_total']}")


if __name__ == "__main__":
    main()
