#!/usr/bin/env python3
"""End-to-end tests: the real Envoy 1.40 (V8) running dist/usage_filter.wasm in front of the
demo upstream (a proxied route, not direct_response), delivering to the reference collector,
all over loopback. Every scenario derives its Envoy configuration from envoy/envoy.yaml, the
file the README documents, changing only ports and the filter's `configuration` value.

Python standard library only. Ends with a line `N passed, M failed`.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
ENVOY = None  # resolved in main()
TOKEN = "Bearer e2e-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def get_json(url, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def envoy_config(ports, filter_value=None):
    """envoy/envoy.yaml with this run's ports and, optionally, another filter configuration
    (JSON is valid YAML, so it replaces the `value:` block as one line)."""
    text = open(os.path.join(ROOT, "envoy", "envoy.yaml")).read()
    for default, port in (("10000", ports["listener"]), ("9901", ports["admin"]),
                          ("18081", ports["upstream"]), ("18080", ports["collector"])):
        text = text.replace(f"port_value: {default} ", f"port_value: {port} ")
    if filter_value is not None:
        lines = text.split("\n")
        i = next(n for n, l in enumerate(lines) if l.strip() == "value:")
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        lines[i:j] = [" " * indent + "value: " + json.dumps(filter_value)]
        text = "\n".join(lines)
    return text


class Stack:
    """Demo upstream + collector + Envoy, on free loopback ports."""

    def __init__(self, filter_value=None, start_envoy=True):
        self.dir = tempfile.mkdtemp(prefix="usage-e2e-")
        self.ports = {k: free_port() for k in ("listener", "admin", "upstream", "collector")}
        self.events_file = os.path.join(self.dir, "events.ndjson")
        self.procs = {}
        self.start_upstream()
        self.start_collector()
        self.config_path = os.path.join(self.dir, "envoy.yaml")
        with open(self.config_path, "w") as f:
            f.write(envoy_config(self.ports, filter_value))
        if start_envoy:
            self.start_envoy()
        self.local = threading.local()

    def spawn(self, name, args, env=None):
        out = open(os.path.join(self.dir, f"{name}.out"), "ab")
        err = open(os.path.join(self.dir, f"{name}.err"), "ab")
        self.procs[name] = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT, env=env)

    def start_upstream(self):
        self.spawn("upstream", [os.path.join(BIN, "demo-upstream"), "--listen", f"127.0.0.1:{self.ports['upstream']}"])
        self.wait_port(self.ports["upstream"])

    def start_collector(self):
        self.spawn("collector", [os.path.join(BIN, "collector"), "--listen", f"127.0.0.1:{self.ports['collector']}",
                                 "--out", self.events_file])
        self.wait_port(self.ports["collector"])

    def start_envoy(self):
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN)
        self.spawn("envoy", [ENVOY, "-c", self.config_path, "--concurrency", "2", "--disable-hot-restart",
                             "--log-level", "warn", "--component-log-level", "wasm:info"], env=env)
        wait_for(self.ready, 20, "envoy /ready")

    def ready(self):
        if self.procs["envoy"].poll() is not None:
            raise AssertionError(f"envoy exited: {self.envoy_stderr()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_port(self, port):
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, f"port {port}")

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs[name]
        p.send_signal(sig)
        p.wait(timeout=30)

    def stop(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    # ---- client ----
    def request(self, method, path, key=None, body=b"", headers=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.ports["listener"], timeout=30)
        h = dict(headers or {})
        if key is not None:
            h["x-subscription-key"] = key
        try:
            conn.request(method, path, body=body or None, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, data
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise

    # ---- observation ----
    def collector_stats(self):
        return get_json(f"http://127.0.0.1:{self.ports['collector']}/stats")

    def collector_events(self):
        if not os.path.exists(self.events_file):
            return []
        with open(self.events_file) as f:
            return [json.loads(l) for l in f if l.strip()]

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/stats/prometheus", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^usage_filter_(\w+)\{[^}]*\} (\d+)", line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out

    def envoy_stdout(self):
        with open(os.path.join(self.dir, "envoy.out")) as f:
            return f.read()

    def envoy_stderr(self):
        with open(os.path.join(self.dir, "envoy.err"), errors="replace") as f:
            return f.read()


def accounting_holds(m):
    return m.get("events_captured", -1) == (m.get("events_delivered", 0) + m.get("events_dropped_buffer_full", 0)
                                            + m.get("events_dropped_send_failed", 0) + m.get("buffer_events", 0))


# ---------------------------------------------------------------- scenarios

def test_exact_delivery():
    """N mixed requests through a proxied route: the collector holds exactly N events, each
    matching what the client sent and received."""
    st = Stack()
    try:
        rnd = random.Random(7)
        n = 1200
        plan = []
        for i in range(n):
            method = rnd.choice(["GET", "POST", "PUT", "DELETE", "GET"])
            status = rnd.choice([200, 201, 204, 301, 404, 500])
            size = 0 if status == 204 else rnd.randrange(0, 3000)
            body = b"" if method in ("GET", "DELETE") else os.urandom(rnd.randrange(0, 5000))
            delay = 120 if i % 50 == 0 else 0
            key = f"key-{i % 9}"
            path = f"/e2e/{i}/items?status={status}&bytes={size}&delay_ms={delay}&q=a%20b"
            plan.append((i, method, path, key, body, status, size, delay))

        def run(p):
            i, method, path, key, body, status, size, delay = p
            got, data = st.request(method, path, key, body)
            assert got == status, f"{path}: client got {got}"
            assert len(data) == size, f"{path}: client got {len(data)} bytes"
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(run, plan))
        wait_for(lambda: len(st.collector_events()) >= n, 20, f"{n} events at the collector")
        time.sleep(1.5)  # anything extra would have arrived by now
        events = st.collector_events()
        assert len(events) == n, f"collector holds {len(events)} events, sent {n}"
        assert len({e["id"] for e in events}) == n, "event ids are unique"
        by_path = {e["api_path"]: e for e in events}
        assert len(by_path) == n
        for i, method, path, key, body, status, size, delay in plan:
            e = by_path[f"/e2e/{i}/items"]
            assert e["method"] == method, e
            assert e["subscription_key"] == key, e
            assert e["status_code"] == status, e
            assert e["success"] == (200 <= status <= 299), e
            assert e["request_size"] == len(body), (e, len(body))
            assert e["response_size"] == size, (e, size)
            assert e["response_time_ms"] >= delay, e
            assert set(e) == {"id", "api_path", "subscription_key", "method", "response_time_ms", "status_code",
                              "success", "timestamp", "request_size", "response_size"}, "veil format: the ten fields"
        stats = st.collector_stats()
        assert stats["duplicate_events"] == 0 and stats["invalid_events"] == 0, stats
        m = st.metrics()
        assert m["events_captured"] == n and m["events_delivered"] == n, m
        assert accounting_holds(m), m
    finally:
        st.stop()


def test_collector_killed_under_load():
    """Kill the collector mid-load: every request still gets its upstream's answer; counters
    show the retries and drops; after a restart new events arrive; the books balance."""
    st = Stack()
    try:
        failures = []
        stop = threading.Event()
        sent = [0]
        lock = threading.Lock()

        def load(t):
            i = 0
            while not stop.is_set():
                i += 1
                status = [200, 404, 201][i % 3]
                try:
                    got, _ = st.request("GET", f"/kill/{t}/{i}?status={status}&bytes=10", f"k{t}")
                    if got != status:
                        failures.append((t, i, got))
                except Exception as e:  # noqa: BLE001 - any client error is a failure here
                    failures.append((t, i, repr(e)))
                with lock:
                    sent[0] += 1
                time.sleep(0.002)
        threads = [threading.Thread(target=load, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        st.kill("collector")
        time.sleep(3.0)
        st.start_collector()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, f"requests failed while the collector was down: {failures[:5]}"
        assert sent[0] > 500, sent
        wait_for(lambda: st.metrics().get("buffer_events", 1) == 0, 30, "the buffer to drain")
        m = st.metrics()
        assert m["events_captured"] == sent[0], (m, sent)
        assert m["batch_retries"] + m["events_dropped_send_failed"] > 0, f"the outage shows in the counters: {m}"
        assert accounting_holds(m), m
        assert st.collector_stats()["events"] > 0, "events arrive after the restart"
        events = st.collector_events()
        assert len({e["id"] for e in events}) == len(events), "no event twice"
        assert len(events) == m["events_delivered"], (len(events), m)
    finally:
        st.stop()


def test_collector_503_then_200():
    """The collector answers 503 for a while: no event is lost, none is duplicated."""
    st = Stack()
    try:
        get_json(f"http://127.0.0.1:{st.ports['collector']}/faults", "POST", {"status": 503, "count": 4})
        n = 300
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: st.request("POST", f"/r503/{i}?status=200", "k", b"x" * i), range(n)))
        wait_for(lambda: len(st.collector_events()) >= n, 30, f"{n} events")
        time.sleep(1.5)
        events = st.collector_events()
        ids = [e["id"] for e in events]
        assert len(ids) == n and len(set(ids)) == n, (len(ids), len(set(ids)))
        stats = st.collector_stats()
        assert stats["faulted_batches"] == 4 and stats["duplicate_events"] == 0, stats
        m = st.metrics()
        assert m["batch_retries"] >= 1 and m["events_dropped_send_failed"] == 0, m
        assert m["events_delivered"] == n and accounting_holds(m), m
    finally:
        st.stop()


def test_bad_plugin_config_is_refused():
    """Envoy refuses to start the plugin, and its log names the key and the rule."""
    st = Stack(filter_value={"enabled": True, "sinks": ["http"], "http": {"cluster": "collector", "batch_size": 0}},
               start_envoy=False)
    try:
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN)
        p = subprocess.run([ENVOY, "-c", st.config_path, "--disable-hot-restart", "--log-level", "warn"],
                           cwd=ROOT, env=env, capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        assert p.returncode != 0, "envoy must not start with a refused plugin"
        assert "http.batch_size" in err and "between 1 and" in err, err[-3000:]
        assert "Unable to create Wasm plugin" in err or "failed to load" in err, err[-3000:]
    finally:
        st.stop()


def test_log_sink_lines_on_stdout():
    """With the log sink to filter state, Envoy's stdout holds one JSON event per line and
    nothing else; unkeyed and excluded requests print nothing."""
    st = Stack(filter_value={"enabled": True, "sinks": ["log"], "log_output": "filter_state",
                             "exclude_paths": ["/healthz"]})
    try:
        n = 200
        for i in range(n):
            st.request("GET", f"/log/{i}?status=200&bytes=3", f"key-{i % 3}")
        for i in range(20):
            st.request("GET", f"/anon/{i}")
            st.request("GET", f"/healthz?i={i}", "k")
        st.kill("envoy", signal.SIGTERM)
        lines = st.envoy_stdout().splitlines()
        assert len(lines) == n, f"{len(lines)} lines for {n} keyed requests"
        for line in lines:
            e = json.loads(line)
            assert e["msg"] == "usage_event" and e["event_type"] == "api_usage", line
            assert e["api_path"].startswith("/log/"), line
        assert len({json.loads(l)["id"] for l in lines}) == n
    finally:
        st.stop()


def singleton_stack(filter_http=None):
    """A stack running envoy/envoy-singleton.yaml (shared_queue mode, singleton service)."""
    st = Stack(start_envoy=False)
    text = open(os.path.join(ROOT, "envoy", "envoy-singleton.yaml")).read()
    for default, port in (("10000", st.ports["listener"]), ("9901", st.ports["admin"]),
                          ("18081", st.ports["upstream"]), ("18080", st.ports["collector"])):
        text = text.replace(f"port_value: {default} ", f"port_value: {port} ")
    if filter_http:
        extra = "".join(f"\n            {k}: {v}" for k, v in filter_http.items())
        text = text.replace("            cluster: collector", "            cluster: collector" + extra, 1)
    with open(st.config_path, "w") as f:
        f.write(text)
    st.start_envoy()
    return st


def test_sigterm_with_events_buffered():
    """SIGTERM while events wait in the buffer. Envoy 1.40 stops worker event loops at once
    and crashes on a callout made from the singleton service's on_done, so nothing buffered
    can be sent: the proxy must exit cleanly and say what was lost."""
    n = 40
    long_flush = {"enabled": True, "sinks": ["http"],
                  "http": {"cluster": "collector", "flush_interval_ms": 600000, "batch_size": 10000}}
    for mode, st in (("local", lambda: Stack(filter_value=long_flush)),
                     ("singleton", lambda: singleton_stack({"flush_interval_ms": 600000, "batch_size": 10000}))):
        st = st()
        try:
            for i in range(n):
                st.request("GET", f"/bye/{i}?status=200", "k")
            time.sleep(0.5)  # the workers hand over to the service on their timer
            st.kill("envoy", signal.SIGTERM)
            rc = st.procs["envoy"].returncode
            assert rc == 0, f"{mode}: envoy exited {rc} on SIGTERM"
            time.sleep(0.5)
            got = len(st.collector_events())
            err = st.envoy_stderr()
            said = re.findall(r"usage-filter: (shutting down, flushing \d+|proxy exiting: \d+)", err)
            assert said, f"{mode}: the filter says what it held at shutdown: {err[-1500:]}"
            SHUTDOWN_RESULT[mode] = (got, n, said)
        finally:
            st.stop()


def test_drain_then_sigterm_delivers_everything():
    """The shutdown that loses nothing: fail health checks and drain listeners, wait one
    flush interval (plus backoff headroom), then SIGTERM."""
    for mode, make in (("local", Stack), ("singleton", singleton_stack)):
        st = make()
        try:
            n = 120
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda i: st.request("GET", f"/drain/{i}?status=200", "k"), range(n)))
            admin = f"http://127.0.0.1:{st.ports['admin']}"
            urllib.request.urlopen(urllib.request.Request(f"{admin}/healthcheck/fail", method="POST"), timeout=5).read()
            urllib.request.urlopen(urllib.request.Request(f"{admin}/drain_listeners?graceful", method="POST"),
                                   timeout=5).read()
            time.sleep(1.5)  # flush_interval_ms (1000) + a timer period + the callout
            st.kill("envoy", signal.SIGTERM)
            assert st.procs["envoy"].returncode == 0
            got = len(st.collector_events())
            assert got == n, f"{mode}: {got} of {n} delivered"
        finally:
            st.stop()


SHUTDOWN_RESULT = {}

TESTS = [test_exact_delivery, test_collector_killed_under_load, test_collector_503_then_200,
         test_bad_plugin_config_is_refused, test_log_sink_lines_on_stdout, test_sigterm_with_events_buffered,
         test_drain_then_sigterm_delivers_everything]


def main():
    global ENVOY
    ENVOY = subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    only = sys.argv[1:]
    passed = failed = 0
    for t in TESTS:
        if only and not any(o in t.__name__ for o in only):
            continue
        start = time.time()
        try:
            t()
            passed += 1
            print(f"test {t.__name__} ... ok ({time.time() - start:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"test {t.__name__} ... FAILED ({time.time() - start:.1f}s)", flush=True)
            traceback.print_exc()
    for mode, (got, n, said) in SHUTDOWN_RESULT.items():
        print(f"shutdown ({mode}): {got} of {n} buffered events reached the collector after SIGTERM; filter said {said}")
    print(f"e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
