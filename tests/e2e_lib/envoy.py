"""Envoy's side of the library: its configuration from the files the docs show, the stack
that runs it with the filter, and the checks every Envoy suite makes.

Every Envoy configuration is envoy/envoy.yaml (or another file of envoy/) with only its
ports and the filter's `configuration` value changed. Envoy listens on port 0 and the stack
reads what it got (--admin-address-path, then /listeners); USAGE_FILTER_WASM, if set, is the
.wasm it loads instead of dist/usage_filter.wasm.
"""
import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import urllib.request

from .procs import ROOT, Stack, get_json
from .wait import wait_for

TOKEN = "Bearer e2e-token"
VEIL_FIELDS = {"id", "api_path", "subscription_key", "method", "response_time_ms", "status_code", "success",
               "timestamp", "request_size", "response_size"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ENVOY = []


def envoy_binary():
    """Envoy 1.40 from .tools (envoy/install-envoy.sh installs it the first time)."""
    if not _ENVOY:
        _ENVOY.append(subprocess.check_output([os.path.join(ROOT, "envoy", "install-envoy.sh")], text=True).strip())
    return _ENVOY[0]


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


def read_config(name, ports):
    """envoy/<name> with this run's ports."""
    with open(os.path.join(ROOT, "envoy", name)) as f:
        return replace_ports(f.read(), ports)


def with_wasm(text):
    """The configuration loading $USAGE_FILTER_WASM, when set, instead of dist/usage_filter.wasm."""
    wasm = os.environ.get("USAGE_FILTER_WASM")
    return text.replace("filename: dist/usage_filter.wasm", f"filename: {os.path.abspath(wasm)}") if wasm else text


def envoy_config(ports, filter_value=None):
    """envoy/envoy.yaml with this run's ports and, optionally, another filter configuration."""
    text = read_config("envoy.yaml", ports)
    return text if filter_value is None else replace_value_block(text, filter_value)


def parse_ts(ts):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ts), f"timestamp {ts!r}: RFC 3339, UTC, µs"
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class EnvoyStack(Stack):
    """Demo upstream + collector + Envoy for one scenario: `with EnvoyStack(...) as st:`.

    Envoy's configuration: `filter_value` replaces the plugin configuration of envoy/envoy.yaml;
    `config_text(st, ports) -> yaml` gives a whole other one. `collector_auth` is what the
    collector requires as Authorization (the token Envoy is given); None requires nothing.
    `front(st)` builds a server Envoy's `collector` cluster points at instead (it forwards)."""

    def __init__(self, filter_value=None, start_envoy=True, concurrency=2, config_text=None,
                 collector_auth=TOKEN, envoy_env=None, front=None):
        super().__init__(collector_auth=collector_auth)
        self.fronts = []
        self.local = threading.local()
        self.filter_value = filter_value
        self.concurrency = concurrency
        self.config_text = config_text
        self.envoy_env = dict(envoy_env or {})
        self.start_envoy_now = start_envoy
        self.make_front = front
        self.front = None
        self.config_path = self.path("envoy.yaml")
        self.listener_port = 0  # a fixed one when something in front must find Envoy again after a restart

    def __enter__(self):
        try:
            self.start_upstream()
            self.start_collector()
            if self.make_front is not None:
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

    def close(self):
        super().close()
        for f in self.fronts:
            f.close()

    def write_envoy_config(self):
        ports = dict(self.ports, listener=self.listener_port, admin=0)
        if self.front is not None:
            ports["collector"] = self.front.port
        text = self.config_text(self, ports) if self.config_text is not None else envoy_config(ports, self.filter_value)
        with open(self.config_path, "w") as f:
            f.write(with_wasm(text))

    def start_envoy(self, extra_args=()):
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN, **self.envoy_env)
        admin_file = self.path("admin.address")
        if os.path.exists(admin_file):
            os.remove(admin_file)
        self.spawn("envoy", [envoy_binary(), "-c", self.config_path, "--concurrency", str(self.concurrency),
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

    def ready(self):
        self.alive("envoy")
        try:
            with urllib.request.urlopen(f"{self.admin}/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    # ---- client ----
    def client_port(self):
        return self.ports["listener"]

    def request(self, method, path, key=None, body=b"", headers=None):
        port = self.client_port()
        conn = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "port", None) != port:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            self.local.port = port
        h = dict(headers or {})
        if key is not None:
            h["x-subscription-key"] = key
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

    def expect(self, method, path, key, status, body=b""):
        """A request whose answer must be `status` (Envoy's own 503s also make events)."""
        got, data = self.request(method, path, key, body)
        assert got == status, f"{method} {path}: client got {got}, expected {status}: {data[:200]!r}"
        return data

    # ---- observation ----
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

    def envoy_stdout(self):
        return self.stdout("envoy")

    def envoy_stderr(self):
        return self.stderr("envoy")

    def filter_log(self, vm="usage_filter"):
        """What the filter logged from VMs of this plugin name (Envoy prefixes every line with
        `wasm log <plugin name> <root id>:`)."""
        return re.findall(rf"wasm log {vm} {vm}: (usage-filter: .*)", self.envoy_stderr())

    def stop_envoy(self):
        """SIGTERM; Envoy must exit 0."""
        self.kill("envoy", signal.SIGTERM)
        assert self.procs["envoy"].returncode == 0, f"envoy exited {self.procs['envoy'].returncode}"


def accounting_holds(m):
    return m.get("events_captured", -1) == (m.get("events_delivered", 0) + m.get("events_dropped_buffer_full", 0)
                                            + m.get("events_dropped_send_failed", 0)
                                            + m.get("events_dropped_rejected", 0) + m.get("buffer_events", 0))


def settled(st, n=None, timeout=30):
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
    try:
        return wait_for(quiet, timeout, f"an empty buffer{'' if n is None else f' after {n} events'}")
    except AssertionError as e:
        raise AssertionError(f"{e}; the filter's metrics last: {last[0]}") from None


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


def assert_no_replays(stats, where="the collector"):
    """Where no replay is expected: the collector's dedupe hid nothing. A batch sent again
    (same id: duplicate_batches) or an event sent again in another batch (same event id:
    duplicate_events) would otherwise pass unseen, the out file holding each id once."""
    assert stats["duplicate_batches"] == 0 and stats["duplicate_events"] == 0, \
        f"{where} dropped replays: duplicate_batches {stats['duplicate_batches']}, " \
        f"duplicate_events {stats['duplicate_events']} ({stats})"
    assert stats["invalid_events"] == 0 and stats["rejected_batches"] == 0, stats
