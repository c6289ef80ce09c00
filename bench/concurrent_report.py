"""docs/bench.md's part (b3) (bench/concurrent_bench.py): every configuration loaded at once."""


def goal(c, a, b):
    """The (b3) ratio of a over b, when that run measured both, or None."""
    if c is None:
        return None
    return next((g for g in c["goals"] if g["a"] == a and g["b"] == b), None)


def cell(g):
    return "—" if g is None else f"{g['value']:.2f} ({g['min']:.2f} … {g['max']:.2f})"


def signed(s):
    return f"{s['median']:+.2f} ({s['min']:+.2f} … {s['max']:+.2f})"


def section(L, c):
    if c is None:
        return
    n = c["rounds"]
    L.append("## (b3) Every configuration loaded at once, on one CPU\n")
    L.append(f"`bench/concurrent_bench.py`, {n} rounds of {c['seconds']} s (commit `{c['commit']}`, "
             f"{c['finished_utc']}; load average {c['load_average']['before']:.1f} before, "
             f"{c['load_average']['after']:.1f} after): all {len(c['order'])} Envoys (one worker each) pinned to "
             f"CPU {c['pinning']['envoy_cpu']} and loaded together, each by its own wrk ({c['connections']} "
             f"connections, all on CPU {c['pinning']['load_cpu']}), on the `direct_response` route; every Envoy "
             "started afresh each round, in an order rotated from round to round. Whatever the machine does in "
             "a round, it does to every configuration, and a difference is taken within a round. The floor "
             "built twice (`probe_floor`, byte-identical) shows what is left of the machine: compare its row "
             "with part (b)'s per-round spread. Cost is each Envoy's CPU time (every thread, in ns) per "
             "request it answered. Sharing the CPU, each serves about 1/N of part (b)'s rate, so work paid "
             "per second (a timer, a log flush) weighs N times more per request: read the differences and "
             "ratios, not the absolute µs.\n")
    L.append("| configuration | req/s (each, sharing the CPU) | CPU µs/request | over no filter | minus the floor, "
             "per round | above zero |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for k in c["order"]:
        e = c["configs"][k]
        ov = e.get("overhead_us")
        d = e.get("minus_floor_us")
        over = "—" if ov is None else f"{ov['median']:.2f}"
        minus = "—" if d is None else signed(d)
        above = "—" if d is None else f"{d['above_zero']}/{n}"
        L.append(f"| {e['name']} (`{k}`) | {e['rps']:,.0f} | {e['cpu_us']['median']:.1f} | {over} | {minus} | {above} |")
    L.append("")
    L.append("Ratios of overheads: 1 + the median of the per-round differences ÷ the median overhead of the "
             "second (per-round min … max of the ratio):\n")
    L.append("| ratio | value | goal |")
    L.append("|---|---:|---|")
    for g in c["goals"]:
        target = "—"
        if g["goal"] is not None:
            target = f"≤ {g['goal']}: " + ("met" if g["value"] <= g["goal"] else "**not met**")
        L.append(f"| `{g['a']}` ÷ `{g['b']}` | {cell(g)} | {target} |")
    L.append("")
    attribution(L, c)
    bare = goal(c, "probe_floor_post_bare", "floor")
    if bare:
        L.append(f"**The bound:** the floor plus nothing but the POSTs of real 100-event bodies, one per 100 "
                 f"requests, costs {bare['value']:.2f}× the floor ({bare['min']:.2f} … {bare['max']:.2f} per "
                 "round). An http sink that makes the floor's four host calls and sends SPEC's default batches "
                 "(100 `veil` events, uncompressed) does at least that much, so within this instrument's error "
                 "(the `probe_floor` row) it cannot measure below that ratio here, whatever else its wasm "
                 "does.\n")


def attribution(L, c):
    """The http sink's cost above the floor, taken apart with the bound probes of the same run."""
    p = c.get("parts", {})
    if not all(k in p for k in ("bytes", "batch_work", "rest", "total")):
        return
    L.append("Where the http sink's cost above the floor goes (each row the median of one difference per round, "
             "so the rows need not add up exactly; each carries the instrument's error, the `probe_floor` row):\n")
    L.append("| part | µs per request |")
    L.append("|---|---:|")
    L.append(f"| Envoy sending the batches' bytes, and the probe's 100 ms tick (`probe_floor_post_bare` − `floor`) | "
             f"{signed(p['bytes'])} |")
    L.append(f"| the filter's batch work: records held, encoded, a batch id, the tick's work, the answer read "
             f"(`probe_floor_post_cut` − `probe_floor_post_bare`) | {signed(p['batch_work'])} |")
    L.append(f"| the rest: the request path (the map parsed, the event and its record made) and the filter's own "
             f"dispatcher around the batches (`usage_http` − `probe_floor_post_cut`) | {signed(p['rest'])} |")
    L.append(f"| **the http sink above the floor** (`usage_http` − `floor`) | **{signed(p['total'])}** |")
    L.append("")
