"""The fan-out part of `make e2e-receivers`: one filter, `http` an array of two destinations,
`billing` (veil to the reference collector, examples/collector) and `analytics` (ndjson to
ClickHouse, the `api` listener's own http section), in `local` mode (listener `api_fanout`)
and in `shared_queue` mode (listener `api_fanout_q`, its workers handing events to one
singleton service that sends to both).

The collector refuses with 400 every batch holding a path with POISON (its
`reject_when_path_contains` fault): the filter isolates those events at `billing` alone, while
`analytics` (ClickHouse) takes every event.
"""

import copy

POISON = "/poison/"
QUEUE = "usage_fanout"
# Per listener: (requests, the indices made poisoned)
N_FAN, POISONED_FAN = 60, {5, 41}
N_FANQ, POISONED_FANQ = 50, {0, 33, 49}


def destinations(clickhouse_http):
    """The `http` array: billing first, then the `api` listener's ClickHouse section."""
    analytics = copy.deepcopy(clickhouse_http)
    analytics["name"] = "analytics"
    analytics["batch_size"] = 40
    billing = {"name": "billing", "cluster": "collector", "path": "/api/v1/usage/events",
               "format": "veil", "batch_size": 25, "flush_interval_ms": 200}
    return [billing, analytics]


def add_to(cfg, api, filter_cfg, collector_port, endpoint, clickhouse_cluster):
    """Adds the collector cluster, the two fan-out listeners made from `api`, and the singleton
    service of the shared-queue one, to the Envoy config `cfg`."""
    res = cfg["static_resources"]
    collector = copy.deepcopy(clickhouse_cluster)
    collector["name"] = collector["load_assignment"]["cluster_name"] = "collector"
    endpoint(collector, collector_port)
    res["clusters"].append(collector)
    http = destinations(filter_cfg(api)["http"])
    for name, dispatcher in (("api_fanout", None), ("api_fanout_q", {"mode": "shared_queue", "queue": QUEUE})):
        listener = copy.deepcopy(api)
        listener["name"] = name
        listener["address"]["socket_address"]["port_value"] = 0
        c = filter_cfg(listener)
        c["http"] = copy.deepcopy(http)
        if dispatcher:
            c["dispatcher"] = dispatcher
        res["listeners"].append(listener)
    wasm = api["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
    service_vm = copy.deepcopy(wasm["vm_config"])
    service_vm["vm_id"] = "usage_service"
    cfg.setdefault("bootstrap_extensions", []).append({
        "name": "envoy.bootstrap.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
            "singleton": True,
            "config": {
                "name": "usage_service", "root_id": "usage_service", "vm_config": service_vm,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.Struct",
                    "value": {"sinks": ["http"], "http": copy.deepcopy(http),
                              "dispatcher": {"mode": "shared_queue", "service": True, "queue": QUEUE}},
                },
            },
        },
    })


def sound(expected):
    return {p: e for p, e in expected.items() if POISON not in p}


def check_collector(events, expected_fan, ch_ids):
    """The collector holds every sound fan-out event once and no poisoned one; each has the id
    ClickHouse holds for the same request (one event, one id, two receivers)."""
    want = sound(expected_fan)
    by_path = {}
    for e in events:
        assert e["api_path"] not in by_path, f"twice at the collector: {e['api_path']}"
        by_path[e["api_path"]] = e
    assert set(by_path) == set(want), (
        f"collector: missing {sorted(set(want) - set(by_path))[:5]}, "
        f"unexpected {sorted(set(by_path) - set(want))[:5]}")
    for path, e in by_path.items():
        for field, value in want[path].items():
            if field in e:
                assert e[field] == value, f"{path}: {field} {e[field]!r} != {value!r}"
        assert e["id"] == ch_ids[path], f"{path}: id {e['id']} at the collector, {ch_ids[path]} in ClickHouse"
    return len(by_path)


def expected_counters(n_fan_sound, n_fan, n_poisoned):
    """What Envoy's named counters must say once both destinations settled."""
    return {"billing.events_delivered": n_fan_sound, "billing.events_dropped_rejected": n_poisoned,
            "billing.events_dropped_send_failed": 0, "billing.events_dropped_buffer_full": 0,
            "billing.buffer_events": 0, "analytics.events_delivered": n_fan,
            "analytics.events_dropped_rejected": 0, "analytics.events_dropped_send_failed": 0,
            "analytics.events_dropped_buffer_full": 0, "analytics.buffer_events": 0}


def check(procs, ch, expected_fan, want_named):
    """Both receivers after the run: every fan-out event once in ClickHouse, every sound one
    once at the collector with the same id, the poisoned ones refused there (400)."""
    n_fan, n_sound = len(expected_fan), len(sound(expected_fan))
    ch_ids = {r["api_path"]: r["id"] for r in ch.rows(
        "SELECT api_path, id FROM usage.events FINAL WHERE api_path LIKE '/v1/fan%'")}
    assert len(ch_ids) == n_fan, f"ClickHouse has {len(ch_ids)} fan-out events, sent {n_fan}"
    n_coll = check_collector(procs.collector_events(), expected_fan, ch_ids)
    refused = [a for a in procs.collector_attempts() if a["status"] == 400]
    assert len(refused) >= n_fan - n_sound, refused
    print(f"  fan-out (local and shared_queue): {n_fan} events once each in ClickHouse, the "
          f"{n_coll} sound ones once each at the collector with the same ids, the "
          f"{n_fan - n_sound} poisoned refused there alone; named counters {want_named}")
