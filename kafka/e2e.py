#!/usr/bin/env python3
"""End-to-end tests of Caddy → usage-agent → Kafka: real Caddy 2.11.7 (caddy/Caddyfile.beside)
in front of the demo upstream, the real agent (dist/usage-agent with kafka/usage-agent.json:
`kafka-rest`, keyed by the `organization_id` attribute, read from the `x-organization-id`
header) following Caddy's access log and producing to a real tansu broker (kafka/install-tansu.sh,
durable sqlite:// storage, a topic of 3 partitions) through `--cluster kafka=kafka://…/TOPIC`.
What the broker holds is read back with kafka-python (kafka/install-client.sh), a client
independent of the agent's librdkafka. Scenarios:
- exactly once: every keyed request one record, once by event id; the record key is the
  organization as raw UTF-8 (no key without one); all of one key in one partition, the partition
  Java's client picks (murmur2) — kafka-python computes it here;
- the broker killed (SIGKILL) and restarted mid-run on its data: nothing lost, a repeat only as
  the same event id (with `?idempotence=false`: with the idempotent producer tansu 0.6 sometimes
  panics after the restart, see test_broker_restart_mid_run_idempotent);
- the broker down when the agent starts: the agent waits (nothing lost, nothing dropped) and
  delivers once it is up;
- Envoy → the agent's `--listen-http` (kafka/envoy-filter.json in envoy/envoy.yaml, the
  `collector` cluster pointed at the agent) → tansu: every event once by id, keyed; and the
  broker restarted mid-run: nothing lost within the filter's retry budget, repeats by id only.
Run with the venv's python (kafka/e2e.sh). Ends with `kafka e2e: N passed, M failed`.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "caddy"))
from e2e_lib import free_port, runner, wait_for  # noqa: E402
from e2e_lib.procs import ROOT  # noqa: E402

from agent_checks import AGENT, WASM, books, idle, metrics, require_binaries  # noqa: E402
from stack import CaddyStack, beside, caddy_binary  # noqa: E402

from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.partitioner.default import murmur2  # noqa: E402

TANSU = os.path.join(ROOT, ".tools", "tansu", "bin", "tansu")
CONFIG = os.path.join(HERE, "usage-agent.json")
ENVOY_FILTER = os.path.join(HERE, "envoy-filter.json")
TOPIC = "usage"
PARTITIONS = 3
ORGS = ["org-acme", "org-globex", "org-initech", "org-umbrella", "org-hooli", "org-wayne"]


class KafkaStack(CaddyStack):
    prefix = "usage-kafka-e2e-"
    keep_env = "KAFKA_E2E_KEEP"

    def start_broker(self, create_topic=True):
        """tansu on a reserved port (the same one again on a restart), in its own data folder
        (the sqlite path is relative to the working directory)."""
        data = self.path("tansu")
        os.makedirs(data, exist_ok=True)
        port = self.ports.setdefault("kafka", free_port())
        url = f"tcp://127.0.0.1:{port}"
        self.spawn("broker", ["/bin/sh", "-c", 'cd "$0" && exec "$@"', data, TANSU, "broker",
                              "--listener-url", url, "--advertised-listener-url", url,
                              "--storage-engine", "sqlite://tansu.db"],
                   env=dict(os.environ, RUST_LOG=os.environ.get("TANSU_LOG", "warn")))
        self.wait_port(port, "broker")
        if create_topic and not self.topic_made:
            subprocess.run([TANSU, "topic", "create", "--broker", url, "--partitions", str(PARTITIONS), TOPIC],
                           check=True, capture_output=True, timeout=30)
            self.topic_made = True

    topic_made = False

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.ports['kafka']}"

    via_envoy = False

    def client_port(self):
        return self.ports["listener"] if self.via_envoy else self.ports["caddy"]

    def kafka_url(self, query=""):
        return f"kafka://{self.bootstrap}/{TOPIC}" + (f"?{query}" if query else "")

    def start_rest_proxy(self, query=""):
        """The agent as Envoy's Kafka REST endpoint (--listen-http on port 0, no log read):
        Envoy's `collector` cluster points at it."""
        self.spawn("relay", [AGENT, "--listen-http", "127.0.0.1:0", "--cluster", f"kafka={self.kafka_url(query)}",
                             "--metrics", "127.0.0.1:0"])
        self.ports["collector"] = self.listening_on("relay", "usage-agent: kafka-rest on http://")
        self.ports["relay_metrics"] = self.listening_on("relay", "usage-agent: metrics at http://")

    def relay_metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['relay_metrics']}/metrics", timeout=5) as r:
            text = r.read().decode()
        return {k: int(float(v)) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l and l[0] != "#")}

    def start_agent(self, query=""):
        url = f"kafka://{self.bootstrap}/{TOPIC}" + (f"?{query}" if query else "")
        args = [AGENT, "--wasm", WASM, "--config", CONFIG, "--cluster", f"kafka={url}",
                "--follow", self.path("access.log"), "--state", self.path("agent-state.json"),
                "--metrics", "127.0.0.1:0"]
        self.spawn("agent", args)
        self.ports["metrics"] = self.listening_on("agent", "usage-agent: metrics at http://")

    def records(self):
        """Every record of the topic, from the start of each partition to its end offset:
        (partition, key bytes or None, the event)."""
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                          request_timeout_ms=10000)
        try:
            tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            end = c.end_offsets(tps)
            out = []
            deadline = time.time() + 30
            while any(c.position(tp) < end[tp] for tp in tps):
                assert time.time() < deadline, f"could not read to the end offsets {end}"
                for tp, msgs in c.poll(timeout_ms=500).items():
                    for m in msgs:
                        if m.offset < end[tp]:
                            out.append((tp.partition, m.key, json.loads(m.value)))
            return out
        finally:
            c.close()


def plan(n, prefix, start=0):
    """n keyed GETs with distinct paths; every 10th without an organization."""
    return [{"api_path": f"/{prefix}/{i}", "key": f"key-{i % 5}",
             "org": None if i % 10 == 9 else ORGS[i % len(ORGS)]} for i in range(start, start + n)]


def send(st, reqs, workers=8):
    def run(chunk):
        for p in chunk:
            h = {"x-organization-id": p["org"]} if p["org"] else None
            got, _ = st.request("GET", f"{p['api_path']}?status=200&bytes=10", p["key"], headers=h)
            assert got == 200, (p, got)
    chunks = [reqs[i::workers] for i in range(workers)]
    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def java_partition(key):
    """The partition Java's producer (and librdkafka's murmur2_random) picks for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def check(st, reqs, allow_repeats=False):
    """Each planned request has its record, once by event id (a repeat only as the same id when
    allowed); the key is the organization (raw UTF-8) or none; one key, one partition: Java's.
    Returns the number of repeated records."""
    recs = st.records()
    by_path = {}
    for part, key, e in recs:
        by_path.setdefault(e["api_path"], []).append((part, key, e))
    want = {p["api_path"]: p for p in reqs}
    assert set(by_path) == set(want), \
        f"missing {sorted(set(want) - set(by_path))[:5]}, unexpected {sorted(set(by_path) - set(want))[:5]}"
    repeats = 0
    for path, got in by_path.items():
        ids = {e["id"] for _, _, e in got}
        assert len(ids) == 1, f"{path}: {len(got)} records with different ids {ids}"
        repeats += len(got) - 1
        p = want[path]
        for part, key, e in got:
            assert e["subscription_key"] == p["key"], e
            assert e.get("organization_id") == p["org"], e
            if p["org"] is None:
                assert key is None, (path, key)
            else:
                assert key == p["org"].encode(), (path, key)
                assert part == java_partition(key), (path, key, part, java_partition(key))
    assert allow_repeats or repeats == 0, f"{repeats} records repeated"
    keys = {}
    for part, key, _ in recs:
        if key is not None:
            keys.setdefault(key, set()).add(part)
    assert all(len(ps) == 1 for ps in keys.values()), keys
    assert len(set().union(*keys.values())) > 1, f"every key on one partition: {keys}"
    return repeats


def settled(st, n):
    """The agent idle with n events delivered (its books balanced)."""
    def ok():
        if not idle(st):
            return None
        m = metrics(st)
        return m if m["usage_filter_events_delivered"] >= n else None
    m = wait_for(ok, 60, f"{n} events delivered and the agent idle")
    assert m["usage_filter_events_dropped_buffer_full"] == 0 and m["usage_filter_events_dropped_send_failed"] == 0, m
    assert books(m)[0] == books(m)[1], m
    return m


def envoy_settled(st, n):
    """Envoy's filter idle with n events delivered, none dropped, its books balanced."""
    def ok():
        m = st.metrics()
        return m if m.get("events_delivered", 0) >= n and m.get("buffer_events", 1) == 0 else None
    m = wait_for(ok, 60, f"{n} events delivered by Envoy's filter and its buffer empty")
    assert m["events_dropped_buffer_full"] == 0 and m["events_dropped_send_failed"] == 0, m
    assert m["events_captured"] == m["events_delivered"], m
    return m


def envoy_stack(query=""):
    """tansu, the agent as Envoy's Kafka REST endpoint, Envoy (envoy/envoy.yaml with
    kafka/envoy-filter.json as the plugin configuration) in front of the demo upstream."""
    st = KafkaStack()
    st.via_envoy = True
    try:
        st.start_upstream()
        st.start_broker()
        st.start_rest_proxy(query)
        with open(ENVOY_FILTER) as f:
            st.start_envoy(json.load(f))
    except BaseException:
        st.close()
        raise
    return st


def stack():
    st = KafkaStack()
    try:
        st.start_upstream()
        st.start_caddy(lambda s: beside(s, s.path("access.log")))
    except BaseException:
        st.close()
        raise
    return st


# ---------------------------------------------------------------- scenarios

def test_exactly_once_keyed_by_organization():
    """600 keyed requests (and 30 unkeyed ones, which make no event): 600 records, each event
    once, keyed by organization, each organization in the partition murmur2 gives it."""
    st = stack()
    try:
        st.start_broker()
        st.start_agent()
        reqs = plan(600, "once")
        send(st, reqs)
        for i in range(30):
            got, _ = st.request("GET", f"/anon/{i}?status=200&bytes=1")
            assert got == 200, got
        m = settled(st, len(reqs))
        assert m["usage_filter_events_delivered"] == len(reqs), m
        check(st, reqs)
    finally:
        st.close()


def test_broker_restart_mid_run():
    """The broker is killed (SIGKILL) while Caddy serves and restarted 6 s later on its data
    (longer than librdkafka's message timeout, 4.5 s: some callouts fail and the filter retries
    them): every event arrives; what was produced twice (acknowledged but the answer lost) is
    the same event id. The producer is not idempotent here (`?idempotence=false`; acks=all still): see
    test_broker_restart_mid_run_idempotent."""
    restart_mid_run(os.environ.get("KAFKA_E2E_QUERY", "idempotence=false"))


def restart_mid_run(query):
    st = stack()
    try:
        st.start_broker()
        st.start_agent(query)
        reqs = plan(1500, "restart")
        # pace: 50 requests at a time, 20 ms apart
        sender = threading.Thread(target=lambda: [send(st, reqs[i:i + 50], workers=4) or time.sleep(0.02)
                                                  for i in range(0, len(reqs), 50)])
        sender.start()
        wait_for(lambda: metrics(st)["usage_filter_events_delivered"] >= 300, 30, "the first 300 delivered")
        st.kill("broker", signal.SIGKILL)
        at_kill = metrics(st)["usage_filter_events_delivered"]
        # The broker stays down longer than librdkafka's message timeout (4.5 s), so callouts
        # fail and the filter retries them (asserted below).
        # pace: the outage, 6 s
        time.sleep(6)
        st.start_broker()
        sender.join()
        m = settled(st, len(reqs))
        repeats = check(st, reqs, allow_repeats=True)
        print(f"  delivered at the kill: {at_kill}; batch retries: {m['usage_filter_batch_retries']}; "
              f"records repeated (same id): {repeats}", flush=True)
        assert at_kill < len(reqs), "the kill came after the last event: the scenario tested nothing"
        assert m["usage_filter_batch_retries"] > 0, f"no callout failed while the broker was down: {m}"
    finally:
        st.close()


def test_broker_down_at_start():
    """The agent starts while no broker listens: it reads, holds and retries (nothing dropped);
    once the broker is up every event arrives, once."""
    st = stack()
    try:
        st.ports["kafka"] = free_port()
        st.start_agent()
        reqs = plan(300, "down")
        send(st, reqs)
        wait_for(lambda: metrics(st)["usage_filter_batch_retries"] >= 2, 30, "failed attempts")
        m = metrics(st)
        assert m["usage_filter_events_delivered"] == 0, m
        assert m["usage_filter_events_dropped_send_failed"] == 0, m
        st.start_broker()
        settled(st, len(reqs))
        check(st, reqs)
    finally:
        st.close()


def test_envoy_through_listen_http_exactly_once():
    """Envoy's filter (kafka-rest to its `collector` cluster) → the agent's --listen-http →
    tansu: 600 keyed requests, 600 records, each event once, keyed by organization in murmur2's
    partition; the agent answered 200 only for what the broker acknowledged, and a SIGTERM with
    nothing in flight stops it at once with status 0."""
    st = envoy_stack()
    try:
        reqs = plan(600, "envoy")
        send(st, reqs)
        for i in range(30):
            got, _ = st.request("GET", f"/anon/{i}?status=200&bytes=1")
            assert got == 200, got
        m = envoy_settled(st, len(reqs))
        assert m["events_delivered"] == len(reqs), m
        check(st, reqs)
        r = st.relay_metrics()
        assert r["usage_agent_http_records_acknowledged_total"] == len(reqs), r
        assert sum(v for k, v in r.items() if k.startswith("usage_agent_http_requests_total{")
                   and 'status="200"' not in k) == 0, r
        # SIGTERM: nothing being answered, so the agent exits at once, with 0.
        t0 = time.time()
        st.kill("relay", signal.SIGTERM, timeout=10)
        assert st.procs["relay"].returncode == 0, st.stderr("relay")
        assert time.time() - t0 < 5, f"SIGTERM took {time.time() - t0:.1f} s with nothing in flight"
    finally:
        st.close()


def test_envoy_broker_restart_mid_run():
    """Envoy → --listen-http → tansu, the broker killed (SIGKILL) and restarted 6 s later
    while requests flow (longer than librdkafka's message timeout, 4.5 s, so some requests
    fail): the agent answers 503/504 for what was not acknowledged, the filter retries within
    its budget (kafka/envoy-filter.json: 10 attempts, backoff up to 2 s): every event arrives,
    a repeat only as the same id; Envoy's books show nothing dropped."""
    st = envoy_stack("idempotence=false")
    try:
        reqs = plan(1500, "envoy-restart")
        # pace: 50 requests at a time, 20 ms apart
        sender = threading.Thread(target=lambda: [send(st, reqs[i:i + 50], workers=4) or time.sleep(0.02)
                                                  for i in range(0, len(reqs), 50)])
        sender.start()
        wait_for(lambda: st.metrics().get("events_delivered", 0) >= 300, 30, "the first 300 delivered")
        st.kill("broker", signal.SIGKILL)
        at_kill = st.metrics()["events_delivered"]
        # pace: the outage, 6 s (longer than librdkafka's message timeout)
        time.sleep(6)
        st.start_broker()
        sender.join()
        m = envoy_settled(st, len(reqs))
        repeats = check(st, reqs, allow_repeats=True)
        r = st.relay_metrics()
        refused = {k: v for k, v in r.items() if k.startswith("usage_agent_http_requests_total{")
                   and 'status="200"' not in k}
        print(f"  delivered at the kill: {at_kill}; batch retries: {m['batch_retries']}; "
              f"answers not 200: {refused}; records repeated (same id): {repeats}", flush=True)
        assert at_kill < len(reqs), "the kill came after the last event: the scenario tested nothing"
        assert sum(refused.values()) > 0 and m["batch_retries"] > 0, \
            f"no request failed while the broker was down: the scenario tested no retry ({refused}, {m})"
    finally:
        st.close()


def test_broker_restart_mid_run_idempotent():
    """The restart scenario with the agent's default, idempotent producer. Not in `make test`:
    tansu 0.6's sqlite storage sometimes panics after the restart on the idempotent producer's
    requests (see docs/delivery.md#kafka); `KAFKA_E2E=all kafka/e2e.sh idempotent` runs it."""
    restart_mid_run("")


TESTS = [test_exactly_once_keyed_by_organization, test_broker_restart_mid_run, test_broker_down_at_start,
         test_envoy_through_listen_http_exactly_once, test_envoy_broker_restart_mid_run]
if os.environ.get("KAFKA_E2E") == "all":
    TESTS.append(test_broker_restart_mid_run_idempotent)

if __name__ == "__main__":
    caddy_binary()
    require_binaries()
    if not os.path.exists(TANSU):
        sys.exit(f"{TANSU} is missing: kafka/install-tansu.sh")
    runner.main(TESTS, "kafka e2e")
