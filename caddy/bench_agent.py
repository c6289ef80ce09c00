#!/usr/bin/env python3
"""usage-agent throughput, catch-up and memory: Caddy access-log entries through the agent,
pinned to one core, into the reference collector (pinned to another; this script runs there
too). Prints one JSON object.

Entries are the real Caddy 2.11.7 lines of caddy/testdata/access.log (the keyed ones, ~560
bytes each), each with a distinct path. With `--follow` the file is the buffer: reading pauses
while the filter holds `buffer_size - batch_size` events and retryable failures are retried
without limit, so every run must deliver every entry and drop none. Four runs:
- backlog: N entries (default 300,000) already in the file when the agent starts; the rate is
  the entries delivered (the agent's `events_delivered`) over the time until all are delivered.
  Target: 90,000 entries/s, nothing dropped or lost.
- paced: a writer appends entries at a fixed rate (default 50,000/s) for some seconds while
  the agent follows; reported: whether the agent kept up (nothing dropped, nothing left
  behind), its CPU use on its core and its resident memory (peak and at the end).
- outage: a 10-minute collector outage at 5,000 entries/s, without waiting 10 minutes. The
  agent follows with the collector down (a closed port); 3,000,000 entries whose `ts` spread
  over the last 10 minutes are appended as fast as the writer can. Checked while it is down:
  reading paused (`usage_agent_reading_paused` 1), nothing dropped for a full buffer. Then the
  collector starts on that port; reported: the seconds until every entry is delivered (and
  until the first is: the retry backoff, capped at `max_backoff_ms`), beside the seconds the
  same entries take at the backlog rate. `--outage-entries` and `--outage-minutes` scale it
  down; the output says what was run (`scaled_down`).
- memory: a 1,000,000-entry backlog delivered with pauses: the collector answers each batch
  50 ms late (`POST /faults {"delay_ms": 50, "count": -1}`) and goes down for 2 s twice on
  the way. The agent's resident memory is sampled throughout (peak, end, and at each quarter
  of the delivery). Target: peak at most 64 MiB.
- kafka_vs_http: agent → Kafka against agent → HTTP collector, interleaved in one run
  (`--kafka-rounds` rounds, each a backlog of `--kafka-entries` entries to each destination,
  the order alternating): the same plugin configuration (`kafka-rest`, keyed by subscription
  key) to the reference collector or to a real tansu broker (.tools/tansu, sqlite storage, a
  topic of 3 partitions, pinned beside the collector) through `--cluster kafka://…`
  (lz4, acks=all; idempotent, the default, and `?idempotence=false`). Reported per round and
  as min/max: entries/s on the agent's one core and entries per second of the agent's CPU. Also the agent as Envoy's Kafka REST endpoint
  (`--listen-http`, no filter run): `kafka-rest` POSTs of `--batch-size` records, two at a time
  (the filter's `max_in_flight`), from this script: records acknowledged per second and per
  second of the agent's CPU. Skipped, and said so, without tansu (kafka/install-tansu.sh).
`target_met` is every run's checks (`checks` names them one by one).

Plugin configuration: caddy/usage-agent.json with `--batch-size` and `--buffer-size` (defaults
1000 and 100000, as in that file). Needs dist/usage-agent, dist/usage_filter.wasm and
target/release/collector (make build; cargo build --release -p usage-collector).
Usage: caddy/bench_agent.py [--entries N] [--rate R] [--seconds S] [--outage-entries N]
       [--outage-minutes M] [--memory-entries N] [--memory-delay-ms D] [--memory-outages K]
       [--batch-size B] [--buffer-size B] [--agent-cpu C] [--collector-cpu C]
       [--kafka-entries N] [--kafka-rounds R] [--only NAME[,NAME]]
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
TANSU = os.path.join(ROOT, ".tools", "tansu", "bin", "tansu")
HZ = os.sysconf("SC_CLK_TCK")
TARGET_ENTRIES_PER_S = 90_000
TARGET_PACED_PER_S = 50_000
TARGET_RSS_KIB = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Entries


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
    """Entry i: a fixture template with path /bench/i."""

    def __init__(self):
        self.t = templates()
        self.i = 0

    def take(self, n, ts=None, step=0.0):
        """n entries as bytes; `ts` of the first (default now), each next one `step` s later."""
        ts = time.time() if ts is None else ts
        out = []
        for j in range(n):
            t = self.t[self.i % len(self.t)]
            out.append(t.replace("@I@", str(self.i), 1).replace("@TS@", f"{ts + j * step:.7f}", 1))
            self.i += 1
        return ("\n".join(out) + "\n").encode()


def write_backlog(path, n, ts=None, span_s=0.0):
    """Appends n entries to `path` as fast as they can be made, `ts` spread over `span_s`
    seconds from `ts`. Returns the seconds it took."""
    t0 = time.time()
    lines = Lines()
    step = span_s / n if n else 0.0
    ts = time.time() if ts is None else ts
    with open(path, "ab") as f:
        done = 0
        while done < n:
            k = min(n - done, 10_000)
            f.write(lines.take(k, ts + done * step, step))
            done += k
    return time.time() - t0


# ---------------------------------------------------------------------------------------------
# Processes and what they tell


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    """The agent's /metrics as {name (with labels): int}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {k: int(float(v)) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l and l[0] != "#")}


def total(m, prefix):
    """The sum of a labelled counter over its labels (0 when it has none yet)."""
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def books(m):
    """What the agent and the filter say was delivered, dropped and lost."""
    return {"delivered": m["usage_filter_events_delivered"],
            "dropped": m["usage_filter_events_dropped_buffer_full"] + m["usage_filter_events_dropped_send_failed"],
            "entries_lost": total(m, "usage_agent_entries_lost_total"),
            "bytes_lost": total(m, "usage_agent_bytes_lost_total")}


def caught_up(m):
    """The gauges that must all be 0 once every entry is delivered."""
    return {k: m[k] for k in ("usage_agent_lines_behind", "usage_agent_bytes_unread", "usage_agent_files_pending",
                              "usage_agent_reading_paused", "usage_filter_buffer_events") if k in m}


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


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and cpu >= 0 else []


def terminate(p, timeout=20):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Run:
    """One agent following `access.log` in a temporary folder, and the collector it sends to
    (which may be started, stopped and started again on the same port)."""

    def __init__(self, a, kafka_rest=False, kafka=None):
        """`kafka_rest`: the `kafka-rest` format; `kafka`: a `kafka://` URL the agent
        produces to instead of the collector."""
        self.a = a
        self.kafka = kafka
        self.d = tempfile.mkdtemp(prefix="usage-agent-bench-")
        self.log = os.path.join(self.d, "access.log")
        open(self.log, "wb").close()
        self.cport, self.mport = free_port(), free_port()
        cfg = json.load(open(os.path.join(ROOT, "caddy", "usage-agent.json")))
        cfg["http"].update(batch_size=a.batch_size, buffer_size=a.buffer_size)
        if kafka_rest or kafka:
            cfg["http"].update(format="kafka-rest", path="/topics/usage")
        self.cfg = os.path.join(self.d, "plugin.json")
        json.dump(cfg, open(self.cfg, "w"))
        self.collector = self.agent = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        terminate(self.agent)
        terminate(self.collector)
        shutil.rmtree(self.d, ignore_errors=True)

    def start_collector(self):
        self.collector = subprocess.Popen(
            pin(self.a.collector_cpu) + [COLLECTOR, "--listen", f"127.0.0.1:{self.cport}",
                                         "--out", os.path.join(self.d, "events.ndjson")],
            stderr=subprocess.DEVNULL)
        wait_port(self.cport, self.collector, "the collector")

    def stop_collector(self):
        terminate(self.collector)
        self.collector = None

    def collector_call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.cport}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def start_agent(self):
        """Starts the agent (the collector need not be up) and waits for its /metrics."""
        env = dict(os.environ, COLLECTOR_TOKEN="Bearer bench")
        self.agent = subprocess.Popen(
            pin(self.a.agent_cpu) + [AGENT, "--wasm", WASM, "--config", self.cfg, "--follow", self.log,
                                     "--state", os.path.join(self.d, "state.json"), "--env", "COLLECTOR_TOKEN",
                                     "--cluster", f"collector={self.kafka or f'127.0.0.1:{self.cport}'}",
                                     "--metrics", f"127.0.0.1:{self.mport}"],
            env=env, stderr=open(os.path.join(self.d, "agent.err"), "wb"))
        wait_port(self.mport, self.agent, "usage-agent")

    def metrics(self):
        return metrics(self.mport)

    def wait(self, what, cond, timeout, every=0.01):
        """Polls the agent's metrics until `cond(m)`; returns the last metrics."""
        t0 = time.time()
        while True:
            m = self.metrics()
            try:
                if cond(m):
                    return m
            except KeyError:
                pass  # the agent's first page is not rendered yet
            if self.agent.poll() is not None:
                sys.exit(f"{what}: the agent exited {self.agent.returncode}: {self.agent_err()}")
            if time.time() - t0 > timeout:
                sys.exit(f"{what}: not done after {timeout} s: {books(m)} {caught_up(m)}")
            time.sleep(every)

    def wait_delivered(self, what, n, timeout):
        return self.wait(what, lambda m: m["usage_filter_events_delivered"] >= n, timeout)

    def agent_err(self):
        with open(os.path.join(self.d, "agent.err"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")


class Sampler:
    """Samples the agent's RSS every 20 ms and its metrics every 100 ms in a thread, until
    stopped: peaks, how often reading was paused, and RSS at chosen moments (`mark`)."""

    def __init__(self, run):
        self.run = run
        self.rss_peak = self.unread_peak = 0
        self.samples = self.paused_samples = 0
        self.rss = 0
        self.stop_ = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        n = 0
        while not self.stop_.is_set():
            try:
                self.rss = proc_stat(self.run.agent.pid)[1]
                self.rss_peak = max(self.rss_peak, self.rss)
                if n % 5 == 0:
                    m = self.run.metrics()
                    self.unread_peak = max(self.unread_peak, m["usage_agent_bytes_unread"])
                    self.samples += 1
                    self.paused_samples += m.get("usage_agent_reading_paused", 0)
            except (OSError, ValueError, KeyError, StopIteration):
                pass  # the agent is starting or stopping: next time
            n += 1
            time.sleep(0.02)

    def stop(self):
        self.stop_.set()
        self.t.join()
        _, rss = proc_stat(self.run.agent.pid)
        self.rss_peak = max(self.rss_peak, rss)
        return rss


# ---------------------------------------------------------------------------------------------
# The runs


def backlog(a):
    """N entries in the file before the agent starts; delivered entries/s until all are."""
    with Run(a) as r:
        write_backlog(r.log, a.entries)
        size = os.path.getsize(r.log)
        r.start_collector()
        r.start_agent()
        cpu0, _ = proc_stat(r.agent.pid)
        t0 = time.time()
        s = Sampler(r)
        m = r.wait_delivered("backlog", a.entries, 300)
        took = time.time() - t0
        rss = s.stop()
        cpu, _ = proc_stat(r.agent.pid)
        b = books(m)
        # Entries per second of the agent's own CPU: what one core does when the agent has it
        # alone. On a busy machine the wall-clock rate also counts the time others took the core.
        return {"entries": a.entries, "bytes": size, "seconds": round(took, 3),
                "entries_per_s": round(b["delivered"] / took),
                "entries_per_cpu_s": round(b["delivered"] / max(cpu - cpu0, 0.01)), **b,
                "paused_share": round(s.paused_samples / max(s.samples, 1), 2),
                "agent_cpu_s_with_startup": round(cpu, 2), "rss_peak_kib": s.rss_peak, "rss_end_kib": rss}


def paced(a):
    """A writer appends at `--rate` for `--seconds` while the agent follows."""
    with Run(a) as r:
        # Generated beforehand (ts = when each entry is due), so the writer costs no CPU.
        n = int(a.rate * a.seconds)
        lines = Lines()
        blob = bytearray()
        offsets = [0]
        step = 500
        for i in range(0, n, step):
            blob += lines.take(min(step, n - i))
            offsets.append(len(blob))
        r.start_collector()
        r.start_agent()
        s = Sampler(r)
        cpu0, _ = proc_stat(r.agent.pid)
        t0 = time.time()
        fd = os.open(r.log, os.O_WRONLY | os.O_APPEND)
        view = memoryview(blob)
        for k in range(1, len(offsets)):
            pause = t0 + (k * step) / a.rate - time.time()
            if pause > 0:
                time.sleep(pause)
            os.write(fd, view[offsets[k - 1]:offsets[k]])
        os.close(fd)
        wrote_s = time.time() - t0
        cpu1, _ = proc_stat(r.agent.pid)
        t1 = time.time()
        m = r.wait_delivered("paced", n, 60)
        catch_up = time.time() - t1
        rss = s.stop()
        return {"rate_per_s": a.rate, "seconds": round(wrote_s, 2), "entries": n, **books(m),
                "unread_bytes_peak": s.unread_peak, "entry_bytes": len(blob) // n,
                "delivered_all_after_writing_stopped_s": round(catch_up, 3),
                "agent_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / wrote_s, 1),
                "rss_peak_kib": s.rss_peak, "rss_end_kib": rss}


def outage(a, backlog_rate):
    """The collector down (closed port) while `--outage-entries` entries spread over
    `--outage-minutes` are appended; then it starts, and the catch-up is timed."""
    n, span = a.outage_entries, a.outage_minutes * 60
    with Run(a) as r:
        r.start_agent()  # nothing listens on r.cport yet
        t_down = time.time()
        wrote_s = write_backlog(r.log, n, time.time() - span, span)
        size = os.path.getsize(r.log)
        pause_at = a.buffer_size - a.batch_size
        m = r.wait("outage: reading paused", lambda m: m.get("usage_agent_reading_paused") == 1
                   and m["usage_filter_buffer_events"] >= pause_at, 60, every=0.1)
        # A long outage leaves the retry backoff at its cap: let it get there (~13 s from the
        # first failure with the defaults, 200 ms doubling to 10 s) before the collector is back.
        time.sleep(max(0.0, t_down + a.outage_hold - time.time()))
        m = r.metrics()
        time.sleep(1)  # still paused a second later, nothing read meanwhile
        m2 = r.metrics()
        during = {"reading_paused": m2.get("usage_agent_reading_paused"),
                  "events_held": m2["usage_filter_buffer_events"],
                  "lines_read": m2["usage_agent_lines_read_total"],
                  "lines_read_in_the_last_second": m2["usage_agent_lines_read_total"] - m["usage_agent_lines_read_total"],
                  "bytes_unread": m2["usage_agent_bytes_unread"],
                  "files_pending": m2["usage_agent_files_pending"],
                  "dropped_buffer_full": m2["usage_filter_events_dropped_buffer_full"],
                  "dropped_send_failed": m2["usage_filter_events_dropped_send_failed"],
                  "outage_s": round(time.time() - t_down, 1)}
        s = Sampler(r)
        r.start_collector()
        t0 = time.time()
        first = r.wait("outage: first delivery", lambda m: m["usage_filter_events_delivered"] > 0, 60)
        first_s = time.time() - t0
        m = r.wait_delivered("outage: catch-up", n, 600)
        took = time.time() - t0
        rss = s.stop()
        time.sleep(0.3)  # the gauges of the last tick
        end = r.metrics()
        stats = r.collector_call("GET", "/stats")
        b = books(m)
        return {"entries": n, "bytes": size, "ts_span_s": span, "rate_per_s": round(n / span),
                "scaled_down": n < 3_000_000 or span < 600, "writer_s": round(wrote_s, 1),
                "during_outage": during,
                "first_delivery_after_collector_up_s": round(first_s, 2),
                "catch_up_s": round(took, 2), "catch_up_entries_per_s": round(n / took),
                "at_backlog_rate_s": round(n / backlog_rate, 2) if backlog_rate else None, **b,
                "collector_events": stats["events"], "collector_duplicate_events": stats["duplicate_events"],
                "gauges_after": caught_up(end),
                "rss_peak_kib": s.rss_peak, "rss_end_kib": rss}


def memory(a):
    """A backlog delivered slowly (a delay per batch) and across collector restarts, so
    that reading pauses again and again; the agent's RSS is sampled all along."""
    n = a.memory_entries
    slow = {"delay_ms": a.memory_delay_ms, "count": -1}
    with Run(a) as r:
        write_backlog(r.log, n)
        r.start_collector()
        r.collector_call("POST", "/faults", slow)
        r.start_agent()
        t0 = time.time()
        s = Sampler(r)
        rss_at, downs = {}, []
        quarters = [n * q // 4 for q in (1, 2, 3)]
        restarts = [n * (k + 1) // (a.memory_outages + 1) for k in range(a.memory_outages)]
        while True:
            m = r.metrics()
            got = m["usage_filter_events_delivered"]
            while quarters and got >= quarters[0]:
                rss_at[f"{100 * quarters.pop(0) // n}%"] = s.rss
            if restarts and got >= restarts[0]:
                restarts.pop(0)
                r.stop_collector()
                time.sleep(2)
                downs.append(r.metrics().get("usage_agent_reading_paused"))
                r.start_collector()
                r.collector_call("POST", "/faults", slow)
            if got >= n:
                break
            if r.agent.poll() is not None or time.time() - t0 > 600:
                sys.exit(f"memory: not done: {books(m)} {caught_up(m)}: {r.agent_err()}")
            time.sleep(0.05)
        took = time.time() - t0
        rss = s.stop()
        rss_at["100%"] = rss
        return {"entries": n, "collector_delay_ms_per_batch": a.memory_delay_ms,
                "collector_outages_of_2s": a.memory_outages, "paused_at_each_outage": downs,
                "seconds": round(took, 2), "entries_per_s": round(n / took), **books(m),
                "paused_share": round(s.paused_samples / max(s.samples, 1), 2),
                "rss_kib_at_delivered": rss_at, "rss_growth_after_first_quarter_kib": rss - rss_at.get("25%", rss),
                "rss_peak_kib": s.rss_peak, "rss_end_kib": rss}


class Broker:
    """tansu on a free port, pinned to the collector's core, its sqlite data in a temporary
    folder, with the topic `usage` of 3 partitions."""

    def __init__(self, a):
        self.d = tempfile.mkdtemp(prefix="usage-agent-bench-tansu-")
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.p = subprocess.Popen(pin(a.collector_cpu) + [TANSU, "broker", "--listener-url", url,
                                                          "--advertised-listener-url", url,
                                                          "--storage-engine", "sqlite://tansu.db"],
                                  cwd=self.d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, RUST_LOG="error"))
        wait_port(self.port, self.p, "tansu")
        subprocess.run([TANSU, "topic", "create", "--broker", url, "--partitions", "3", "usage"],
                       check=True, capture_output=True, timeout=30)
        self.url = f"kafka://127.0.0.1:{self.port}/usage"

    def close(self):
        terminate(self.p)
        shutil.rmtree(self.d, ignore_errors=True)


def backlog_to(a, n, kafka):
    """n entries in the file, then the agent delivers them to the collector (`kafka` None) or
    to the broker: entries/s on its core and per second of its CPU."""
    with Run(a, kafka_rest=True, kafka=kafka) as r:
        write_backlog(r.log, n)
        if kafka is None:
            r.start_collector()
        r.start_agent()
        cpu0, _ = proc_stat(r.agent.pid)
        t0 = time.time()
        m = r.wait_delivered("kafka_vs_http", n, 300)
        took = time.time() - t0
        cpu, rss = proc_stat(r.agent.pid)
        b = books(m)
        return {"entries": n, "seconds": round(took, 3), "entries_per_s": round(b["delivered"] / took),
                "agent_cpu_s": round(cpu - cpu0, 2),
                "entries_per_cpu_s": round(b["delivered"] / max(cpu - cpu0, 0.01)),
                "batch_retries": m["usage_filter_batch_retries"], **b, "rss_end_kib": rss}


def event_json(i):
    """An event as the filter writes it (the fields of a keyed GET), id made from i."""
    return json.dumps({"id": f"00000000-0000-7000-8000-{i:012x}", "api_path": f"/bench/{i}",
                       "subscription_key": f"key-{i % 50}", "method": "GET", "response_time_ms": 3,
                       "status_code": 200, "success": True, "timestamp": "2026-12-06T10:00:00.000000Z",
                       "request_size": 0, "response_size": 512}, separators=(",", ":"))


def listen_http(a, broker, n):
    """The agent as Envoy's Kafka REST endpoint: n records in `kafka-rest` POSTs of
    `--batch-size`, two at a time; every answer must be 200."""
    import http.client
    d = tempfile.mkdtemp(prefix="usage-agent-bench-relay-")
    port, mport = free_port(), free_port()
    agent = subprocess.Popen(pin(a.agent_cpu) + [AGENT, "--listen-http", f"127.0.0.1:{port}",
                                                 "--cluster", f"kafka={broker.url}",
                                                 "--metrics", f"127.0.0.1:{mport}"],
                             stderr=open(os.path.join(d, "agent.err"), "wb"))
    try:
        wait_port(port, agent, "usage-agent --listen-http")
        bodies = []
        for start in range(0, n, a.batch_size):
            recs = ",".join(f'{{"key":"key-{i % 50}","value":{event_json(i)}}}'
                            for i in range(start, min(n, start + a.batch_size)))
            bodies.append(('{"records":[' + recs + "]}").encode())
        statuses = {}
        lock = threading.Lock()

        def client(mine):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for b in mine:
                c.request("POST", "/topics/usage", body=b,
                          headers={"content-type": "application/vnd.kafka.json.v2+json"})
                r = c.getresponse()
                r.read()
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            c.close()
        cpu0, _ = proc_stat(agent.pid)
        t0 = time.time()
        ts = [threading.Thread(target=client, args=(bodies[k::2],)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        took = time.time() - t0
        cpu, rss = proc_stat(agent.pid)
        # The page is rendered every 100 ms.
        deadline = time.time() + 5
        while True:
            acked = metrics(mport)["usage_agent_http_records_acknowledged_total"]
            if acked >= n or time.time() > deadline:
                break
            time.sleep(0.05)
        return {"records": n, "records_per_post": a.batch_size, "seconds": round(took, 3),
                "records_per_s": round(acked / took), "agent_cpu_s": round(cpu - cpu0, 2),
                "records_per_cpu_s": round(acked / max(cpu - cpu0, 0.01)), "acknowledged": acked,
                "statuses": statuses, "rss_end_kib": rss}
    finally:
        terminate(agent)
        shutil.rmtree(d, ignore_errors=True)


def kafka_vs_http(a):
    """Interleaved rounds: the same backlog to the collector and to tansu; then --listen-http."""
    if not os.path.exists(TANSU):
        return {"skipped": f"{TANSU} is missing: kafka/install-tansu.sh"}
    broker = Broker(a)
    try:
        rounds = []
        urls = {"http": None, "kafka": broker.url, "kafka_not_idempotent": broker.url + "?idempotence=false"}
        for k in range(a.kafka_rounds):
            order = list(urls) if k % 2 == 0 else list(reversed(urls))
            got = {}
            for dest in order:
                got[dest] = backlog_to(a, a.kafka_entries, urls[dest])
            got["kafka_over_http_per_cpu_s"] = round(got["kafka"]["entries_per_cpu_s"] /
                                                     got["http"]["entries_per_cpu_s"], 2)
            rounds.append(got)
        relay = [listen_http(a, broker, a.kafka_entries) for _ in range(a.kafka_rounds)]
    finally:
        broker.close()

    def span(xs):
        return {"min": min(xs), "max": max(xs)}
    return {"entries": a.kafka_entries, "rounds": rounds,
            "http_entries_per_s": span([r["http"]["entries_per_s"] for r in rounds]),
            "kafka_entries_per_s": span([r["kafka"]["entries_per_s"] for r in rounds]),
            "http_entries_per_cpu_s": span([r["http"]["entries_per_cpu_s"] for r in rounds]),
            "kafka_entries_per_cpu_s": span([r["kafka"]["entries_per_cpu_s"] for r in rounds]),
            "kafka_over_http_per_cpu_s": span([r["kafka_over_http_per_cpu_s"] for r in rounds]),
            "kafka_not_idempotent_entries_per_s": span([r["kafka_not_idempotent"]["entries_per_s"] for r in rounds]),
            "kafka_not_idempotent_entries_per_cpu_s": span([r["kafka_not_idempotent"]["entries_per_cpu_s"]
                                                            for r in rounds]),
            "listen_http": relay,
            "listen_http_records_per_s": span([r["records_per_s"] for r in relay]),
            "listen_http_records_per_cpu_s": span([r["records_per_cpu_s"] for r in relay])}


def checks(a, out):
    """Each target, by name (of the runs made)."""
    clean = lambda r: r["dropped"] == 0 and r["entries_lost"] == 0 and r["bytes_lost"] == 0
    c = {}
    k = out.get("kafka_vs_http")
    if k and "rounds" in k:
        c["kafka_and_http_all_delivered_none_dropped"] = all(
            r[d]["delivered"] == r[d]["entries"] and clean(r[d]) for r in k["rounds"]
            for d in ("http", "kafka", "kafka_not_idempotent"))
        c["listen_http_all_acknowledged_all_200"] = all(
            r["acknowledged"] == r["records"] and set(r["statuses"]) == {200} for r in k["listen_http"])
    if "backlog" not in out:
        return c
    b, p, o, mem = out["backlog"], out["paced"], out["outage"], out["memory"]
    d = o["during_outage"]
    return {**c,
        "backlog_entries_per_s_at_least_90000": b["entries_per_s"] >= TARGET_ENTRIES_PER_S,
        "backlog_all_delivered_none_dropped": b["delivered"] == b["entries"] and clean(b),
        "paced_at_least_50000_per_s": a.rate >= TARGET_PACED_PER_S,
        "paced_all_delivered_none_dropped": p["delivered"] == p["entries"] and clean(p),
        "outage_reading_paused_none_dropped": (d["reading_paused"] == 1 and d["dropped_buffer_full"] == 0
                                               and d["dropped_send_failed"] == 0
                                               and d["lines_read_in_the_last_second"] == 0),
        "outage_all_delivered_none_dropped": (o["delivered"] == o["entries"] == o["collector_events"]
                                              and clean(o)),
        "memory_rss_peak_at_most_64_mib": mem["rss_peak_kib"] <= TARGET_RSS_KIB,
        "memory_reading_paused": mem["paused_share"] > 0,
        "memory_all_delivered_none_dropped": mem["delivered"] == mem["entries"] and clean(mem),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=300_000, help="backlog run")
    p.add_argument("--rate", type=int, default=50_000, help="paced run")
    p.add_argument("--seconds", type=float, default=10, help="paced run")
    p.add_argument("--outage-entries", type=int, default=3_000_000)
    p.add_argument("--outage-minutes", type=float, default=10, help="the span of their ts")
    p.add_argument("--outage-hold", type=float, default=15,
                   help="the collector stays down at least this long after the agent starts (s)")
    p.add_argument("--memory-entries", type=int, default=1_000_000)
    p.add_argument("--memory-delay-ms", type=int, default=50)
    p.add_argument("--memory-outages", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--buffer-size", type=int, default=20_000, help="as caddy/usage-agent.json")
    p.add_argument("--agent-cpu", type=int, default=0, help="core the agent is pinned to (-1: none)")
    p.add_argument("--collector-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else -1)
    p.add_argument("--kafka-entries", type=int, default=100_000, help="kafka_vs_http: entries per run")
    p.add_argument("--kafka-rounds", type=int, default=3, help="kafka_vs_http: interleaved rounds")
    p.add_argument("--only", default="", help="comma-separated runs (backlog needs nothing else; "
                   "paced, outage, memory; kafka_vs_http)")
    a = p.parse_args()
    for f in (AGENT, WASM, COLLECTOR):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: make build; cargo build --release -p usage-collector")
    if a.collector_cpu >= 0:  # this script (writers, sampling) stays off the agent's core
        os.sched_setaffinity(0, {a.collector_cpu})
    out = {"agent_cores": 1 if a.agent_cpu >= 0 else None, "batch_size": a.batch_size,
           "buffer_size": a.buffer_size, "target_entries_per_s": TARGET_ENTRIES_PER_S,
           "target_rss_peak_kib": TARGET_RSS_KIB}
    only = set(filter(None, a.only.split(",")))
    if not only or only & {"backlog", "paced", "outage", "memory"}:
        # These four go together (the outage compares with the backlog rate; checks read all).
        out["backlog"] = backlog(a)
        out["paced"] = paced(a)
        out["outage"] = outage(a, out["backlog"]["entries_per_s"])
        out["memory"] = memory(a)
    if not only or "kafka_vs_http" in only:
        out["kafka_vs_http"] = kafka_vs_http(a)
    out["checks"] = checks(a, out)
    out["target_met"] = all(out["checks"].values())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
