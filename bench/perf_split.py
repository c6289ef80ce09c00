#!/usr/bin/env python3
"""Where each Envoy of an envoy_bench.py run spends its CPU per request, by perf: a low-noise A/B.

The rates wrk measures move ±20–40% from round to round on a shared 2-CPU VM, so a 1 µs change
in the filter (a cut in its wasm, say) is lost in them. Sampled CPU time is not: this runs
bench/envoy_bench.py (with the caller's BENCH_* environment) under `perf record -C
$BENCH_ENVOY_CPU -e cpu-clock` (system-wide on the CPU all the Envoys are pinned to), keeps each
Envoy's worker thread (`wrk:worker_0`), splits its samples by where they fell, and divides by the
requests that Envoy answered (its own counter): µs of CPU per request, per column. In the
hand-made splits of bench/notes.md the wasm column moved by 0.1 µs between runs; with other work
on the VM every column moves more (the hypervisor's steal counts as CPU here: the header gives
it). Samples and requests are both counted from the start of the first round
(envoy.json's `rounds_from_monotonic`, perf's clock set to CLOCK_MONOTONIC): Envoy's start-up,
V8's compilation of the module and the warm-ups are left out; refused measurements are in.

Columns: Envoy's code (its binary: V8's runtime and builtins are linked into it and it has no
symbols, so this includes them), kernel, wasm (V8's JIT code: anonymous executable memory, which
perf names /tmp/perf-<pid>.map), libc (libc, libm, the loader), other (any other object, named
below the table: [vdso], the clock reads), their total, the total over the no-filter row, and
the Envoy's other threads in one figure (the main thread, which answers the bench's admin polls,
and V8's background threads: tier-up compilation, GC). Below the table, per column, each
configuration − floor and each variant − usage_http, each ± its sampling error (1 sd, Poisson:
what more rounds or seconds shrink).

Usage:
  BENCH_CONFIGS=floor,usage_http BENCH_ROUTES=direct BENCH_PROBE_ROUTES= BENCH_ROUNDS=5 \\
    BENCH_SECONDS=5 BENCH_VARIANTS=cut=/tmp/cut.wasm python3 bench/perf_split.py
  python3 bench/perf_split.py --no-run   # only the split, of the last run's perf data
  PERF_SPLIT_FREQ=999                    # sampling frequency (Hz)

Needs perf, and permission to record a CPU system-wide (root, CAP_PERFMON or
kernel.perf_event_paranoid <= 0). Writes bench/results/perf_split.{data,json} (and envoy.json,
by envoy_bench.py) and prints the tables. Standard library only.
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")
DATA = os.path.join(OUT, "perf_split.data")
CPU = os.environ.get("BENCH_ENVOY_CPU", "0")
FREQ = int(os.environ.get("PERF_SPLIT_FREQ", "999"))
# system-wide on the Envoys' CPU, timestamps on the clock of Python's time.monotonic()
RECORD = ["perf", "record", "-k", "CLOCK_MONOTONIC", "-C", CPU, "-e", "cpu-clock", "-F", str(FREQ)]
COLUMNS = ["envoy", "kernel", "wasm", "libc", "other"]
TITLES = {"envoy": "Envoy's code", "kernel": "kernel", "wasm": "wasm (JIT)", "libc": "libc", "other": "other"}
# perf script -F comm,pid,tid,time,period,ip,dso:
#   "  wrk:worker_0  1234/1240  31577.263386:  1001001  7f00a1b2 (/path/envoy)"  (tid -1: a thread exiting)
LINE = re.compile(r"^\s*(.*?)\s+(-?\d+)/(-?\d+)\s+([\d.]+):\s+(\d+)\s+([0-9a-f]+)\s+\((.*)\)\s*$")


def column(dso):
    """The column a sample's object falls in."""
    base = os.path.basename(dso)
    if dso in ("", "[unknown]") or dso.startswith(("//anon", "[anon", "/memfd:", "[JIT", "/tmp/perf-")):
        return "wasm"  # V8's generated code: anonymous executable memory, no object behind it
    if dso.startswith("[") and dso not in ("[vdso]", "[vsyscall]"):
        return "kernel"  # [kernel.kallsyms], [guest.kernel.kallsyms], modules as [name]
    if base.startswith(("libc.so", "libc-", "libm.so", "libm-", "ld-linux", "libpthread")):
        return "libc"
    if base == "envoy":
        return "envoy"
    return "other"


def fail(msg):
    print(f"perf_split: {msg}", file=sys.stderr)
    sys.exit(2)


def check_perf():
    """One line and a non-zero exit if perf cannot record this CPU system-wide."""
    if not shutil.which("perf"):
        fail("perf not found (apt-get install linux-perf, or linux-tools-$(uname -r))")
    try:
        paranoid = open("/proc/sys/kernel/perf_event_paranoid").read().strip()
    except OSError:
        paranoid = "?"
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(RECORD + ["-q", "-o", os.path.join(tmp, "probe.data"), "--", "true"],
                           capture_output=True, text=True)
    if r.returncode != 0:
        said = [x.strip() for x in r.stderr.splitlines() if x.strip() and x.strip() != "Error:"] or ["no message"]
        fail(f"perf cannot record CPU {CPU} system-wide (kernel.perf_event_paranoid={paranoid}; it needs <= 0, "
             f"root or CAP_PERFMON): {said[0]}")


def cpu_ticks():
    """CPU's times from /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    for line in open("/proc/stat"):
        if line.startswith(f"cpu{CPU} "):
            return [int(x) for x in line.split()[1:9]]
    return [0] * 8


def run_bench():
    """envoy_bench.py under perf record; returns the share of the CPU's time stolen by the
    hypervisor meanwhile (cpu-clock counts it as the running task's time: it inflates every column)."""
    os.makedirs(OUT, exist_ok=True)
    perf = subprocess.Popen(RECORD + ["-o", DATA], stderr=open(DATA + ".stderr", "w"))
    time.sleep(1)  # perf up (or failed) before the bench starts
    if perf.poll() is not None:
        fail(f"perf record exited at once: {open(DATA + '.stderr').read().strip()}")
    started, ticks = time.time(), cpu_ticks()
    try:
        bench = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "envoy_bench.py")])
    finally:
        perf.send_signal(signal.SIGINT)
        try:
            perf.wait(timeout=60)
        except subprocess.TimeoutExpired:
            perf.kill()
    for line in open(DATA + ".stderr"):
        if "lost" in line.lower() or "error" in line.lower():
            print(f"perf record: {line.strip()}", file=sys.stderr)
    if bench.returncode != 0:
        print(f"perf_split: envoy_bench.py failed (exit {bench.returncode}): no split", file=sys.stderr)
        sys.exit(bench.returncode)
    if os.path.getmtime(os.path.join(OUT, "envoy.json")) < started:
        fail("bench/results/envoy.json was not written by this run")
    d = [b - a for a, b in zip(ticks, cpu_ticks())]
    return d[7] / sum(d) if sum(d) else None


def samples(pids, since):
    """The samples from `since` (CLOCK_MONOTONIC, s) on, per pid: {"worker": {column: [samples, ns]},
    "others": [samples, ns], "other_dsos": {dso: samples}} (ns of CPU: cpu-clock's period)."""
    acc = {p: {"worker": {c: [0, 0] for c in COLUMNS}, "others": [0, 0], "other_dsos": {}} for p in pids}
    p = subprocess.Popen(["perf", "script", "-i", DATA, "--pid", ",".join(map(str, pids)),
                          "-F", "comm,pid,tid,time,period,ip,dso"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    unparsed = 0
    for line in p.stdout:
        m = LINE.match(line)
        if not m:
            unparsed += bool(line.strip())
            continue
        comm, pid, t, period, dso = m.group(1), int(m.group(2)), float(m.group(4)), int(m.group(5)), m.group(7)
        if pid not in acc or t < since:
            continue
        a = acc[pid]
        if comm.startswith("wrk:worker_"):
            col = column(dso)
            a["worker"][col][0] += 1
            a["worker"][col][1] += period or round(1e9 / FREQ)
            if col == "other":
                a["other_dsos"][dso] = a["other_dsos"].get(dso, 0) + 1
        else:
            a["others"][0] += 1
            a["others"][1] += period or round(1e9 / FREQ)
    err = p.stderr.read()
    if p.wait() != 0:
        fail(f"perf script failed: {err.strip()}")
    if unparsed:
        print(f"warning: {unparsed} lines of perf script not understood", file=sys.stderr)
    return acc


def split(env):
    if "envoys" not in env:
        fail("bench/results/envoy.json has no `envoys` (pids and requests): run envoy_bench.py again")
    acc = samples([e["pid"] for e in env["envoys"].values()], env["rounds_from_monotonic"])
    rows = {}
    for kind in env["configs"]:
        e = env["envoys"][kind]
        a, n = acc[e["pid"]], e["requests"]
        count = sum(a["worker"][c][0] for c in COLUMNS)
        if not count or not n:
            fail(f"{kind} (pid {e['pid']}): {count} samples of a `wrk:worker_*` thread, {n} requests answered")
        w = {c: a["worker"][c][1] / 1e3 / n for c in COLUMNS}
        total = sum(w.values())
        rows[kind] = {"pid": e["pid"], "requests": n,
                      "requests_measured": sum(r["requests"] for r in env["runs"] if r["config"] == kind),
                      "worker_samples": count, **w, "total": total,
                      # sampling error, Poisson: k samples of one period each are ±sqrt(k) samples
                      "sd": {c: math.sqrt(k) * v / k if k else 0.0 for c, k, v in
                             [(c, a["worker"][c][0], w[c]) for c in COLUMNS] + [("total", count, total)]},
                      "other_threads": a["others"][1] / 1e3 / n, "other_threads_samples": a["others"][0],
                      "other_dsos": a["other_dsos"]}
    for kind, r in rows.items():
        r["over_none"] = r["total"] - rows["none"]["total"] if "none" in rows else None
    pairs = [(k, "floor") for k in rows if k != "floor" and "floor" in rows]
    pairs += [(f"usage_http_{v}", "usage_http") for v in env.get("variants", {}) if "usage_http" in rows]
    diffs = [{"a": a, "b": b, **{c: rows[a][c] - rows[b][c] for c in COLUMNS + ["total", "other_threads"]},
              "sd": {c: math.hypot(rows[a]["sd"][c], rows[b]["sd"][c]) for c in COLUMNS + ["total"]}} for a, b in pairs]
    return rows, diffs


def fmt(v):
    return "—" if v is None or abs(v) < 0.05 else f"{v:.1f}"


def table(env, rows, diffs, steal):
    out = [f"µs of CPU {CPU} per request, by perf (cpu-clock at {FREQ} Hz), over the rounds "
           f"({env['rounds']} rounds of {env['duration_s']} s, routes {','.join(env['routes'])}, "
           f"commit {env['commit']})" + (f"; {steal:.1%} of the CPU's time stolen by the hypervisor meanwhile:"
                                          if steal is not None else ":"),
           "", "| configuration | " + " | ".join(TITLES[c] for c in COLUMNS) +
           " | total (worker) | over no filter | other threads | requests | worker samples |",
           "|---|" + "---:|" * (len(COLUMNS) + 5)]
    for kind, r in rows.items():
        out.append(f"| {kind} | " + " | ".join(fmt(r[c]) for c in COLUMNS) +
                   f" | {fmt(r['total'])} | {fmt(r['over_none']) if kind != 'none' else '—'} | "
                   f"{fmt(r['other_threads'])} | {r['requests']} | {r['worker_samples']} |")
    if diffs:
        out += ["", "| difference | " + " | ".join(TITLES[c] for c in COLUMNS) +
                " | total (worker) | other threads |", "|---|" + "---:|" * (len(COLUMNS) + 2)]
        for d in diffs:
            out.append(f"| {d['a']} − {d['b']} | " + " | ".join(f"{d[c]:+.2f} ± {d['sd'][c]:.2f}" for c in COLUMNS) +
                       f" | {d['total']:+.2f} ± {d['sd']['total']:.2f} | {d['other_threads']:+.2f} |")
    others = {d for r in rows.values() for d in r["other_dsos"]}
    if others:
        out += ["", f"other: {', '.join(sorted(others))}"]
    return "\n".join(out)


def main():
    steal = None
    if "--no-run" not in sys.argv[1:]:
        check_perf()
        steal = run_bench()
    elif not os.path.exists(DATA):
        fail(f"{DATA} missing: run without --no-run first")
    env = json.load(open(os.path.join(OUT, "envoy.json")))
    rows, diffs = split(env)
    print(table(env, rows, diffs, steal))
    with open(os.path.join(OUT, "perf_split.json"), "w") as f:
        json.dump({"cpu": CPU, "freq_hz": FREQ, "commit": env["commit"], "rounds": env["rounds"],
                   "duration_s": env["duration_s"], "steal": steal, "routes": env["routes"],
                   "variants": env.get("variants", {}), "rows": rows, "diffs": diffs}, f, indent=2)


if __name__ == "__main__":
    main()
