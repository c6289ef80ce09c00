#!/usr/bin/env python3
"""End-to-end tests with Caddy 2.11.7 (the official build, caddy/install-caddy.sh) in front of
the demo upstream, delivering usage events to the reference collector, all over loopback.

Scenarios:
- in the path: Caddy (caddy/Caddyfile.inpath) → Envoy 1.40 with the filter (envoy/envoy.yaml,
  derived exactly as envoy/e2e.py does) → demo upstream.

Every Caddyfile is one of caddy/Caddyfile.* with this run's ports and paths substituted, so the
files the README documents are the files under test. Each scenario runs in its own temporary
directory (removed at the end; kept with CADDY_E2E_KEEP=1), and every process gets free ports.
A new scenario: build a `Stack`, start what it needs (`start_upstream`, `start_collector`,
`start_envoy`, `start_caddy(caddyfile(...))`, or `spawn` for another binary), send requests with
`request`, read `collector_events`, and add the function to TESTS.

Environment: USAGE_FILTER_WASM (default dist/usage_filter.wasm) is the filter Envoy loads.
Python standard library only. Ends with a line `N passed, M failed`.
"""
import http.client
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
WASM = os.environ.get("USAGE_FILTER_WASM", "dist/usage_filter.wasm")
TOKEN = "Bearer e2e-token"
KEY_HEADER = "x-subscription-key"
VEIL_FIELDS = {"id", "api_path", "subscription_key", "method", "response_time_ms", "status_code", "success",
               "timestamp", "request_size", "response_size"}
CADDY = None  # resolved in main()
ENVOY = None

# The Envoy configuration comes from envoy/e2e.py's envoy_config (envoy/envoy.yaml with this
# run's ports), loaded under another name: this file is also called e2e.py.
_spec = importlib.util.spec_from_file_location("envoy_e2e", os.path.join(ROOT, "envoy", "e2e.py"))
envoy_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(envoy_e2e)
free_port = envoy_e2e.free_port
wait_for = envoy_e2e.wait_for
get_json = envoy_e2e.get_json

# Defaults in caddy/Caddyfile.* (and envoy/envoy.yaml) → the name of this run's port.
CADDYFILE_PORTS = {"10080": "caddy", "2019": "caddy_admin", "10000": "listener", "18081": "upstream",
                   "9411": "agent"}
CADDYFILE_LOG = "caddy/.run/log/access.log"


def caddyfile(name, ports, log_path=None):
    """caddy/Caddyfile.<name> with this run's ports (127.0.0.1:<default> and :<default>
    become the port named in CADDYFILE_PORTS) and, if given, another access log path."""
    text = open(os.path.join(ROOT, "caddy", f"Caddyfile.{name}")).read()
    for default, port_name in CADDYFILE_PORTS.items():
        if port_name in ports:
            port = ports[port_name]
            text = text.replace(f"127.0.0.1:{default}\n", f"127.0.0.1:{port}\n")
            text = text.replace(f"127.0.0.1:{default} ", f"127.0.0.1:{port} ")
            text = text.replace(f"\n:{default} {{", f"\n:{port} {{")
    if log_path is not None:
        text = text.replace(CADDYFILE_LOG, log_path)
    return text


class Stack:
    """The processes of one scenario, on free loopback ports, in one temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="usage-caddy-e2e-")
        self.ports = {k: free_port() for k in ("caddy", "caddy_admin", "listener", "admin", "upstream",
                                               "collector", "agent")}
        self.events_file = os.path.join(self.dir, "events.ndjson")
        self.procs = {}
        self.local = threading.local()

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, name, args, env=None):
        out = open(self.path(f"{name}.out"), "ab")
        err = open(self.path(f"{name}.err"), "ab")
        self.procs[name] = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT, env=env)
        out.close()
        err.close()
        return self.procs[name]

    def wait_port(self, port, name=None):
        def up():
            if name is not None and self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited {self.procs[name].returncode}: {self.stderr(name)[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, f"port {port}" + (f" ({name})" if name else ""))

    # ---- the processes ----
    def start_upstream(self):
        self.spawn("upstream", [os.path.join(BIN, "demo-upstream"), "--listen", f"127.0.0.1:{self.ports['upstream']}"])
        self.wait_port(self.ports["upstream"], "upstream")

    def start_collector(self, require_auth=None):
        """The reference collector on this stack's port, appending to events.ndjson; with
        `require_auth`, a batch whose Authorization is not exactly that is refused (401)."""
        args = [os.path.join(BIN, "collector"), "--listen", f"127.0.0.1:{self.ports['collector']}",
                "--out", self.events_file]
        if require_auth is not None:
            args += ["--require-auth", require_auth]
        self.spawn("collector", args)
        self.wait_port(self.ports["collector"], "collector")

    def start_envoy(self, filter_value=None):
        """Envoy from envoy/envoy.yaml (the http sink to this stack's collector), loading WASM."""
        text = envoy_e2e.envoy_config(self.ports, filter_value)
        text = text.replace("filename: dist/usage_filter.wasm", f"filename: {WASM}")
        with open(self.path("envoy.yaml"), "w") as f:
            f.write(text)
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN)
        self.spawn("envoy", [ENVOY, "-c", self.path("envoy.yaml"), "--concurrency", "2", "--disable-hot-restart",
                             "--log-level", "warn", "--component-log-level", "wasm:info"], env=env)

        def ready():
            if self.procs["envoy"].poll() is not None:
                raise AssertionError(f"envoy exited: {self.stderr('envoy')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/ready", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(ready, 20, "envoy /ready")

    def start_caddy(self, text, name="caddy"):
        """Caddy with this Caddyfile text. Its config and data folders (autosave.json,
        certificates) are inside the temporary directory, not in $HOME."""
        path = self.path(f"{name}.Caddyfile")
        with open(path, "w") as f:
            f.write(text)
        home = self.path(f"{name}-home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"),
                   XDG_DATA_HOME=os.path.join(home, "data"))
        self.spawn(name, [CADDY, "run", "--config", path, "--adapter", "caddyfile"], env=env)
        self.wait_port(self.ports["caddy"], name)

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs[name]
        p.send_signal(sig)
        p.wait(timeout=30)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if os.environ.get("CADDY_E2E_KEEP"):
            print(f"kept {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- client (through Caddy) ----
    def request(self, method, path, key=None, body=b"", headers=None, port=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", port or self.ports["caddy"], timeout=30)
        h = dict(headers or {})
        if key is not None:
            h[KEY_HEADER] = key
        try:
            conn.request(method, path, body=body or None, headers=h)
            r = conn.getresponse()
            data = r.read()
            if r.will_close:
                conn.close()
                self.local.conn = None
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

    def stderr(self, name):
        try:
            with open(self.path(f"{name}.err"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


# ---------------------------------------------------------------- traffic and checks

def mixed_plan(n, seed, prefix):
    """n keyed requests: mixed methods, statuses, response sizes, request bodies and queries.
    Each has its own path, so its event can be found by api_path."""
    rnd = random.Random(seed)
    plan = []
    for i in range(n):
        method = rnd.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "GET"])
        status = rnd.choice([200, 201, 204, 301, 404, 500])
        size = 0 if status == 204 else rnd.randrange(0, 3000)
        body = b"" if method in ("GET", "DELETE") else os.urandom(rnd.randrange(0, 5000))
        delay = 60 if i % 40 == 0 else 0
        plan.append({"i": i, "method": method, "api_path": f"/{prefix}/{i}/items", "status": status, "size": size,
                     "body": body, "delay": delay, "key": f"key-{i % 7}",
                     "path": f"/{prefix}/{i}/items?status={status}&bytes={size}&delay_ms={delay}&q=a%20b"})
    return plan


def send_plan(st, plan, workers=12):
    """Sends every request of the plan through Caddy; the client must get what the upstream
    was asked for."""
    def run(p):
        got, data = st.request(p["method"], p["path"], p["key"], p["body"])
        assert got == p["status"], f"{p['path']}: client got {got}"
        assert len(data) == p["size"], f"{p['path']}: client got {len(data)} bytes"
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(run, plan))


def unkeyed(st, n, prefix):
    for i in range(n):
        got, _ = st.request("POST" if i % 2 else "GET", f"/{prefix}/{i}?status=200&bytes=5", body=b"abc" * (i % 2))
        assert got == 200, got


def wait_exact_events(st, n, settle=1.5):
    """Waits until the collector holds n events, then a little longer: anything extra would
    have arrived by then. Returns the events."""
    wait_for(lambda: len(st.collector_events()) >= n, 30, f"{n} events at the collector")
    time.sleep(settle)
    events = st.collector_events()
    assert len(events) == n, f"collector holds {len(events)} events, expected {n}"
    assert len({e["id"] for e in events}) == n, "event ids are unique"
    stats = st.collector_stats()
    assert stats["duplicate_events"] == 0 and stats["invalid_events"] == 0, stats
    return events


def check_events(events, plan):
    """Every planned request has exactly one event with the fields it should have."""
    by_path = {e["api_path"]: e for e in events}
    assert len(by_path) == len(events), "one event per path"
    for p in plan:
        e = by_path.get(p["api_path"])
        assert e is not None, f"no event for {p['api_path']} (api_path must carry no query)"
        assert set(e) == VEIL_FIELDS, f"veil format: the ten fields: {e}"
        assert e["method"] == p["method"], (e, p["method"])
        assert e["subscription_key"] == p["key"], e
        assert e["status_code"] == p["status"], (e, p["status"])
        assert e["success"] == (200 <= p["status"] <= 299), e
        assert e["request_size"] == len(p["body"]), (e, len(p["body"]))
        assert e["response_size"] == p["size"], (e, p["size"])
        assert e["response_time_ms"] >= p["delay"], (e, p["delay"])


# ---------------------------------------------------------------- scenarios

def inpath_stack():
    """Caddy (Caddyfile.inpath) → Envoy with the filter → demo upstream; collector."""
    st = Stack()
    try:
        st.start_upstream()
        st.start_collector()
        st.start_envoy()
        st.start_caddy(caddyfile("inpath", st.ports))
    except BaseException:
        st.stop()
        raise
    return st


def test_inpath_exact_delivery():
    """N keyed requests through Caddy → Envoy → upstream give exactly N events with the right
    path (no query), method, key, status and sizes; unkeyed requests give none."""
    st = inpath_stack()
    try:
        plan = mixed_plan(300, seed=11, prefix="inpath")
        send_plan(st, plan)
        unkeyed(st, 40, "inpath-anon")
        check_events(wait_exact_events(st, len(plan)), plan)
    finally:
        st.stop()


def test_inpath_caddy_errors_not_metered():
    """The in-path trade-off: with Envoy down, Caddy answers 502 itself and no event exists.
    Once Envoy is back, keyed requests are metered again."""
    st = inpath_stack()
    try:
        st.kill("envoy", signal.SIGTERM)
        for i in range(10):
            got, _ = st.request("GET", f"/down/{i}?status=200", "k")
            assert got == 502, f"Caddy answers 502 with Envoy down, got {got}"
        st.start_envoy()
        for i in range(5):
            got, _ = st.request("GET", f"/up/{i}?status=200", "k")
            assert got == 200, got
        events = wait_exact_events(st, 5)
        assert all(e["api_path"].startswith("/up/") for e in events), events
    finally:
        st.stop()


def test_fixture_matches_format():
    """caddy/testdata/access.log (real Caddy 2.11.7 lines) has the fields caddy/FORMAT.md
    documents, with the documented types."""
    path = os.path.join(ROOT, "caddy", "testdata", "access.log")
    with open(path) as f:
        entries = [json.loads(l) for l in f if l.strip()]
    assert len(entries) >= 20, len(entries)
    for e in entries:
        assert e["msg"] == "handled request" and e["logger"].startswith("http.log.access"), e
        assert isinstance(e["ts"], float) and isinstance(e["duration"], float), e
        for k in ("size", "bytes_read", "status"):
            assert isinstance(e[k], int), (k, e)
        r = e["request"]
        for k in ("method", "host", "uri", "proto", "remote_ip"):
            assert isinstance(r[k], str), (k, e)
        assert all(isinstance(v, list) for v in r["headers"].values()), e
        assert isinstance(e["resp_headers"], dict), e
    assert any("?" in e["request"]["uri"] for e in entries), "a query"
    assert any(e["request"]["method"] == "POST" and e["bytes_read"] > 0 for e in entries), "a POST with a body"
    assert any(e["status"] >= 400 for e in entries), "a non-2xx"
    assert any("X-Subscription-Key" not in e["request"]["headers"] for e in entries), "an unkeyed request"


TESTS = [test_fixture_matches_format, test_inpath_exact_delivery, test_inpath_caddy_errors_not_metered]


def main():
    global CADDY, ENVOY
    CADDY = subprocess.check_output([os.path.join(ROOT, "caddy", "install-caddy.sh")], text=True).strip()
    ENVOY = subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    passed, failed = envoy_e2e.run_tests(TESTS, sys.argv[1:])
    print(f"caddy e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
