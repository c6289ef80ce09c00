"""Where the time goes, per request of the http sink (issue 22): one stacked bar, computed by
report.py from the run's own measurements (bench/results/envoy.json, and callouts.json when the
burst part ran). Each segment is a difference of two measured rows, so the bar adds up to the
http sink's own figure:

- Envoy's wasm context: the null filter (every callback crosses, nothing done);
- host calls: floor − null (the floor adds only the four host calls an event needs);
- the callout share: one batch's cost (burst run: `post_cut`, else `post_handback`: everything the
  filter does for a batch, body encoding included) ÷ the batch size; without the burst run, the
  `callout` probe's cost over null, when the run measured it; else not separated;
- wasm work: (usage_http − floor) less the callout share: the filter's own per-request code.

In Envoy CPU µs per request over the no-filter Envoy (the burst run measures CPU, and CPU holds
up better than the rate on a shared machine), the medians of the rounds. Standard library only.
"""

# the http sink's default `batch_size`, which the run's `usage_http` uses (and the probes' batch)
BATCH = 100
COLORS = {"context": "#9aa5b1", "host": "#6d7b8a", "wasm": "#1565c0", "callout": "#f57c00"}


def _median(s, key):
    v = s.get(key)
    return None if not v else v["median"]


def segments(summary, callouts=None, route="direct"):
    """[(key, label, µs, how)], the measure's name; None when the run lacks null, floor or the
    http sink on `route`."""
    rows = {c: summary.get(f"{route}/{c}") for c in ("null", "floor", "usage_http", "probe_callout")}
    if not all(rows[c] for c in ("null", "floor", "usage_http")):
        return None
    key = "cpu_overhead_us" if all(_median(rows[c], "cpu_overhead_us") is not None
                                   for c in ("null", "floor", "usage_http")) else "overhead_us"
    null, floor, http = (_median(rows[c], key) for c in ("null", "floor", "usage_http"))
    segs = [("context", "Envoy's wasm context", null, "null filter"),
            ("host", "host calls", floor - null, "floor − null (4 host calls)")]
    callout, how = None, None
    steps = (callouts or {}).get("rows", {})
    whole = "post_cut" if "post_cut" in steps else "post_handback" if "post_handback" in steps else None
    if whole:
        callout = steps[whole]["median"] / BATCH
        how = (f"burst run: `{whole}` {steps[whole]['median']:.1f} µs per batch ÷ {BATCH}"
               + (f" (of which the bare POST, `post_bare`: {steps['post_bare']['median'] / BATCH:.2f})"
                  if "post_bare" in steps else ""))
    elif rows["probe_callout"] and _median(rows["probe_callout"], key) is not None:
        callout = _median(rows["probe_callout"], key) - null
        how = "`callout` probe − null (a 26,700-byte POST per 100 requests, no encoding)"
    if callout is None:
        segs.append(("wasm", "wasm work and callouts", http - floor,
                     "usage_http − floor (no burst run, no `callout` probe: not separated)"))
    else:
        segs.append(("wasm", "wasm work", http - floor - callout, "usage_http − floor − callout share"))
        segs.append(("callout", "callout share", callout, how))
    return segs, key


def svg(segs, key, rounds):
    """One horizontal stacked bar; a negative segment (noise) is drawn as nothing and says so."""
    w, left, top, bar = 860, 20, 62, 34
    total = sum(max(v, 0) for _, _, v, _ in segs) or 1
    scale = (w - 2 * left) / total
    unit = "Envoy CPU µs" if key == "cpu_overhead_us" else "µs (by the rate)"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{top + bar + 30 + 20 * len(segs)}" '
           'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">Where the time goes per request, http sink: '
           f'{sum(v for _, _, v, _ in segs):.1f} {unit} over no filter</text>',
           f'<text x="{left}" y="42">direct_response route, medians of {rounds} round{"s" if rounds != 1 else ""}; '
           'each segment a difference of two rows of the run</text>']
    x = left
    for k, label, v, _ in segs:
        bw = scale * max(v, 0)
        out.append(f'<rect x="{x:.1f}" y="{top}" width="{bw:.1f}" height="{bar}" fill="{COLORS[k]}"/>')
        if bw > 40:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + bar / 2 + 4}" text-anchor="middle" fill="#fff">'
                       f'{v:.1f}</text>')
        x += bw
    y = top + bar + 24
    for k, label, v, how in segs:
        share = f"{100 * v / total:.0f} %" if v >= 0 else "negative: noise, not drawn"
        out.append(f'<rect x="{left}" y="{y - 11}" width="12" height="12" fill="{COLORS[k]}"/>')
        out.append(f'<text x="{left + 18}" y="{y}">{label}: {v:.2f} ({share}) — {how.replace("`", "")}</text>')
        y += 20
    out.append("</svg>")
    return "\n".join(out)


def section(L, segs, key, name):
    """The markdown beside the picture: each segment, its value and how it was derived."""
    unit = "Envoy CPU µs per request over no filter" if key == "cpu_overhead_us" else "µs per request (rate)"
    L.append("## Where the time goes, per request (http sink)\n")
    L.append(f"![where the time goes per request]({name})\n")
    L.append("Each segment is a difference of rows of this run (`direct` route, medians of the rounds), so "
             "the bar adds up to the http sink's own figure. The callout share is one batch's cost spread "
             f"over its {BATCH} events.\n")
    L.append(f"| segment | {unit} | derived from |")
    L.append("|---|---:|---|")
    for _, label, v, how in segs:
        L.append(f"| {label} | {v:.2f} | {how} |")
    L.append(f"| **http sink** | **{sum(v for _, _, v, _ in segs):.2f}** | `usage_http` |")
    if any(v < 0 for _, _, v, _ in segs):
        L.append("\nA negative segment is noise (the rows' spread in this run is wider than it): the picture "
                 "leaves it out.")
    L.append("")
