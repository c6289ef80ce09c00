#!/usr/bin/env python3
"""Turns bench/results/{fuel,envoy}.json into docs/bench.md and docs/bench.svg."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = os.path.join(ROOT, "bench", "results")
fuel = json.load(open(os.path.join(R, "fuel.json")))
env = json.load(open(os.path.join(R, "envoy.json")))
S = env["summary"]
NAMES = {"none": "no filter", "null": "null wasm filter (floor)", "native_log": "Envoy native JSON file access log",
         "usage_log": "usage-filter, log sink", "usage_http": "usage-filter, http sink"}
ROUTES = [r for r in ("direct", "proxy") if f"{r}/none" in S]
CONFIGS = [c for c in ("none", "null", "native_log", "usage_log", "usage_http") if f"{ROUTES[0]}/{c}" in S]


def chart():
    """Horizontal bars: overhead per request (µs) per configuration and route."""
    rows = [(r, c) for r in ROUTES for c in CONFIGS if c != "none"]
    w, bar, gap, left = 760, 22, 8, 300
    h = 60 + len(rows) * (bar + gap) + 20
    top = max(S[f"{r}/{c}"]["overhead_us"] for r, c in rows) * 1.15
    colors = {"null": "#9aa5b1", "native_log": "#7cb342", "usage_log": "#42a5f5", "usage_http": "#1565c0"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">Overhead per request in Envoy 1.40 (µs, median of {env["repeats"]} runs; lower is better)</text>']
    y = 45
    for route in ROUTES:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{route} route</text>')
        y += 18
        for c in CONFIGS:
            if c == "none":
                continue
            v = S[f"{route}/{c}"]
            bw = max(1, (w - left - 90) * max(v["overhead_us"], 0) / top)
            ratio = f' ({v["vs_null"]:.2f}× null)' if v["vs_null"] and c != "null" else ""
            out.append(f'<text x="20" y="{y + 15}">{NAMES[c]}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{bar}" fill="{colors[c]}"/>')
            out.append(f'<text x="{left + bw + 6:.1f}" y="{y + 15}">{v["overhead_us"]:.1f}{ratio}</text>')
            y += bar + gap
    out.append("</svg>")
    return "\n".join(out)


def main():
    with open(os.path.join(ROOT, "docs", "bench.svg"), "w") as f:
        f.write(chart())
    h, lg = fuel["http"], fuel["log"]
    L = []
    L.append("# usage-filter benchmarks\n")
    L.append("Written by `make bench` (`bench/run.sh`). Numbers from a 2-core machine: compare the rows of one run, "
             "not absolute values across runs.\n")
    L.append("![overhead per request](bench.svg)\n")
    L.append("## (b) Real Envoy 1.40 (V8), one worker\n")
    L.append(f"Each configuration is its own Envoy with `--concurrency 1` pinned to CPU 0; wrk (1 thread, "
             f"{env['connections']} connections) on CPU 1; {env['duration_s']} s per run, configurations interleaved, "
             f"{env['repeats']} repeats, medians. The request carries the subscription key, so every request makes "
             "an event. Overhead = 1e6/rps − 1e6/rps(no filter).\n")
    for route in ROUTES:
        title = {"direct": "`direct_response` route (worst case for relative overhead)",
                 "proxy": "route proxied to the demo upstream"}[route]
        L.append(f"### {title}\n")
        L.append("| configuration | req/s | p50 µs | p99 µs | overhead µs/req | × null filter | runs (req/s) |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        for c in CONFIGS:
            v = S[f"{route}/{c}"]
            ratio = f"{v['vs_null']:.2f}" if v["vs_null"] else "—"
            over = f"{v['overhead_us']:.2f}" if c != "none" else "—"
            L.append(f"| {NAMES[c]} | {v['rps']:.0f} | {v['p50_us']:.0f} | {v['p99_us']:.0f} | {over} | {ratio} | "
                     f"{', '.join(map(str, v['runs']))} |")
        L.append("")
    d = env["delivery"]
    L.append("## (c) Delivery throughput, default `http` configuration\n")
    L.append(f"- Highest rate measured with zero drops: **{d['max_rps_zero_drops']:.0f} req/s** on one worker "
             f"(the most this Envoy worker sustained in the runs above; drops at that rate: {d['drops_at_max']}).")
    L.append(f"- Callouts at that rate: **{d['callouts_per_s_at_max']:.0f} per second** "
             f"(batches of `batch_size` 100, `max_in_flight` 2).")
    fm = d["final_metrics"]
    L.append(f"- Over the whole run: {fm.get('events_captured')} captured, {fm.get('events_delivered')} delivered, "
             f"{fm.get('events_dropped_buffer_full', 0) + fm.get('events_dropped_send_failed', 0)} dropped; "
             f"accounting holds: {d['accounting_holds']}.")
    L.append(f"- Log sink: {env['log_sink']['lines']} lines on stdout for {env['log_sink']['captured']} captured events.\n")
    L.append("## (a) In our host (deterministic)\n")
    L.append("wasm fuel ≈ wasm instructions executed, counted by wasmtime; identical on every run.\n")
    L.append(f"`.wasm` size: **{fuel['wasm_bytes']:,} bytes** (null filter, same SDK and profile: "
             f"{fuel['null_wasm_bytes']:,}).\n")
    L.append("Fuel per request for one typical keyed GET (`/v1/things/42?expand=owner`, 512-byte response), "
             "averaged over 2,000 requests:\n")
    L.append("| part | http sink | log sink | null filter |")
    L.append("|---|---:|---:|---:|")
    L.append(f"| capture (request/response headers and bodies) | {h['capture']} | {lg['capture']} | |")
    L.append(f"| context lifecycle (create, done, delete; SDK) | {h['lifecycle']} | {lg['lifecycle']} | |")
    L.append(f"| `on_log`: event building and its JSON encoding | {h['on_log']} | {lg['on_log']} | |")
    L.append(f"| …of which encoding the event (measured alone) | {fuel['encode_event']} | {fuel['encode_event']} | |")
    L.append(f"| batch share (timer, batch body, callout, answer) per event | {h['batch_share']} | {lg['batch_share']} | |")
    L.append(f"| **total** | **{h['total']}** | **{lg['total']}** | **{fuel['null_total']}** |\n")
    L.append("Fuel per event to encode a batch of 100 in each wire format (the event JSON itself is made once, "
             "in `on_log`; a batch body is concatenation):\n")
    L.append("| format | fuel / event | bytes / event |")
    L.append("|---|---:|---:|")
    for k, v in fuel["formats"].items():
        L.append(f"| {k} | {v['fuel_per_event']} | {v['bytes_per_event']} |")
    L.append("")
    L.append(f"Linear memory per buffered event: **{fuel['memory_per_buffered_event']:.0f} bytes** "
             "(20,000 events held, collector silent).\n")
    extra = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(extra):
        L.append(open(extra).read())
    with open(os.path.join(ROOT, "docs", "bench.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
