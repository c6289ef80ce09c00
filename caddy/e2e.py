#!/usr/bin/env python3
"""End-to-end tests with Caddy 2.11.7 (the official build, caddy/install-caddy.sh) in front of
the demo upstream, delivering usage events to the reference collector, all over loopback.

Scenarios:
- in the path: Caddy (caddy/Caddyfile.inpath) → Envoy 1.40 with the filter (envoy/envoy.yaml,
  derived exactly as envoy/e2e.py does) → demo upstream.

Every Caddyfile is one of caddy/Caddyfile.* with this run's ports and paths substituted, so the
files the README documents are the files under test. Each scenario runs in its own temporary
directory (removed when it passes; kept when it fails, and with CADDY_E2E_KEEP=1); the
upstream, the collector and Envoy bind port 0, Caddy gets reserved ports. A new scenario:
build a `CaddyStack` (caddy/stack.py), start what it needs (`start_upstream`,
`start_collector`, `start_envoy`, `start_caddy(lambda st: caddyfile(...))`, or `spawn` for
another binary), send requests with `request`, read `collector_events`, and add the function
to TESTS.

Environment: USAGE_FILTER_WASM (default dist/usage_filter.wasm) is the filter Envoy loads.
Python standard library only. Ends with a line `caddy e2e: N passed, M failed`.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import ROOT, runner  # noqa: E402
from e2e_lib.envoy import envoy_binary, settled  # noqa: E402

from stack import CaddyStack, caddy_binary, caddyfile, check_events, exact_events, mixed_plan, send_plan, unkeyed  # noqa: E402,E501


# ---------------------------------------------------------------- scenarios

def inpath_stack():
    """Caddy (Caddyfile.inpath) → Envoy with the filter → demo upstream; collector."""
    st = CaddyStack()
    try:
        st.start_upstream()
        st.start_collector()
        st.start_envoy()
        st.start_caddy(lambda st: caddyfile("inpath", st.ports))
    except BaseException:
        st.close()
        raise
    return st


def test_inpath_exact_delivery():
    """N keyed requests through Caddy → Envoy → upstream give exactly N events with the right
    path (no query), method, key, status and sizes; unkeyed requests give none."""
    st = inpath_stack()
    try:
        plan = mixed_plan(300, seed=11, prefix="inpath")
        send_plan(st, plan)
        unkeyed(st, 40, "inpath-anon")
        settled(st, len(plan))  # the filter holds nothing more: anything extra would be there
        check_events(exact_events(st, len(plan)), plan)
    finally:
        st.close()


def test_inpath_caddy_errors_not_metered():
    """The in-path trade-off: with Envoy down, Caddy answers 502 itself and no event exists.
    Once Envoy is back, keyed requests are metered again."""
    st = inpath_stack()
    try:
        st.kill("envoy", signal.SIGTERM)
        for i in range(10):
            got, _ = st.request("GET", f"/down/{i}?status=200", "k")
            assert got == 502, f"Caddy answers 502 with Envoy down, got {got}"
        st.start_envoy()
        for i in range(5):
            got, _ = st.request("GET", f"/up/{i}?status=200", "k")
            assert got == 200, got
        settled(st, 5)
        events = exact_events(st, 5)
        assert all(e["api_path"].startswith("/up/") for e in events), events
    finally:
        st.close()


def test_fixture_matches_format():
    """caddy/testdata/access.log (real Caddy 2.11.7 lines) has the fields caddy/FORMAT.md
    documents, with the documented types."""
    path = os.path.join(ROOT, "caddy", "testdata", "access.log")
    with open(path) as f:
        entries = [json.loads(l) for l in f if l.strip()]
    assert len(entries) >= 20, len(entries)
    for e in entries:
        assert e["msg"] == "handled request" and e["logger"].startswith("http.log.access"), e
        assert isinstance(e["ts"], float) and isinstance(e["duration"], float), e
        for k in ("size", "bytes_read", "status"):
            assert isinstance(e[k], int), (k, e)
        r = e["request"]
        for k in ("method", "host", "uri", "proto", "remote_ip"):
            assert isinstance(r[k], str), (k, e)
        assert all(isinstance(v, list) for v in r["headers"].values()), e
        assert isinstance(e["resp_headers"], dict), e
    assert any("?" in e["request"]["uri"] for e in entries), "a query"
    assert any(e["request"]["method"] == "POST" and e["bytes_read"] > 0 for e in entries), "a POST with a body"
    assert any(e["status"] >= 400 for e in entries), "a non-2xx"
    assert any("X-Subscription-Key" not in e["request"]["headers"] for e in entries), "an unkeyed request"


TESTS = [test_fixture_matches_format, test_inpath_exact_delivery, test_inpath_caddy_errors_not_metered]

if __name__ == "__main__":
    caddy_binary()
    envoy_binary()
    runner.main(TESTS, "caddy e2e")
