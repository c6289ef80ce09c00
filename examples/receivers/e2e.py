#!/usr/bin/env python3
"""`make e2e-receivers`: usage-filter in the real Envoy 1.40 delivering to real receivers.

One Envoy runs examples/clickhouse/envoy.yaml (ports changed) plus two more listeners made
from its API listener, all three metering requests to the demo upstream:

- `api`: ndjson straight into ClickHouse (Debian's clickhouse-server) through the Envoy
  cluster `clickhouse`, `INSERT INTO usage.events FORMAT JSONEachRow`, table from
  examples/clickhouse/schema.sql, as user `usage_writer` (basic auth from the VM environment);
- `api_lossy`: the same, through a relay that loses ClickHouse's answer to the first batch, so
  the filter retries a batch ClickHouse already stored: the table holds those rows twice and
  FINAL (ReplacingMergeTree) / uniqExact(id) count each event once;
- `api_ce`: the `cloudevents` format into examples/cloudevents/receiver.py, which parses every
  event with the official CloudEvents SDK; `http.cloudevents.type` and `.source` are set, and
  the SDK's events must carry them;
- `api_fanout` and `api_fanout_q`: one filter, two destinations at once (`http` an array):
  veil to the reference collector and ndjson to ClickHouse, in `local` and in `shared_queue`
  mode (a singleton service serving both); every event once in each, the collector refusing
  poisoned batches with 400 (see fanout.py).

Prometheus (Debian's prometheus) scrapes Envoy's /stats/prometheus with
examples/prometheus/prometheus.yml and its alerting rules; the usage_filter_* series, read
through Prometheus's HTTP API, must equal what the receivers counted. promtool checks and unit
tests the rules.

Run with the receivers venv's python (examples/receivers/install.sh prints it): `make
e2e-receivers`. Processes, ports, waiting and the runner come from tests/e2e_lib: the upstream,
the CloudEvents receiver and Envoy bind port 0; ClickHouse and Prometheus get reserved ports
(and new ones if a port was taken all the same). Ends with `e2e-receivers: N passed, M failed`.
"""

import base64
import copy
import datetime
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from e2e_lib import Stack, free_port, runner  # noqa: E402
from e2e_lib import wait_for as _wait_for  # noqa: E402
from e2e_lib.envoy import envoy_binary  # noqa: E402
from e2e_lib.procs import PortTaken  # noqa: E402

import fanout  # noqa: E402  (beside this file)
EX = os.path.join(ROOT, "examples")
WRITER, WRITER_PASSWORD = "usage_writer", "e2e-secret"
KEYS = ["acme-key", "globex-key", "initech-key"]
N_CLICKHOUSE, N_LOSSY, N_CE, N_UNKEYED = 240, 30, 90, 5
CE_TYPE, CE_SOURCE = "com.example.api.request", "e2e-gateway"


def wait_for(pred, timeout, what, interval=0.05):
    """tests/e2e_lib's wait_for, a server not answering yet counting as a false answer."""
    return _wait_for(pred, timeout, what, interval, ignore=(OSError, ValueError))


def http(url, data=None, headers=None, method=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Processes(Stack):
    """The library's Stack, each child in its own session (clickhouse-server forks a watchdog)."""
    prefix = "usage-receivers-"
    keep_env = "RECEIVERS_E2E_KEEP"
    own_session = True

    def check(self):
        for name in self.procs:
            self.alive(name)

    def log(self, name, lines=30):
        return "".join((self.stdout(name) + self.stderr(name)).splitlines(True)[-lines:])


# ---------------------------------------------------------------- ClickHouse

CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"""

CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <{writer}>
      <password>{password}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota>
      <allow_databases><database>usage</database></allow_databases>
    </{writer}>
  </users>
  <quotas><default></default></quotas>
</yandex>
"""


def start_on_free_ports(start, what, tries=3):
    """start() on reserved ports (tests/e2e_lib/ports.py); if a port was taken all the same,
    again on new ones."""
    for attempt in range(tries):
        try:
            return start()
        except PortTaken:
            if attempt == tries - 1:
                raise
            print(f"  {what}: a port was taken, again on new ports", flush=True)


class ClickHouse:
    def __init__(self, procs):
        self.dir = procs.path("clickhouse")
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(CLICKHOUSE_USERS.format(writer=WRITER, password=WRITER_PASSWORD))

        def start():
            self.port = free_port()
            with open(os.path.join(self.dir, "config.xml"), "w") as f:
                f.write(CLICKHOUSE_CONFIG.format(http_port=self.port, tcp_port=free_port(), dir=self.dir))
            procs.spawn("clickhouse", ["clickhouse-server", f"--config-file={self.dir}/config.xml"])
            wait_for(lambda: procs.alive("clickhouse") and http(f"http://127.0.0.1:{self.port}/ping")[0] == 200,
                     30, "ClickHouse")
        start_on_free_ports(start, "ClickHouse")

    def query(self, sql):
        """Runs sql as the default user; the answer's text."""
        try:
            return http(f"http://127.0.0.1:{self.port}/", data=sql.encode())[1].decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"ClickHouse refused {sql!r}: {e.read().decode()}") from e

    def rows(self, sql):
        return [json.loads(line) for line in self.query(sql + " FORMAT JSONEachRow").splitlines()]

    def scalar(self, sql):
        return int(self.query(sql).strip())


class LossyRelay:
    """Between Envoy and ClickHouse: forwards every batch, but closes the connection without
    an answer after ClickHouse stored the first one, as a network failure would."""

    def __init__(self, target_port):
        self.target, self.lock = target_port, threading.Lock()
        self.requests = []  # (batch id, number of lines, ClickHouse's status or None if lost)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type", "content-encoding")}
                try:
                    status, answer = http(f"http://127.0.0.1:{relay.target}{self.path}", body,
                                          headers, "POST")
                except urllib.error.HTTPError as e:
                    status, answer = e.code, e.read()
                with relay.lock:
                    lose = not relay.requests
                    relay.requests.append((self.headers.get("x-usage-batch-id"),
                                           body.count(b"\n"), None if lose else status))
                if lose:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- Envoy

def envoy_config(ports):
    """examples/clickhouse/envoy.yaml with test ports, plus the lossy and CloudEvents listeners."""
    with open(os.path.join(EX, "clickhouse", "envoy.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["admin"]["address"]["socket_address"]["port_value"] = ports["admin"]
    res = cfg["static_resources"]
    api = res["listeners"][0]
    api["address"]["socket_address"]["port_value"] = ports["api"]
    clusters = {c["name"]: c for c in res["clusters"]}

    def endpoint(cluster, port):
        lb = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        lb["endpoint"]["address"]["socket_address"]["port_value"] = port

    endpoint(clusters["upstream"], ports["upstream"])
    endpoint(clusters["clickhouse"], ports["clickhouse"])

    def filter_http(listener):
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]["http"]

    def variant(name, port, cluster, target_port, **http_changes):
        listener = copy.deepcopy(api)
        listener["name"] = name
        listener["address"]["socket_address"]["port_value"] = port
        h = filter_http(listener)
        h["cluster"] = cluster
        for k, v in http_changes.items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        res["listeners"].append(listener)
        c = copy.deepcopy(clusters["clickhouse"])
        c["name"] = c["load_assignment"]["cluster_name"] = cluster
        endpoint(c, target_port)
        res["clusters"].append(c)

    assert filter_http(api)["format"] == "ndjson", "examples/clickhouse/envoy.yaml changed"
    variant("api_lossy", ports["api_lossy"], "clickhouse_lossy", ports["relay"])
    variant("api_ce", ports["api_ce"], "ce_receiver", ports["ce"], format="cloudevents",
            path="/events", headers=None, cloudevents={"type": CE_TYPE, "source": CE_SOURCE})

    def filter_cfg(listener):
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
    fanout.add_to(cfg, api, filter_cfg, ports["collector"], endpoint, clusters["clickhouse"])
    return cfg


def metered_requests(api_port, prefix, n, rng, poisoned=()):
    """n keyed requests through Envoy with varied keys, methods, statuses and sizes; what each
    event must say, by path. The paths of the `poisoned` indices end in fanout.POISON."""
    expected = {}
    for i in range(n):
        key = KEYS[i % len(KEYS)]
        status = rng.choice([200, 200, 200, 201, 404, 429, 503])
        size = rng.randrange(0, 3000)
        body = b"x" * rng.randrange(1, 500) if i % 4 == 0 else None
        path = f"/v1/{prefix}/{i}" + (fanout.POISON if i in poisoned else "")
        req = urllib.request.Request(
            f"http://127.0.0.1:{api_port}{path}?status={status}&bytes={size}",
            data=body, method="POST" if body else "GET",
            headers={"x-subscription-key": key})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                got, n_bytes = r.status, len(r.read())
        except urllib.error.HTTPError as e:
            got, n_bytes = e.code, len(e.read())
        assert got == status and n_bytes == size, f"{path}: {got} {n_bytes} bytes"
        expected[path] = {"api_path": path, "subscription_key": key,
                          "method": "POST" if body else "GET", "status_code": status,
                          "request_size": len(body) if body else 0, "response_size": size,
                          "success": 200 <= status <= 299, "billable": 200 <= status <= 499}
    return expected


def unkeyed_requests(api_port, n):
    for i in range(n):
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/v1/unkeyed/{i}", timeout=10) as r:
            r.read()


def envoy_counters(admin_port):
    _, body = http(f"http://127.0.0.1:{admin_port}/stats?format=json&filter=usage_filter")
    return {s["name"].split(".", 2)[-1]: s.get("value", 0)
            for s in json.loads(body)["stats"] if "name" in s}


# ---------------------------------------------------------------- checks

def check_clickhouse(ch, expected_direct, expected_lossy, relay, t0, t1):
    expected = {**expected_direct, **expected_lossy}
    n = len(expected)
    raw = ch.scalar("SELECT count() FROM usage.events")
    final = ch.scalar("SELECT count() FROM usage.events FINAL")
    distinct = ch.scalar("SELECT uniqExact(id) FROM usage.events")
    lost = [r for r in relay.requests if r[2] is None]
    assert len(lost) == 1, f"relay: {relay.requests}"
    lost_id, lost_lines, _ = lost[0]
    retried = [r for r in relay.requests if r[0] == lost_id and r[2] is not None]
    assert retried and retried[0][1] == lost_lines and retried[0][2] == 200, (
        f"the lost batch {lost_id} was not retried whole with the same x-usage-batch-id: "
        f"{relay.requests}")
    # The retried batch is stored twice; FINAL and uniqExact(id) count each event once.
    assert raw == n + lost_lines, f"raw rows {raw}, expected {n} + {lost_lines} duplicated"
    assert final == n and distinct == n, f"FINAL {final}, uniqExact(id) {distinct}, sent {n}"
    # The merge that ReplacingMergeTree does in the background keeps one row per event.
    ch.query("SYSTEM START MERGES")
    ch.query("OPTIMIZE TABLE usage.events FINAL")
    merged = ch.scalar("SELECT count() FROM usage.events")
    assert merged == n, f"after OPTIMIZE FINAL {merged} rows, expected {n}"

    rows = ch.rows("SELECT *, toString(ts) AS ts_text FROM usage.events FINAL")
    seen = set()
    for row in rows:
        want = expected.get(row["api_path"])
        assert want, f"an unexpected row: {row}"
        assert row["api_path"] not in seen, f"twice after FINAL: {row}"
        seen.add(row["api_path"])
        for field, value in want.items():
            got = row[field]
            if isinstance(value, bool):
                value = int(value)
            assert int(got) == value if isinstance(value, int) else got == value, (
                f"{row['api_path']}: {field} is {got!r}, sent {value!r}")
        ts = datetime.datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
        assert t0 - 1 <= ts <= t1 + 1, f"timestamp {row['timestamp']} outside the run"
        assert row["ts_text"] == row["timestamp"][:19].replace("T", " "), row
        assert len(row["id"]) == 36 and row["id"][14] == "7", f"not a UUID v7: {row['id']}"
    assert seen == set(expected), f"missing rows: {sorted(set(expected) - seen)[:5]}"

    with open(os.path.join(EX, "clickhouse", "usage_per_key_per_hour.sql")) as f:
        per_hour = ch.rows(f.read().strip().rstrip(";"))
    per_key = {}
    for r in per_hour:
        per_key[r["subscription_key"]] = per_key.get(r["subscription_key"], 0) + int(r["requests"])
    want_key = {}
    for e in expected.values():
        want_key[e["subscription_key"]] = want_key.get(e["subscription_key"], 0) + 1
    assert per_key == want_key, f"usage per key per hour {per_key}, sent {want_key}"
    return raw, final, lost_lines


def check_cloudevents(out_file, stats, expected):
    assert stats["rejected_batches"] == 0, f"the SDK refused a batch: {stats}"
    assert stats["events"] == len(expected), f"receiver: {stats}, sent {len(expected)}"
    with open(out_file) as f:
        events = [json.loads(line) for line in f]
    seen = set()
    for ce in events:
        data = ce["data"]
        want = expected[data["api_path"]]
        seen.add(data["api_path"])
        # the configured http.cloudevents.source and .type, as the SDK read them
        assert ce["specversion"] == "1.0" and ce["source"] == CE_SOURCE, ce
        assert ce["type"] == CE_TYPE and ce["datacontenttype"] == "application/json", ce
        assert ce["id"] == data["id"], ce
        assert ce["subject"] == want["subscription_key"] == data["subscription_key"], ce
        # `time` went through the SDK's datetime and back: the same instant as the event's.
        assert (datetime.datetime.fromisoformat(ce["time"].replace("Z", "+00:00"))
                == datetime.datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))), ce
        for field, value in want.items():
            assert data[field] == value, f"{data['api_path']}: {field} {data[field]!r} != {value!r}"
    assert seen == set(expected), f"missing events: {sorted(set(expected) - seen)[:5]}"
    return len(events)


def settled_counters(procs, admin_port, total, want_named):
    """Envoy's usage_filter counters once `total` events are delivered under the plain names,
    nothing is held, and the named (fan-out) ones say `want_named`."""
    def settled():
        procs.check()
        c = envoy_counters(admin_port)
        named = {k: c.get(k) for k in want_named}
        return (c.get("events_delivered") == total and c.get("buffer_events") == 0
                and named == want_named and c)
    try:
        return wait_for(settled, 30, "Envoy's usage_filter counters to settle")
    except AssertionError:
        raise AssertionError(f"Envoy's counters {envoy_counters(admin_port)}, want "
                             f"{total} delivered and {want_named}")


def prometheus_config(tmp, admin_port):
    with open(os.path.join(EX, "prometheus", "prometheus.yml")) as f:
        cfg = yaml.safe_load(f)
    cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [os.path.join(EX, "prometheus", r) for r in cfg["rule_files"]]
    cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{admin_port}"]
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def prom_query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    result = json.loads(http(url)[1])["data"]["result"]
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}


def promtool_rules():
    d = os.path.join(EX, "prometheus")
    for argv in (["promtool", "check", "rules", "usage-filter.rules.yml"],
                 ["promtool", "test", "rules", "usage-filter.rules.test.yml"]):
        r = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{' '.join(argv)}:\n{r.stdout}{r.stderr}"


# ---------------------------------------------------------------- the run

def test_receivers():
    envoy = envoy_binary()
    rng = random.Random(12)
    procs = Processes()
    tmp = procs.dir
    relay = None
    try:
        # Envoy's listeners and admin on port 0 (their ports read back once it runs)
        ports = {k: 0 for k in ("admin", "api", "api_lossy", "api_ce", "api_fanout", "api_fanout_q")}
        procs.start_upstream()
        ports["upstream"] = procs.ports["upstream"]
        ce_out = os.path.join(tmp, "events.ce.ndjson")
        procs.spawn("cloudevents", [sys.executable, os.path.join(EX, "cloudevents", "receiver.py"),
                                    "--listen", "127.0.0.1:0", "--out", ce_out])
        ports["ce"] = procs.listening_on("cloudevents", "cloudevents receiver listening on ")
        ch = ClickHouse(procs)
        ports["clickhouse"] = ch.port
        with open(os.path.join(EX, "clickhouse", "schema.sql")) as f:
            # Comments off (they hold semicolons), then one statement at a time.
            text = "\n".join(line.split("--")[0] for line in f.read().splitlines())
        for sql in filter(str.strip, text.split(";")):
            ch.query(sql)
        # Test only: no background merge may collapse the retried rows before we count them.
        ch.query("SYSTEM STOP MERGES")
        relay = LossyRelay(ch.port)
        ports["relay"] = relay.port
        procs.start_collector()
        ports["collector"] = procs.ports["collector"]
        procs.faults({"reject_when_path_contains": fanout.POISON})

        config = os.path.join(tmp, "envoy.yaml")
        with open(config, "w") as f:
            yaml.safe_dump(envoy_config(ports), f)
        auth = "Basic " + base64.b64encode(f"{WRITER}:{WRITER_PASSWORD}".encode()).decode()
        admin_file = procs.path("admin.address")
        procs.spawn("envoy", [envoy, "-c", config, "--concurrency", "2", "--disable-hot-restart",
                              "--admin-address-path", admin_file, "--log-level", "warn"],
                    env=dict(os.environ, CLICKHOUSE_AUTH=auth))

        def admin():
            procs.alive("envoy")
            text = open(admin_file).read().strip()
            return text if text.endswith(tuple("0123456789")) else None
        ports["admin"] = int(wait_for(admin, 30, "Envoy's admin address").rsplit(":", 1)[1])
        wait_for(lambda: procs.alive("envoy") and http(f"http://127.0.0.1:{ports['admin']}/ready")[0] == 200,
                 60, "Envoy ready")
        listeners = json.loads(http(f"http://127.0.0.1:{ports['admin']}/listeners?format=json")[1])
        for listener in listeners["listener_statuses"]:
            ports[listener["name"]] = listener["local_address"]["socket_address"]["port_value"]

        def start_prometheus():
            ports["prometheus"] = free_port()
            procs.spawn("prometheus", ["prometheus", f"--config.file={prometheus_config(tmp, ports['admin'])}",
                                       f"--storage.tsdb.path={tmp}/prometheus",
                                       f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])
            wait_for(lambda: procs.alive("prometheus")
                     and http(f"http://127.0.0.1:{ports['prometheus']}/-/ready")[0] == 200, 60, "Prometheus ready")
        start_on_free_ports(start_prometheus, "Prometheus")
        wait_for(lambda: http(f"http://127.0.0.1:{ports['ce']}/stats")[0] == 200, 10, "the CloudEvents receiver")

        t0 = time.time()
        direct = metered_requests(ports["api"], "ch", N_CLICKHOUSE, rng)
        lossy = metered_requests(ports["api_lossy"], "lossy", N_LOSSY, rng)
        ce = metered_requests(ports["api_ce"], "ce", N_CE, rng)
        fan = metered_requests(ports["api_fanout"], "fan", fanout.N_FAN, rng, fanout.POISONED_FAN)
        fanq = metered_requests(ports["api_fanout_q"], "fanq", fanout.N_FANQ, rng, fanout.POISONED_FANQ)
        unkeyed_requests(ports["api"], N_UNKEYED)
        t1 = time.time()
        total = N_CLICKHOUSE + N_LOSSY + N_CE
        n_fan = len(fan) + len(fanq)
        n_fan_sound = len(fanout.sound(fan)) + len(fanout.sound(fanq))
        want_named = fanout.expected_counters(n_fan_sound, n_fan, n_fan - n_fan_sound)

        counters = settled_counters(procs, ports["admin"], total, want_named)
        # captured once per event, whatever the destinations; the unkeyed made none
        assert counters["events_captured"] == total + n_fan, counters
        assert counters["batch_retries"] == 1, counters  # the one lost answer
        for name in ("events_dropped_buffer_full", "events_dropped_send_failed",
                     "batches_failed", "callouts_refused"):
            assert counters[name] == 0, counters

        raw, final, dup = check_clickhouse(ch, {**direct, **fan, **fanq}, lossy, relay, t0, t1)
        print(f"  ClickHouse: {final} events (FINAL, = uniqExact(id), = requests); {raw} rows "
              f"stored, the retried batch's {dup} twice, {final} after the merge; fields and "
              "usage per key per hour checked")
        fanout.check(procs, ch, {**fan, **fanq}, want_named)

        stats = json.loads(http(f"http://127.0.0.1:{ports['ce']}/stats")[1])
        n_ce = check_cloudevents(ce_out, stats, ce)
        # The SDK's check has teeth: a batch with an event without `source` is refused.
        bad = json.dumps([{"specversion": "1.0", "id": "x1", "type": "api.usage", "data": {}}])
        try:
            http(f"http://127.0.0.1:{ports['ce']}/events", bad.encode(),
                 {"content-type": "application/cloudevents-batch+json"}, "POST")
            raise AssertionError("the receiver accepted a CloudEvent without source")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and b"source" in e.read(), e
        print(f"  CloudEvents SDK: {n_ce} events in {stats['batches']} batches, every one valid, "
              "id/source/type/subject/time/data checked; an event without source refused")

        # Prometheus: the scraped series equal the receivers' counts.
        receivers_total = final - n_fan + n_ce
        want = {"usage_filter_events_captured": total + n_fan,
                "usage_filter_events_delivered": receivers_total,
                "usage_filter_billing_events_delivered": n_fan_sound,
                "usage_filter_billing_events_dropped_rejected": n_fan - n_fan_sound,
                "usage_filter_analytics_events_delivered": n_fan,
                "usage_filter_batch_retries": 1, "usage_filter_buffer_events": 0,
                "usage_filter_events_dropped_buffer_full": 0,
                "usage_filter_events_dropped_send_failed": 0}

        def scraped():
            procs.check()
            got = {}
            for name in want:
                series = prom_query(ports["prometheus"], name)
                if len(series) != 1:
                    return None
                got[name] = next(iter(series.values()))
            return got if got == want else None
        try:
            wait_for(scraped, 20, "Prometheus to scrape the settled counters", interval=0.25)
        except AssertionError:
            raise AssertionError(f"Prometheus has {[(n, prom_query(ports['prometheus'], n)) for n in want]}, "
                                 f"want {want}")
        # The buffer alert divides by Envoy's own concurrency gauge: it must exist.
        assert list(prom_query(ports["prometheus"], "envoy_server_concurrency").values()) == [2.0]
        rules = json.loads(http(f"http://127.0.0.1:{ports['prometheus']}/api/v1/rules")[1])
        loaded = {r["name"]: r for g in rules["data"]["groups"] for r in g["rules"]}
        assert set(loaded) == {"UsageEventsDropped", "UsageSendFailuresRising",
                               "UsageBufferAbove80Percent"}, loaded.keys()
        for name, r in loaded.items():
            assert r["health"] == "ok", r
        firing = [a for a in json.loads(http(f"http://127.0.0.1:{ports['prometheus']}/api/v1/alerts")[1])
                  ["data"]["alerts"] if a["labels"]["alertname"] == "UsageEventsDropped"]
        assert not firing, firing
        print(f"  Prometheus: usage_filter_events_delivered = {receivers_total} = ClickHouse "
              f"{final - n_fan} + CloudEvents {n_ce}; captured {total + n_fan}, retries 1, drops 0; "
              f"usage_filter_billing_events_delivered {n_fan_sound}, "
              f"usage_filter_analytics_events_delivered {n_fan}; "
              "the three alerting rules loaded and healthy")
    except AssertionError:
        for name in procs.procs:
            print(f"--- {name} log (last lines):\n{procs.log(name)}", file=sys.stderr)
        raise
    finally:
        procs.close()
        if relay:
            relay.close()


def test_prometheus_rules():
    promtool_rules()
    print("  promtool check rules and promtool test rules (examples/prometheus) pass")


TESTS = [test_prometheus_rules, test_receivers]


if __name__ == "__main__":
    runner.main(TESTS, "e2e-receivers")
