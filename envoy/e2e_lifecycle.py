"""Part of envoy/e2e.py's suite (run it there): shutdown, drain, runtime reconfiguration and
the shared_queue outage, each in the real Envoy with the filter (see envoy/e2e.py)."""
import hashlib
import http.client
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from e2e_lib import wait_for
from e2e_lib.envoy import (VEIL_FIELDS, EnvoyStack, accounting_holds, assert_no_replays, check_batches,
                           settled)
from e2e_lib.procs import get_json, post

from fixtures import TwoCollectorStack, ecds_config, singleton_config, write_ecds


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
        with EnvoyStack(**kwargs) as st:
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
        with EnvoyStack(**kwargs) as st:
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
            # The wait of docs/hosts/envoy.md (Shutdown), flush_interval_ms (1000) + a timer
            # period + the callout, as a condition: every event at the collector, then SIGTERM.
            drained = time.monotonic()
            wait_for(lambda: len(st.collector_events()) >= n + slow, 10, f"{mode}: every event after the drain")
            waited = time.monotonic() - drained
            st.stop_envoy()
            events = st.collector_events()
            paths = {e["api_path"] for e in events}
            assert len(events) == n + slow, f"{mode}: {len(events)} of {n + slow} delivered"
            assert all(f"/drain/slow/{i}" in paths for i in range(slow)), f"{mode}: in-flight events delivered"
            assert all(e["status_code"] == 201 for e in events if "/slow/" in e["api_path"])
            assert_no_replays(st.collector_stats(), f"{mode}: the collector")
            print(f"  drain ({mode}): every event at the collector {waited:.2f} s after the drain", flush=True)


def test_runtime_reconfiguration():
    """The plugin configuration changes three times in the running Envoy (ECDS from a watched
    file, envoy/envoy-ecds.yaml) while six clients keep sending, some requests in flight across
    each switch: format veil → ndjson → json, key mode raw → sha256 → redact, batch size,
    and a new collector. Then a configuration the filter refuses (batch_size 0). Every request
    is one event, delivered exactly once by id across both collectors, in the shape of the
    configuration that measured it; the events the old plugin held when it was replaced are
    delivered by it; the refused configuration is rejected (update_rejected, the key named in
    the log) and the last good one keeps serving; the books balance."""
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

    with TwoCollectorStack(config_text=ecds_config(configs[0])) as st:
        def events_b():
            return st.collector_events(st.events_b)

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
                time.sleep(0.003)  # pace: each load thread's rate
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
        assert_no_replays(st.collector_stats(), "collector")
        assert_no_replays(get_json(f"http://127.0.0.1:{st.ports['collector_b']}/stats"), "collector_b")
        assert m["events_delivered"] == n and accounting_holds(m), m
        assert m["events_dropped_send_failed"] == 0 and m["events_dropped_buffer_full"] == 0, m
        print(f"  reconfiguration: {n} events, by configuration {shapes}", flush=True)


def test_shared_queue_outage_with_the_service_full():
    """shared_queue mode, one worker, the collector down and the singleton service's buffer
    (50) full; requests one by one, so the worker hands them over in order. The counters are
    summed over the VMs (captured 200, held 50, dropped 150 whoever dropped), so the kept
    events say who dropped: the service keeps the oldest and drops the newest, so exactly
    /sq/0 to /sq/49 are kept; a worker dropping (its own buffer full between two hand-overs;
    its bound here, 10,000, is never near) leaves a gap instead. Proxied requests are answered
    as usual. When the collector is back, those 50 are delivered exactly once and the books
    balance: captured 200 = delivered 50 + dropped 150."""
    service_buffer, worker_buffer, n = 50, 10_000, 200
    service = {"buffer_size": service_buffer, "batch_size": 10, "flush_interval_ms": 100,
               "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 200}}
    with EnvoyStack(config_text=singleton_config(filter_http={"buffer_size": worker_buffer}, service_http=service),
                    concurrency=1) as st:
        port = st.ports["collector"]
        st.kill("collector")
        for i in range(n):
            st.expect("GET", f"/sq/{i}?status=200", "k", 200)

        # the buffer can be full before the first attempt has failed: wait for both
        def full():
            m = st.metrics()
            return m if m.get("events_captured") == n and m.get("batch_retries", 0) >= 1 \
                and m.get("buffer_events", 0) + m.get("events_dropped_buffer_full", 0) == n else None
        m = wait_for(full, 10, "every event held or dropped, and a failed attempt retried")
        held, dropped = m["buffer_events"], m["events_dropped_buffer_full"]
        assert m["events_delivered"] == 0 and m["events_dropped_send_failed"] == 0 and accounting_holds(m), m
        st.start_collector(port)
        m = settled(st, n)
        # Who dropped, from the events kept, before the counts (which only say how many).
        kept = sorted(int(e["api_path"].rsplit("/", 1)[1]) for e in st.collector_events())
        gaps = sorted(set(range(max(kept, default=-1) + 1)) - set(kept))
        if gaps:
            who = (f"{len(gaps)} between /sq/{gaps[0]} and /sq/{gaps[-1]} dropped while later ones were kept: by the "
                   f"worker (buffer_size {worker_buffer}) between two hand-overs, or by the service dropping older "
                   f"events than it kept")
        elif len(kept) < service_buffer:
            who = (f"the service held only {len(kept)} of its {service_buffer}: /sq/{len(kept)} on dropped before it, "
                   f"by the worker (buffer_size {worker_buffer})")
        else:
            who = "not the oldest: the service dropped older events than it kept"
        assert kept == list(range(service_buffer)), \
            f"the service keeps the oldest {service_buffer} (/sq/0 to /sq/{service_buffer - 1}), dropping the newest; " \
            f"kept {len(kept)} {kept}: {who} (held {held}, dropped {dropped} in the outage)"
        assert (held, dropped) == (service_buffer, n - service_buffer), \
            f"held {held}, dropped {dropped}: the service (buffer_size {service_buffer}) full, the rest dropped ({m})"
        assert (m["events_delivered"], m["events_dropped_buffer_full"], m["events_dropped_send_failed"]) \
            == (service_buffer, n - service_buffer, 0), m
        assert accounting_holds(m), m
        assert_no_replays(st.collector_stats())
        check_batches(st)
        print(f"  shared_queue outage: the service kept the oldest {held} (/sq/0 to /sq/{service_buffer - 1}, "
              f"delivered once after the outage) and dropped the newest {dropped}; the worker dropped none", flush=True)


SHUTDOWN_RESULT = {}


def shutdown_summary():
    for mode, (got, n, said) in SHUTDOWN_RESULT.items():
        print(f"shutdown ({mode}): {got} of {n} buffered events reached the collector after SIGTERM; filter said {said}")


TESTS = [test_sigterm_with_events_buffered, test_drain_then_sigterm_delivers_everything,
         test_runtime_reconfiguration, test_shared_queue_outage_with_the_service_full]
