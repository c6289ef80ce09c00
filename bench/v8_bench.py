#!/usr/bin/env python3
"""`make bench`, part (a2): bench/v8_wasm.js over the builds, interleaved (3 passes, each build
once per pass, in its own Node process); each figure is the median of the passes' medians.
Writes bench/results/v8.json. Skipped, with a line saying so, when there is no `node`.

Usage: v8_bench.py [before.wasm]
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "dist")
SCRIPT = os.path.join(ROOT, "bench", "v8_wasm.js")
PASSES = 3


def main():
    node = shutil.which("node")
    out = os.path.join(ROOT, "bench", "results", "v8.json")
    if not node:
        print("(a2) skipped: no node on PATH")
        if os.path.exists(out):
            os.remove(out)
        return
    version = subprocess.run([node, "-p", "process.versions.v8"], capture_output=True, text=True).stdout.strip()
    request = {"null": "null_filter.wasm", "floor": "floor_filter.wasm", "usage_filter": "usage_filter.wasm"}
    request = {k: os.path.join(DIST, v) for k, v in request.items()}
    if len(sys.argv) > 1:
        request["before"] = sys.argv[1]
    encode = {"usage_filter": os.path.join(DIST, "usage_filter_bench.wasm")}
    runs = {("request", k): [] for k in request} | {("encode", k): [] for k in encode}
    for _ in range(PASSES):
        for (mode, name), acc in runs.items():
            path = (request if mode == "request" else encode)[name]
            r = subprocess.run([node, SCRIPT, mode, path], capture_output=True, text=True, check=True)
            line = json.loads(r.stdout)
            acc.append(line["ns_per_request" if mode == "request" else "ns_per_event"]["median"])
    med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    result = {
        "v8": version,
        "passes": PASSES,
        "request_ns": {k: med[("request", k)] for k in request},
        "request_ns_runs": {k: runs[("request", k)] for k in request},
        "encode_veil_ns_per_event": med[("encode", "usage_filter")],
        "before": os.path.basename(sys.argv[1]) if len(sys.argv) > 1 else None,
    }
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
