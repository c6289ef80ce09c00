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
  the same event id (not in `make test` yet: tansu panics after the restart, see TESTS);
- the broker down when the agent starts: the agent waits (nothing lost, nothing dropped) and
  delivers once it is up.
Run with the venv's python (kafka/e2e.sh). Ends with `kafka e2e: N passed, M failed`.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

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

    def start_agent(self, compression=None):
        url = f"kafka://{self.bootstrap}/{TOPIC}" + (f"?compression={compression}" if compression else "")
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
    """The broker is killed (SIGKILL) while Caddy serves and restarted on its data once the
    filter has retried twice: every event arrives; what was produced twice (acknowledged but
    the answer lost) is the same event id."""
    st = stack()
    try:
        st.start_broker()
        st.start_agent()
        reqs = plan(1500, "restart")
        # pace: 50 requests at a time, 20 ms apart
        sender = threading.Thread(target=lambda: [send(st, reqs[i:i + 50], workers=4) or time.sleep(0.02)
                                                  for i in range(0, len(reqs), 50)])
        sender.start()
        wait_for(lambda: metrics(st)["usage_filter_events_delivered"] >= 300, 30, "the first 300 delivered")
        st.kill("broker", signal.SIGKILL)
        m = metrics(st)
        at_kill = m["usage_filter_events_delivered"]
        # the broker stays down until the filter has felt it (a condition, not a pause)
        wait_for(lambda: metrics(st)["usage_filter_batch_retries"] >= m["usage_filter_batch_retries"] + 2, 30,
                 "retries while the broker is down")
        st.start_broker()
        sender.join()
        m = settled(st, len(reqs))
        repeats = check(st, reqs, allow_repeats=True)
        print(f"  delivered at the kill: {at_kill}; batch retries: {m['usage_filter_batch_retries']}; "
              f"records repeated (same id): {repeats}", flush=True)
        assert at_kill < len(reqs), "the kill came after the last event: the scenario tested nothing"
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


# test_broker_restart_mid_run fails today and is left out of `make test`: after the SIGKILL and
# restart, tansu 0.6's sqlite storage panics ("more or less than one row", tansu-storage
# src/lite.rs:503) on a request of the agent's idempotent producer and drops every connection,
# so nothing more is acknowledged (the agent holds and retries: nothing is lost, nothing
# delivered). Run it by name: `kafka/e2e.sh test_broker_restart` (with KAFKA_E2E=all).
TESTS = [test_exactly_once_keyed_by_organization, test_broker_down_at_start]
if os.environ.get("KAFKA_E2E") == "all":
    TESTS.insert(1, test_broker_restart_mid_run)

if __name__ == "__main__":
    caddy_binary()
    require_binaries()
    if not os.path.exists(TANSU):
        sys.exit(f"{TANSU} is missing: kafka/install-tansu.sh")
    runner.main(TESTS, "kafka e2e")
