#!/usr/bin/env python3
"""`make bench`, part (b3): every configuration loaded at the same time, on one shared CPU.

Part (b) measures one Envoy at a time, so each configuration meets the machine as it is during
its own 3 seconds. On this VM that varies by tens of percent from one measurement to the next:
two Envoys running the same floor filter differ by up to ±30 µs per request in a round, where
"≤ 1.10× the floor" asks to tell ~2.4 µs apart.

Here every Envoy (one worker each, all pinned to BENCH_ENVOY_CPU) is loaded by its own wrk at
once (all pinned to BENCH_LOAD_CPU), for the same seconds, so whatever the machine does in a
round it does to all of them. Each Envoy's cost is its own CPU time per request it answered
(every thread's time on the CPU, in ns, from /proc/<pid>/task/*/schedstat: /proc's utime and
stime count whole 10 ms ticks, ~0.6 µs per request at the ~9,000 requests an Envoy answers
here in a round); overhead = cost - the no-filter Envoy's cost in the same round; a difference
of two configurations is taken within each round, and a ratio is 1 + the median difference ÷
the median overhead of the second. The figures are not part (b)'s: sharing one CPU, each Envoy
runs in time slices and serves ~1/N of the rate, so work paid per second (a timer, a flush)
weighs N times more per request. It is the differences and ratios this part is for.

Every round starts the Envoys afresh, in an order rotated from round to round (launch, ports,
load and reading): with one set of processes for a whole run, two Envoys of one `.wasm` kept
a ~1 µs difference in every round.

`probe_floor` is the floor filter built a second time (bench/probe-filter with feature
`floor`, byte-identical): its difference to `floor` is this instrument's own error, shown
beside the rest. `probe_floor_post_bare` is the floor plus one POST of a real 100-event `veil`
body per 100 requests (no encoding: the bytes are made once at start), started by a 100 ms
tick, two in flight: a lower bound for an http sink that makes the floor's four host calls and
sends SPEC's default batches uncompressed. `probe_floor_post_cut` is the floor plus the
filter's own batch work (records held, encoded, sent, answered; bench/probe-filter/src/batch.rs).

A round is refused (and run again once) when wrk saw a socket error or a non-2xx answer, an
Envoy answered a different number of requests than its wrk counted (two Envoys on one port), a
usage filter captured fewer events than wrk got answers, a probe sent fewer batches than one
per 100 requests, the collector refused a batch, a batch was retried or failed, a callout was
refused, or a filter's books (captured = delivered + dropped + buffered) do not balance.

Settings (environment):
  CONC_ROUNDS=10      rounds
  CONC_SECONDS=6      wrk duration of a round (every Envoy at once)
  CONC_CONNECTIONS=16 connections of each wrk
  CONC_CONFIGS=...    the configurations (default below; `none` and `floor` are always in)
  BENCH_VARIANTS, BENCH_ENVOY_CPU, BENCH_LOAD_CPU as in envoy_bench.py

Writes bench/results/concurrent.json. Standard library only.
"""
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BENCH_ROUTES", "direct")
import envoy_bench as eb  # noqa: E402  (its settings are read from the environment above)

ROUNDS = max(1, int(os.environ.get("CONC_ROUNDS", "10")))
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
    "probe_floor_post_bare": "the floor + a bare POST of a real 100-event body per 100 requests (the bound)",
    "probe_floor_post_cut": "the floor + the filter's batch work (records held, encoded, sent, answered)",
    "usage_http_b10k": "usage-filter, http sink, `batch_size` 10,000 (the callouts priced)",
})
_unknown = [k for k in CONFIGS if k not in NAMES and not k.startswith("usage_http_")]
if _unknown:
    sys.exit(f"CONC_CONFIGS: unknown {_unknown}; known: {sorted(NAMES)}")
# the ratios issue 22 sets goals for, and the bound beside them
GOALS = [("usage_http", "floor", 1.10), ("usage_log", "usage_http", 1.2), ("usage_shared_queue", "floor", 1.10),
         ("probe_floor_post_bare", "floor", None), ("probe_floor_post_cut", "floor", None), ("probe_floor", "floor", None)]
# the http sink's cost above the floor, taken apart by the bound probes (each a difference per round)
PARTS = [("bytes", "probe_floor_post_bare", "floor"), ("batch_work", "probe_floor_post_cut", "probe_floor_post_bare"),
         ("rest", "usage_http", "probe_floor_post_cut"), ("total", "usage_http", "floor")]


def cpu_ns(pid):
    """Every thread's time on the CPU so far, in ns (Envoy's threads live as long as it does)."""
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended between the listing and the read
    return total


def ports(n):
    """n ports free now and distinct from each other (each socket held until all are picked)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def load(port, out):
    try:
        out.update(eb.wrk(port, "direct", SECONDS, connections=CONNECTIONS))
    except (OSError, subprocess.CalledProcessError, AttributeError, ValueError) as e:  # no wrk, or no report
        out["error"] = f"wrk: {e}"


def launch(envoy, workdir, kind, ports_of, up_port, coll_port, procs, attempt):
    p_listener, p_admin = ports_of
    pmap = {"listener": p_listener, "admin": p_admin, "upstream": up_port, "collector": coll_port, "sse_upstream": 0}
    cfg = eb.envoy_config(kind, pmap, workdir)
    # a listener port another Envoy of the round holds must fail to bind, not be shared
    cfg["static_resources"]["listeners"][0]["enable_reuse_port"] = False
    cfg_path = os.path.join(workdir, f"{kind}.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    # stdout to a file, as part (b): the log sink's lines are written there
    with open(os.path.join(workdir, f"{kind}.{attempt}.stderr"), "wb") as err, \
            open(os.path.join(workdir, f"{kind}.stdout"), "wb") as out:
        p = subprocess.Popen(eb.envoy_command(envoy, cfg_path, eb.ENVOY_CPU, flush=True), stdout=out, stderr=err)
    procs.append(p)
    return pmap, p


def start_envoys(envoy, workdir, order, up_port, coll_port, procs):
    """One Envoy per configuration, all pinned to the Envoy CPU, started together and warmed up.
    An Envoy that exits at start is started again on new ports (three times at most): a port
    free when it was picked may be some connection's by the time Envoy binds it, and every round
    starts them all again, between rounds that open thousands of connections."""
    picked = ports(2 * len(order))
    starting = [(kind, *launch(envoy, workdir, kind, picked[2 * i:2 * i + 2], up_port, coll_port, procs, 1))
                for i, kind in enumerate(order)]
    envoys = {}
    for kind, pmap, p in starting:
        for attempt in (2, 3, 4):
            try:
                eb.wait_ready(pmap["admin"], p, kind)
                break
            except RuntimeError:
                if attempt == 4 or p.poll() is None:
                    raise RuntimeError(f"envoy for {kind} did not start (bench/results/concurrent/{kind}.*.stderr)")
                print(f"{kind} exited at start, started again on new ports (attempt {attempt})", flush=True)
                pmap, p = launch(envoy, workdir, kind, ports(2), up_port, coll_port, procs, attempt)
        pmap["pid"], pmap["proc"] = p.pid, p
        envoys[kind] = pmap
    failed = []

    def warm(kind):  # every VM and connection pool, all at once; a failure stops the run below
        try:
            eb.wrk(envoys[kind]["listener"], "direct", 1)
        except (subprocess.CalledProcessError, AttributeError, ValueError) as e:
            failed.append(f"{kind}: {e}")
    threads = [threading.Thread(target=warm, args=(k,)) for k in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise RuntimeError(f"warm-up failed: {'; '.join(failed)}")
    return envoys


def one_round(envoys, order, coll_port):
    """Every Envoy loaded at once. Returns ({kind: µs of CPU per request}, {kind: req/s}, reasons
    it is refused)."""
    before = {k: eb.settle(k, envoys[k]["admin"]) for k in order}
    answered = {k: eb.answered(envoys[k]["admin"]) for k in order}
    posts = {k: eb.cluster_stats(envoys[k]["admin"]).get("collector.upstream_rq_total", 0)
             for k in order if "_post_" in k}
    coll_before = eb.collector_stats(coll_port)
    cpu_before = {k: cpu_ns(envoys[k]["pid"]) for k in order}
    outs = {k: {} for k in order}
    threads = [threading.Thread(target=load, args=(envoys[k]["listener"], outs[k])) for k in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu_after = {k: cpu_ns(envoys[k]["pid"]) for k in order}
    after = {k: eb.settle(k, envoys[k]["admin"]) for k in order}
    coll_after = eb.collector_stats(coll_port)
    refused = []
    for k in order:
        o = outs[k]
        if "error" in o or not o.get("requests"):
            refused.append(f"{k}: {o.get('error', 'no requests answered')}")
            continue
        refused += [f"{k}: {why}" for why in eb.refusals(k, o, before[k], after[k], CONNECTIONS)]
        served = eb.answered(envoys[k]["admin"]) - answered[k]
        if not o["requests"] <= served <= o["requests"] + CONNECTIONS:
            refused.append(f"{k}: the Envoy answered {served} requests, its wrk counted {o['requests']}")
        if not eb.balanced(k, after[k]):
            refused.append(f"{k}: accounting does not hold ({after[k]})")
        if k in posts:
            sent = eb.cluster_stats(envoys[k]["admin"]).get("collector.upstream_rq_total", 0) - posts[k]
            if sent < o["requests"] // 100 - 3:
                refused.append(f"{k}: {sent} batches sent for {o['requests']} requests")
    refused += eb.collector_refusals(coll_before, coll_after)
    cost = {k: (cpu_after[k] - cpu_before[k]) / 1e3 / max(outs[k].get("requests", 0), 1) for k in order}
    rates = {k: outs[k].get("requests", 0) / SECONDS for k in order}
    return cost, rates, refused


def stats(values):
    return {**eb.stats(values), "sd": statistics.pstdev(values)}


def summarize(rows):
    over = {k: [r["cost"][k] - r["cost"]["none"] for r in rows] for k in CONFIGS if k != "none"}

    def diff(a, b):
        return [x - y for x, y in zip(over[a], over[b])]

    result = {"configs": {}, "goals": [], "parts": {}}
    for k in CONFIGS:
        entry = {"name": NAMES.get(k, k), "cpu_us": stats([r["cost"][k] for r in rows]),
                 "rps": statistics.median(r["rates"][k] for r in rows)}
        if k != "none":
            entry["overhead_us"] = stats(over[k])
            if k != "floor":
                d = diff(k, "floor")
                entry["minus_floor_us"] = {**stats(d), "above_zero": sum(x > 0 for x in d)}
        result["configs"][k] = entry
    for a, b, goal in GOALS:
        if a in over and b in over:
            den = statistics.median(over[b])
            d = diff(a, b)
            per_round = [x / y for x, y in zip(over[a], over[b]) if y > 0]
            if den <= 0 or not per_round:
                continue
            # paired: 1 + the median of the per-round differences ÷ the median overhead of b
            result["goals"].append({"a": a, "b": b, "goal": goal, "value": 1 + statistics.median(d) / den,
                                    "min": min(per_round), "max": max(per_round), "difference_us": stats(d)})
    for name, a, b in PARTS:
        if a in over and b in over:
            result["parts"][name] = stats(diff(a, b))
    return result


def main():
    envoy = subprocess.check_output([os.path.join(eb.ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    for kind in CONFIGS:
        if kind.startswith("probe_") and not os.path.isfile(os.path.join(eb.DIST, f"{kind}.wasm")):
            sys.exit(f"dist/{kind}.wasm missing: run bench/build.sh")
    workdir = os.path.join(eb.OUT, "concurrent")
    os.makedirs(workdir, exist_ok=True)
    out_path = os.path.join(eb.OUT, "concurrent.json")
    if os.path.exists(out_path):  # a run that stops early leaves no report of an earlier one behind
        os.remove(out_path)
    load_before = os.getloadavg()
    print(f"{len(CONFIGS)} Envoys loaded at once, {ROUNDS} rounds of {SECONDS}s, each round with Envoys "
          "started afresh", flush=True)
    procs, rows, refusals = [], [], []
    try:
        up_port, coll_port = ports(2)
        procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "demo-upstream"),
                                       "--listen", f"127.0.0.1:{up_port}"], stderr=subprocess.DEVNULL))
        with open(os.path.join(workdir, "collector.stderr"), "wb") as err:
            procs.append(subprocess.Popen(["taskset", "-c", eb.LOAD_CPU, os.path.join(eb.BIN, "collector"),
                                           "--listen", f"127.0.0.1:{coll_port}", "--out", os.devnull], stderr=err))
        for rnd in range(ROUNDS):
            order = CONFIGS[rnd % len(CONFIGS):] + CONFIGS[:rnd % len(CONFIGS)]
            for attempt in (1, 2):
                envoys = start_envoys(envoy, workdir, order, up_port, coll_port, procs)
                cost, rates, refused = one_round(envoys, order, coll_port)
                eb.stop_all([envoys[k]["proc"] for k in order])
                if not refused:
                    break
                refusals.append({"round": rnd, "attempt": attempt, "reasons": refused})
                print(f"REFUSED (round {rnd}, attempt {attempt}): {'; '.join(refused)}", flush=True)
                if attempt == 2:
                    raise RuntimeError(f"round {rnd} refused twice, benchmark stopped: {'; '.join(refused)}")
            rows.append({"round": rnd, "order": order, "cost": cost, "rates": rates})
            print(f"round {rnd} " + "  ".join(f"{k} {cost[k]:.1f}" for k in CONFIGS), flush=True)
    finally:
        eb.stop_all([p for p in procs if p.poll() is None])
    result = summarize(rows)
    result.update(commit=eb.git_commit(), finished_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  rounds=ROUNDS, seconds=SECONDS, connections=CONNECTIONS,
                  pinning={"envoy_cpu": eb.ENVOY_CPU, "load_cpu": eb.LOAD_CPU}, variants=eb.VARIANTS,
                  order=CONFIGS, runs=rows, refusals=refusals,
                  load_average={"before": load_before[0], "after": os.getloadavg()[0]})
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    for k, c in result["configs"].items():
        if "minus_floor_us" in c:
            d = c["minus_floor_us"]
            print(f"{k:24} over none {c['overhead_us']['median']:6.2f} µs   minus floor {d['median']:+6.2f} "
                  f"({d['min']:+.2f} … {d['max']:+.2f}, above zero in {d['above_zero']}/{ROUNDS})")
    for g in result["goals"]:
        print(f"{g['a']} ÷ {g['b']}: {g['value']:.3f} ({g['min']:.3f} … {g['max']:.3f})"
              + (f"  goal ≤ {g['goal']}" if g["goal"] else ""))


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        sys.exit(f"bench (b3): FAILED: {e}")
