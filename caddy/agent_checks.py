"""The agent's side of the Caddy suites (caddy/e2e_agent.py, caddy/e2e_agent_file.py): the
real usage-agent (dist/usage-agent, or USAGE_AGENT) running dist/usage_filter.wasm (or
USAGE_FILTER_WASM) with caddy/usage-agent.json, its metrics, the stacks, and `check`, the
verdict every file scenario ends with (exactly the written entries, each once; replays within
a bound; the collector refused nothing; the gauges say caught up and the books balance).
Python standard library only."""
import json
import os
import signal
import sys
import time
import urllib.request

import rotation
from stack import CaddyStack, exact_events
from e2e_lib import BIN, wait_for
from e2e_lib.envoy import TOKEN
from e2e_lib.procs import ROOT

AGENT = os.environ.get("USAGE_AGENT", os.path.join(ROOT, "dist", "usage-agent"))
WASM = os.environ.get("USAGE_FILTER_WASM", os.path.join(ROOT, "dist", "usage_filter.wasm"))
AGENT_CONFIG = os.path.join(ROOT, "caddy", "usage-agent.json")


def require_binaries():
    for p in (AGENT, WASM, os.path.join(BIN, "collector"), os.path.join(BIN, "demo-upstream")):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: make build, and cargo build --release -p usage-collector")


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
    agent-state.json in the stack's folder) or listening (port 0: st.ports["agent"]); metrics
    on port 0 (st.ports["metrics"]); `extra` flags last. Returns when both are bound."""
    args = [AGENT, "--wasm", WASM, "--config", config, "--cluster", f"collector=127.0.0.1:{st.ports['collector']}",
            "--metrics", "127.0.0.1:0", "--env", "COLLECTOR_TOKEN"]
    if follow:
        args += ["--follow", follow]
        if state:
            args += ["--state", state if isinstance(state, str) else st.path("agent-state.json")]
    if listen:
        args += ["--listen", "127.0.0.1:0"]
    args += list(extra)
    st.spawn(name, args, env=dict(os.environ, COLLECTOR_TOKEN=TOKEN))
    st.ports["metrics"] = st.listening_on(name, "usage-agent: metrics at http://")
    if listen:
        st.ports["agent"] = st.listening_on(name, "usage-agent: listening for log lines on ")


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
    """captured = delivered + dropped (buffer full, send failed, rejected alone) + held."""
    return (m["usage_filter_events_captured"],
            m["usage_filter_events_delivered"] + m["usage_filter_events_dropped_buffer_full"]
            + m["usage_filter_events_dropped_send_failed"] + m.get("usage_filter_events_dropped_rejected", 0)
            + m["usage_filter_buffer_events"])


def faults(st, body=None):
    """POST /faults (body) or DELETE /faults (None) at the collector."""
    return st.faults(body)


def stack(collector=True):
    """A Caddy stack with the demo upstream and (by default) the collector."""
    st = CaddyStack()
    try:
        st.start_upstream()
        if collector:
            st.start_collector()
    except BaseException:
        st.close()
        raise
    return st


def wait_exact_events(st, n, timeout=30):
    """Waits until the collector holds n events and the agent is idle (nothing behind, unread,
    pending, held or in flight: anything extra would be at the collector by then); then
    exactly n, ids unique, no replay (stack.exact_events)."""
    wait_for(lambda: len(st.collector_events()) >= n and idle(st), timeout, f"{n} events and the agent idle")
    return exact_events(st, n)


def file_stack(upstream=False):
    """A stack with the collector (refusing a batch without our Authorization) and, for real
    Caddy, the demo upstream. Generated logs live in logs/, the state file outside it."""
    st = CaddyStack()
    try:
        os.makedirs(st.path("logs"))
        if upstream:
            st.start_upstream()
        st.start_collector(require_auth=TOKEN)
    except BaseException:
        st.close()
        raise
    return st


def state_path(st):
    return st.path("agent-state.json")


def follow(st, config=AGENT_CONFIG, log=None, state=None, extra=()):
    start_agent(st, config, follow=log or st.path("logs/access.log"), state=state or state_path(st), extra=extra)


def stop_agent(st):
    """SIGTERM: the agent delivers what it holds, saves its position and exits 0."""
    st.kill("agent", signal.SIGTERM)
    assert st.procs["agent"].returncode == 0, f"agent exit {st.procs['agent'].returncode}: {st.stderr('agent')[-2000:]}"


def event_lines(st):
    try:
        with open(st.events_file, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def gauge(m, name):
    assert name in m, f"the agent publishes no {name}"
    return m[name]


def idle(st):
    """The agent says it has nothing left to do: no entry held, nothing unread, no file pending,
    no callout in flight."""
    try:
        m = metrics(st)
    except OSError:
        return False
    return (m.get("usage_agent_lines_behind") == 0 and m.get("usage_agent_bytes_unread", 0) == 0
            and m.get("usage_agent_files_pending", 0) == 0 and m.get("usage_filter_buffer_events") == 0
            and m.get("usage_agent_callouts_in_flight", 0) == 0)


def wait_delivered(st, n, timeout=60):
    """Waits until the collector holds n events, or the agent is idle and nothing new arrived
    for 1.5 s (it will send nothing more: the check that follows reports what is missing)."""
    deadline = time.time() + timeout
    last, since = -1, time.time()
    while time.time() < deadline:
        got = event_lines(st)
        if got >= n:
            return got
        if got != last:
            last, since = got, time.time()
        elif time.time() - since > 1.5 and idle(st):
            return got
        time.sleep(0.1)  # poll: the interval of this wait
    return event_lines(st)


def collector_events(st):
    """{api_path: [ids]} over every line the collector(s) stored."""
    out = {}
    for e in st.collector_events():
        out.setdefault(e["api_path"], []).append(e["id"])
    return out


def check(st, want, dup_bound=0, timeout=60, lost_ok=frozenset(), refused=0, poisoned=0, cut_short=0):
    """The whole verdict of a scenario: every path in `want` arrived exactly once (one stored
    event, so one id), nothing else did; the collector refused nothing (`refused` batches were
    faulted on purpose), every batch had an id; the replays dropped by id (plus the same id
    stored by two collector processes) are at most `dup_bound`; the agent's gauges say caught
    up, its books balance, nothing was dropped for a full buffer or counted lost. `poisoned`:
    events the collector refuses on purpose (the filter isolates each); `cut_short`: sends a
    SIGKILL may cut off. Returns the agent's metrics."""
    want = set(want)
    wait_delivered(st, len(want - lost_ok), timeout)
    wait_for(lambda: idle(st), 15, "the agent idle (nothing behind, unread, pending, held, in flight)")
    got = collector_events(st)
    missing = want - set(got) - lost_ok
    extra = set(got) - want
    twice = {p: ids for p, ids in got.items() if len(set(ids)) > 1}
    assert not missing, f"lost {len(missing)} of {len(want)} entries, e.g. {sorted(missing, key=_num)[:5]}"
    assert not extra, f"{len(extra)} unexpected events, e.g. {sorted(extra)[:5]}"
    assert not twice, f"{len(twice)} entries made events with different ids: {list(twice.items())[:3]}"
    stats = st.collector_stats()
    same_id_twice = sum(len(ids) - 1 for ids in got.values())  # across collector restarts
    dups = stats["duplicate_events"] + same_id_twice
    print(f"  {len(want)} written, {len(got)} delivered; replays dropped by id {dups} (bound {dup_bound})", flush=True)
    assert dups <= dup_bound, f"{dups} replays (duplicate_events {stats['duplicate_events']}, stored twice " \
                              f"{same_id_twice}) > bound {dup_bound}"
    assert stats["invalid_events"] == 0 and stats["batches_without_id"] == 0, stats
    if poisoned:
        # Refused for a poisoned event on purpose: the filter splits down to it.
        assert 0 < stats["rejected_batches"] <= 2 * poisoned * 10, stats
    elif cut_short:
        # A SIGKILL in the middle of a send leaves the collector a body it cannot read (400,
        # "could not read body"): at most one per kill; its entries are read again after the
        # restart, which the exact set above proves.
        assert stats["rejected_batches"] <= cut_short, stats
    else:
        assert stats["rejected_batches"] == 0 and "refused batch" not in st.stderr("collector"), \
            (stats, st.stderr("collector")[-1000:])
    assert stats["faulted_batches"] >= refused, stats
    m = metrics(st)
    for g in ("usage_agent_lines_behind", "usage_agent_bytes_unread", "usage_agent_files_pending",
              "usage_filter_buffer_events"):
        assert gauge(m, g) == 0, (g, m)
    captured, accounted = books(m)
    assert captured == accounted, f"books: captured {captured} != delivered + dropped + held {accounted}: {m}"
    assert m["usage_filter_events_dropped_buffer_full"] == 0, m
    lost = {k: v for k, v in m.items() if k.startswith(("usage_agent_entries_lost_total", "usage_agent_bytes_lost_total"))}
    if not lost_ok and not refused and not poisoned:
        assert m["usage_filter_events_dropped_send_failed"] == 0, m
        assert sum(lost.values()) == 0, lost
    return m


def _num(p):
    return int(p.rsplit("/", 1)[1]) if p.rsplit("/", 1)[1].isdigit() else 0


def kill_bound(st, w, staleness=0.3):
    """SIGKILLs the agent; returns how many entries could be replayed because of it: those held
    unacknowledged at the last metrics snapshot, plus what it could read after it (the bytes
    unread then, and everything written since the snapshot's page could be `staleness` old)."""
    t = time.time()
    m = metrics(st)
    behind, unread = gauge(m, "usage_agent_lines_behind"), gauge(m, "usage_agent_bytes_unread")
    st.kill("agent", signal.SIGKILL)
    return behind + unread // rotation.MIN_ENTRY + 1 + w.written_since(t - staleness)


def kill_collector_bound(st, w, staleness=0.3):
    """SIGKILLs the collector; a batch it stored but could not answer is sent again to the next
    one: at most what the agent held unacknowledged then (and what it read since the page)."""
    t = time.time()
    m = metrics(st)
    st.kill("collector", signal.SIGKILL)
    return m["usage_agent_lines_behind"] + w.written_since(t - staleness)
