"""docs/bench.md's part (b3) (bench/concurrent_bench.py): every configuration loaded at once."""


def goal(c, a, b):
    """The (b3) ratio of a over b, when that run measured both, or None."""
    if c is None:
        return None
    return next((g for g in c["goals"] if g["a"] == a and g["b"] == b), None)


def cell(g):
    return "—" if g is None else f"{g['value']:.2f} ({g['min']:.2f} … {g['max']:.2f})"


def section(L, c):
    if c is None:
        return
    n = c["rounds"]
    L.append("## (b3) Every configuration loaded at once, on one CPU\n")
    L.append(f"`bench/concurrent_bench.py`, {n} rounds of {c['seconds']} s (commit `{c['commit']}`, "
             f"{c['finished_utc']}; load average {c['load_average']['before']:.1f} before, "
             f"{c['load_average']['after']:.1f} after): all {len(c['order'])} Envoys (one worker each) pinned to "
             f"CPU {c['pinning']['envoy_cpu']} and loaded together, each by its own wrk ({c['connections']} "
             f"connections, all on CPU {c['pinning']['load_cpu']}), on the `direct_response` route, every Envoy "
             "started afresh each round (two processes of one `.wasm` keep a ~1 µs difference for life). Whatever "
             "the machine does in a round, it does to every configuration, so a difference taken within a "
             "round keeps little of it: the floor built twice differs by the row `probe_floor` below, "
             "where part (b), measuring one Envoy at a time, sees two such Envoys differ by tens of µs in a "
             "round. Cost is each Envoy's CPU time per request it answered; sharing the CPU, each serves "
             "a fraction of part (b)'s rate, so read the differences and ratios, not the absolute µs.\n")
    L.append("| configuration | req/s (each, sharing the CPU) | CPU µs/request | over no filter | minus the floor, "
             "per round | above zero |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for k in c["order"]:
        e = c["configs"][k]
        ov = e.get("overhead_us")
        d = e.get("minus_floor_us")
        over = "—" if ov is None else f"{ov['median']:.2f}"
        minus = "—" if d is None else f"{d['median']:+.2f} ({d['min']:+.2f} … {d['max']:+.2f})"
        above = "—" if d is None else f"{d['above_zero']}/{n}"
        L.append(f"| {e['name']} (`{k}`) | {e['rps']:,.0f} | {e['cpu_us']['median']:.1f} | {over} | {minus} | {above} |")
    L.append("")
    L.append("Ratios of overheads (the ratio of the medians, per-round min … max):\n")
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
        L.append(f"**The bound:** the floor plus nothing but the POST of a real 100-event body per 100 requests "
                 f"costs {bare['value']:.2f}× the floor ({bare['min']:.2f} … {bare['max']:.2f}). Any http sink at "
                 "SPEC's `batch_size` of 100 makes at least those four host calls and sends at least those bytes, "
                 "so it cannot measure below that ratio here, whatever its wasm does.\n")


def attribution(L, c):
    """The http sink's cost above the floor, taken apart with the bound probes of the same run."""
    cfg = c["configs"]
    need = ("usage_http", "probe_floor_post_bare", "probe_floor_post_cut")
    if not all(k in cfg for k in need):
        return
    m = {k: cfg[k]["minus_floor_us"]["median"] for k in need}
    L.append("Where the http sink's cost above the floor goes (medians of the per-round differences; each "
             "row the difference of two rows above):\n")
    L.append("| part | µs per request |")
    L.append("|---|---:|")
    L.append(f"| Envoy sending the batches' bytes (`probe_floor_post_bare` − `floor`) | {m['probe_floor_post_bare']:+.2f} |")
    L.append(f"| the filter's batch work: records held, encoded, answered (`probe_floor_post_cut` − "
             f"`probe_floor_post_bare`) | {m['probe_floor_post_cut'] - m['probe_floor_post_bare']:+.2f} |")
    L.append(f"| the rest: the request path (the map parsed, the event made and held) and the filter's own "
             f"dispatcher (`usage_http` − `probe_floor_post_cut`) | {m['usage_http'] - m['probe_floor_post_cut']:+.2f} |")
    L.append(f"| **the http sink above the floor** | **{m['usage_http']:+.2f}** |")
    L.append("")
