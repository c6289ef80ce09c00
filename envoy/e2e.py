#!/usr/bin/env python3
"""End-to-end tests: the real Envoy 1.40 (V8) running dist/usage_filter.wasm in front of the
demo upstream (a proxied route, not direct_response), delivering to the reference collector,
all over loopback. Every scenario derives its Envoy configuration from envoy/envoy.yaml (or
envoy/envoy-singleton.yaml, envoy/envoy-ecds.yaml), the files README and docs/hosts/envoy.md document, changing
only ports and the filter's `configuration` value.

Processes: each scenario is one `with Stack(...) as st:` block. Everything it starts is
stopped when the block ends, however it ends (an exception, Ctrl-C, SIGTERM); children also
die with this script (PR_SET_PDEATHSIG). The upstream, the collector and Envoy bind port 0
and the harness reads the port they got (their startup line, Envoy's --admin-address-path and
/listeners), so no port is chosen by bind-then-close. Each scenario's files (logs, configs,
events) live in a temporary folder, removed when it passes and named when it fails
(kept always with ENVOY_E2E_KEEP=1).

Usage: envoy/e2e.py [name-substring ...]. Python standard library only (plus the `openssl`
command for the TLS scenario). Ends with a line `N passed, M failed`.
"""
import ctypes
import datetime
import email.utils
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
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
VEIL_FIELDS = {"id", "api_path", "subscription_key", "method", "response_time_ms", "status_code", "success",
               "timestamp", "request_size", "response_size"}
KEEP = os.environ.get("ENVOY_E2E_KEEP") == "1"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


_HANDED_OUT = set()


def free_port():
    """A port that was free a moment ago, and never one this process handed out before (the
    kernel may offer a just-closed port again, and two servers of one stack then collide).
    Kept for caddy/e2e.py; this suite binds port 0."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for(pred, timeout, what, interval=0.05):
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


def post(url):
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


def replace_ports(text, ports):
    for default, name in (("10000", "listener"), ("9901", "admin"), ("18081", "upstream"), ("18080", "collector")):
        if name in ports:
            text = text.replace(f"port_value: {default} ", f"port_value: {ports[name]} ")
    return text


def replace_value_block(text, filter_value, occurrence=0):
    """The `value:` block (the plugin configuration) replaced by one JSON line (JSON is YAML)."""
    lines = text.split("\n")
    i = [n for n, l in enumerate(lines) if l.strip() == "value:"][occurrence]
    indent = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
        j += 1
    lines[i:j] = [" " * indent + "value: " + json.dumps(filter_value)]
    return "\n".join(lines)


def envoy_config(ports, filter_value=None):
    """envoy/envoy.yaml with this run's ports and, optionally, another filter configuration."""
    text = replace_ports(open(os.path.join(ROOT, "envoy", "envoy.yaml")).read(), ports)
    return text if filter_value is None else replace_value_block(text, filter_value)


def parse_ts(ts):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ts), f"timestamp {ts!r}: RFC 3339, UTC, µs"
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def _die_with_parent():
    # Linux: the child gets SIGKILL when this script dies, even by SIGKILL.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


LIVE_STACKS = set()


class Stack:
    """Demo upstream + collector + Envoy for one scenario. Use as `with Stack(...) as st:`.

    Envoy's configuration: `filter_value` replaces the plugin configuration of envoy/envoy.yaml;
    `config_text(ports) -> yaml` gives a whole other one. `collector_auth` is what the collector
    requires as Authorization (the token Envoy is given); None requires nothing."""

    def __init__(self, filter_value=None, start_envoy=True, concurrency=2, config_text=None,
                 collector_auth=TOKEN, envoy_env=None, front=None):
        self.dir = tempfile.mkdtemp(prefix="usage-e2e-")
        self.procs = {}
        self.fronts = []
        self.local = threading.local()
        self.filter_value = filter_value
        self.concurrency = concurrency
        self.config_text = config_text
        self.collector_auth = collector_auth
        self.envoy_env = dict(envoy_env or {})
        self.start_envoy_now = start_envoy
        self.make_front = front
        self.front = None
        self.ports = {}
        self.events_file = self.path("events.ndjson")
        self.config_path = self.path("envoy.yaml")
        self.failed = False

    def __enter__(self):
        LIVE_STACKS.add(self)
        try:
            self.start_upstream()
            self.start_collector()
            if self.make_front is not None:
                # Envoy's `collector` cluster then points at the front, which forwards.
                self.front = self.make_front(self)
                self.fronts.append(self.front)
            self.write_envoy_config()
            if self.start_envoy_now:
                self.start_envoy()
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.failed = exc_type is not None
        self.close()
        return False

    def close(self):
        self.stop()
        for f in self.fronts:
            f.close()
        LIVE_STACKS.discard(self)
        if self.failed or KEEP:
            print(f"  files of this scenario: {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    # ---- processes ----
    def spawn(self, name, args, env=None):
        with open(self.path(f"{name}.out"), "ab") as out, open(self.path(f"{name}.err"), "ab") as err:
            self.procs[name] = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                                                env=env, preexec_fn=_die_with_parent)
        return self.procs[name]

    def alive(self, name):
        p = self.procs[name]
        if p.poll() is not None:
            raise AssertionError(f"{name} exited {p.returncode}: {self.stderr(name)[-2000:]}")
        return True

    def listening_on(self, name, prefix):
        """The address a binary started with `--listen 127.0.0.1:0` printed."""
        def addr():
            self.alive(name)
            m = re.search(re.escape(prefix) + r"(127\.0\.0\.1:\d+)", self.stderr(name))
            return m and m.group(1)
        return int(wait_for(addr, 10, f"{name}'s address").rsplit(":", 1)[1])

    def start_upstream(self):
        self.spawn("upstream", [os.path.join(BIN, "demo-upstream"), "--listen", "127.0.0.1:0"])
        self.ports["upstream"] = self.listening_on("upstream", "demo-upstream listening on ")

    def start_collector(self, port=0):
        """The collector; `port` to come back on the port Envoy's cluster points at."""
        name = "collector"
        if name in self.procs:  # a restart: keep the first one's log
            os.rename(self.path("collector.err"), self.path(f"collector.{time.time_ns()}.err"))
        args = [os.path.join(BIN, "collector"), "--listen", f"127.0.0.1:{port}", "--out", self.events_file]
        if self.collector_auth:
            args += ["--require-auth", self.collector_auth]
        self.spawn(name, args)
        self.ports["collector"] = self.listening_on(name, "collector listening on ")

    def write_envoy_config(self):
        ports = dict(self.ports, listener=0, admin=0)
        if self.front is not None:
            ports["collector"] = self.front.port
        if self.config_text is not None:
            text = self.config_text(self, ports)
        else:
            text = envoy_config(ports, self.filter_value)
        with open(self.config_path, "w") as f:
            f.write(text)

    def start_envoy(self, extra_args=()):
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN, **self.envoy_env)
        admin_file = self.path("admin.address")
        if os.path.exists(admin_file):
            os.remove(admin_file)
        self.spawn("envoy", [ENVOY, "-c", self.config_path, "--concurrency", str(self.concurrency),
                             "--disable-hot-restart", "--admin-address-path", admin_file,
                             "--log-level", "warn", "--component-log-level", "wasm:info", *extra_args], env=env)

        def admin():
            self.alive("envoy")
            if not os.path.exists(admin_file):
                return None
            text = open(admin_file).read().strip()
            return text if text.endswith(tuple("0123456789")) else None
        self.ports["admin"] = int(wait_for(admin, 20, "envoy's admin address").rsplit(":", 1)[1])
        wait_for(self.ready, 20, "envoy /ready")
        listeners = get_json(f"{self.admin}/listeners?format=json")["listener_statuses"]
        self.ports["listener"] = next(l["local_address"]["socket_address"]["port_value"] for l in listeners
                                      if l["name"] == "api")

    @property
    def admin(self):
        return f"http://127.0.0.1:{self.ports['admin']}"

    @property
    def collector_url(self):
        return f"http://127.0.0.1:{self.ports['collector']}"

    def ready(self):
        self.alive("envoy")
        try:
            with urllib.request.urlopen(f"{self.admin}/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self, name, sig=signal.SIGKILL, timeout=30):
        p = self.procs[name]
        p.send_signal(sig)
        p.wait(timeout=timeout)

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

    # ---- client ----
    def request(self, method, path, key=None, body=b"", headers=None):
        conn = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "port", None) != self.ports["listener"]:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.ports["listener"], timeout=30)
            self.local.port = self.ports["listener"]
        h = dict(headers or {})
        if key is not None:
            h["x-subscription-key"] = key
        try:
            conn.request(method, path, body=body or None, headers=h)
            r = conn.getresponse()
            data = r.read()
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                self.local.conn = None
            return r.status, data
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise

    def expect(self, method, path, key, status, body=b""):
        """A request whose answer must be `status` (Envoy's own 503s also make events)."""
        got, data = self.request(method, path, key, body)
        assert got == status, f"{method} {path}: client got {got}, expected {status}: {data[:200]!r}"
        return data

    # ---- observation ----
    def collector_stats(self):
        return get_json(f"{self.collector_url}/stats")

    def collector_attempts(self):
        return get_json(f"{self.collector_url}/attempts")

    def faults(self, faults):
        return get_json(f"{self.collector_url}/faults", "POST", faults)

    def collector_events(self):
        if not os.path.exists(self.events_file):
            return []
        with open(self.events_file) as f:
            return [json.loads(l) for l in f if l.strip()]

    def metrics(self):
        with urllib.request.urlopen(f"{self.admin}/stats/prometheus", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            m = re.match(r"^usage_filter_(\w+)\{[^}]*\} (\d+)", line)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out

    def stat(self, name):
        with urllib.request.urlopen(f"{self.admin}/stats?filter=^{re.escape(name)}$", timeout=5) as r:
            m = re.search(r": (\d+)", r.read().decode())
        return int(m.group(1)) if m else None

    def envoy_rss_kb(self):
        with open(f"/proc/{self.procs['envoy'].pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stdout(self, name):
        with open(self.path(f"{name}.out"), errors="replace") as f:
            return f.read()

    def stderr(self, name):
        with open(self.path(f"{name}.err"), errors="replace") as f:
            return f.read()

    def envoy_stdout(self):
        return self.stdout("envoy")

    def envoy_stderr(self):
        return self.stderr("envoy")

    def filter_log(self, vm="usage_filter"):
        """What the filter logged from VMs of this plugin name (Envoy prefixes every line with
        `wasm log <plugin name> <root id>:`)."""
        return re.findall(rf"wasm log {vm} {vm}: (usage-filter: .*)", self.envoy_stderr())


class Front:
    """A loopback HTTP/1.1 server between Envoy and the collector, optionally over TLS. Each
    request takes the next behaviour of `script` ("forward" once it is used up):
    - "forward": pass the request to the collector and its answer back;
    - "big200": forward, then answer 200 with a 50 MB body instead of the collector's answer;
    - "trickle": forward, then send the collector's answer one byte a second;
    - "close_mid": forward, then send half the answer's head and close the connection;
    - "retry_after_date" / "retry_after_garbage": 503 with `Retry-After` as an HTTP date
      (2 s ahead) / as `soon`, without forwarding.
    `seen` records (behaviour, x-usage-batch-id, authorization) per request; `sni` the server
    names TLS clients asked for; `handshake_failures` the TLS handshakes that failed."""

    def __init__(self, collector_port, script=(), tls=None):
        self.collector_port = collector_port
        self.script = list(script)
        self.tls = tls
        self.seen, self.sni, self.handshake_failures = [], [], 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.sock.close()
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    with self.lock:
                        self.handshake_failures += 1
                    return
                self.conns.append(conn)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = []
                while True:
                    h = f.readline().decode()
                    if h in ("\r\n", "\n", ""):
                        break
                    k, v = h.split(":", 1)
                    headers.append((k.strip(), v.strip()))
                hd = {k.lower(): v for k, v in headers}
                if hd.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(f.readline().split(b";")[0], 16)
                        chunk = f.read(size + 2)[:size]
                        if size == 0:
                            break
                        body += chunk
                else:
                    body = f.read(int(hd.get("content-length", "0")))
                with self.lock:
                    behaviour = self.script.pop(0) if self.script else "forward"
                    self.seen.append((behaviour, hd.get("x-usage-batch-id"), hd.get("authorization")))
                if behaviour.startswith("retry_after"):
                    value = email.utils.formatdate(time.time() + 2, usegmt=True) if behaviour.endswith("date") \
                        else "soon"
                    conn.sendall(f"HTTP/1.1 503 Service Unavailable\r\nretry-after: {value}\r\n"
                                 f"content-length: 0\r\n\r\n".encode())
                    continue
                answer = self._forward(method, target, headers, body)
                if behaviour == "forward":
                    conn.sendall(answer)
                elif behaviour == "big200":
                    size = 50 * 1000 * 1000
                    conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 f"content-length: {size}\r\n\r\n".encode())
                    block = b" " * (1 << 20)
                    for _ in range(size // len(block)):
                        conn.sendall(block)
                    conn.sendall(b" " * (size % len(block)))
                elif behaviour == "trickle":
                    for byte in answer:
                        conn.sendall(bytes([byte]))
                        time.sleep(1)
                elif behaviour == "close_mid":
                    conn.sendall(answer[:len(answer) // 2])
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _forward(self, method, target, headers, body):
        c = http.client.HTTPConnection("127.0.0.1", self.collector_port, timeout=10)
        skip = {"connection", "transfer-encoding", "content-length", "keep-alive"}
        c.request(method, target, body=body, headers={k: v for k, v in headers if k.lower() not in skip})
        r = c.getresponse()
        data = r.read()
        c.close()
        head = f"HTTP/1.1 {r.status} {r.reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in r.getheaders() if k.lower() not in skip)
        return (head + f"content-length: {len(data)}\r\n\r\n").encode() + data


def accounting_holds(m):
    return m.get("events_captured", -1) == (m.get("events_delivered", 0) + m.get("events_dropped_buffer_full", 0)
                                            + m.get("events_dropped_send_failed", 0) + m.get("buffer_events", 0))


def settled(st, n=None):
    """Waits until nothing is buffered (and, given n, n events were captured) and the books
    balance, in two reads in a row that agree; the metrics. (One read is not a snapshot: Envoy
    renders the counters, then the gauge, while the workers' VMs publish on their timers.)"""
    last = [None]

    def quiet():
        m = st.metrics()
        ok = m.get("buffer_events", 1) == 0 and (n is None or m.get("events_captured") == n) and accounting_holds(m)
        same = ok and m == last[0]
        last[0] = m
        return m if same else None
    return wait_for(quiet, 30, f"an empty buffer{'' if n is None else f' after {n} events'}")


def check_batches(st, expect_retries=0):
    """Every batch attempt at the collector carried a UUID x-usage-batch-id, the token was
    accepted every time (no 401), and no accepted batch id was accepted twice."""
    attempts = st.collector_attempts()
    for a in attempts:
        assert a["batch_id"] and UUID_RE.match(a["batch_id"]), f"x-usage-batch-id: {a}"
        assert a["status"] != 401, f"the collector refused the token: {a}"
    accepted = [a["batch_id"] for a in attempts if a["status"] == 200]
    assert len(accepted) == len(set(accepted)), "a batch id was accepted twice"
    return attempts


# ---------------------------------------------------------------- scenarios

def exact_delivery(concurrency, n, seed):
    """N mixed requests through a proxied route: the collector holds exactly N events, each
    matching what the client sent and received, timed and dated within the client's own
    measurement of that request, every batch carrying the token and a batch id."""
    with Stack(concurrency=concurrency) as st:
        rnd = random.Random(seed)
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
        seen = {}

        def run(p):
            i, method, path, key, body, status, size, delay = p
            wall0, t0 = time.time(), time.monotonic()
            data = st.expect(method, path, key, status, body)
            seen[i] = (wall0, time.time(), (time.monotonic() - t0) * 1000)
            assert len(data) == size, f"{path}: client got {len(data)} bytes"
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(run, plan))
        m = settled(st, n)
        events = st.collector_events()
        assert len(events) == n, f"collector holds {len(events)} events, sent {n}"
        assert len({e["id"] for e in events}) == n, "event ids are unique"
        by_path = {e["api_path"]: e for e in events}
        assert len(by_path) == n
        for i, method, path, key, body, status, size, delay in plan:
            e = by_path[f"/e2e/{i}/items"]
            wall0, wall1, elapsed_ms = seen[i]
            assert UUID_RE.match(e["id"]), e
            assert e["method"] == method, e
            assert e["subscription_key"] == key, e
            assert e["status_code"] == status, e
            assert e["success"] == (200 <= status <= 299), e
            assert e["request_size"] == len(body), (e, len(body))
            assert e["response_size"] == size, (e, size)
            # Both ways: at least the upstream's delay, at most what the client measured.
            assert delay <= e["response_time_ms"] <= elapsed_ms + 1, (e, delay, elapsed_ms)
            # Completion time: inside the client's own request window (same clock, 5 ms slack).
            ts = parse_ts(e["timestamp"])
            assert wall0 - 0.005 <= ts <= wall1 + 0.005, (e, wall0, wall1)
            assert set(e) == VEIL_FIELDS, "veil format: the ten fields"
        stats = st.collector_stats()
        assert stats["duplicate_events"] == 0 and stats["invalid_events"] == 0, stats
        assert stats["rejected_batches"] == 0 and stats["batches_without_id"] == 0, stats
        attempts = check_batches(st)
        assert len(attempts) == m["batches_sent"], (len(attempts), m)
        assert m["events_captured"] == n and m["events_delivered"] == n, m
        assert accounting_holds(m), m
        return m


def test_exact_delivery():
    exact_delivery(2, 1200, 7)


def test_exact_delivery_four_workers():
    """The same with Envoy running 4 workers: no loss, no duplicate, by event id."""
    m = exact_delivery(4, 2000, 11)
    assert m["batches_sent"] >= 4, m


def test_collector_killed_under_load():
    """Kill -9 the collector mid-load and restart it on the same port within the retry budget.
    What must hold, exactly: every request gets its upstream's answer; every keyed request is
    one captured event; nothing is dropped (the retry budget covers the outage); the filter
    counts every event delivered once; the collector holds every event (by id) at least once,
    and more than once only for batches in flight at the kill (written, answer lost: sent again,
    and the restarted collector has forgotten the ids)."""
    retry = {"max_attempts": 30, "initial_backoff_ms": 50, "max_backoff_ms": 300}
    batch_size = 50
    value = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": batch_size, "flush_interval_ms": 200, "retry": retry}}
    with Stack(filter_value=value) as st:
        failures = []
        stop = threading.Event()
        sent = []
        lock = threading.Lock()

        def load(t):
            i = 0
            while not stop.is_set():
                i += 1
                status = [200, 404, 201][i % 3]
                path = f"/kill/{t}/{i}"
                try:
                    got, _ = st.request("GET", f"{path}?status={status}&bytes=10", f"k{t}")
                    if got != status:
                        failures.append((path, got))
                except Exception as e:  # noqa: BLE001 - any client error is a failure here
                    failures.append((path, repr(e)))
                with lock:
                    sent.append(path)
                time.sleep(0.002)
        threads = [threading.Thread(target=load, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: st.collector_stats()["events"] >= 200, 20, "events before the kill")
            port = st.ports["collector"]
            st.kill("collector")
            before = st.metrics().get("batch_retries", 0)
            wait_for(lambda: st.metrics().get("batch_retries", 0) >= before + 3, 20, "retries during the outage")
            st.start_collector(port)
            wait_for(lambda: st.collector_stats()["events"] >= 200, 20, "events after the restart")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures, f"requests failed while the collector was down: {failures[:5]}"
        n = len(sent)
        m = settled(st, n)
        assert m["events_dropped_send_failed"] == 0 and m["events_dropped_buffer_full"] == 0, m
        assert m["events_delivered"] == n and accounting_holds(m), m
        assert m["batch_retries"] >= 3, f"the outage shows in the counters: {m}"
        events = st.collector_events()
        ids = [e["id"] for e in events]
        assert {e["api_path"] for e in events} == set(sent), "every request's event is at the collector"
        assert len(set(ids)) == n, (len(set(ids)), n)
        # At most max_in_flight batches per worker were in flight at the kill.
        extra = len(ids) - n
        assert extra <= 2 * st.concurrency * batch_size, f"{extra} duplicates beyond the batches in flight"
        print(f"  collector kill: {n} events, {m['batch_retries']} retries, "
              f"{extra} events written twice (in flight at the kill)", flush=True)


def test_collector_503_then_200():
    """The collector answers 503 to exactly four attempts: each is retried once more with the
    same x-usage-batch-id (batch_retries == 4 exactly, whichever batches they hit, as
    max_attempts leaves room); no event is lost or duplicated."""
    value = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": 40, "flush_interval_ms": 100,
                      "retry": {"max_attempts": 6, "initial_backoff_ms": 20, "max_backoff_ms": 100}}}
    with Stack(filter_value=value) as st:
        st.faults({"status": 503, "count": 4})
        n = 300
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: st.expect("POST", f"/r503/{i}?status=200", "k", 200, b"x" * i), range(n)))
        m = settled(st, n)
        events = st.collector_events()
        ids = [e["id"] for e in events]
        assert len(ids) == n and len(set(ids)) == n, (len(ids), len(set(ids)))
        stats = st.collector_stats()
        assert stats["faulted_batches"] == 4 and stats["duplicate_events"] == 0, stats
        assert m["batch_retries"] == 4 and m["events_dropped_send_failed"] == 0, m
        assert m["batches_failed"] == 0 and m["events_delivered"] == n and accounting_holds(m), m
        attempts = check_batches(st)
        faulted = [a["batch_id"] for a in attempts if a["status"] == 503]
        accepted = [a["batch_id"] for a in attempts if a["status"] == 200]
        assert len(faulted) == 4, attempts
        assert set(faulted) <= set(accepted), "a retry carries the batch id of its first attempt"
        assert len(accepted) == m["batches_sent"], (attempts, m)


def test_bad_plugin_config_is_refused():
    """Envoy refuses to start the plugin, and its log names the key and the rule."""
    with Stack(filter_value={"enabled": True, "sinks": ["http"], "http": {"cluster": "collector", "batch_size": 0}},
               start_envoy=False) as st:
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN)
        p = subprocess.run([ENVOY, "-c", st.config_path, "--disable-hot-restart", "--log-level", "warn"],
                           cwd=ROOT, env=env, capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        assert p.returncode != 0, "envoy must not start with a refused plugin"
        assert "http.batch_size" in err and "between 1 and" in err, err[-3000:]
        assert "Unable to create Wasm plugin" in err or "failed to load" in err, err[-3000:]


def test_log_sink_lines_on_stdout():
    """With the log sink to filter state, Envoy's stdout holds one JSON event per line and
    nothing else, each with the request's status, key and sizes; unkeyed and excluded requests
    print nothing."""
    with Stack(filter_value={"enabled": True, "sinks": ["log"], "log_output": "filter_state",
                             "exclude_paths": ["/healthz"]}) as st:
        n = 200
        plan = {}
        for i in range(n):
            status = [200, 404, 503][i % 3]
            body = b"b" * (i % 7)
            st.expect("POST", f"/log/{i}?status={status}&bytes={i % 5}", f"key-{i % 3}", status, body)
            plan[f"/log/{i}"] = (status, f"key-{i % 3}", len(body), i % 5)
        for i in range(20):
            st.expect("GET", f"/anon/{i}", None, 200)
            st.expect("GET", f"/healthz?i={i}", "k", 200)
        st.kill("envoy", signal.SIGTERM)
        lines = st.envoy_stdout().splitlines()
        assert len(lines) == n, f"{len(lines)} lines for {n} keyed requests"
        for line in lines:
            e = json.loads(line)
            assert e["msg"] == "usage_event" and e["event_type"] == "api_usage" and e["level"] == "INFO", line
            status, key, req, resp = plan.pop(e["api_path"])
            assert (e["status_code"], e["subscription_key"], e["request_size"], e["response_size"], e["method"]) \
                == (status, key, req, resp, "POST"), line
            assert e["success"] == (status == 200) and e["billable"] == (status < 500), line
            assert e["time"] == e["timestamp"] and parse_ts(e["timestamp"]), line
        assert not plan, f"no line for {sorted(plan)[:5]}"
        assert len({json.loads(l)["id"] for l in lines}) == n


def singleton_config(filter_http=None, service_http=None):
    """envoy/envoy-singleton.yaml (shared_queue mode, singleton service) for Stack(config_text=)."""
    def make(st, ports):
        text = replace_ports(open(os.path.join(ROOT, "envoy", "envoy-singleton.yaml")).read(), ports)
        if filter_http:
            extra = "".join(f"\n                      {k}: {json.dumps(v)}" for k, v in filter_http.items())
            anchor = "                    http:\n                      cluster: collector"
            assert anchor in text
            text = text.replace(anchor, anchor + extra, 1)
        if service_http:
            extra = "".join(f"\n            {k}: {json.dumps(v)}" for k, v in service_http.items())
            anchor = "            cluster: collector"
            assert anchor in text
            text = text.replace(anchor, anchor + extra, 1)
        return text
    return make


def test_sigterm_with_events_buffered():
    """SIGTERM while events wait in the buffer. Envoy 1.40 stops worker event loops at once
    and crashes on a callout made from the singleton service's on_done, so nothing buffered
    can be sent: the proxy exits 0, none of the events arrives, and the VMs that held them say
    how many: the workers' filter VMs in local mode (their counts add up to N), the service VM
    (not a worker) in shared_queue mode."""
    n = 40
    long_flush = {"enabled": True, "sinks": ["http"],
                  "http": {"cluster": "collector", "flush_interval_ms": 600000, "batch_size": 10000}}
    for mode, kwargs in (("local", {"filter_value": long_flush}),
                         ("singleton", {"config_text": singleton_config(
                             service_http={"flush_interval_ms": 600000, "batch_size": 10000})})):
        with Stack(**kwargs) as st:
            for i in range(n):
                st.expect("GET", f"/bye/{i}?status=200", "k", 200)
            # Metrics are published on the timer (and, in shared_queue mode, the workers hand
            # over on theirs): wait until all n are captured and held.
            m = wait_for(lambda: (lambda m: (m.get("buffer_events"), m.get("events_captured")) == (n, n) and m)(
                st.metrics()), 10, "the events to be held")
            assert m["events_captured"] == n and m["buffer_events"] == n and m["events_delivered"] == 0, m
            st.kill("envoy", signal.SIGTERM)
            rc = st.procs["envoy"].returncode
            assert rc == 0, f"{mode}: envoy exited {rc} on SIGTERM"
            got = len(st.collector_events())
            assert got == 0 and st.collector_attempts() == [], f"{mode}: {got} events arrived after SIGTERM"
            if mode == "local":
                said = [int(x) for x in re.findall(r"shutting down, flushing (\d+)", "\n".join(st.filter_log()))]
                assert sum(said) == n and st.filter_log("usage_service") == [], (said, st.envoy_stderr()[-1500:])
            else:
                said = [int(x) for x in re.findall(r"proxy exiting: (\d+) buffered events cannot be sent",
                                                   "\n".join(st.filter_log("usage_service")))]
                assert said == [n], (said, st.envoy_stderr()[-1500:])
                assert not any("flushing" in l for l in st.filter_log()), "workers held nothing"
            SHUTDOWN_RESULT[mode] = (got, n, said)


def test_drain_then_sigterm_delivers_everything():
    """The shutdown that loses nothing, with requests in flight when the listeners drain:
    fail health checks and drain listeners while slow requests are still waiting for the
    upstream, let them finish (their connections are closed by the drain), wait one flush
    interval plus a callout, then SIGTERM. Every event, the in-flight ones included, arrives."""
    for mode, kwargs in (("local", {}), ("singleton", {"config_text": singleton_config()})):
        with Stack(**kwargs) as st:
            n, slow = 120, 16
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda i: st.expect("GET", f"/drain/{i}?status=200", "k", 200), range(n)))
            started = threading.Barrier(slow + 1)
            results = []

            def slow_request(i):
                c = http.client.HTTPConnection("127.0.0.1", st.ports["listener"], timeout=30)
                c.connect()
                started.wait()
                c.request("GET", f"/drain/slow/{i}?status=201&delay_ms=800", headers={"x-subscription-key": "k"})
                r = c.getresponse()
                r.read()
                results.append((r.status, r.getheader("connection")))
                c.close()
            threads = [threading.Thread(target=slow_request, args=(i,)) for i in range(slow)]
            for t in threads:
                t.start()
            started.wait()
            wait_for(lambda: st.stat("http.api.downstream_rq_active") == slow, 5, "the slow requests in flight")
            post(f"{st.admin}/healthcheck/fail")
            post(f"{st.admin}/drain_listeners?graceful")
            assert st.stat("http.api.downstream_rq_active") == slow, "still in flight when the drain began"
            for t in threads:
                t.join()
            assert sorted(results) == [(201, "close")] * slow, f"in-flight requests finish, closed by the drain: {results}"
            time.sleep(1.5)  # the wait of docs/hosts/envoy.md (Shutdown): flush_interval_ms (1000) + a timer period + the callout
            st.kill("envoy", signal.SIGTERM)
            assert st.procs["envoy"].returncode == 0
            events = st.collector_events()
            paths = {e["api_path"] for e in events}
            assert len(events) == n + slow, f"{mode}: {len(events)} of {n + slow} delivered"
            assert all(f"/drain/slow/{i}" in paths for i in range(slow)), f"{mode}: in-flight events delivered"
            assert all(e["status_code"] == 201 for e in events if "/slow/" in e["api_path"])


def ecds_config(first_value):
    """envoy/envoy-ecds.yaml (the plugin from a file Envoy watches) with this run's ports, its
    resource file envoy/usage_filter.ecds.yaml in the scenario's folder holding `first_value`,
    and a second collector cluster `collector_b` (its port set by the scenario)."""
    def make(st, ports):
        text = replace_ports(open(os.path.join(ROOT, "envoy", "envoy-ecds.yaml")).read(), ports)
        st.ecds_path = st.path("usage_filter.ecds.yaml")
        write_ecds(st, first_value)
        assert "path: envoy/usage_filter.ecds.yaml" in text
        text = text.replace("path: envoy/usage_filter.ecds.yaml", f"path: {st.ecds_path}")
        return text + f"""
  - name: collector_b
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: collector_b
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {st.ports['collector_b']} }} }} }}
"""
    return make


def write_ecds(st, value):
    """A new plugin configuration, as an operator would: a new file renamed over the old."""
    text = replace_value_block(open(os.path.join(ROOT, "envoy", "usage_filter.ecds.yaml")).read(), value)
    with open(st.ecds_path + ".new", "w") as f:
        f.write(text)
    os.rename(st.ecds_path + ".new", st.ecds_path)


def test_runtime_reconfiguration():
    """The plugin configuration changes three times in the running Envoy (ECDS from a watched
    file, envoy/envoy-ecds.yaml) while six clients keep sending, some requests in flight across
    each switch: format veil → ndjson → json, key mode raw → sha256 → redact, batch size,
    and a new collector. Then a configuration the filter refuses (batch_size 0). Every request
    is one event, delivered exactly once by id across both collectors, in the shape of the
    configuration that measured it; the events the old plugin held when it was replaced are
    delivered by it; the refused configuration is rejected (update_rejected, the key named in
    the log) and the last good one keeps serving; the books balance."""
    import hashlib
    auth = {"authorization": "${COLLECTOR_TOKEN}"}
    configs = [
        # A: holds everything (nothing is sent until the switch flushes it)
        {"enabled": True, "sinks": ["http"], "key_mode": "raw",
         "http": {"cluster": "collector", "format": "veil", "batch_size": 5000, "flush_interval_ms": 600000,
                  "headers": auth}},
        {"enabled": True, "sinks": ["http"], "key_mode": "sha256",
         "http": {"cluster": "collector", "format": "ndjson", "batch_size": 7, "flush_interval_ms": 100,
                  "headers": auth}},
        {"enabled": True, "sinks": ["http"], "key_mode": "redact",
         "http": {"cluster": "collector_b", "format": "json", "batch_size": 20, "flush_interval_ms": 100,
                  "headers": auth}},
    ]
    bad = {"enabled": True, "sinks": ["http"], "http": {"cluster": "collector_b", "batch_size": 0}}

    class EcdsStack(Stack):
        def start_collector(self, port=0):
            super().start_collector(port)
            if "collector_b" not in self.procs:
                self.events_b = self.path("events_b.ndjson")
                self.spawn("collector_b", [os.path.join(BIN, "collector"), "--listen", "127.0.0.1:0",
                                           "--out", self.events_b, "--require-auth", TOKEN])
                self.ports["collector_b"] = self.listening_on("collector_b", "collector listening on ")

    with EcdsStack(config_text=ecds_config(configs[0])) as st:
        def events_b():
            with open(st.events_b) as f:
                return [json.loads(l) for l in f if l.strip()]

        def updates():
            return st.stat("extension_config_discovery.http_filter.usage_filter.update_success")
        sent, failures, stop, lock = [], [], threading.Event(), threading.Lock()

        def load(t):
            i = 0
            while not stop.is_set():
                i += 1
                path = f"/rc/{t}/{i}"
                delay = 300 if i % 25 == 0 else 0
                try:
                    st.expect("GET", f"{path}?status=200&bytes=3&delay_ms={delay}", f"key-{t}", 200)
                except Exception as e:  # noqa: BLE001
                    failures.append((path, repr(e)))
                with lock:
                    sent.append((path, f"key-{t}"))
                time.sleep(0.003)
        threads = [threading.Thread(target=load, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(sent) >= 300, 20, "traffic under the first configuration")
            assert st.collector_events() == [], "the first configuration holds its events"
            write_ecds(st, configs[1])
            wait_for(lambda: updates() == 2, 10, "the second configuration")
            wait_for(lambda: any("billable" in e for e in st.collector_events()), 10, "ndjson events")
            held = [int(x) for x in re.findall(r"shutting down, flushing (\d+)", "\n".join(st.filter_log()))]
            assert sum(held) >= 300 - 6, f"the replaced plugin said what it held: {held}"
            n_before = len(sent)
            wait_for(lambda: len(sent) >= n_before + 300, 20, "traffic under the second configuration")
            write_ecds(st, configs[2])
            wait_for(lambda: updates() == 3, 10, "the third configuration")
            wait_for(lambda: len(events_b()) >= 100, 10, "events at the new collector")
            write_ecds(st, bad)
            rejected = "extension_config_discovery.http_filter.usage_filter.update_rejected"
            wait_for(lambda: st.stat(rejected) == 1, 10, "the refused configuration to be rejected")
            n_at_reject = len(events_b())
            wait_for(lambda: len(events_b()) >= n_at_reject + 100, 10, "the last good configuration serving on")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures, failures[:5]
        n = len(sent)
        m = settled(st, n)
        assert updates() == 3, "the refused configuration did not replace the good one"
        err = st.envoy_stderr()
        assert re.search(r"wasm log usage_filter usage_filter: usage-filter: invalid plugin configuration: "
                         r"http.batch_size: must be between 1 and 100000, got 0", err), err[-2000:]
        assert "Filesystem config update rejected: Unable to create Wasm plugin usage_filter" in err, err[-2000:]
        a, b = st.collector_events(), events_b()
        events = a + b
        ids = [e["id"] for e in events]
        assert len(ids) == n and len(set(ids)) == n, f"{len(ids)} events, {len(set(ids))} ids, {n} requests"
        key_of = dict(sent)
        assert {e["api_path"] for e in events} == set(key_of), "every request is one event"
        shapes = {"A": 0, "B": 0, "C": 0}
        for e in a:
            key = key_of[e["api_path"]]
            if e["subscription_key"] == key:
                assert set(e) == VEIL_FIELDS, e
                shapes["A"] += 1
            else:
                assert e["subscription_key"] == hashlib.sha256(key.encode()).hexdigest() and "billable" in e, e
                shapes["B"] += 1
        for e in b:
            assert e["subscription_key"] == key_of[e["api_path"]][:4] + "\u2026" and "billable" in e, e
            shapes["C"] += 1
        assert all(v >= 100 for v in shapes.values()), shapes
        assert m["events_delivered"] == n and accounting_holds(m), m
        assert m["events_dropped_send_failed"] == 0 and m["events_dropped_buffer_full"] == 0, m
        print(f"  reconfiguration: {n} events, by configuration {shapes}", flush=True)


def test_misbehaving_collectors():
    """Answers a collector should never give, one batch each: 200 with a 50 MB body (three
    times), the answer trickled a byte a second (the callout times out), the connection closed
    mid-answer, 503 with Retry-After as an HTTP date and as garbage. Envoy 1.40 drains an
    answer beyond its async-client body limit and fails the callout, so each of the seven is a
    failed attempt, retried once with the same batch id (batch_retries == 7); the collector had
    stored the forwarded ones and drops their replays by batch id, so every event is stored
    exactly once. Proxied requests are unaffected (every status right, none slow) and Envoy's
    heap after three 50 MB answers is back where it was."""
    script = ["big200", "trickle", "big200", "close_mid", "retry_after_date", "big200", "retry_after_garbage"]
    value = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": 10, "flush_interval_ms": 100, "timeout_ms": 1500, "max_in_flight": 1,
                      "retry": {"max_attempts": 10, "initial_backoff_ms": 50, "max_backoff_ms": 1000}}}
    with Stack(filter_value=value, front=lambda st: Front(st.ports["collector"])) as st:
        for i in range(50):  # warm up before the baseline
            st.expect("GET", f"/warm/{i}", "k", 200)
        settled(st, 50)
        base = st.stat("server.memory_allocated")
        st.front.script = list(script)
        n, slowest = 400, 0.0
        for i in range(n):
            t0 = time.monotonic()
            st.expect("POST", f"/mis/{i}?status=201&bytes=7", "k", 201, b"abc")
            slowest = max(slowest, time.monotonic() - t0)
            time.sleep(0.01)
        m = settled(st, n + 50)
        after = st.stat("server.memory_allocated")
        events = st.collector_events()
        ids = [e["id"] for e in events]
        assert len(ids) == n + 50 and len(set(ids)) == n + 50, (len(ids), len(set(ids)))
        assert m["events_delivered"] == n + 50 and m["events_dropped_send_failed"] == 0, m
        assert accounting_holds(m), m
        assert not st.front.script, f"every misbehaviour was met: {st.front.script}"
        assert m["batch_retries"] == len(script), (m, st.front.seen)
        tried = {}
        for behaviour, batch_id, auth in st.front.seen:
            assert auth == TOKEN and batch_id, (behaviour, batch_id, auth)
            tried.setdefault(batch_id, []).append(behaviour)
        for attempts in tried.values():
            assert attempts[-1] == "forward" and attempts.count("forward") == 1, attempts
        # Forwarded attempts beyond each batch's first reached the collector as replays.
        forwarded = sum(1 for b, _, _ in st.front.seen if not b.startswith("retry_after"))
        replays = forwarded - len(tried)
        stats = st.collector_stats()
        assert stats["duplicate_batches"] == replays, (stats, tried)
        first = set()
        for a in st.collector_attempts():
            assert (a["new_events"] > 0) == (a["batch_id"] not in first), a
            first.add(a["batch_id"])
        assert re.search(r"buffer size limit for async client response body has been exceeded", st.envoy_stderr())
        assert slowest < 0.5, f"a proxied request took {slowest:.3f}s while the collector misbehaved"
        grew = (after - base) / 1e6
        assert grew < 8, f"Envoy's heap grew {grew:.1f} MB over three 50 MB answers"
        print(f"  misbehaving collectors: slowest request {slowest * 1000:.0f} ms, heap {base / 1e6:.1f} MB "
              f"-> {after / 1e6:.1f} MB, retries {m['batch_retries']}", flush=True)


# The collector cluster over TLS, as docs/hosts/envoy.md shows it (appended to the `collector` cluster).
TLS_TRANSPORT = """    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: collector.test
        common_tls_context:
          validation_context:
            trusted_ca: { filename: CA_FILE }
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: { exact: collector.test }
"""


def make_certs(folder):
    """A CA and a certificate for collector.test it signed; another CA's certificate for the
    same name (the wrong one). `openssl` from Debian."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(folder, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:collector.test\n")
    for ca in ("ca", "wrong-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=usage-e2e {ca}")
        run("req", *ec, "-keyout", f"{ca}-server.key", "-out", f"{ca}-server.csr", "-subj", "/CN=collector.test")
        run("x509", "-req", "-in", f"{ca}-server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{ca}-server.pem", "-days", "2", "-extfile", "san.ext")

    def context(ca):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(folder, f"{ca}-server.pem"), os.path.join(folder, f"{ca}-server.key"))
        return ctx
    return context("ca"), context("wrong-ca")


def test_collector_over_tls():
    """The collector behind TLS: Envoy's `collector` cluster with an UpstreamTlsContext (SNI
    collector.test, the test's own CA, the name checked). First the server shows a certificate
    from another CA: every callout fails the handshake, is retried, and the events are counted
    as failed to send, while proxied requests are answered as usual. Then the right certificate:
    every event arrives, with the ${COLLECTOR_TOKEN} bearer token, and the server saw the SNI."""
    value = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": 10, "flush_interval_ms": 100,
                      "retry": {"max_attempts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 100}}}

    def front(st):
        st.good_tls, st.wrong_tls = make_certs(st.dir)
        f = Front(st.ports["collector"], tls=st.wrong_tls)
        for ctx in (st.good_tls, st.wrong_tls):
            ctx.sni_callback = lambda sock, name, ctx: f.sni.append(name)
        return f

    def config(st, ports):
        return envoy_config(ports, value) + TLS_TRANSPORT.replace("CA_FILE", st.path("ca.pem"))

    with Stack(config_text=config, front=front) as st:
        bad = 30
        for i in range(bad):
            st.expect("GET", f"/tls-bad/{i}?status=200", "k", 200)
        m = settled(st, bad)
        assert m["events_dropped_send_failed"] == bad and m["events_delivered"] == 0, m
        assert m["batch_retries"] == m["batches_failed"] >= 3, m
        assert st.front.handshake_failures >= 1, "the handshakes failed"
        assert st.stat("cluster.collector.ssl.fail_verify_error") >= 1, "Envoy says why"
        print(f"  tls, wrong certificate: {m['batches_failed']} batches failed, {st.front.handshake_failures} "
              f"handshakes refused, fail_verify_error {st.stat('cluster.collector.ssl.fail_verify_error')}, "
              f"upstream_cx_connect_fail {st.stat('cluster.collector.upstream_cx_connect_fail')}", flush=True)
        assert st.collector_events() == [] and st.front.seen == []

        st.front.tls = st.good_tls
        good = 100
        for i in range(good):
            st.expect("POST", f"/tls/{i}?status=201", "k", 201, b"x")
        m = settled(st, bad + good)
        events = st.collector_events()
        assert len(events) == good and {e["api_path"] for e in events} == {f"/tls/{i}" for i in range(good)}
        assert m["events_delivered"] == good and m["events_dropped_send_failed"] == bad and accounting_holds(m), m
        assert st.front.seen and all(auth == TOKEN for _, _, auth in st.front.seen), st.front.seen[:3]
        assert set(st.front.sni) == {"collector.test"}, st.front.sni[:3]
        check_batches(st)
        assert st.stat("cluster.collector.ssl.handshake") >= 1


def test_shared_queue_outage_with_the_service_full():
    """shared_queue mode with the collector down and the singleton service's buffer (50) full:
    the workers (whose own bound, 10,000, is never near) hand every event over; the service
    keeps the first 50 and counts the other 150 as dropped_buffer_full; proxied requests are
    answered as usual. When the collector is back, the 50 are delivered exactly once and the
    books balance: captured 200 = delivered 50 + dropped 150."""
    service = {"buffer_size": 50, "batch_size": 10, "flush_interval_ms": 100,
               "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 200}}
    with Stack(config_text=singleton_config(service_http=service)) as st:
        port = st.ports["collector"]
        st.kill("collector")
        n = 200
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda i: st.expect("GET", f"/sq/{i}?status=200", "k", 200), range(n)))

        # the buffer can be full before the first attempt has failed: wait for both
        def full():
            m = st.metrics()
            return m if (m.get("events_captured"), m.get("buffer_events")) == (n, 50) \
                and m.get("events_dropped_buffer_full") == n - 50 and m.get("batch_retries", 0) >= 1 else None
        m = wait_for(full, 10, "the service's buffer full, the rest dropped and a failed attempt retried")
        assert m["events_delivered"] == 0 and m["events_dropped_send_failed"] == 0 and accounting_holds(m), m
        st.start_collector(port)
        m = settled(st, n)
        assert (m["events_delivered"], m["events_dropped_buffer_full"], m["events_dropped_send_failed"]) \
            == (50, n - 50, 0), m
        assert accounting_holds(m), m
        events = st.collector_events()
        assert len(events) == 50 and len({e["id"] for e in events}) == 50, len(events)
        check_batches(st)


SHUTDOWN_RESULT = {}

TESTS = [test_exact_delivery, test_exact_delivery_four_workers, test_collector_killed_under_load,
         test_collector_503_then_200, test_bad_plugin_config_is_refused, test_log_sink_lines_on_stdout,
         test_sigterm_with_events_buffered, test_drain_then_sigterm_delivers_everything,
         test_runtime_reconfiguration, test_misbehaving_collectors,
         test_collector_over_tls, test_shared_queue_outage_with_the_service_full]


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_tests(tests, only):
    """Runs the tests whose names contain one of `only` (all when empty), one line each;
    returns (passed, failed). The Caddy suites run theirs through this too."""
    passed = failed = 0
    for t in tests:
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
    return passed, failed


def main():
    global ENVOY
    ENVOY = subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    passed = failed = 0
    try:
        passed, failed = run_tests(TESTS, sys.argv[1:])
    finally:
        for st in list(LIVE_STACKS):  # only after an interrupt: `with` closed the others
            st.failed = True
            st.close()
    for mode, (got, n, said) in SHUTDOWN_RESULT.items():
        print(f"shutdown ({mode}): {got} of {n} buffered events reached the collector after SIGTERM; filter said {said}")
    print(f"e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
