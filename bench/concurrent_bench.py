#!/usr/bin/env python3
"""`make bench`, part (b3): every configuration loaded at the same time, on one shared CPU.

Part (b) measures one Envoy at a time, so each configuration meets the machine as it is during
its own 3 seconds. On this VM that varies by tens of percent from one measurement to the next:
two Envoys running the same floor filter differ by up to ±30 µs per request in a round, and
a 15-round median by a few µs, more than the ~2.4 µs that "≤ 1.10× the floor" asks to resolve.

Here every Envoy (one worker each, all pinned to BENCH_ENVOY_CPU) is loaded by its own wrk at
once (all pinned to BENCH_LOAD_CPU), for the same seconds, so whatever the machine does in a
round it does to all of them. Each Envoy's cost is its own CPU time (user + system, every
thread, from /proc) per request it answered; overhead = cost - the no-filter Envoy's cost in
the same round; a difference of two configurations is taken within each round. The figures
are not part (b)'s: sharing one CPU, each Envoy runs in time slices and serves ~1/N of the
rate. It is the ratios and the differences this part is for.

The Envoys are started afresh every round: two Envoys running the same `.wasm` keep a
difference of about a µs for their whole life (each process's layout), so one set of processes
for the whole run would carry that bias into every figure.

`probe_floor` is the floor filter built a second time (bench/probe-filter with feature
`floor`): its difference to `floor` is this instrument's own error, shown beside the rest.
`probe_floor_post_bare` is the floor plus one POST of a real 100-event body per 100 requests
(no encoding: the bytes are made once at start): no http sink at `batch_size` 100 can cost less.
`probe_floor_post_cut` is the floor plus the filter's own batch work (records held, encoded,
sent, answered; bench/probe-filter/src/batch.rs).

A round is refused (and run again once) when wrk saw a socket error or a non-2xx answer, or a
usage filter captured fewer events than wrk got answers, or the collector refused a batch, a
batch was retried or failed, or a callout was refused.

Settings (environment):
  CONC_ROUNDS=10      rounds
  CONC_SECONDS=6      wrk duration of a round (every Envoy at once)
  CONC_CONNECTIONS=16 connections of each wrk
  CONC_CONFIGS=...    the configurations (default below; `none` and `floor` are always in)
  BENCH_VARIANTS, BENCH_ENVOY_CPU, BENCH_LOAD_CPU as in envoy_bench.py

Writes bench/results/concurrent.json. Standard library only.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BENCH_ROUTES", "direct")
import envoy_bench as eb  # noqa: E402  (its settings are read from the environment above)

ROUNDS = int(os.environ.get("CONC_ROUNDS", "10"))
SECONDS = int(os.environ.get("CONC_SECONDS", "6"))
CONNECTIONS = int(os.environ.get("CONC_CONNECTIONS", "16"))
DEFAULT = ("none,floor,probe_floor,usage_http,usage_http_b10k,usage_log,usage_shared_queue,"
           "probe_floor_post_bare,probe_floor_post_cut")
CONFIGS = [c for c in os.environ.get("CONC_CONFIGS", DEFAULT).split(",") if c]
for _k in ("floor", "none"):
    if _k not in CONFIGS:
        CONFIGS.insert(0, _k)
CONFIGS += [f"usage_http_{n}" for n in eb.VARIANTS if f"usage_http_{n}" not in CONFIGS]
NAMES = dict(eb.NAMES)
NAMES.update({
    "probe_floor": "the floor again, built from bench/probe-filter (the instrument's own error)",
    "probe_floor_post_bare": "the floor + a bare POST of a real 100-event body per 100 requests: the least an http sink at `batch_size` 100 costs",
    "probe_floor_post_cut": "the floor + the filter's batch work (records held, encoded, sent, answered)",
    "usage_http_b10k": "usage-filter, http sink, `batch_size` 10,000 (the callouts priced)",
})
# the ratios issue 22 sets goals for, and the bound beside them
GOALS = [("usage_http", "floor", 1.10), ("usage_log", "usage_http", 1.2), ("usage_shared_queue", "floor", 1.10),
         ("probe_floor_post_bare", "floor", None), ("probe_floor_post_cut", "floor", None), ("probe_floor", "floor", None)]
PATH = "/direct/v1/things/42?expand=owner"


def load(port, out):
    p = subprocess.run(["taskset", "-c", eb.LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s",
                        "-H", f"x-subscription-key: {eb.KEY}", f"http://127.0.0.1:{port}{PATH}"],
                       capture_output=True, text=True)
    text = p.stdout
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    out["requests"] = int(m.group(1)) if m else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = sum(int(v) for _, v in re.findall(r"(\w+) (\d+)", sock.group(1))) if sock else 0
    if p.returncode or not m:
        out["error"] = f"wrk exited {p.returncode}: {p.stderr.strip()[:200]}"


def one_round(envoys, coll_port, last):
    """Every Envoy loaded at once. Returns ({kind: µs of CPU per request}, reasons refused)."""
    coll_before = eb.collector_stats(coll_port)
    cpu_before = {k: eb.cpu_seconds(envoys[k]["pid"]) for k in CONFIGS}
    outs = {k: {} for k in CONFIGS}
    threads = [threading.Thread(target=load, args=(envoys[k]["listener"], outs[k])) for k in CONFIGS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = {k: eb.settle(k, envoys[k]["admin"]) for k in CONFIGS}
    cost = {k: (eb.cpu_seconds(envoys[k]["pid"]) - cpu_before[k]) * 1e6 / max(outs[k]["requests"], 1)
            for k in CONFIGS}
    coll_after = eb.collector_stats(coll_port)
    refused = []
    for k in CONFIGS:
        o = outs[k]
        if o.get("error") or o["non2xx"] or o["socket_errors"]:
            refused.append(f"{k}: {o.get('error') or ''} non-2xx {o['non2xx']}, socket errors {o['socket_errors']}")
        if k.startswith("usage_"):
            captured = eb.delta(after[k], last[k], "events_captured")
            if not o["requests"] <= captured <= o["requests"] + CONNECTIONS:
                refused.append(f"{k}: {captured} events captured for {o['requests']} answered requests")
        if eb.sends(k):
            for key in ("batches_failed", "batch_retries", "callouts_refused"):
                if eb.delta(after[k], last[k], key):
                    refused.append(f"{k}: {key} +{eb.delta(after[k], last[k], key)}")
            if after[k].get("buffer_events", 0):
                refused.append(f"{k}: {after[k]['buffer_events']} events still buffered (settle timed out)")
    for key in ("rejected_batches", "invalid_events"):
        if coll_after.get(key, 0) != coll_before.get(key, 0):
            refused.append(f"collector {key} +{coll_after.get(key, 0) - coll_before.get(key, 0)}")
    last.update(after)
    rates = {k: outs[k]["requests"] / SECONDS for k in CONFIGS}
    return cost, rates, refused


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "sd": statistics.pstdev(values)}


def summarize(rows):
    over = {k: [r["cost"][k] - r["cost"]["none"] for r in rows] for k in CONFIGS if k != "none"}
    result = {"configs": {}, "goals": []}
    for k in CONFIGS:
        entry = {"name": NAMES.get(k, k), "cpu_us": stats([r["cost"][k] for r in rows]),
                 "rps": statistics.median(r["rates"][k] for r in rows)}
        if k != "none":
            entry["overhead_us"] = stats(over[k])
            if k != "floor":
                diff = [a - b for a, b in zip(over[k], over["floor"])]
                entry["minus_floor_us"] = {**stats(diff), "above_zero": sum(d > 0 for d in diff)}
        result["configs"][k] = entry
    for a, b, goal in GOALS:
        if a in over and b in over:
            per_round = [x / y for x, y in zip(over[a], over[b]) if y > 0]
            value = statistics.median(over[a]) / statistics.median(over[b])
            result["goals"].append({"a": a, "b": b, "goal": goal, "value": value,
                                    "min": min(per_round), "max": max(per_round),
                                    "difference_us": stats([x - y for x, y in zip(over[a], over[b])])})
    return result


def launch(envoy, workdir, kind, up_port, coll_port):
    ports = {"listener": eb.free_port(), "admin": eb.free_port(), "upstream": up_port,
             "collector": coll_port, "sse_upstream": 0}
    cfg_path = os.path.join(workdir, f"{kind}.json")
    with open(cfg_path, "w") as f:
        json.dump(eb.envoy_config(kind, ports, workdir), f)
    p = subprocess.Popen(["taskset", "-c", eb.ENVOY_CPU, envoy, "-c", cfg_path, "--concurrency", "1",
                          "--disable-hot-restart", "--log-level", "error", "--file-flush-interval-msec", "100"],
                         stdout=open(os.devnull, "wb"),
                         stderr=open(os.path.join(workdir, f"{kind}.stderr"), "wb"))
    return ports, p


def start_envoys(envoy, workdir, up_port, coll_port, procs):
    """One Envoy per configuration, all pinned to the Envoy CPU, started together and warmed up.
    An Envoy that exits at start is started again on new ports (three times at most): a port
    free when it was picked may be some connection's by the time Envoy binds it, and every round
    starts them all again, between rounds that open thousands of connections."""
    envoys = {}
    starting = [(kind, *launch(envoy, workdir, kind, up_port, coll_port)) for kind in CONFIGS]
    for kind, ports, p in starting:
        for attempt in (1, 2, 3):
            procs.append(p)
            try:
                eb.wait_ready(ports["admin"], p, kind)
                break
            except RuntimeError:
                if attempt == 3 or p.poll() is None:
                    raise
                print(f"{kind} exited at start (attempt {attempt}), started again on new ports", flush=True)
                ports, p = launch(envoy, workdir, kind, up_port, coll_port)
        ports["pid"], ports["proc"] = p.pid, p
        envoys[kind] = ports
    warm = [threading.Thread(target=eb.wrk, args=(envoys[k]["listener"], "direct", 1)) for k in CONFIGS]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    return envoys


def accounting(envoys):
    """Each sending filter's books: captured = delivered + dropped + buffered."""
    problems = []
    for kind in CONFIGS:
        if eb.sends(kind):
            m = eb.metrics(envoys[kind]["admin"])
            held = sum(m.get(k, 0) for k in ("events_delivered", "buffer_events") + eb.DROPS)
            if m.get("events_captured") != held:
                problems.append(f"{kind}: accounting does not hold ({m})")
    return problems


def main():
    envoy = subprocess.check_output([os.path.join(eb.ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    for kind in CONFIGS:
        if kind.startswith("probe_") and not os.path.isfile(os.path.join(eb.DIST, f"{kind}.wasm")):
            sys.exit(f"dist/{kind}.wasm missing: run bench/build.sh")
    workdir = os.path.join(eb.OUT, "concurrent")
    os.makedirs(workdir, exist_ok=True)
    load_before = os.getloadavg()
    print(f"{len(CONFIGS)} Envoys loaded at once, {ROUNDS} rounds of {SECONDS}s, each round with Envoys "
          "started afresh", flush=True)
    procs, rows, refusals, problems = [], [], [], []
    try:
        up_port, coll_port = eb.free_port(), eb.free_port()
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "demo-upstream"),
                                       "--listen", f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "collector"), "--listen",
                                       f"127.0.0.1:{coll_port}", "--out", os.devnull],
                                      stderr=open(os.path.join(workdir, "collector.stderr"), "wb")))
        for rnd in range(ROUNDS):
            # New processes every round: two Envoys running one .wasm keep a difference of about
            # a µs for their whole life (where each one's code and heap fell), which a fresh
            # start every round turns into noise that the rounds average out.
            envoys = start_envoys(envoy, workdir, up_port, coll_port, procs)
            last = {k: eb.settle(k, envoys[k]["admin"]) for k in CONFIGS}
            for attempt in (1, 2):
                cost, rates, refused = one_round(envoys, coll_port, last)
                if not refused:
                    break
                refusals.append({"round": rnd, "attempt": attempt, "reasons": refused})
                print(f"REFUSED (round {rnd}, attempt {attempt}): {'; '.join(refused)}", flush=True)
                if attempt == 2:
                    raise RuntimeError(f"round {rnd} refused twice, benchmark stopped: {'; '.join(refused)}")
            problems += [f"round {rnd}: {p}" for p in accounting(envoys)]
            eb.stop_all([envoys[k]["proc"] for k in CONFIGS])
            rows.append({"round": rnd, "cost": cost, "rates": rates})
            print(f"round {rnd} " + "  ".join(f"{k} {cost[k]:.1f}" for k in CONFIGS), flush=True)
    finally:
        eb.stop_all([p for p in procs if p.poll() is None])
    result = summarize(rows)
    result.update(commit=eb.git_commit(), finished_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  rounds=ROUNDS, seconds=SECONDS, connections=CONNECTIONS,
                  pinning={"envoy_cpu": eb.ENVOY_CPU, "load_cpu": eb.LOAD_CPU}, variants=eb.VARIANTS,
                  order=CONFIGS, runs=rows, refusals=refusals, problems=problems,
                  load_average={"before": load_before[0], "after": os.getloadavg()[0]})
    with open(os.path.join(eb.OUT, "concurrent.json"), "w") as f:
        json.dump(result, f, indent=2)
    for k, c in result["configs"].items():
        if "minus_floor_us" in c:
            d = c["minus_floor_us"]
            print(f"{k:24} over none {c['overhead_us']['median']:6.2f} µs   minus floor {d['median']:+6.2f} "
                  f"({d['min']:+.2f} … {d['max']:+.2f}, above zero in {d['above_zero']}/{ROUNDS})")
    for g in result["goals"]:
        print(f"{g['a']} ÷ {g['b']}: {g['value']:.3f} ({g['min']:.3f} … {g['max']:.3f})"
              + (f"  goal ≤ {g['goal']}" if g["goal"] else ""))
    if problems:
        raise RuntimeError("; ".join(problems))


if __name__ == "__main__":
    main()
