"""`Stack`: the processes of one scenario, in one temporary folder.

Use as `with Stack(...) as st:` (or call `st.close()` in a `finally`). Everything it
started is stopped when the block ends, however it ends; children also die with the test
process (PR_SET_PDEATHSIG). Each process writes `<name>.out` / `<name>.err` in the folder,
which is removed when the scenario passes and named when it fails (kept always when the
suite's keep variable, e.g. ENVOY_E2E_KEEP=1, is set). The demo upstream and the collector
listen on port 0 and the stack reads the address they printed (`listening_on`).
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request

from .wait import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release")
LIVE_STACKS = set()
# What a child says when its port is taken (Rust, Go, Envoy, ClickHouse, Python).
PORT_TAKEN = re.compile(r"(?i)address already in use|EADDRINUSE|cannot listen on")


class PortTaken(AssertionError):
    """A child exited because the port it was told to bind is taken: pick another and retry."""


def die_with_parent():
    """Linux: the child gets SIGKILL when the test process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def get_json(url, method="GET", body=None, timeout=5):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def post(url):
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


class Stack:
    prefix = "usage-e2e-"
    keep_env = "ENVOY_E2E_KEEP"
    # Each child in its own session, signalled as a process group (a server that forks, such
    # as clickhouse-server's watchdog).
    own_session = False

    def __init__(self, collector_auth=None):
        self.dir = tempfile.mkdtemp(prefix=self.prefix)
        self.procs = {}
        self.ports = {}
        self.collector_auth = collector_auth
        self.events_file = self.path("events.ndjson")
        self._err_at = {}  # name -> size of its .err when it was (re)started
        self.failed = False
        self.closed = False
        LIVE_STACKS.add(self)

    # ---- lifetime ----
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.failed = exc_type is not None
        self.close()
        return False

    def close(self):
        """Stops everything; the folder is kept (and named) if the scenario failed: called in a
        `finally` while an exception propagates counts as failed."""
        if sys.exc_info()[0] is not None:
            self.failed = True
        if self.closed:
            return
        self.closed = True
        self.stop()
        LIVE_STACKS.discard(self)
        if self.failed or os.environ.get(self.keep_env) == "1":
            print(f"  files of this scenario: {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    # ---- processes ----
    def spawn(self, name, args, env=None):
        err_path = self.path(f"{name}.err")
        self._err_at[name] = os.path.getsize(err_path) if os.path.exists(err_path) else 0
        with open(self.path(f"{name}.out"), "ab") as out, open(err_path, "ab") as err:
            self.procs[name] = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                                                env=env, preexec_fn=die_with_parent,
                                                start_new_session=self.own_session)
        return self.procs[name]

    def alive(self, name):
        p = self.procs[name]
        if p.poll() is not None:
            err = self.stderr(name, since_start=True)
            if PORT_TAKEN.search(err):
                raise PortTaken(f"{name} exited {p.returncode}, its port taken: {err[-2000:]}")
            raise AssertionError(f"{name} exited {p.returncode}: {err[-2000:]}")
        return True

    def listening_on(self, name, prefix, timeout=10):
        """The port in the address a process started with port 0 printed after `prefix`
        (this start's output only: a restarted process appends to the same log)."""
        def addr():
            self.alive(name)
            m = re.search(re.escape(prefix) + r"(127\.0\.0\.1:\d+)", self.stderr(name, since_start=True))
            return m and m.group(1)
        return int(wait_for(addr, timeout, f"{name}'s address").rsplit(":", 1)[1])

    def wait_port(self, port, name=None, timeout=20):
        """Until something accepts connections on `port` (`name` must stay alive meanwhile)."""
        def up():
            if name is not None:
                self.alive(name)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, timeout, f"port {port}" + (f" ({name})" if name else ""))

    def _signal(self, p, sig):
        try:
            if self.own_session:
                os.killpg(p.pid, sig)
            else:
                p.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill(self, name, sig=signal.SIGKILL, timeout=30):
        p = self.procs[name]
        self._signal(p, sig)
        p.wait(timeout=timeout)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                self._signal(p, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(p, signal.SIGKILL)
                p.wait()

    def stdout(self, name):
        with open(self.path(f"{name}.out"), errors="replace") as f:
            return f.read()

    def stderr(self, name, since_start=False):
        try:
            with open(self.path(f"{name}.err"), "rb") as f:
                if since_start:
                    f.seek(self._err_at.get(name, 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- the demo upstream and the reference collector (port 0) ----
    def start_upstream(self):
        self.spawn("upstream", [os.path.join(BIN, "demo-upstream"), "--listen", "127.0.0.1:0"])
        self.ports["upstream"] = self.listening_on("upstream", "demo-upstream listening on ")

    def start_collector(self, port=None, require_auth=None):
        """The collector, appending to events.ndjson, on port 0 the first time and on the port
        it had when started again (what Envoy's cluster or the agent points at), or `port`.
        It refuses a batch whose Authorization is not `require_auth` (default: the stack's
        `collector_auth`; None requires nothing)."""
        if port is None:
            port = self.ports.get("collector", 0)
        auth = self.collector_auth if require_auth is None else require_auth
        args = [os.path.join(BIN, "collector"), "--listen", f"127.0.0.1:{port}", "--out", self.events_file]
        if auth:
            args += ["--require-auth", auth]
        self.spawn("collector", args)
        self.ports["collector"] = self.listening_on("collector", "collector listening on ")

    @property
    def collector_url(self):
        return f"http://127.0.0.1:{self.ports['collector']}"

    def collector_stats(self):
        return get_json(f"{self.collector_url}/stats")

    def collector_attempts(self):
        return get_json(f"{self.collector_url}/attempts")

    def faults(self, faults):
        """POST /faults (a dict) or DELETE /faults (None) at the collector."""
        if faults is None:
            return get_json(f"{self.collector_url}/faults", "DELETE")
        return get_json(f"{self.collector_url}/faults", "POST", faults)

    def collector_events(self, path=None):
        path = path or self.events_file
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]


def close_live_stacks():
    """After an interrupt: `with` closed the others."""
    for st in list(LIVE_STACKS):
        st.failed = True
        st.close()
