"""The Caddy suites' stack and traffic (caddy/e2e.py, caddy/e2e_agent.py,
caddy/e2e_agent_file.py): real Caddy 2.11.7 (caddy/install-caddy.sh) with one of
caddy/Caddyfile.* (this run's ports and paths substituted, so the files the docs show are the
files under test), the demo upstream and the reference collector on port 0, Envoy from
tests/e2e_lib when Caddy is in front of it, and the checks of what the collector holds.
Python standard library only."""
import datetime
import glob
import gzip
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import free_port, wait_for  # noqa: E402
from e2e_lib.envoy import VEIL_FIELDS, EnvoyStack  # noqa: E402
from e2e_lib.procs import ROOT, PortTaken  # noqa: E402

KEY_HEADER = "x-subscription-key"
# Defaults in caddy/Caddyfile.* (and envoy/envoy.yaml) → the name of this run's port.
CADDYFILE_PORTS = {"10080": "caddy", "2019": "caddy_admin", "10000": "listener", "18081": "upstream",
                   "9411": "agent"}
CADDYFILE_LOG = "caddy/.run/log/access.log"
_CADDY = []


def caddy_binary():
    if not _CADDY:
        _CADDY.append(subprocess.check_output([os.path.join(ROOT, "caddy", "install-caddy.sh")], text=True).strip())
    return _CADDY[0]


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


class CaddyStack(EnvoyStack):
    """The processes of one Caddy scenario, started one by one (`start_upstream`,
    `start_collector`, `start_envoy`, `start_caddy`, or `spawn`); `close()` in a `finally`
    (the folder is kept when an exception is on its way, and always with CADDY_E2E_KEEP=1).
    Requests (`request`) go to Caddy."""
    prefix = "usage-caddy-e2e-"
    keep_env = "CADDY_E2E_KEEP"

    def __init__(self):
        super().__init__(start_envoy=False, collector_auth=None)

    def client_port(self):
        return self.ports["caddy"]

    def start_envoy(self, filter_value=None):
        """Envoy from envoy/envoy.yaml (the http sink to this stack's collector): its admin on
        port 0, its listener on a reserved port that a restart binds again (Caddy points at it)."""
        self.filter_value = filter_value
        self.listener_port = self.listener_port or free_port()
        self.write_envoy_config()
        super().start_envoy()

    def start_caddy(self, make_text, name="caddy", tries=3):
        """Caddy with the Caddyfile `make_text(st)` gives, on reserved ports (ports.free_port);
        if one was taken all the same, new ports and a new Caddyfile, up to `tries` times. Its
        config and data folders are inside the stack's folder, not in $HOME. Returns when Caddy
        says it serves the configuration."""
        home = self.path(f"{name}-home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"),
                   XDG_DATA_HOME=os.path.join(home, "data"))
        for attempt in range(tries):
            self.ports["caddy"], self.ports["caddy_admin"] = free_port(), free_port()
            path = self.path(f"{name}.Caddyfile")
            with open(path, "w") as f:
                f.write(make_text(self))
            self.spawn(name, [caddy_binary(), "run", "--config", path, "--adapter", "caddyfile"], env=env)
            try:
                wait_for(lambda: self.alive(name) and "serving initial configuration" in
                         self.stderr(name, since_start=True), 20, f"{name} serving")
                return
            except PortTaken:
                if attempt == tries - 1:
                    raise
                print(f"  {name}: a port was taken, again on new ports", flush=True)


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


def plain(n, prefix, key="k-plain", pad=0, start=0):
    """n keyed GETs with distinct paths (/prefix/start…) and a small body; `pad` bytes of
    extra request header make each log entry longer."""
    return [{"i": i, "method": "GET", "api_path": f"/{prefix}/{i}", "path": f"/{prefix}/{i}?status=200&bytes=10",
             "status": 200, "size": 10, "body": b"", "key": key, "pad": pad} for i in range(start, start + n)]


def send_padded(st, plan, workers=8):
    def run(p):
        got, _ = st.request(p["method"], p["path"], p["key"], p["body"],
                            headers={"x-pad": "p" * p["pad"]} if p["pad"] else None)
        assert got == p["status"], (p["path"], got)
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(run, plan))


def exact_events(st, n):
    """The collector's events, which must be exactly n with unique ids; the collector's
    dedupe hid nothing and refused nothing. Call it once the sender holds nothing more."""
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


# ---------------------------------------------------------------- Caddy beside the agent

def beside(st, log, roll_size=None, net=False, tap=None, uncompressed=False):
    """caddy/Caddyfile.beside with this run's ports and `log` as the access log. `roll_size`
    replaces the file's (100MiB); `net` uses the commented `output net` block instead of the
    file; `tap` adds a global logger writing the same access entries to that file (the test's
    record of what Caddy served when the site's log goes over the network)."""
    text = caddyfile("beside", st.ports, log)
    if roll_size:
        assert "roll_size 100MiB" in text
        text = text.replace("roll_size 100MiB", f"roll_size {roll_size}")
    if uncompressed:
        # Caddy gzips rolled files by default; roll_uncompressed keeps them plain.
        text = text.replace("\t\t\troll_keep", "\t\t\troll_uncompressed\n\t\t\troll_keep", 1)
        assert "roll_uncompressed" in text
    lines = text.split("\n")
    if net:
        # The active `log { … }` block of the site goes; the commented one comes in.
        a = lines.index("\tlog {")
        b = lines.index("\t}", a)
        net_a = lines.index("\t# log {")
        net_b = lines.index("\t# }", net_a)
        block = ["\t" + l[len("\t# "):] if l.startswith("\t# ") else l for l in lines[net_a:net_b + 1]]
        assert any("output net" in l for l in block), block
        lines = lines[:a] + block + lines[b + 1:net_a] + lines[net_b + 1:]
    if tap:
        g = lines.index("\tauto_https off")
        lines[g + 1:g + 1] = ["\tlog test_tap {", f"\t\toutput file {tap}", "\t\tformat json",
                              "\t\tinclude http.log.access.log0", "\t}"]
    return "\n".join(lines)


def caddy_entries(pattern):
    """The access entries Caddy wrote to the files matching `pattern` (gzipped ones too),
    skipping lines that are not access entries (the junk a test appended)."""
    out = []
    for p in sorted(glob.glob(pattern)):
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rt", errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and e.get("msg") == "handled request" and isinstance(e.get("status"), int):
                    out.append(e)
    return out


def keyed(entry):
    return "X-Subscription-Key" in entry["request"]["headers"]


def rfc3339_ns(s):
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


def check_against_caddy(events, entries):
    """One event per keyed entry, none for the others; each with Caddy's figures: the path
    without the query, method, key, status, both sizes, the duration within 1 ms and the
    timestamp (Caddy's `ts`) within 1 ms."""
    by_path = {}
    for e in events:
        assert e["api_path"] not in by_path, f"two events for {e['api_path']}"
        by_path[e["api_path"]] = e
    want = [x for x in entries if keyed(x)]
    assert len(events) == len(want), f"{len(events)} events for {len(want)} keyed entries"
    for x in entries:
        path = x["request"]["uri"].split("?")[0]
        e = by_path.get(path)
        if not keyed(x):
            assert e is None, f"an unkeyed request made an event: {e}"
            continue
        assert e is not None, f"no event for {x['request']['uri']}"
        assert set(e) == VEIL_FIELDS, e
        assert e["method"] == x["request"]["method"], (e, x)
        assert e["subscription_key"] == x["request"]["headers"]["X-Subscription-Key"][0], (e, x)
        assert e["status_code"] == x["status"], (e, x)
        assert e["success"] == (200 <= x["status"] <= 299), (e, x)
        assert e["request_size"] == x["bytes_read"], (e, x)
        assert e["response_size"] == x["size"], (e, x)
        assert abs(e["response_time_ms"] - x["duration"] * 1000) <= 1, (e["response_time_ms"], x["duration"])
        assert abs(rfc3339_ns(e["timestamp"]) - x["ts"] * 1e9) <= 1e6, (e["timestamp"], x["ts"])
