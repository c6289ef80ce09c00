#!/usr/bin/env python3
"""Turns bench/results/{fuel,envoy}.json into a report.

By default it writes bench/results/bench.md, bench.svg and bench-breakdown.svg (git-ignored;
the last, where the time goes per request, by bench/breakdown.py), so a benchmark run dirties no
tracked file. With `--write` (or BENCH_WRITE=1; `make bench-report`) it writes them to docs/
instead, and nothing else. docs/bench.md begins with
four headline numbers between `<!-- headline:begin -->` and `<!-- headline:end -->`; README
shows the same lines, copied by hand, and docs/check.py (`make docs-check`) fails while they
differ.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import breakdown  # noqa: E402
import concurrent_report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = os.path.join(ROOT, "bench", "results")
WRITE = "--write" in sys.argv[1:] or os.environ.get("BENCH_WRITE", "") not in ("", "0")
fuel = json.load(open(os.path.join(R, "fuel.json")))
env = json.load(open(os.path.join(R, "envoy.json")))


def optional(name):
    """A results file of a part that may not have run (burst, V8, agent), or None."""
    path = os.path.join(R, name)
    return json.load(open(path)) if os.path.exists(path) else None


CALLOUTS = optional("callouts.json")
CONCURRENT = optional("concurrent.json")
S = env["summary"]
NAMES = env["names"]
ROUTES = env["routes"]
CONFIGS = env["configs"]
ROUTE_TITLE = {"direct": "`direct_response` route (worst case for relative overhead)",
               "proxy": "route proxied to the demo upstream",
               "sse": "`sse` route: a streamed chat completion (`direct_response`, text/event-stream, 18 events, 3.3 KB)",
               "chat": "`chat` route: the openai SDK's default streaming request (POST, 171-byte JSON body, no "
                       "`stream_options`) proxied to an Envoy that reads it and answers the `sse` route's stream"}
HEADLINE = ("<!-- headline:begin -->", "<!-- headline:end -->")
PER_REQUEST = breakdown.segments(S, CALLOUTS)


def f(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def spread(s, digits=2, unit=""):
    """median (min … max); for a ratio: the ratio of the medians (per-round min … max)"""
    if not s:
        return "—"
    mid = s["value"] if "value" in s else s["median"]
    return f"{mid:.{digits}f}{unit} ({s['min']:.{digits}f} … {s['max']:.{digits}f})"


def provenance():
    # recorded by the run itself (envoy_bench.py): a report may be written long after it
    commit = env.get("commit", "not recorded")
    when = env.get("finished_utc", "time not recorded")
    return f"commit `{commit}` (filter/), {when} UTC"


def settings():
    pin = env["pinning"]
    probes = ", ".join(env["probe_routes"]) or "none"
    variants = ", ".join(f"`{k}` = {os.path.basename(v)}" for k, v in env["variants"].items()) or "none"
    rounds = f"{env['rounds']} interleaved round{'s' if env['rounds'] != 1 else ''}"
    return (f"{rounds} × {env['duration_s']} s per measurement; routes: "
            f"{', '.join(ROUTES)} (probes on: {probes}); wrk 1 thread, {env['connections']} connections; "
            f"each Envoy `--concurrency 1` pinned to CPU {pin['envoy_cpu']}, wrk, upstream and collector on CPU "
            f"{pin['load_cpu']}; variants: {variants}")


def noise_warning():
    """Says so when the run was too noisy to read its ratios."""
    said = []
    la = env.get("load_average")
    if la and max(la["before"], la["after"]) > 0.7:
        said.append(f"load average {la['before']:.1f} before and {la['after']:.1f} after the run")
    for route in ROUTES:
        n = S.get(f"{route}/none")
        if n and n["rps"]["max"] > 1.1 * n["rps"]["min"]:
            said.append(f"no-filter rate on {route} varied {n['rps']['min']:.0f}–{n['rps']['max']:.0f} req/s "
                        "between rounds")
    if not said:
        return ""
    return "Noisy run: " + "; ".join(said) + ". Other work shared the CPUs; do not read these ratios as results."


def chart():
    """Horizontal bars: median overhead per request (µs) with a min–max whisker."""
    rows = [(r, c) for r in ROUTES for c in CONFIGS if c != "none" and not c.startswith("probe_")
            and f"{r}/{c}" in S]
    w, bar, gap, left = 860, 20, 7, 360
    h = 60 + len(ROUTES) * 18 + len(rows) * (bar + gap) + 20
    top = max(S[f"{r}/{c}"]["overhead_us"]["max"] for r, c in rows) * 1.1
    colors = {"null": "#9aa5b1", "floor": "#6d7b8a", "native_log": "#7cb342", "usage_log": "#42a5f5",
              "usage_http": "#1565c0", "usage_shared_queue": "#5e35b1"}
    scale = (w - left - 120) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">Overhead per request in Envoy 1.40 (µs; median of '
           f'{env["rounds"]} rounds, line = min–max; lower is better)</text>']
    y = 45
    for route in ROUTES:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{route} route</text>')
        y += 18
        for r, c in rows:
            if r != route:
                continue
            v = S[f"{route}/{c}"]
            o = v["overhead_us"]
            bw = max(1, scale * max(o["median"], 0))
            label = NAMES[c].replace("`", "")
            ratio = ""
            if v.get("vs_floor"):
                ratio = f' ({v["vs_floor"]["value"]:.2f}× floor)'
            elif v.get("vs_null"):
                ratio = f' ({v["vs_null"]["value"]:.2f}× null)'
            out.append(f'<text x="20" y="{y + 14}">{label}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{bar}" '
                       f'fill="{colors.get(c, "#0d47a1")}"/>')
            lo, hi = left + scale * max(o["min"], 0), left + scale * max(o["max"], 0)
            out.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + bar / 2}" y2="{y + bar / 2}" stroke="#222"/>')
            out.append(f'<text x="{max(left + bw, hi) + 6:.1f}" y="{y + 14}">{o["median"]:.1f}{ratio}</text>')
            y += bar + gap
    out.append("</svg>")
    return "\n".join(out)


def goals_table(L):
    L.append("| ratio of overheads (same rounds) | ratio of the medians | per-round min | per-round max | goal "
             "| met | met in every round | the same by Envoy CPU | all at once (b3), by CPU |")
    L.append("|---|---:|---:|---:|---:|---|---|---:|---:|")
    for g in env["goals"]:
        met = "yes" if 0 < g["value"] <= g["goal"] else "**no**"
        every = "yes" if 0 < g["min"] and g["max"] <= g["goal"] else "no"
        c = g.get("by_cpu")  # the same ratio by each Envoy's CPU time per request (envoy_bench.py)
        b3 = concurrent_report.cell(concurrent_report.goal(CONCURRENT, g["a"], g["b"]))
        L.append(f"| {g['label']} | {g['value']:.2f} | {g['min']:.2f} | {g['max']:.2f} | ≤ {g['goal']} | {met} | "
                 f"{every} | {'—' if c is None else f'{c:.2f}'} | {b3} |")
    L.append("")
    kb, mem = fuel["wasm_bytes"], fuel["memory_per_buffered_event"]
    L.append(f"Also required: `.wasm` ≤ 300 KB: {kb:,} bytes, {'met' if kb <= 300_000 else '**not met**'}; "
             f"linear memory per buffered event ≤ 300 bytes: {mem:.0f}, {'met' if mem <= 300 else '**not met**'}.")


def callouts_section(L):
    """bench/callout_bench.py's burst run (issue 22): one batch callout's Envoy CPU, step by step."""
    c = CALLOUTS
    if c is None:
        return
    rows = c["rows"]
    L.append("## One batch callout in Envoy, step by step (burst mode)\n")
    L.append(f"`bench/callout_bench.py`, {c['rounds']} interleaved rounds of {c['batches_per_measurement']:,} "
             f"callouts each (load average {c['load_average']:.1f} at the end): each probe "
             "(`bench/probe-filter/src/batch.rs`) turns one request into that many callouts of a real "
             "100-event `veil` body to the collector, two in flight; Envoy's CPU time over them (less an idle "
             "Envoy's) ÷ their number is one batch's cost, without the request path around it. "
             "A step is the difference to the step before within each round.\n")
    L.append("| step | µs of Envoy CPU per batch | step | step > 0 in |")
    L.append("|---|---:|---:|---:|")
    for k, r in rows.items():
        st = r.get("step")
        step = (f"{st['median']:+.1f} ({st['min']:+.1f} … {st['max']:+.1f}) from `{st['from']}`" if st else "—")
        pos = f"{st['positive_rounds']}/{c['rounds']}" if st else "—"
        L.append(f"| `{k}` | {r['median']:.1f} ({r['min']:.1f} … {r['max']:.1f}) | {step} | {pos} |")
    L.append("")
    # the filter's sequence: `post_cut` since issue 22's cuts (`post_handback` before them)
    whole = "post_cut" if "post_cut" in rows else "post_handback"
    if "post_bare" in rows and whole in rows:
        per = [b / a for a, b in zip(c["per_round"]["post_bare"], c["per_round"][whole])] \
            if "per_round" in c else []
        ratio = rows[whole]["median"] / rows["post_bare"]["median"]
        lo_hi = f" (per round {min(per):.2f} … {max(per):.2f})" if per else ""
        L.append(f"The batch's own cost (`{whole}`: everything the filter does for a batch) ÷ the bare POST of "
                 f"the same bytes (`post_bare`): **{ratio:.2f}**{lo_hi}; goal ≤ 1.3: "
                 f"{'met' if ratio <= 1.3 else '**not met**'}.\n")


def calls_count(v):
    return sum(v.get("host_calls", {}).values())


def headline():
    """The four numbers README shows, between the headline markers (docs/check.py compares them)."""
    L = [HEADLINE[0], "", "| headline of the run | value |", "|---|---|"]
    v = S.get("direct/usage_http")
    if v:
        L.append(f"| overhead per request, http sink (`local`, the default), Envoy 1.40 with one worker, "
                 f"`direct_response` route: median of the rounds (min … max) | {spread(v['overhead_us'], 1, ' µs')} |")
    best = env["delivery"].get("usage_http", {}).get("best")
    if best:
        L.append(f"| highest rate without a dropped event, the same filter and worker | "
                 f"{best['rps']:,.0f} req/s ({best['callouts_per_s']:.0f} callouts/s) |")
    http, bare = (concurrent_report.goal(CONCURRENT, a, "floor") for a in ("usage_http", "probe_floor_post_bare"))
    if http and bare:
        L.append(f"| http sink ÷ the floor (the four host calls an event needs), every Envoy loaded at once "
                 f"(part b3): ratio of the overheads (per round) | {concurrent_report.cell(http)}; the floor plus "
                 f"only the batches' POSTs: {concurrent_report.cell(bare)} |")
    L.append(f"| `usage_filter.wasm` | {fuel['wasm_bytes']:,} bytes |")
    L += ["", HEADLINE[1]]
    return "\n".join(L)


def bench_md():
    L = ["# usage-filter benchmarks\n"]
    L.append(f"Written by `make bench` (`bench/run.sh`, `bench/report.py`) from one run: {provenance()}. "
             "A 2-core machine: compare the rows of one run, not absolute values across runs. "
             "Every figure below is measured in that run, except the section taken from "
             "`bench/notes.md` at the end, which is hand-written and says so.\n")
    L.append(f"Settings: {settings()}.\n")
    warn = noise_warning()
    if warn:
        L.append(f"**{warn}**\n")
    L.append(headline() + "\n")
    L.append("![overhead per request](bench.svg)\n")
    L.append("## Goals (issues 9 and 22)\n")
    L.append("Overheads are computed within each round (against that round's no-filter rate). A ratio is the "
             "ratio of the two rows' median overheads; beside it, the smallest and largest ratio of a single round. "
             "The last column is part (b3), below: the same ratio with every configuration loaded at once, which "
             "spreads over a few µs per round where part (b)'s spreads over tens.\n")
    goals_table(L)
    L.append("")
    concurrent_report.section(L, CONCURRENT)
    callouts_section(L)
    if PER_REQUEST:
        breakdown.section(L, *PER_REQUEST, "bench-breakdown.svg")
    refusals = env.get("refusals", [])
    if refusals:
        L.append(f"Refused and measured again in this run ({len(refusals)}): " + "; ".join(
            f"round {x['round']} {x['route']} {x['config']}: {', '.join(x['reasons'])}" for x in refusals) + ".\n")
    else:
        L.append("No measurement of this run was refused (socket errors, non-2xx answers, missing events, "
                 "collector refusals, retries, failed batches).\n")

    L.append("## (b) Real Envoy 1.40 (V8), one worker\n")
    L.append("Each configuration is its own Envoy, all running side by side; wrk loads one at a time, in an order "
             "rotated every round. The request carries the subscription key, so every request makes an event. "
             "Overhead = 1e6/rps − 1e6/rps(no filter) within a round; cells are median (min … max) over the "
             "rounds; the × columns are ratios of median overheads (per-round min … max). The last column is "
             "each Envoy's own CPU time (user + system, from /proc) per answered request minus the no-filter "
             "Envoy's in the same round: other work on the machine slows an Envoy down more than it adds to "
             "what the Envoy spends, so this column holds up better on a busy machine.\n")
    for route in ROUTES:
        L.append(f"### {ROUTE_TITLE.get(route, route)}\n")
        L.append("| configuration | req/s | p50 µs | p99 µs | overhead µs/req | × null | × floor | Envoy CPU µs/req "
                 "over no filter |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for c in CONFIGS:
            v = S.get(f"{route}/{c}")
            if not v:
                continue
            L.append(f"| {NAMES[c]} | {spread(v['rps'], 0)} | {v['p50_us']:.0f} | {v['p99_us']:.0f} | "
                     f"{spread(v.get('overhead_us'))} | {spread(v.get('vs_null'))} | {spread(v.get('vs_floor'))} | "
                     f"{spread(v.get('cpu_overhead_us'))} |")
        L.append("")
    fc = env.get("force_cost")
    if fc:
        chk = env.get("chat_check") or []
        L.append(f"`force_stream_usage` on the `chat` route: holding the request body and adding "
                 f"`\"stream_options\":{{\"include_usage\":true}},` costs {spread(fc.get('rate'))} µs per "
                 f"request by the rate, {spread(fc.get('cpu'))} µs of Envoy CPU time per request (force − `llm` "
                 f"on, within each round: median (min … max)); the upstream logged "
                 f"{'; '.join(f'`{x}`' for x in chk)} (check, body bytes received).\n")
    if env.get("ratios"):
        L.append("Other ratios of overheads, same rounds (ratio of the medians (per-round min … max)):\n")
        L.append("| route | ratio | value |")
        L.append("|---|---|---:|")
        for x in env["ratios"]:
            L.append(f"| {x['route']} | {x['a']} ÷ {x['b']} | {spread(x)} |")
        L.append("")

    if env.get("host_calls"):
        refs = fuel.get("references", {})
        L.append("## What one host call costs in Envoy\n")
        L.append("Probe filters (`bench/probe-filter`): the null filter plus exactly one host call per request, "
                 "measured in the same rounds. µs per call = overhead(probe) − overhead(null) within a round. "
                 "Fuel and host calls per request from our host (part a) confirm each probe makes the one call.\n")
        L.append("| host call | where | µs per call | fuel over null |")
        L.append("|---|---|---:|---:|")
        where = {"header": "`:path` by `proxy_get_header_map_value`, request headers",
                 "clock": "`proxy_get_current_time_nanoseconds`, request headers",
                 "map": "request map by `proxy_get_header_map_pairs`, unparsed",
                 "set_property": "`set_property(usage_event, 366 bytes)` in `on_log`",
                 "log": "`proxy_log` at info (filtered: Envoy at `--log-level error`), `on_log`"}
        null_fuel = refs.get("null", {}).get("total")
        for x in env["host_calls"]:
            key = "floor" if x["call"].startswith("floor") else f"probe_{x['call']}"
            fu = refs.get(key, {}).get("total")
            fo = f"{fu - null_fuel}" if fu is not None and null_fuel is not None else "—"
            L.append(f"| {x['call']} ({x['route']}) | {where.get(x['call'], 'the floor filter, 4 calls')} | "
                     f"{spread(x)} | {fo} |")
        by = {x["call"]: x["median"] for x in env["host_calls"] if x["route"] == "direct"}
        if all(k in by for k in ("map", "header", "clock")) and any(k.startswith("floor") for k in by):
            parts = by["map"] + by["header"] + 2 * by["clock"]
            floor = next(v for k, v in by.items() if k.startswith("floor"))
            L.append(f"\nSum of the floor's parts (map + header + 2 × clock, medians): {parts:.2f} µs; the floor "
                     f"filter measured: {floor:.2f} µs.")
        L.append("")

    L.append("## (c) Delivery, http sink\n")
    L.append("For each configuration that sends: the fastest measurement of the run without a dropped event; "
             "every figure on its line comes from that one measurement (callouts/s = batches that carried its "
             "events, the last partial one included, per second of load). `batch_size` 100, `max_in_flight` 2.\n")
    L.append("| configuration | highest rate, zero drops | callouts/s | events captured / delivered / dropped | "
             "measurement | measurements with drops |")
    L.append("|---|---:|---:|---|---|---:|")
    for c, d in env["delivery"].items():
        b = d["best"]
        if b:
            L.append(f"| {NAMES[c]} | {b['rps']:.0f} req/s | {b['callouts_per_s']:.0f} | {b['captured']} / "
                     f"{b['delivered']} / {b['drops']} | round {b['round']}, {b['route']} | "
                     f"{d['with_drops']} of {d['measurements']} |")
        else:
            L.append(f"| {NAMES[c]} | — (every measurement dropped) | — | — | — | {d['with_drops']} of "
                     f"{d['measurements']} |")
    L.append("")
    for c, m in env.get("final_metrics", {}).items():
        if c.startswith("usage_http") or c == "usage_shared_queue":
            dropped = sum(m.get(k, 0) for k in ("events_dropped_buffer_full", "events_dropped_send_failed"))
            L.append(f"- {NAMES[c]}, whole run: {m.get('events_captured')} captured, {m.get('events_delivered')} "
                     f"delivered, {dropped} dropped, {m.get('buffer_events', 0)} buffered.")
    if env.get("log_sink"):
        L.append(f"- Log sink, whole run: {env['log_sink']['lines']} lines on stdout for "
                 f"{env['log_sink']['captured']} captured events.")
    coll = env.get("collector", {})
    L.append(f"- Collector, whole run: {coll.get('events')} events stored, {coll.get('rejected_batches')} batches "
             f"refused, {coll.get('invalid_events')} invalid events.\n")

    L.append("## (a) In our host (deterministic)\n")
    L.append("wasm fuel ≈ wasm instructions executed, counted by wasmtime; identical on every run.\n")
    L.append(f"`.wasm` size: **{fuel['wasm_bytes']:,} bytes** (null filter, the same exports and profile: "
             f"{fuel['null_wasm_bytes']:,}).\n")
    h, lg = fuel["http"], fuel["log"]
    L.append("Fuel per request for one typical keyed GET (`/v1/things/42?expand=owner`, 512-byte response), "
             "averaged over 2,000 requests:\n")
    L.append("| part | http sink | log sink | null filter |")
    L.append("|---|---:|---:|---:|")
    L.append(f"| capture (request/response headers and bodies) | {h['capture']} | {lg['capture']} | |")
    L.append(f"| context lifecycle (create, done, delete) | {h['lifecycle']} | {lg['lifecycle']} | |")
    L.append(f"| `on_log`: event building and its JSON encoding | {h['on_log']} | {lg['on_log']} | |")
    L.append(f"| …of which encoding the event (measured alone) | {fuel['encode_event']} | {fuel['encode_event']} | |")
    L.append(f"| batch share (timer, batch body, callout, answer) per event | {h['batch_share']} | {lg['batch_share']} | |")
    L.append(f"| **total** | **{h['total']}** | **{lg['total']}** | **{fuel['null_total']}** |")
    if "host_calls" in h:
        L.append(f"| host calls per request | {calls_count(h)} | {calls_count(lg)} | 0 |")
    L.append("")
    if fuel.get("before"):
        b = fuel["before"]
        L.append("### Before and after, per callback\n")
        L.append(f"Before: `{os.path.basename(b['path'])}` ({b['wasm_bytes']:,} bytes); after: this build "
                 f"({fuel['wasm_bytes']:,} bytes). Same requests, same host.\n")
        L.append("| callback | http before | http after | log before | log after |")
        L.append("|---|---:|---:|---:|---:|")
        names = []
        for v in (b["http"], h, b["log"], lg):
            names += [k for k in v["callbacks"] if k not in names]
        for n in sorted(names):
            L.append(f"| `{n}` | {b['http']['callbacks'].get(n, 0)} | {h['callbacks'].get(n, 0)} | "
                     f"{b['log']['callbacks'].get(n, 0)} | {lg['callbacks'].get(n, 0)} |")
        L.append(f"| batch share per event | {b['http']['batch_share']} | {h['batch_share']} | "
                 f"{b['log']['batch_share']} | {lg['batch_share']} |")
        L.append(f"| **total** | **{b['http']['total']}** | **{h['total']}** | **{b['log']['total']}** | "
                 f"**{lg['total']}** |")
        L.append(f"| host calls per request | {calls_count(b['http'])} | {calls_count(h)} | "
                 f"{calls_count(b['log'])} | {calls_count(lg)} |\n")
    refs = fuel.get("references", {})
    if refs:
        L.append("Reference filters (`bench/`), fuel and host calls per request:\n")
        L.append("| filter | fuel | host calls | `.wasm` bytes |")
        L.append("|---|---:|---|---:|")
        for k, v in refs.items():
            calls = ", ".join(f"{n} ×{c}" for n, c in v["host_calls"].items()) or "none"
            L.append(f"| {k} | {v['total']} | {calls} | {v['wasm_bytes']:,} |")
        L.append("")
    L.append("Fuel per event to encode a batch of 100 in each wire format (events wait as compact records and "
             "are encoded straight into the body when the batch is built, off the request path; the bench's "
             "events differ in id, time and duration):\n")
    L.append("| format | fuel / event | bytes / event |")
    L.append("|---|---:|---:|")
    for k, v in fuel["formats"].items():
        L.append(f"| {k} | {v['fuel_per_event']} | {v['bytes_per_event']} |")
    L.append("")
    L.append(f"Linear memory per buffered event: **{fuel['memory_per_buffered_event']:.0f} bytes** "
             "(20,000 events held, collector silent).\n")
    v8_section(L)
    llm_section(L)
    agent_section(L)
    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        L.append(open(notes).read())
    return "\n".join(L) + "\n"


def v8_section(L):
    v = optional("v8.json")
    if v is None:
        return
    req = v["request_ns"]
    L.append(f"## (a2) In V8 (Node's, V8 {v['v8']}), the wasm alone\n")
    L.append("`bench/v8_wasm.js`: the same `.wasm` files driven through a request's callbacks with the host "
             "reduced to JavaScript stubs, so the time is the filter's own code in the engine Envoy embeds "
             "(plus the stubs, the same for every build). Medians of "
             f"{v['passes']} interleaved passes of 7 rounds; these vary by a few percent between runs, where "
             "part (b) varies by tens: they tell what a change to the wasm did, part (b) what Envoy then "
             "spends around it.\n")
    L.append("| build | ns per request | over the floor filter | passes |")
    L.append("|---|---:|---:|---|")
    for k, ns in req.items():
        over = ns - req["floor"] if k != "floor" else 0
        runs = ", ".join(f"{x:.0f}" for x in v["request_ns_runs"][k])
        name = f"before (`{v['before']}`)" if k == "before" else k
        L.append(f"| {name} | {ns:.0f} | {over:+.0f} | {runs} |")
    L.append(f"\nBuilding a `veil` batch body of 100 events: **{v['encode_veil_ns_per_event']:.0f} ns per event**.\n")


def llm_section(L):
    """`llm` on against off in our host (fuel-bench's llm part)."""
    runs = fuel.get("llm")
    if not runs:
        return
    L.append("## LLM token metering (`llm`), in our host\n")
    L.append("A streamed chat completion through the filter with `llm` on and off: the scanner's cost per "
             "response and per KB it reads, and the host calls (one body read per chunk when on). Routes "
             "that are not inspected cost nothing extra: the \"off\" column.\n")
    L.append("| response | chunks | fuel, llm on | fuel, llm off | fuel per KB scanned | host calls on / off |")
    L.append("|---|---:|---:|---:|---:|---|")
    for r in runs:
        L.append(f"| {r['body_bytes']:,} bytes of SSE | {r['chunk_bytes']:,} bytes | {r['fuel_on']:,} | "
                 f"{r['fuel_off']:,} | {r['fuel_per_kb_scanned']:,.0f} | {r['host_calls_on']} / {r['host_calls_off']} |")
    L.append("")
    shapes = fuel.get("llm_shapes")
    if shapes:
        L.append("Every shape the scanner reads, about 32 KB each in 1 KB chunks (streams as many small events, "
                 "JSON answers as one object whose long text comes before the usage):\n")
        L.append("| answer | bytes | fuel, llm on | fuel, llm off | fuel per KB scanned |")
        L.append("|---|---:|---:|---:|---:|")
        for r in shapes:
            L.append(f"| {r['shape']} | {r['body_bytes']:,} | {r['fuel_on']:,} | {r['fuel_off']:,} | "
                     f"{r['fuel_per_kb_scanned']:,.0f} |")
        L.append("")
    force = fuel.get("force_stream_usage")
    if force:
        L.append(f"`llm.force_stream_usage`: a {force['request_bytes']}-byte chat request held and rewritten, with "
                 f"a {force['answer_bytes']:,}-byte streamed answer: {force['fuel_on']:,} fuel per request with it, "
                 f"{force['fuel_off']:,} without (+{force['fuel_on'] - force['fuel_off']:,}); host calls "
                 f"{force['host_calls_on']} against {force['host_calls_off']}.\n")


def agent_section(L):
    """usage-agent beside Caddy (caddy/bench_agent.py, part d of make bench)."""
    a = optional("agent.json")
    if a is None:
        return
    if "backlog" not in a:
        kafka_section(L, a)
        return
    b, p = a["backlog"], a["paced"]
    L.append("## usage-agent beside Caddy\n")
    L.append(f"Real Caddy access-log entries through `usage-agent` pinned to one core into the reference "
             f"collector (batch_size {a['batch_size']}, buffer_size {a['buffer_size']}; target "
             f"{a['target_entries_per_s']:,} entries/s: {'met' if a.get('target_met') else 'NOT met'}).\n")
    L.append("| run | entries | entries/s | dropped | agent CPU | resident memory (peak) |")
    L.append("|---|---:|---:|---:|---:|---:|")
    L.append(f"| backlog read as fast as it goes | {b['entries']:,} | {b['entries_per_s']:,} | {b['dropped']} | "
             f"{b['agent_cpu_s_with_startup']} s | {b['rss_peak_kib'] / 1024:.1f} MB |")
    L.append(f"| written at {p['rate_per_s']:,}/s for {p['seconds']} s | {p['entries']:,} | {p['rate_per_s']:,} "
             f"({'kept up' if p['dropped'] == 0 else 'fell behind'}) | {p['dropped']} | {p['agent_cpu_pct_of_one_core']} % of a core | "
             f"{p['rss_peak_kib'] / 1024:.1f} MB |")
    L.append("")
    kafka_section(L, a)


def kafka_section(L, a):
    """Agent → Kafka against agent → HTTP collector, and --listen-http (bench_agent.py kafka_vs_http)."""
    k = a.get("kafka_vs_http")
    if not k:
        return
    L.append("## usage-agent → Kafka against → HTTP collector\n")
    if "rounds" not in k:
        L.append(f"Not measured: {k.get('skipped')}.\n")
        return
    L.append(f"{len(k['rounds'])} interleaved rounds of a {k['entries']:,}-entry backlog (real Caddy entries, "
             f"`kafka-rest`, batch_size {a['batch_size']}) through `usage-agent` pinned to one core, into the "
             "reference collector or a tansu 0.6 broker (sqlite, 3 partitions, pinned to the other core) with "
             "lz4 and acks=all; then the agent as Envoy's Kafka REST endpoint (`--listen-http`, no filter run), "
             f"fed `kafka-rest` POSTs of {a['batch_size']} records two at a time. Entries/s is on the agent's one "
             "core (the broker's pace included); per CPU-second is the agent's own cost. Min … max over the rounds.\n")
    L.append("| path | entries/s | entries per agent CPU-second |")
    L.append("|---|---:|---:|")
    span = lambda r: f"{r['min']:,} … {r['max']:,}"
    L.append(f"| `--follow` → HTTP collector | {span(k['http_entries_per_s'])} | {span(k['http_entries_per_cpu_s'])} |")
    L.append(f"| `--follow` → Kafka (idempotent, the default) | {span(k['kafka_entries_per_s'])} | "
             f"{span(k['kafka_entries_per_cpu_s'])} |")
    if "kafka_not_idempotent_entries_per_s" in k:
        L.append(f"| `--follow` → Kafka (`?idempotence=false`) | {span(k['kafka_not_idempotent_entries_per_s'])} | "
                 f"{span(k['kafka_not_idempotent_entries_per_cpu_s'])} |")
    L.append(f"| `--listen-http` → Kafka (records) | {span(k['listen_http_records_per_s'])} | "
             f"{span(k['listen_http_records_per_cpu_s'])} |")
    L.append("")


def main():
    out = os.path.join(ROOT, "docs") if WRITE else R
    with open(os.path.join(out, "bench.svg"), "w") as fh:
        fh.write(chart())
    with open(os.path.join(out, "bench.md"), "w") as fh:
        fh.write(bench_md())
    names = ["bench.md", "bench.svg"]
    if PER_REQUEST:
        with open(os.path.join(out, "bench-breakdown.svg"), "w") as fh:
            fh.write(breakdown.svg(*PER_REQUEST, env["rounds"]))
        names.append("bench-breakdown.svg")
    wrote = [os.path.relpath(os.path.join(out, n), ROOT) for n in names]
    print("wrote " + ", ".join(wrote))
    if WRITE:
        print("README's headline numbers: copy the block between the headline markers of docs/bench.md "
              "into README.md (make docs-check fails until they match)")


if __name__ == "__main__":
    main()
