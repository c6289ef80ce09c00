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

Helpers (Stack, caddyfile, mixed_plan, …) come from caddy/e2e.py. Environment:
USAGE_FILTER_WASM (default dist/usage_filter.wasm), USAGE_AGENT (default dist/usage-agent).
Python standard library only. Ends with a line `N passed, M failed`.
"""
import datetime
import glob
import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (caddy/e2e.py: Stack and the traffic helpers)
from e2e import ROOT, Stack, caddyfile, get_json, mixed_plan, send_plan, unkeyed, wait_for  # noqa: E402

AGENT = os.environ.get("USAGE_AGENT", os.path.join(ROOT, "dist", "usage-agent"))
WASM = e2e.WASM
TOKEN = e2e.TOKEN
AGENT_CONFIG = os.path.join(ROOT, "caddy", "usage-agent.json")


# ---------------------------------------------------------------- the agent

def plugin_config(st, **http):
    """caddy/usage-agent.json with these `http` keys changed, written into the stack's folder."""
    cfg = json.load(open(AGENT_CONFIG))
    cfg["http"].update(http)
    path = st.path("plugin.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def start_agent(st, config, follow=None, listen=False, state=True, name="agent", extra=()):
    """usage-agent following `follow` (with --state: `state` if it is a path, else
    agent-state.json in the stack's folder) or listening on the stack's `agent` port; metrics
    on the `metrics` port; `extra` flags last. Returns when the metrics page answers."""
    st.ports.setdefault("metrics", e2e.free_port())
    args = [AGENT, "--wasm", WASM, "--config", config, "--cluster", f"collector=127.0.0.1:{st.ports['collector']}",
            "--metrics", f"127.0.0.1:{st.ports['metrics']}", "--env", "COLLECTOR_TOKEN"]
    if follow:
        args += ["--follow", follow]
        if state:
            args += ["--state", state if isinstance(state, str) else st.path("agent-state.json")]
    if listen:
        args += ["--listen", f"127.0.0.1:{st.ports['agent']}"]
    args += list(extra)
    st.spawn(name, args, env=dict(os.environ, COLLECTOR_TOKEN=TOKEN))
    st.wait_port(st.ports["metrics"], name)
    if listen:
        st.wait_port(st.ports["agent"], name)


def metrics(st):
    """The agent's /metrics as {name or name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{st.ports['metrics']}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = int(float(v))
    return out


def books(m):
    """captured = delivered + dropped (buffer full, send failed) + held."""
    return (m["usage_filter_events_captured"],
            m["usage_filter_events_delivered"] + m["usage_filter_events_dropped_buffer_full"]
            + m["usage_filter_events_dropped_send_failed"] + m["usage_filter_buffer_events"])


def start_collector(st):
    st.start_collector()


def faults(st, body=None):
    """POST /faults (body) or DELETE /faults (None) at the collector."""
    url = f"http://127.0.0.1:{st.ports['collector']}/faults"
    if body is None:
        return get_json(url, method="DELETE")
    return get_json(url, method="POST", body=body)


# ---------------------------------------------------------------- Caddy

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
        assert set(e) == e2e.VEIL_FIELDS, e
        assert e["method"] == x["request"]["method"], (e, x)
        assert e["subscription_key"] == x["request"]["headers"]["X-Subscription-Key"][0], (e, x)
        assert e["status_code"] == x["status"], (e, x)
        assert e["success"] == (200 <= x["status"] <= 299), (e, x)
        assert e["request_size"] == x["bytes_read"], (e, x)
        assert e["response_size"] == x["size"], (e, x)
        assert abs(e["response_time_ms"] - x["duration"] * 1000) <= 1, (e["response_time_ms"], x["duration"])
        assert abs(rfc3339_ns(e["timestamp"]) - x["ts"] * 1e9) <= 1e6, (e["timestamp"], x["ts"])


def stack(collector=True):
    st = Stack()
    try:
        st.start_upstream()
        if collector:
            st.start_collector()
    except BaseException:
        st.stop()
        raise
    return st


def plain(n, prefix, key="k-plain", pad=0, start=0):
    """n keyed GETs with distinct paths (/prefix/start…) and a small body; `pad` bytes of
    extra request header make each log entry longer."""
    return [{"i": i, "method": "GET", "api_path": f"/{prefix}/{i}", "path": f"/{prefix}/{i}?status=200&bytes=10",
             "status": 200, "size": 10, "body": b"", "key": key, "pad": pad} for i in range(start, start + n)]


def send_padded(st, plan, workers=8):
    from concurrent.futures import ThreadPoolExecutor

    def run(p):
        got, _ = st.request(p["method"], p["path"], p["key"], p["body"],
                            headers={"x-pad": "p" * p["pad"]} if p["pad"] else None)
        assert got == p["status"], (p["path"], got)
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(run, plan))


# ---------------------------------------------------------------- scenarios

def test_file_exact_delivery():
    """Following the file: mixed keyed requests, unkeyed ones, and Caddy's own answers (499:
    the client gave up; 502: the upstream stopped) are each exactly what Caddy logged, one
    event per keyed entry."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(beside(st, log))
        start_agent(st, plugin_config(st, flush_interval_ms=200), follow=log)
        plan = mixed_plan(300, seed=21, prefix="file")
        send_plan(st, plan)
        unkeyed(st, 40, "file-anon")
        for i in range(3):  # the client gives up before the upstream answers: Caddy logs 499
            c = http.client.HTTPConnection("127.0.0.1", st.ports["caddy"], timeout=0.3)
            try:
                c.request("GET", f"/gone/{i}?status=200&bytes=5&delay_ms=2000", headers={e2e.KEY_HEADER: "key-gone"})
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
        events = e2e.wait_exact_events(st, len(plan) + 3 + 5)
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
        st.stop()


def test_net_exact_delivery():
    """Over Caddy's `output net` (soft_start) to `usage-agent --listen`: the same checks."""
    st = stack()
    try:
        start_agent(st, plugin_config(st, flush_interval_ms=200), listen=True)
        tap = st.path("tap.log")
        st.start_caddy(beside(st, st.path("unused.log"), net=True, tap=tap))
        plan = mixed_plan(300, seed=22, prefix="net")
        send_plan(st, plan)
        unkeyed(st, 40, "net-anon")
        events = e2e.wait_exact_events(st, len(plan))
        entries = caddy_entries(tap)
        assert len(entries) == len(plan) + 40, len(entries)
        check_against_caddy(events, entries)
        e2e.check_events(events, plan)
        assert not os.path.exists(st.path("unused.log")), "the site's log went over the network"
    finally:
        st.stop()


def test_collector_outage_and_recovery():
    """The collector stops while Caddy serves more entries than the filter's buffer holds. The
    agent stops reading once the filter holds buffer_size - batch_size events (the rest waits in
    the file, and the gauges say so: bytes unread, a file pending), retries without limit, and
    once the collector is back every entry arrives exactly once: nothing dropped, the books
    balance, the gauges read 0."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(beside(st, log))
        buffer, batch = 300, 50
        cfg = plugin_config(st, buffer_size=buffer, batch_size=batch, flush_interval_ms=200,
                            retry={"max_attempts": 3, "initial_backoff_ms": 100, "max_backoff_ms": 300})
        start_agent(st, cfg, follow=log)
        before = plain(100, "before")
        send_padded(st, before)
        e2e.wait_exact_events(st, 100, settle=0.3)
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
        events = e2e.wait_exact_events(st, want)
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
        st.stop()


def test_sigkill_restart_loses_nothing():
    """The agent is killed with SIGKILL while Caddy serves and the collector is slow (events
    held in memory), then restarted on its --state. Every keyed entry reaches the collector
    once; what was sent twice had the same event id (the collector counts the replay as a
    duplicate and stores it once)."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(beside(st, log))
        cfg = plugin_config(st, batch_size=20, flush_interval_ms=100, max_in_flight=1)
        faults(st, {"delay_ms": 150, "count": -1})
        start_agent(st, cfg, follow=log)
        plan = plain(900, "kill")
        sender = threading.Thread(target=lambda: [send_padded(st, plan[i:i + 30], workers=2) or time.sleep(0.02)
                                                  for i in range(0, len(plan), 30)])
        sender.start()
        wait_for(lambda: len(st.collector_events()) >= 100, 20, "the first events")
        behind = metrics(st)["usage_agent_lines_behind"]
        st.kill("agent", signal.SIGKILL)
        time.sleep(0.5)
        start_agent(st, cfg, follow=log)
        sender.join()
        faults(st)
        wait_for(lambda: len(st.collector_events()) >= len(plan), 30, "every event")
        time.sleep(1.0)
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
        assert stats["duplicate_events"] > 0, stats
    finally:
        st.stop()


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
        text = beside(st, log, roll_size="1MiB", uncompressed=True)
        st.start_caddy(text)
        cfg = plugin_config(st, flush_interval_ms=200)
        start_agent(st, cfg, follow=log)
        plan = roll_until(st, log, "roll", 3)
        e2e.wait_exact_events(st, len(plan))
        st.kill("agent", signal.SIGKILL)
        plan += roll_until(st, log, "roll", 1, start=len(plan))
        start_agent(st, cfg, follow=log)
        wait_for(lambda: len(st.collector_events()) >= len(plan), 30, "every event")
        time.sleep(1.0)
        events = st.collector_events()
        entries = caddy_entries(st.path("access*"))
        assert len(entries) == len(plan), len(entries)
        check_against_caddy(events, entries)
        assert len({e["id"] for e in events}) == len(plan), "every entry once"
    finally:
        st.stop()


def test_rotation_gzipped_while_serving():
    """Caddy's default rolling (the rolled file gzipped, its name removed) while the agent
    runs: the agent keeps the old file open and finishes it: nothing lost."""
    st = stack()
    try:
        log = st.path("access.log")
        text = beside(st, log, roll_size="1MiB")
        assert "\t\t\troll_uncompressed" not in text
        st.start_caddy(text)
        start_agent(st, plugin_config(st, flush_interval_ms=200), follow=log)
        plan = roll_until(st, log, "gz", 2)
        events = e2e.wait_exact_events(st, len(plan))
        wait_for(lambda: len(glob.glob(st.path("access-*.gz"))) >= 2, 10, "gzipped rolled files")
        entries = caddy_entries(st.path("access*"))
        assert len(entries) == len(plan), len(entries)
        check_against_caddy(events, entries)
    finally:
        st.stop()


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
        st.start_caddy(beside(st, log))
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
        events = e2e.wait_exact_events(st, len(plan))
        check_against_caddy(events, caddy_entries(log))
        m = metrics(st)
        for kind, n in counts.items():
            assert m[f'usage_agent_lines_malformed_total{{kind="{kind}"}}'] == n, (kind, m)
        assert m["usage_agent_lines_read_total"] == len(plan) + sum(counts.values()), m
        err = st.stderr("agent")
        assert err.count("skipping a malformed line") == len(counts), err
    finally:
        st.stop()


def test_sigterm_delivers_buffered():
    """Events held by the filter (a long flush interval, a big batch) when the agent gets
    SIGTERM are all delivered before it exits 0, and the saved position is then the file's end:
    restarted on it, the agent reads nothing again (no new event, no replay)."""
    st = stack()
    try:
        log = st.path("access.log")
        st.start_caddy(beside(st, log))
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
        st.stop()


TESTS = [test_file_exact_delivery, test_net_exact_delivery, test_collector_outage_and_recovery,
         test_sigkill_restart_loses_nothing, test_rotation_while_serving, test_rotation_gzipped_while_serving,
         test_malformed_lines_mixed_in,
         test_sigterm_delivers_buffered]


def main():
    e2e.CADDY = subprocess.check_output([os.path.join(ROOT, "caddy", "install-caddy.sh")], text=True).strip()
    for p in (AGENT, WASM, os.path.join(e2e.BIN, "collector"), os.path.join(e2e.BIN, "demo-upstream")):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: make build, and cargo build --release -p usage-collector")
    passed, failed = e2e.envoy_e2e.run_tests(TESTS, sys.argv[1:])
    print(f"caddy agent e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
