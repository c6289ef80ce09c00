"""Part of envoy/e2e.py's suite (run it there): a receiver that answers 413 to any batch of more
than LIMIT events (the reference collector's `reject_when_events_above` fault), with the filter's
`batch_size` at 100, in the real Envoy with the filter (see envoy/e2e.py). The filter splits a
refused batch in halves until they fit and lowers that destination's batch size for 60 s
(filter/src/isolate.rs, docs/delivery.md#isolating-a-refused-event)."""
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from e2e_lib import wait_for
from e2e_lib.envoy import (EnvoyStack, accounting_holds, assert_no_replays, check_batches, envoy_config,
                           settled)
from e2e_lib.procs import get_json

from fixtures import TwoCollectorStack, collector_b_cluster, singleton_config

LIMIT = 30
AUTH = {"authorization": "${COLLECTOR_TOKEN}"}
# Batches of 100 (a long flush interval: the batches are cut by size while the load runs).
BATCHING = {"batch_size": 100, "flush_interval_ms": 2000}
BOOKS = ("events_delivered", "events_dropped_buffer_full", "events_dropped_send_failed",
         "events_dropped_rejected", "buffer_events")


def send(st, prefix, n):
    """n keyed requests, 8 at a time; their paths."""
    paths = [f"{prefix}/{i}" for i in range(n)]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda p: st.expect("GET", f"{p}?status=200", "k", 200), paths))
    return paths


def check_sizes(attempts, what):
    """Every attempt at the 413 receiver was accepted with at most LIMIT events or refused with
    413 holding more; (accepted, refused)."""
    assert {a["status"] for a in attempts} <= {200, 413}, f"{what}: {attempts}"
    accepted = [a for a in attempts if a["status"] == 200]
    refused = [a for a in attempts if a["status"] == 413]
    assert all(a["events"] <= LIMIT for a in accepted), \
        f"{what}: an accepted batch above {LIMIT}: {max(a['events'] for a in accepted)}"
    assert all(a["events"] > LIMIT for a in refused), f"{what}: a 413 to a batch that fits: {refused}"
    return accepted, refused


def check_once(events, paths, what):
    """The collector's out file holds exactly the events of `paths`, each once by id; by path."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)) == len(paths), f"{what}: {len(ids)} events, {len(set(ids))} ids, sent {len(paths)}"
    by_path = {e["api_path"]: e for e in events}
    assert set(by_path) == set(paths), f"{what}: missing {sorted(set(paths) - set(by_path))[:5]}"
    return by_path


def test_a_receiver_answering_413_above_30_events_gets_everything():
    """The collector refuses with 413 any batch of more than 30 events; the filter cuts batches
    of 100. In `local` mode (one worker) and `shared_queue` mode, 400 requests, then 200 more:
    every event is at the collector exactly once by id (its duplicate counters 0), the books
    balance with events_dropped_rejected 0 and nothing failed or retried; every accepted batch
    holds at most 30 events and every 413 went to one of more; the first 400 met at least one
    413, and the next 200, within the 60 s the lowered batch size holds, met none."""
    local = {"enabled": True, "sinks": ["http"], "http": {"cluster": "collector", "headers": AUTH, **BATCHING}}
    for mode, kwargs in (("local", {"filter_value": local, "concurrency": 1}),
                         ("shared_queue", {"config_text": singleton_config(service_http=BATCHING)})):
        with EnvoyStack(**kwargs) as st:
            st.faults({"reject_when_events_above": LIMIT})
            first = send(st, "/big/a", 400)
            settled(st, len(first))
            accepted1, refused1 = check_sizes(check_batches(st), f"{mode}, first 400")
            assert refused1, f"{mode}: no batch of more than {LIMIT} was sent: {accepted1}"
            second = send(st, "/big/b", 200)
            n = len(first) + len(second)
            m = settled(st, n)
            attempts = check_batches(st)
            accepted, refused = check_sizes(attempts, mode)
            later = attempts[len(accepted1) + len(refused1):]
            assert refused == refused1, f"{mode}: 413s after the batch size was lowered: {later}"
            check_once(st.collector_events(), first + second, mode)
            stats = st.collector_stats()
            assert_no_replays(stats, f"the collector ({mode})")
            assert stats["faulted_batches"] == len(refused) and stats["events"] == n, (mode, stats)
            assert sum(a["events"] for a in accepted) == n, f"{mode}: accepted batches hold every event once"
            assert m["events_captured"] == n and m["events_delivered"] == n and accounting_holds(m), (mode, m)
            assert m.get("events_dropped_rejected", 0) == 0 and m["events_dropped_send_failed"] == 0, (mode, m)
            assert m["batches_failed"] == 0 and m.get("batch_retries", 0) == 0, (mode, m)
            assert m["batches_sent"] == len(accepted), (mode, len(accepted), m)
            print(f"  413 above {LIMIT}, {mode}: {n} events in {len(accepted)} batches (largest "
                  f"{max(a['events'] for a in accepted)}), {len(refused)} refused with 413 (sizes "
                  f"{sorted({a['events'] for a in refused}, reverse=True)}), none after the first {len(first)}",
                  flush=True)


def named_counters(st):
    """The filter's counters by name after `usage_filter.`: `events_captured`, and
    `<destination>.<counter>` for each destination of an `http` array."""
    with urllib.request.urlopen(f"{st.admin}/stats?format=json&filter=usage_filter", timeout=5) as r:
        stats = json.loads(r.read())["stats"]
    return {s["name"].split("usage_filter.", 1)[1]: s.get("value", 0) for s in stats if "name" in s}


def settled_named(st, n, names):
    """Waits until `n` events were captured, each destination holds none and its books balance
    (two reads in a row that agree); the counters."""
    last = [None]

    def quiet():
        c = named_counters(st)
        ok = c.get("events_captured") == n and all(
            c.get(f"{d}.buffer_events", 1) == 0 and n == sum(c.get(f"{d}.{k}", 0) for k in BOOKS) for d in names)
        same = ok and c == last[0]
        last[0] = c
        return c if same else None
    try:
        return wait_for(quiet, 30, f"both destinations to settle after {n} events")
    except AssertionError as e:
        raise AssertionError(f"{e}; the filter's counters last: {last[0]}") from None


def test_one_destination_answering_413_above_30_costs_the_other_nothing():
    """`http` an array of two destinations, both with batches of 100: `billing` (veil) to the
    collector refusing any batch of more than 30 events with 413, `analytics` (ndjson) to a
    second collector taking everything. 600 requests, two workers: each collector holds every
    event exactly once by id (duplicate counters 0), the same id for the same request at both;
    at billing every accepted batch holds at most 30 events and some were refused with 413; at
    analytics nothing was refused and batches above 30 were accepted (the lowered size is
    billing's alone); each destination's books balance with events_dropped_rejected 0."""
    http = [{"name": "billing", "cluster": "collector", "headers": AUTH, **BATCHING},
            {"name": "analytics", "cluster": "collector_b", "format": "ndjson", "headers": AUTH, **BATCHING}]
    value = {"enabled": True, "sinks": ["http"], "http": http}

    def config(st, ports):
        return envoy_config(ports, value) + collector_b_cluster(st)

    with TwoCollectorStack(config_text=config) as st:
        b_url = f"http://127.0.0.1:{st.ports['collector_b']}"
        st.faults({"reject_when_events_above": LIMIT})
        paths = send(st, "/two", 600)
        n = len(paths)
        c = settled_named(st, n, ("billing", "analytics"))
        billing = check_once(st.collector_events(), paths, "billing")
        analytics = check_once(st.collector_events(st.events_b), paths, "analytics")
        for p in paths:
            assert billing[p]["id"] == analytics[p]["id"], \
                f"{p}: {billing[p]['id']} at billing, {analytics[p]['id']} at analytics"
        accepted, refused = check_sizes(check_batches(st), "billing")
        assert refused, f"billing: no batch of more than {LIMIT} was sent: {accepted}"
        b_attempts = get_json(f"{b_url}/attempts")
        assert all(a["status"] == 200 for a in b_attempts), [a for a in b_attempts if a["status"] != 200]
        largest_b = max(a["events"] for a in b_attempts)
        assert largest_b > LIMIT, f"analytics' batches were cut at {largest_b}: billing's 413s lowered its size"
        assert sum(a["events"] for a in b_attempts) == n
        for where, stats in (("billing", st.collector_stats()), ("analytics", get_json(f"{b_url}/stats"))):
            assert_no_replays(stats, where)
        assert st.collector_stats()["faulted_batches"] == len(refused)
        for d, batches in (("billing", accepted), ("analytics", b_attempts)):
            assert c[f"{d}.events_delivered"] == n and c[f"{d}.events_dropped_rejected"] == 0, (d, c)
            assert c[f"{d}.events_dropped_send_failed"] == 0 and c[f"{d}.events_dropped_buffer_full"] == 0, (d, c)
            assert c[f"{d}.batches_failed"] == 0 and c[f"{d}.batch_retries"] == 0, (d, c)
            assert c[f"{d}.batches_sent"] == len(batches), (d, len(batches), c)
        print(f"  413 above {LIMIT} at one of two destinations: {n} events once at each; billing "
              f"{len(accepted)} batches (largest {max(a['events'] for a in accepted)}), {len(refused)} "
              f"refused with 413; analytics {len(b_attempts)} batches (largest {largest_b}), none refused",
              flush=True)


TESTS = [test_a_receiver_answering_413_above_30_events_gets_everything,
         test_one_destination_answering_413_above_30_costs_the_other_nothing]
