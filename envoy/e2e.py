#!/usr/bin/env python3
"""End-to-end tests: the real Envoy 1.40 (V8) running dist/usage_filter.wasm in front of the
demo upstream (a proxied route, not direct_response), delivering to the reference collector,
all over loopback. Every scenario derives its Envoy configuration from envoy/envoy.yaml (or
envoy/envoy-singleton.yaml, envoy/envoy-ecds.yaml), the files README and docs/hosts/envoy.md
document, changing only ports and the filter's `configuration` value.

The suite is this file (delivery, faults, TLS) and envoy/e2e_lifecycle.py (shutdown, drain,
reconfiguration, shared_queue); envoy/fixtures.py holds the Front and the other
configurations. Processes, ports, waiting and the runner come from tests/e2e_lib (each
scenario is one `with EnvoyStack(...) as st:`; everything binds port 0; a scenario's files
are removed when it passes and named when it fails, kept always with ENVOY_E2E_KEEP=1).

Usage: envoy/e2e.py [name-substring ...]. Python standard library only (plus the `openssl`
command for the TLS scenario). Ends with a line `e2e: N passed, M failed`; a name matching no
scenario is an error.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import runner, wait_for  # noqa: E402
from e2e_lib.envoy import (TOKEN, UUID_RE, VEIL_FIELDS, EnvoyStack, accounting_holds, assert_no_replays,  # noqa: E402
                           check_batches, envoy_binary, envoy_config, parse_ts, settled)
from e2e_lib.procs import ROOT  # noqa: E402

import e2e_lifecycle  # noqa: E402  (envoy/, beside this file)
from fixtures import TLS_TRANSPORT, Front, make_certs, singleton_config  # noqa: E402


def exact_delivery(concurrency, n, seed):
    """N mixed requests through a proxied route: the collector holds exactly N events, each
    matching what the client sent and received, timed and dated within the client's own
    measurement of that request, every batch carrying the token and a batch id."""
    with EnvoyStack(concurrency=concurrency) as st:
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
        assert_no_replays(stats)
        assert stats["batches_without_id"] == 0, stats
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
    with EnvoyStack(filter_value=value) as st:
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
                time.sleep(0.002)  # pace: each load thread's rate
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
    with EnvoyStack(filter_value=value) as st:
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
    with EnvoyStack(filter_value={"enabled": True, "sinks": ["http"], "http": {"cluster": "collector", "batch_size": 0}},
               start_envoy=False) as st:
        env = dict(os.environ, COLLECTOR_TOKEN=TOKEN)
        p = subprocess.run([envoy_binary(), "-c", st.config_path, "--disable-hot-restart", "--log-level", "warn"],
                           cwd=ROOT, env=env, capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        assert p.returncode != 0, "envoy must not start with a refused plugin"
        assert "http.batch_size" in err and "between 1 and" in err, err[-3000:]
        assert "Unable to create Wasm plugin" in err or "failed to load" in err, err[-3000:]


def test_log_sink_lines_on_stdout():
    """With the log sink to filter state, Envoy's stdout holds one JSON event per line and
    nothing else, each with the request's status, key and sizes; unkeyed and excluded requests
    print nothing."""
    with EnvoyStack(filter_value={"enabled": True, "sinks": ["log"], "log_output": "filter_state",
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
    with EnvoyStack(filter_value=value, front=lambda st: Front(st.ports["collector"])) as st:
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
            time.sleep(0.01)  # pace: one request every 10 ms
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


def test_collector_over_tls():
    """The collector behind TLS: Envoy's `collector` cluster with an UpstreamTlsContext (SNI
    collector.test, the test's own CA, the name checked). Each refused certificate first, 30
    requests each: one from another CA, then one from the right CA for another name
    (other.test): every callout fails the handshake, is retried, and the events are counted as
    failed to send (Envoy says why: fail_verify_error, then fail_verify_san), while proxied
    requests are answered as usual. Then the right certificate: every event arrives, with the
    ${COLLECTOR_TOKEN} bearer token, and the server saw the SNI."""
    value = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": 10, "flush_interval_ms": 100,
                      "retry": {"max_attempts": 2, "initial_backoff_ms": 50, "max_backoff_ms": 100}}}

    def front(st):
        st.tls = make_certs(st.dir)
        f = Front(st.ports["collector"], tls=st.tls["wrong-ca"])
        for ctx in st.tls.values():
            ctx.sni_callback = lambda sock, name, ctx: f.sni.append(name)
        return f

    def config(st, ports):
        return envoy_config(ports, value) + TLS_TRANSPORT.replace("CA_FILE", st.path("ca.pem"))

    with EnvoyStack(config_text=config, front=front) as st:
        bad = 0
        for cert, why in (("wrong-ca", "fail_verify_error"), ("wrong-name", "fail_verify_san")):
            st.front.tls = st.tls[cert]
            handshakes = st.front.handshake_failures
            for i in range(30):
                st.expect("GET", f"/tls-{cert}/{i}?status=200", "k", 200)
            bad += 30
            m = settled(st, bad)
            assert m["events_dropped_send_failed"] == bad and m["events_delivered"] == 0, \
                f"{cert}: Envoy must refuse the certificate, yet {m['events_delivered']} events were delivered: {m}"
            assert m["batch_retries"] == m["batches_failed"] >= 3, (cert, m)
            assert st.front.handshake_failures > handshakes, f"{cert}: the handshakes failed"
            said = st.stat(f"cluster.collector.ssl.{why}")
            assert said and said >= 1, f"{cert}: Envoy says why ({why}: {said})"
            print(f"  tls, {cert}: {m['batches_failed']} batches failed so far, "
                  f"{st.front.handshake_failures - handshakes} handshakes refused, {why} {said}", flush=True)
            assert st.collector_events() == [] and st.front.seen == [], cert

        st.front.tls = st.tls["good"]
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


def test_poisoned_events_cost_only_themselves():
    """The collector refuses with 400 any batch holding an event whose api_path contains
    "/poison/" (its `reject_when_path_contains` fault), as billing APIs refuse a batch over
    one bad event. In `local` and `shared_queue` mode: every sound event lands once, each
    poisoned one is dropped alone, counted in events_dropped_rejected and logged with its id;
    the books balance with dropped_rejected; the callouts stay within the stated bound."""
    local = {"enabled": True, "sinks": ["http"],
             "http": {"cluster": "collector", "headers": {"authorization": "${COLLECTOR_TOKEN}"},
                      "batch_size": 50, "flush_interval_ms": 200}}
    for mode, vm, kwargs in (("local", "usage_filter", {"filter_value": local}),
                             ("shared_queue", "usage_service", {"config_text": singleton_config(
                                 filter_http={"batch_size": 50}, service_http={"batch_size": 50})})):
        with EnvoyStack(**kwargs) as st:
            st.faults({"reject_when_path_contains": "/poison/"})
            n, poisoned = 400, {7, 123, 124, 250, 399}
            paths = [f"/p/{i}/poison/" if i in poisoned else f"/p/{i}/ok" for i in range(n)]
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda p: st.expect("GET", f"{p}?status=200", "k", 200), paths))
            m = settled(st, n)
            events = st.collector_events()
            got = sorted(e["api_path"] for e in events)
            assert got == sorted(p for p in paths if "poison" not in p), (mode, len(got))
            assert len({e["id"] for e in events}) == len(events)
            assert m["events_dropped_rejected"] == len(poisoned), (mode, m)
            assert m["events_delivered"] == n - len(poisoned) and m["events_dropped_send_failed"] == 0, m
            assert accounting_holds(m), m
            refused = [line for line in st.filter_log(vm) if "alone with status 400" in line]
            assert len(refused) == len(poisoned), (mode, refused)
            for line in refused:
                # the id said is the event's, as the collector named it in the answer's head
                said = re.search(r"refused event (\S+) alone", line).group(1)
                assert UUID_RE.match(said) and f'event \\"{said}\\"' in line and "/poison/" in line, line
            attempts = check_batches(st)
            rejected = [a for a in attempts if a["status"] == 400]
            # each batch of at most 50 with k poisoned events costs at most 2·k·⌈log2 50⌉ = 12·k
            # more callouts, all of them refused or accepted halves
            assert len(attempts) - m["batches_sent"] - len(rejected) == 0, attempts
            assert len(rejected) <= len(poisoned) * 12 + len(poisoned), (len(rejected), m)
            print(f"  poison, {mode}: {len(events)} delivered, {len(poisoned)} dropped alone, "
                  f"{len(rejected)} refused callouts, {m['batches_sent']} accepted", flush=True)


TESTS = [test_exact_delivery, test_exact_delivery_four_workers, test_collector_killed_under_load,
         test_collector_503_then_200, test_bad_plugin_config_is_refused, test_log_sink_lines_on_stdout,
         *e2e_lifecycle.TESTS, test_misbehaving_collectors, test_collector_over_tls,
         test_poisoned_events_cost_only_themselves]

if __name__ == "__main__":
    envoy_binary()
    runner.main(TESTS, "e2e", after=e2e_lifecycle.shutdown_summary)
