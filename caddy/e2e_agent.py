#!/usr/bin/env python3
"""End-to-end tests of usage-agent beside Caddy 2.11.7: real Caddy (caddy/Caddyfile.beside)
in front of the demo upstream, the real agent (dist/usage-agent, plugin configuration
caddy/usage-agent.json) running dist/usage_filter.wasm on Caddy's JSON access log, and the
reference collector (target/release/collector), all over loopback.

Every check compares the collector's events with the entries Caddy itself wrote: the agent must
report exactly what Caddy served. Scenarios:
- following the file: N keyed requests (mixed methods, statuses, bodies, queries) and Caddy's
  own 499s and 502s give exactly N events with Caddy's figures; unkeyed requests give none;
- the same over `output net` (`soft_start`), the agent listening;
- a collector outage and its recovery: reading pauses when the filter's buffer is nearly full
  (the file is the buffer), nothing dropped, nothing duplicated, the books balance;
- the agent killed (SIGKILL) and restarted while Caddy keeps serving: every keyed entry
  arrives, a replayed entry carries the same event id (the collector counts and drops it);
- Caddy's own log rotation (roll_size 1 MiB) while serving: nothing lost;
- junk lines appended to the followed file: counted by kind, skipped, the rest delivered;
- SIGTERM with events buffered: all delivered before the agent exits 0, and a restart on the
  saved state sends nothing again.

The stack and traffic come from caddy/stack.py, the agent from caddy/agent_checks.py. Environment:
USAGE_FILTER_WASM (default dist/usage_filter.wasm), USAGE_AGENT (default dist/usage-agent).
Python standard library only. Ends with a line `caddy agent e2e: N passed, M failed`.
"""
import glob
import http.client
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import runner, wait_for  # noqa: E402

from agent_checks import (books, faults, idle, metrics, plugin_config, require_binaries, stack,  # noqa: E402
                          start_agent, wait_exact_events)
from stack import (KEY_HEADER, beside, caddy_binary, caddy_entries, check_against_caddy, check_events,  # noqa: E402
                   mixed_plan, plain, send_padded, send_plan, unkeyed)


# ---------------------------------------------------------------- scenarios

def test_file_exact_delivery():
    """Following the file: mixed keyed requests, unkeyed ones, and Caddy's own answers (499:
    the client gave up; 502: the upstream stopped) are each exactly what Caddy logged, one
    event per keyed entry."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log))
        start_agent(st, plugin_config(st, flush_interval_ms=200), follow=log)
        plan = mixed_plan(300, seed=21, prefix="file")
        send_plan(st, plan)
        unkeyed(st, 40, "file-anon")
        for i in range(3):  # the client gives up before the upstream answers: Caddy logs 499
            c = http.client.HTTPConnection("127.0.0.1", st.ports["caddy"], timeout=0.3)
            try:
                c.request("GET", f"/gone/{i}?status=200&bytes=5&delay_ms=2000", headers={KEY_HEADER: "key-gone"})
                c.getresponse()
                raise AssertionError("the upstream answered before the client gave up")
            except TimeoutError:
                pass
            finally:
                c.close()
        st.kill("upstream", signal.SIGTERM)
        for i in range(5):
            got, _ = st.request("POST", f"/down/{i}?status=200", "key-down", body=b"x" * 100)
            assert got == 502, got
        events = wait_exact_events(st, len(plan) + 3 + 5)
        entries = caddy_entries(log)
        check_against_caddy(events, entries)
        down = [e for e in events if e["api_path"].startswith("/down/")]
        # A refused dial never reads the body (bytes_read 0); the first request may meet a
        # pooled upstream connection that died, after Caddy sent the body (its size counts).
        assert len(down) == 5 and all(e["status_code"] == 502 for e in down), down
        assert sum(e["request_size"] == 0 for e in down) >= 4, down
        gone = [e for e in events if e["api_path"].startswith("/gone/")]
        assert len(gone) == 3 and all(e["status_code"] == 499 and e["response_size"] == 0 for e in gone), gone
        m = metrics(st)
        assert m["usage_agent_lines_read_total"] == len(entries), (m, len(entries))
        assert sum(v for k, v in m.items() if k.startswith("usage_agent_lines_malformed_total")) == 0, m
    finally:
        st.close()


def test_net_exact_delivery():
    """Over Caddy's `output net` (soft_start) to `usage-agent --listen`: the same checks."""
    st = stack()
    try:
        start_agent(st, plugin_config(st, flush_interval_ms=200), listen=True)
        tap = st.path("tap.log")
        st.start_caddy(lambda st: beside(st, st.path("unused.log"), net=True, tap=tap))
        plan = mixed_plan(300, seed=22, prefix="net")
        send_plan(st, plan)
        unkeyed(st, 40, "net-anon")
        events = wait_exact_events(st, len(plan))
        entries = caddy_entries(tap)
        assert len(entries) == len(plan) + 40, len(entries)
        check_against_caddy(events, entries)
        check_events(events, plan)
        assert not os.path.exists(st.path("unused.log")), "the site's log went over the network"
    finally:
        st.close()


def test_collector_outage_and_recovery():
    """The collector stops while Caddy serves more entries than the filter's buffer holds. The
    agent stops reading once the filter holds buffer_size - batch_size events (the rest waits in
    the file, and the gauges say so: bytes unread, a file pending), retries without limit, and
    once the collector is back every entry arrives exactly once: nothing dropped, the books
    balance, the gauges read 0."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log))
        buffer, batch = 300, 50
        cfg = plugin_config(st, buffer_size=buffer, batch_size=batch, flush_interval_ms=200,
                            retry={"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 300})
        start_agent(st, cfg, follow=log)
        before = plain(100, "before")
        send_padded(st, before)
        wait_exact_events(st, 100)
        st.kill("collector", signal.SIGKILL)
        during = plain(buffer + 80, "during")
        send_padded(st, during)
        # Reading paused: the filter holds at least buffer - batch events, the rest is unread.
        wait_for(lambda: metrics(st)["usage_filter_events_captured"] >= 100 + buffer - batch, 20, "the entries read")
        wait_for(lambda: metrics(st)["usage_filter_batch_retries"] >= 4, 10, "more failed attempts than max_attempts")
        m = metrics(st)
        assert m["usage_filter_events_dropped_buffer_full"] == 0 and m["usage_filter_events_dropped_send_failed"] == 0, m
        assert buffer - batch <= m["usage_filter_buffer_events"] <= buffer, m
        assert m["usage_filter_events_captured"] < 100 + len(during), f"reading did not pause: {m}"
        assert m["usage_agent_bytes_unread"] > 0 and m["usage_agent_files_pending"] == 1, \
            f"reading paused with {100 + len(during) - m['usage_filter_events_captured']} entries unread, yet " \
            f"usage_agent_bytes_unread {m['usage_agent_bytes_unread']}, files_pending {m['usage_agent_files_pending']}"
        assert books(m)[0] == books(m)[1], m
        st.start_collector()
        after = plain(50, "after")
        send_padded(st, after)
        want = 100 + len(during) + 50
        # The out file holds what both collector processes stored; ids are unique across both.
        events = wait_exact_events(st, want)
        assert {e["api_path"] for e in events} == {p["api_path"] for p in before + during + after}
        check_against_caddy(events, caddy_entries(log))

        def settled():
            m = metrics(st)
            return m if m["usage_filter_buffer_events"] == 0 and m["usage_agent_lines_behind"] == 0 else None
        m = wait_for(settled, 10, "an empty buffer")
        assert m["usage_filter_events_delivered"] == want, m
        assert m["usage_filter_events_dropped_buffer_full"] == 0 and m["usage_filter_events_dropped_send_failed"] == 0, m
        assert m["usage_agent_bytes_unread"] == 0 and m["usage_agent_files_pending"] == 0, m
        assert books(m)[0] == books(m)[1] == want, m
    finally:
        st.close()


def test_sigkill_restart_loses_nothing():
    """The agent is killed with SIGKILL while Caddy serves and the collector is slow (events
    held in memory), then restarted on its --state. Every keyed entry reaches the collector
    once; what was sent twice had the same event id (the collector counts the replay as a
    duplicate and stores it once)."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log))
        cfg = plugin_config(st, batch_size=20, flush_interval_ms=100, max_in_flight=1)
        faults(st, {"delay_ms": 150, "count": -1})
        start_agent(st, cfg, follow=log)
        plan = plain(900, "kill")
        # pace: 30 requests at a time, 20 ms apart
        sender = threading.Thread(target=lambda: [send_padded(st, plan[i:i + 30], workers=2) or time.sleep(0.02)
                                                  for i in range(0, len(plan), 30)])
        sender.start()
        wait_for(lambda: len(st.collector_events()) >= 100, 20, "the first events")
        behind = metrics(st)["usage_agent_lines_behind"]
        st.kill("agent", signal.SIGKILL)

        def served():
            with open(log, "rb") as f:
                return sum(1 for _ in f)
        # the scenario: the agent stays down while Caddy serves on (a condition, not a pause)
        at_kill = served()
        wait_for(lambda: served() >= min(at_kill + 60, len(plan)), 20, "Caddy serving on while the agent is down")
        start_agent(st, cfg, follow=log)
        sender.join()
        faults(st)
        # Idle: nothing behind, unread, held or in flight: anything extra would be there by then.
        wait_for(lambda: len(st.collector_events()) >= len(plan) and idle(st), 30, "every event, the agent idle")
        events = st.collector_events()
        # The collector stores an id once: a replay under a new id would be a second event.
        assert len(events) == len(plan) == len({e["id"] for e in events}), len(events)
        assert {e["api_path"] for e in events} == {p["api_path"] for p in plan}
        check_against_caddy(events, caddy_entries(log))
        stats = st.collector_stats()
        assert stats["invalid_events"] == 0, stats
        print(f"  held in memory at the kill: {behind}; replayed and dropped by id at the collector: "
              f"{stats['duplicate_events']}", flush=True)
        assert behind > 0, "the kill found nothing held: the scenario did not test a replay"
        # Only what was sent but unacknowledged at the kill (a callout in flight) can arrive
        # twice; 0 is right when the kill fell between two callouts.
        assert stats["duplicate_events"] <= behind, (behind, stats)
    finally:
        st.close()


def roll_until(st, log, prefix, rotations, start=0):
    """Padded keyed requests (about 2.7 KB of log each) until Caddy has rolled `log`
    `rotations` more times and ~100 entries went into the new file. Returns the plan."""
    def rolled():
        return len(glob.glob(st.path("access-*")))
    target = rolled() + rotations
    plan = []
    while rolled() < target:
        plan += plain(100, prefix, pad=2000, start=start + len(plan))
        send_padded(st, plan[-100:])
    plan += plain(100, prefix, pad=2000, start=start + len(plan))
    send_padded(st, plan[-100:])
    return plan


def test_rotation_while_serving():
    """Caddy rolls its log (Caddyfile.beside with roll_size 1MiB) three times while serving,
    then once more while the agent is down (SIGKILL); the agent follows every rotation and,
    restarted, resumes in the rolled file it was reading (roll_uncompressed: plain rolled
    files): nothing lost, nothing twice."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log, roll_size="1MiB", uncompressed=True))
        cfg = plugin_config(st, flush_interval_ms=200)
        start_agent(st, cfg, follow=log)
        plan = roll_until(st, log, "roll", 3)
        wait_exact_events(st, len(plan))
        st.kill("agent", signal.SIGKILL)
        plan += roll_until(st, log, "roll", 1, start=len(plan))
        start_agent(st, cfg, follow=log)
        wait_for(lambda: len(st.collector_events()) >= len(plan) and idle(st), 30, "every event, the agent idle")
        events = st.collector_events()
        entries = caddy_entries(st.path("access*"))
        assert len(entries) == len(plan), len(entries)
        check_against_caddy(events, entries)
        assert len({e["id"] for e in events}) == len(plan), "every entry once"
    finally:
        st.close()


def test_rotation_gzipped_while_serving():
    """Caddy's default rolling (the rolled file gzipped, its name removed) while the agent
    runs: the agent keeps the old file open and finishes it: nothing lost."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log, roll_size="1MiB"))
        assert "\t\t\troll_uncompressed" not in open(st.path("caddy.Caddyfile")).read()
        start_agent(st, plugin_config(st, flush_interval_ms=200), follow=log)
        plan = roll_until(st, log, "gz", 2)
        events = wait_exact_events(st, len(plan))
        wait_for(lambda: len(glob.glob(st.path("access-*.gz"))) >= 2, 10, "gzipped rolled files")
        entries = caddy_entries(st.path("access*"))
        assert len(entries) == len(plan), len(entries)
        check_against_caddy(events, entries)
    finally:
        st.close()


JUNK = [
    (b"this is not json\n", "not_json"),
    (b'{"level":"info","ts":1795720478.3,"logger":"http.log","msg":"server running"}\n', "not_access_entry"),
    (b'{"level":"info","ts":1795720478.3,"logger":"http.log.access.log0","msg":"handled request",'
     b'"request":{"method":"GET","uri":"/junk","headers":{"X-Subscription-Key":["k"]}},"status":"two hundred"}\n',
     "bad_field"),
    (b'{"ts":1795720478.3,"request":\n', "not_json"),
    (b"\x00\xff\xfe garbage\n", "not_json"),
]


def test_malformed_lines_mixed_in():
    """Junk lines appended to the followed file between Caddy's entries: counted by kind in
    the agent's metrics, logged once per kind, skipped; every entry around them delivered."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log))
        start_agent(st, plugin_config(st, flush_interval_ms=200), follow=log)
        plan = plain(200, "junk")
        counts = {}
        for i in range(0, len(plan), 20):
            send_padded(st, plan[i:i + 20], workers=4)
            line, kind = JUNK[(i // 20) % len(JUNK)]
            fd = os.open(log, os.O_WRONLY | os.O_APPEND)
            os.write(fd, line)
            os.close(fd)
            counts[kind] = counts.get(kind, 0) + 1
        events = wait_exact_events(st, len(plan))
        check_against_caddy(events, caddy_entries(log))
        m = metrics(st)
        for kind, n in counts.items():
            assert m[f'usage_agent_lines_malformed_total{{kind="{kind}"}}'] == n, (kind, m)
        assert m["usage_agent_lines_read_total"] == len(plan) + sum(counts.values()), m
        err = st.stderr("agent")
        assert err.count("skipping a malformed line") == len(counts), err
    finally:
        st.close()


def test_sigterm_delivers_buffered():
    """Events held by the filter (a long flush interval, a big batch) when the agent gets
    SIGTERM are all delivered before it exits 0, and the saved position is then the file's end:
    restarted on it, the agent reads nothing again (no new event, no replay)."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(lambda st: beside(st, log))
        cfg = plugin_config(st, batch_size=5000, flush_interval_ms=600000)
        start_agent(st, cfg, follow=log)
        plan = mixed_plan(200, seed=23, prefix="term")
        send_plan(st, plan)
        wait_for(lambda: metrics(st)["usage_filter_buffer_events"] == len(plan), 20, "the events held")
        assert st.collector_events() == [], "sent before SIGTERM"
        t = time.time()
        st.kill("agent", signal.SIGTERM)
        assert st.procs["agent"].returncode == 0, st.stderr("agent")[-2000:]
        took = time.time() - t
        events = st.collector_events()
        assert len(events) == len(plan), len(events)
        check_against_caddy(events, caddy_entries(log))
        print(f"  {len(plan)} held events delivered in {took:.2f}s after SIGTERM", flush=True)
        # The saved position is the file's end: restarted on it, the agent reads only what
        # comes after (one more entry), and sends nothing again.
        start_agent(st, cfg, follow=log)
        got, _ = st.request("GET", "/term-after/0?status=200&bytes=1", "key-after")
        assert got == 200, got
        wait_for(lambda: metrics(st)["usage_filter_events_captured"] >= 1, 10, "the new entry read")
        st.kill("agent", signal.SIGTERM)
        events = st.collector_events()
        assert len(events) == len(plan) + 1 and events[-1]["api_path"] == "/term-after/0", events[-3:]
        assert st.collector_stats()["duplicate_events"] == 0, st.collector_stats()
    finally:
        st.close()


TESTS = [test_file_exact_delivery, test_net_exact_delivery, test_collector_outage_and_recovery,
         test_sigkill_restart_loses_nothing, test_rotation_while_serving, test_rotation_gzipped_while_serving,
         test_malformed_lines_mixed_in,
         test_sigterm_delivers_buffered]

if __name__ == "__main__":
    caddy_binary()
    require_binaries()
    runner.main(TESTS, "caddy agent e2e")
