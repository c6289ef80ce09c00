#!/usr/bin/env python3
"""usage-agent throughput and memory: Caddy access-log entries per second through the agent,
pinned to one core, into the reference collector (pinned to another), and the agent's resident
memory. Prints one JSON object.

Entries are the real Caddy 2.11.7 lines of caddy/testdata/access.log (the keyed ones, ~560
bytes each) with a distinct path and a current `ts` each. Two runs:
- backlog: N entries already in the file when the agent starts; the rate is the entries the
  collector acknowledged (the agent's `events_delivered`) over the time until every entry was
  delivered or dropped (a backlog read faster than delivery drops beyond `buffer_size`);
- paced: a writer appends entries at a fixed rate (default 50,000/s) for some seconds while
  the agent follows; reported: whether the agent kept up (nothing dropped, nothing left
  behind), its CPU use on its core and its resident memory (peak and at the end).

Plugin configuration: caddy/usage-agent.json with `--batch-size` and `--buffer-size` (defaults
1000 and 100000, as in that file). Needs dist/usage-agent, dist/usage_filter.wasm and
target/release/collector (make build; cargo build --release -p usage-collector).
Usage: caddy/bench_agent.py [--entries N] [--rate R] [--seconds S] [--batch-size B]
       [--buffer-size B] [--agent-cpu C] [--collector-cpu C]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.environ.get("USAGE_AGENT", os.path.join(ROOT, "dist", "usage-agent"))
WASM = os.environ.get("USAGE_FILTER_WASM", os.path.join(ROOT, "dist", "usage_filter.wasm"))
COLLECTOR = os.path.join(ROOT, "target", "release", "collector")
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def templates():
    """The keyed entries of the fixture, split around their `uri` path and `ts`."""
    out = []
    with open(os.path.join(ROOT, "caddy", "testdata", "access.log")) as f:
        for line in f:
            e = json.loads(line)
            if "X-Subscription-Key" not in e["request"]["headers"]:
                continue
            e["ts"] = 1.5
            e["request"]["uri"] = "/bench/@I@" + "?" + e["request"]["uri"].partition("?")[2]
            out.append(json.dumps(e, separators=(",", ":")).replace('"ts":1.5', '"ts":@TS@'))
    return out


class Lines:
    """Entry i: a fixture template with path /bench/i and ts = now at generation."""

    def __init__(self):
        self.t = templates()
        self.i = 0

    def take(self, n):
        ts = f"{time.time():.7f}"
        out = []
        for _ in range(n):
            t = self.t[self.i % len(self.t)]
            out.append(t.replace("@I@", str(self.i), 1).replace("@TS@", ts, 1))
            self.i += 1
        return ("\n".join(out) + "\n").encode()


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {k: int(float(v)) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l and l[0] != "#")}


def proc_stat(pid):
    """(cpu seconds, rss KiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return cpu, rss


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"{what} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start")


class Run:
    def __init__(self, a, d):
        self.a, self.d = a, d
        self.log = os.path.join(d, "access.log")
        open(self.log, "wb").close()
        self.cport, self.mport = free_port(), free_port()
        cfg = json.load(open(os.path.join(ROOT, "caddy", "usage-agent.json")))
        cfg["http"].update(batch_size=a.batch_size, buffer_size=a.buffer_size)
        self.cfg = os.path.join(d, "plugin.json")
        json.dump(cfg, open(self.cfg, "w"))
        self.procs = []

    def start(self):
        pin = lambda cpu: ["taskset", "-c", str(cpu)] if shutil.which("taskset") and cpu >= 0 else []
        c = subprocess.Popen(pin(self.a.collector_cpu) + [COLLECTOR, "--listen", f"127.0.0.1:{self.cport}",
                                                          "--out", os.path.join(self.d, "events.ndjson")],
                             stderr=subprocess.DEVNULL)
        self.procs.append(c)
        wait_port(self.cport, c, "the collector")
        env = dict(os.environ, COLLECTOR_TOKEN="Bearer bench")
        self.agent = subprocess.Popen(
            pin(self.a.agent_cpu) + [AGENT, "--wasm", WASM, "--config", self.cfg, "--follow", self.log,
                                     "--state", os.path.join(self.d, "state.json"), "--env", "COLLECTOR_TOKEN",
                                     "--cluster", f"collector=127.0.0.1:{self.cport}",
                                     "--metrics", f"127.0.0.1:{self.mport}"],
            env=env, stderr=open(os.path.join(self.d, "agent.err"), "wb"))
        self.procs.append(self.agent)
        wait_port(self.mport, self.agent, "usage-agent")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    def sampler(self, until):
        """Peak RSS (KiB) and peak `usage_agent_bytes_unread` while `until` is not set."""
        peak = {"rss": 0, "unread": 0}

        def loop():
            n = 0
            while not until.is_set():
                peak["rss"] = max(peak["rss"], proc_stat(self.agent.pid)[1])
                if n % 5 == 0:
                    peak["unread"] = max(peak["unread"], metrics(self.mport)["usage_agent_bytes_unread"])
                n += 1
                time.sleep(0.02)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return peak


def backlog(a):
    d = tempfile.mkdtemp(prefix="usage-agent-bench-")
    r = Run(a, d)
    try:
        lines = Lines()
        with open(r.log, "ab") as f:
            left = a.entries
            while left:
                n = min(left, 10_000)
                f.write(lines.take(n))
                left -= n
        size = os.path.getsize(r.log)
        r.start()
        t0 = time.time()
        done = threading.Event()
        peak = r.sampler(done)
        while True:
            m = metrics(r.mport)
            if m["usage_filter_events_delivered"] + m["usage_filter_events_dropped_buffer_full"] >= a.entries:
                break
            if time.time() - t0 > 300:
                sys.exit(f"backlog: not done after 300 s: {m}")
            time.sleep(0.01)
        took = time.time() - t0
        done.set()
        cpu, rss = proc_stat(r.agent.pid)
        return {"entries": a.entries, "bytes": size, "seconds": round(took, 3),
                "entries_per_s": round(m["usage_filter_events_delivered"] / took),
                "delivered": m["usage_filter_events_delivered"],
                "dropped": m["usage_filter_events_dropped_buffer_full"] + m["usage_filter_events_dropped_send_failed"],
                "agent_cpu_s_with_startup": round(cpu, 2), "rss_peak_kib": max(peak["rss"], rss), "rss_end_kib": rss}
    finally:
        r.stop()
        shutil.rmtree(d, ignore_errors=True)


def paced(a):
    d = tempfile.mkdtemp(prefix="usage-agent-bench-")
    r = Run(a, d)
    try:
        # Generated beforehand (ts = when each entry is due), so the writer costs no CPU.
        total = int(a.rate * a.seconds)
        lines = Lines()
        blob = bytearray()
        offsets = [0]
        step = 500
        for i in range(0, total, step):
            chunk = lines.take(min(step, total - i))
            blob += chunk
            offsets.append(len(blob))
        r.start()
        if a.collector_cpu >= 0:  # the writer stays off the agent's core
            os.sched_setaffinity(0, {a.collector_cpu})
        done = threading.Event()
        peak = r.sampler(done)
        cpu0, _ = proc_stat(r.agent.pid)
        t0 = time.time()
        written = 0
        fd = os.open(r.log, os.O_WRONLY | os.O_APPEND)
        view = memoryview(blob)
        for k in range(1, len(offsets)):
            due = t0 + (k * step) / a.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            os.write(fd, view[offsets[k - 1]:offsets[k]])
        written = total
        os.close(fd)
        wrote_s = time.time() - t0
        cpu1, _ = proc_stat(r.agent.pid)
        t1 = time.time()
        while True:
            m = metrics(r.mport)
            if m["usage_filter_events_delivered"] + m["usage_filter_events_dropped_buffer_full"] >= written:
                break
            if time.time() - t1 > 60:
                sys.exit(f"paced: not done 60 s after writing: {m}")
            time.sleep(0.01)
        catch_up = time.time() - t1
        done.set()
        _, rss = proc_stat(r.agent.pid)
        return {"rate_per_s": a.rate, "seconds": round(wrote_s, 2), "entries": written,
                "delivered": m["usage_filter_events_delivered"],
                "dropped": m["usage_filter_events_dropped_buffer_full"] + m["usage_filter_events_dropped_send_failed"],
                "unread_bytes_peak": peak["unread"], "entry_bytes": len(blob) // total,
                "delivered_all_after_writing_stopped_s": round(catch_up, 3),
                "agent_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / wrote_s, 1),
                "rss_peak_kib": max(peak["rss"], rss), "rss_end_kib": rss}
    finally:
        r.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=300_000)
    p.add_argument("--rate", type=int, default=50_000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--agent-cpu", type=int, default=0, help="core the agent is pinned to (-1: none)")
    p.add_argument("--collector-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else -1)
    a = p.parse_args()
    for f in (AGENT, WASM, COLLECTOR):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: make build; cargo build --release -p usage-collector")
    out = {"agent_cores": 1 if a.agent_cpu >= 0 else None, "batch_size": a.batch_size,
           "buffer_size": a.buffer_size, "target_entries_per_s": 50_000}
    out["backlog"] = backlog(a)
    out["paced"] = paced(a)
    out["target_met"] = (out["backlog"]["entries_per_s"] >= 50_000 and out["backlog"]["dropped"] == 0
                         and out["paced"]["dropped"] == 0 and out["paced"]["delivered"] == out["paced"]["entries"]
                         and a.rate >= 50_000)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
