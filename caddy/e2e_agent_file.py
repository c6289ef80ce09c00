#!/usr/bin/env python3
"""End-to-end tests of `usage-agent --follow FILE --state STATE` (issue 18, "the file is the
buffer"): an entry still in a file is never lost, whatever the outage, backlog, rotation or
restart. The real agent (dist/usage-agent with dist/usage_filter.wasm), the reference collector
(target/release/collector, started with --require-auth) and, for the rotations while the agent
is stopped, real Caddy 2.11.7 (caddy/Caddyfile.beside, roll_size 1MiB).

Other cases write generated Caddy 2.11 entries straight into the file and rotate it as Caddy
(lumberjack), logrotate or copytruncate do (caddy/rotation.py). Every entry has its own path
/<prefix>/<n>, so each check is: exactly the set of written entries arrives, each once (one
event, one id, per path); the collector refused nothing and saw every batch carry an id; the
replays it dropped by id (`duplicate_events`) stay within what was unacknowledged at a kill
(0 when the agent was stopped with SIGTERM or never stopped); and afterwards the agent's gauges
say caught up (`usage_agent_lines_behind`, `usage_agent_bytes_unread`,
`usage_agent_files_pending`, `usage_filter_buffer_events` all 0), its books balance and nothing
was dropped for a full buffer or counted lost.

Scaled down from issue 18's table to keep the suite short: outages of 5 s instead of 10 (at
200 entries/s: 1,800 entries instead of 3,200), and the rotations under real Caddy hold
fewer entries (1 MiB of ~2.7 KB entries a file). The point of each row stays: the outage is
longer than the default retries (3 attempts, ~1 s), the backlog is 30 times the buffer, the
middle rolled files are never seen by a running agent.

The whole suite takes about 110 s. The forced inode reuse (test_inode_reuse_*) stands in for
the kernel's: ext4 does not hand out an inode freed in the last minute.

Environment: USAGE_AGENT, USAGE_FILTER_WASM as caddy/e2e_agent.py. Arguments select scenarios
by name. Python standard library only. Ends with a line `N passed, M failed`.
"""
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from e2e_lib import runner, wait_for  # noqa: E402

import rotation  # noqa: E402  caddy/rotation.py: generated entries and rotations
# caddy/agent_checks.py: the agent, the stacks, and the verdict every scenario ends with
from agent_checks import (AGENT_CONFIG, TOKEN, check, collector_events, event_lines, faults, file_stack,  # noqa: E402
                          follow, gauge, idle, kill_bound, kill_collector_bound, metrics, plugin_config,
                          require_binaries, stop_agent, wait_delivered)
from rotation import MIB, Writer  # noqa: E402
from stack import beside, caddy_binary, plain, send_padded  # noqa: E402

OUTAGE_S = 5.0


# ---------------------------------------------------------------- outages and backlogs

def outage_150k(retry=None):
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        w = Writer(log, "o")
        w.write(1000)
        follow(st, AGENT_CONFIG if retry is None else plugin_config(st, retry=retry))
        assert wait_delivered(st, 1000) == 1000
        wait_for(lambda: idle(st), 10, "the agent idle before the outage")
        st.kill("collector", signal.SIGKILL)
        t = time.time()
        w.write(149_000)
        wait_for(lambda: metrics(st)["usage_filter_batch_retries"] >= 3, 20, "failed attempts")
        time.sleep(max(0.0, t + OUTAGE_S - time.time()))  # pace: the outage lasts OUTAGE_S
        m = metrics(st)
        print(f"  after {OUTAGE_S:.0f} s down: read {m['usage_filter_events_captured']} of {w.count}, held "
              f"{m['usage_filter_buffer_events']}, unread "
              f"{m['usage_agent_bytes_unread']} bytes, dropped {m['usage_filter_events_dropped_buffer_full']} "
              f"(buffer full) + {m['usage_filter_events_dropped_send_failed']} (send failed)", flush=True)
        assert m["usage_filter_events_dropped_buffer_full"] == 0 and m["usage_filter_events_dropped_send_failed"] == 0, m
        unread, pending = gauge(m, "usage_agent_bytes_unread"), gauge(m, "usage_agent_files_pending")
        assert m["usage_filter_events_captured"] < w.count, f"reading did not pause: {m['usage_filter_events_captured']} read"
        assert unread > 0 and pending >= 1, \
            f"reading paused with {w.count - m['usage_filter_events_captured']} entries in the file, yet the " \
            f"gauges say usage_agent_bytes_unread {unread}, usage_agent_files_pending {pending}"
        st.start_collector(require_auth=TOKEN)
        check(st, w.paths(), timeout=90)
    finally:
        st.close()


def test_outage_150k_default_config():
    """Collector down (closed port) 5 s while 150,000 entries are written, caddy/usage-agent.json
    as shipped (3 attempts): reading pauses, nothing is dropped, all 150,000 arrive once."""
    outage_150k()


def test_outage_150k_max_attempts_20():
    """The same with http.retry.max_attempts 20: the buffer (100,000) never overflows, reading
    pauses instead; all 150,000 arrive once."""
    outage_150k(retry={"max_attempts": 20})


def test_cold_backlog_slow_collector():
    """A cold start on a 300,000-entry file, the collector taking 50 ms a batch, buffer_size
    10,000: the agent reads only as fast as batches are acknowledged; all 300,000 arrive once,
    none dropped for a full buffer."""
    st = file_stack()
    try:
        w = Writer(st.path("logs/access.log"), "cold")
        w.write(300_000, chunk=5000)
        faults(st, {"delay_ms": 50, "count": -1})
        follow(st, plugin_config(st, buffer_size=10_000))
        wait_for(lambda: event_lines(st) >= 20_000, 30, "delivery under way")
        m = metrics(st)
        assert m["usage_filter_buffer_events"] <= 10_000 and m["usage_filter_events_dropped_buffer_full"] == 0, m
        assert gauge(m, "usage_agent_bytes_unread") > 0, m
        check(st, w.paths(), timeout=120)
    finally:
        st.close()


def outage_at_rate(mode):
    st = file_stack()
    try:
        w = Writer(st.path("logs/access.log"), "r")
        follow(st)
        rate, before, after = 200, 2.0, 2.0
        w.start(rate, int(rate * (before + OUTAGE_S + after)), chunk=10)
        time.sleep(before)  # pace: the writer runs `before` seconds before the outage
        if mode == "503":
            faults(st, {"status": 503, "count": -1})
            bound = 0
        else:
            bound = kill_collector_bound(st, w)
        time.sleep(OUTAGE_S)  # pace: the outage's length
        m = metrics(st)
        assert m["usage_filter_events_dropped_send_failed"] == 0 and m["usage_filter_events_dropped_buffer_full"] == 0, m
        if mode == "503":
            faults(st)
        else:
            st.start_collector(require_auth=TOKEN)
        w.join()
        check(st, w.paths(), dup_bound=bound)
    finally:
        st.close()


def test_outage_at_200_per_s_503():
    """Entries written at 200/s; the collector answers 503 for 5 s: every entry arrives once."""
    outage_at_rate("503")


def test_outage_at_200_per_s_closed_port():
    """Entries written at 200/s; the collector is gone (closed port) for 5 s: every entry
    arrives once (the same id stored by both collector processes only for a batch the killed
    one stored unanswered)."""
    outage_at_rate("closed")


def test_restart_resumes_from_state():
    """N entries delivered, SIGTERM (exit 0), M more written, restart on the same --state: the
    collector ends with exactly N+M events and no replay at all. The control: a third agent
    on a fresh state file (a zero offset) replays all N+M, which the collector sees, so a stale
    or zero saved offset fails this test."""
    st = file_stack()
    try:
        w = Writer(st.path("logs/access.log"), "rs")
        w.write(1000)
        follow(st)
        assert wait_delivered(st, 1000) == 1000
        stop_agent(st)
        w.write(500)
        follow(st)
        check(st, w.paths(), dup_bound=0)
        stop_agent(st)
        follow(st, state=st.path("fresh-state.json"))
        wait_for(lambda: st.collector_stats()["duplicate_events"] == 1500, 30, "the control's replay seen")
        assert event_lines(st) == 1500
    finally:
        st.close()


# ---------------------------------------------------------------- rotation (real Caddy)

def caddy_rolled(st):
    """Caddy's rolled files, one per roll (a file being gzipped counts once)."""
    names = [n for n in os.listdir(st.dir) if n.startswith("access-")]
    return {n[:-3] if n.endswith(".gz") else n for n in names}


def caddy_roll_until(st, prefix, rotations, start):
    """Padded keyed requests through Caddy until it rolled `rotations` more times, plus 100
    into the new file; waits for the gzip (if any) to finish. Returns the api_paths."""
    target = len(caddy_rolled(st)) + rotations
    plan = []
    while len(caddy_rolled(st)) < target:
        plan += plain(100, prefix, pad=2000, start=start + len(plan))
        send_padded(st, plan[-100:])
    plan += plain(100, prefix, pad=2000, start=start + len(plan))
    send_padded(st, plan[-100:])
    wait_for(lambda: not [n for n in os.listdir(st.dir) if re.fullmatch(r"access-.*\.log", n)]
             or "\t\t\troll_uncompressed" in open(st.path("caddy.Caddyfile")).read(), 10, "the rolled files gzipped")
    return [p["api_path"] for p in plan]


def rolls_while_stopped(rolls, uncompressed):
    """Real Caddy, roll_size 1MiB; entries delivered, the agent stopped (SIGTERM), Caddy rolls
    `rolls` times, the agent restarted: everything arrives once, no replay."""
    st = file_stack(upstream=True)
    try:
        log = st.path("access.log")  # the state file in the same folder: inodes freed by gzip can be reused
        st.start_caddy(lambda st: beside(st, log, roll_size="1MiB", uncompressed=uncompressed))
        cfg = plugin_config(st, flush_interval_ms=200)
        follow(st, cfg, log=log)
        want = caddy_roll_until(st, "cr", 0, 0)
        assert wait_delivered(st, len(want)) == len(want)
        ino = os.stat(log).st_ino
        stop_agent(st)
        want += caddy_roll_until(st, "cr", rolls, len(want))
        reused = [n for n in os.listdir(st.dir) if os.stat(st.path(n)).st_ino == ino]
        print(f"  {rolls} rolls while stopped: {sorted(caddy_rolled(st))}; the saved file's inode "
              f"{ino} is now {reused or 'free'}", flush=True)
        follow(st, cfg, log=log)
        check(st, want, dup_bound=0)
    finally:
        st.close()


def test_caddy_two_plain_rolls_while_stopped():
    """Caddy rolls twice (roll_uncompressed) while the agent is stopped: the file it was in,
    the middle one it never saw, and the new access.log are all read: every entry once."""
    rolls_while_stopped(2, uncompressed=True)


def test_caddy_gzip_roll_while_stopped():
    """Caddy rolls once (gzipped, the plain name removed) while the agent is stopped: the agent
    reads the rest of its file from the .gz, then the new access.log: every entry once."""
    rolls_while_stopped(1, uncompressed=False)


def test_caddy_gzip_rolls_while_stopped_inode_reuse():
    """Caddy rolls four times (gzipped) while the agent is stopped, the state file in the
    log's folder: gzip frees the inodes of the rolled files, which a new access.log or the
    state file's save can take; the agent must not resume inside the wrong file: every entry
    once, no replay. (ext4 does not hand out an inode freed in the last minute, so here the
    reuse seldom happens: the test prints whether it did; test_inode_reuse_* force it.)"""
    rolls_while_stopped(4, uncompressed=False)


# ---------------------------------------------------------------- inode reuse (generated)

def reuse_inode(src, dst, data):
    """What the kernel does when it hands a freed inode to a new file, done on purpose: the
    file at `src` (its old content already kept elsewhere) gets `data` and the name `dst`."""
    with open(src, "r+b") as f:
        f.truncate(0)
        f.write(data)
    os.replace(src, dst)


def inode_reuse(by):
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        state = st.path("logs/agent-state.json")  # in the log's folder, as a careless setup has it
        w = Writer(log, "ino")
        follow(st, state=state)
        w.write(1000)
        assert wait_delivered(st, 1000) == 1000
        stop_agent(st)
        ino = os.stat(log).st_ino
        w.write(500)  # the saved file's tail, unread
        rolled = rotation.lumberjack_roll(log, compress=False)
        rotation.gzip_file(rolled, rolled + ".gz")  # Caddy gzips it; its inode is then free
        w.write(500)
        rotation.lumberjack_roll(log, compress=True)
        if by == "log":
            reuse_inode(rolled, log, b"")  # the new access.log takes the saved file's inode
            w.write(1500)  # longer than the saved offset: a resume there lands mid-line
        else:
            reuse_inode(rolled, state, open(state, "rb").read())  # the state file's save takes it
            w.write(500)
        assert os.stat(log if by == "log" else state).st_ino == ino
        follow(st, state=state)
        m = check(st, w.paths())
        bad = {k: v for k, v in m.items() if k.startswith("usage_agent_lines_malformed_total") and v}
        assert not bad, f"something that is not a log of the file was read as one: {bad}"
    finally:
        st.close()


def test_inode_reuse_by_new_access_log():
    """The agent stopped; its file rolled and gzipped; the freed inode taken by a new access.log
    (done deterministically: the test writes the new content into that inode). Restarted, the
    agent reads the saved file's tail from the .gz, the middle file, and the new access.log
    from its start: every entry once, no replay, nothing malformed (no resume mid-line)."""
    inode_reuse("log")


def test_inode_reuse_by_state_file():
    """The same, the freed inode taken by the agent's own state file (in the log's folder):
    the state file is never read as a log: every entry once, nothing malformed."""
    inode_reuse("state")


# ---------------------------------------------------------------- rotation (generated) with kills

def kills_while_rolling(uncompressed):
    st = file_stack()
    try:
        # Caddy 2.11's names for the plain rolls, lumberjack's classic ones for the gzipped.
        w = Writer(st.path("logs/access.log"), "k", roll_bytes=MIB, uncompressed=uncompressed,
                   suffix="-size" if uncompressed else "")
        follow(st)
        w.start(20_000, 60_000)
        bound, seen = 0, []
        for _ in range(5):
            time.sleep(0.45)  # pace: a kill every 0.45 s while the writer rolls
            b = kill_bound(st, w)
            bound += b
            seen.append(b)
            follow(st)
        w.join()
        print(f"  {len(w.rolled)} rolls; replay bound per kill {seen}", flush=True)
        check(st, w.paths(), dup_bound=bound, timeout=60, cut_short=len(seen))
    finally:
        st.close()


def test_kills_plain_rolls_20k_per_s():
    """60,000 entries at 20,000/s, rolled Caddy's way at 1 MiB (uncompressed), the agent
    SIGKILLed and restarted 5 times: every entry once; the replays (same ids, dropped by the
    collector) within what each kill left unacknowledged or unread."""
    kills_while_rolling(uncompressed=True)


def test_kills_gzip_rolls_20k_per_s():
    """The same with the rolled files gzipped (and the plain ones removed) as Caddy does,
    named as lumberjack does (access-<time>.log.gz)."""
    kills_while_rolling(uncompressed=False)


# ---------------------------------------------------------------- stalls and copy-truncate

def stalled(st, seconds=0.5):
    """SIGSTOP the agent; returns the function that SIGCONTs it `seconds` after the stop."""
    pid = st.procs["agent"].pid
    os.kill(pid, signal.SIGSTOP)
    t = time.time()

    def resume():
        time.sleep(max(0.0, t + seconds - time.time()))  # pace: the agent stays stopped `seconds`
        os.kill(pid, signal.SIGCONT)
    return resume


def renames_while_stalled(roll):
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        w = Writer(log, "rn")
        follow(st, plugin_config(st, flush_interval_ms=200))
        w.write(1500)
        assert wait_delivered(st, 1500) == 1500
        resume = stalled(st)
        w.write(500)
        roll(log)
        w.write(500)  # a file the stalled agent never sees under its first name
        roll(log)
        w.write(500)
        resume()
        w.write(500)
        check(st, w.paths())
    finally:
        st.close()


def test_two_renames_while_stalled_caddy_names():
    """The agent stalled 0.5 s (SIGSTOP/SIGCONT) while the log is rolled twice Caddy's way
    (access-<time>.log, uncompressed): the middle file is read too: 3,500 entries, each once."""
    renames_while_stalled(lambda log: rotation.lumberjack_roll(log, compress=False))  # …-size.log


def test_two_renames_while_stalled_logrotate():
    """The same with logrotate's names: access.log.1, then access.log.2.gz (delaycompress): the
    file the agent was in is gzipped under it, and the middle file is access.log.1."""
    renames_while_stalled(rotation.logrotate_roll)


def test_copytruncate_while_stalled():
    """The agent stalled 0.5 s while 500 unread entries are copied to access.log.1 and
    access.log truncated, then 500 more written: the 500 are read from the copy: 3,000 entries,
    each once."""
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        w = Writer(log, "ct")
        follow(st, plugin_config(st, flush_interval_ms=200))
        w.write(2000)
        assert wait_delivered(st, 2000) == 2000
        resume = stalled(st)
        w.write(500)
        rotation.copytruncate(log)
        w.write(500)
        resume()
        check(st, w.paths())
    finally:
        st.close()


def test_copytruncate_while_stopped():
    """The agent stopped (SIGTERM) after 2,000 entries; 1,000 more written, copy-truncated to
    access.log-20261206 (dateext), 2,000 written to the truncated file; restarted: 5,000
    entries, each once (the saved offset is not applied to the truncated file's new content)."""
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        w = Writer(log, "cs")
        cfg = plugin_config(st, flush_interval_ms=200)
        follow(st, cfg)
        w.write(2000)
        assert wait_delivered(st, 2000) == 2000
        stop_agent(st)
        w.write(1000)
        rotation.copytruncate(log, f"{log}-20261206")
        w.write(2000)
        follow(st, cfg)
        check(st, w.paths())
    finally:
        st.close()


# ---------------------------------------------------------------- refusals and honest losses

def refused_batch(dead_letter):
    st = file_stack()
    try:
        w = Writer(st.path("logs/access.log"), "dl")
        cfg = plugin_config(st, batch_size=100, flush_interval_ms=200)
        dl = st.path("dead-letter.ndjson")
        # 401: the filter drops the whole batch (a 400 would be split down to a bad event).
        faults(st, {"status": 401, "count": 1})
        follow(st, cfg, extra=["--dead-letter", dl] if dead_letter else [])
        w.write(500)
        wait_for(lambda: event_lines(st) >= 400, 20, "the batches after the refused one")
        w.write(500)  # reading goes on
        wait_delivered(st, 900)
        m = check(st, w.paths(), lost_ok=w.paths() - set(collector_events(st)), refused=1)
        got = collector_events(st)
        refused = w.paths() - set(got)
        assert len(refused) == 100, f"{len(refused)} entries not delivered; one batch of 100 was refused"
        lost = m.get('usage_agent_entries_lost_total{reason="refused"}', 0)
        if not dead_letter:
            assert lost == 100, f'usage_agent_entries_lost_total{{reason="refused"}} {lost}, expected 100'
            return
        assert lost == 0, f"a dead-lettered batch is kept, not lost: {lost}"
        assert gauge(m, "usage_agent_batches_dead_lettered_total") == 1, m
        lines = open(dl).read().splitlines()
        assert len(lines) == 1, lines
        d = json.loads(lines[0])
        assert {"time", "destination", "status", "answer", "body"} <= set(d), d.keys()
        assert d["destination"] == "collector" and d["status"] == 401, d
        assert isinstance(d["answer"], str) and len(d["answer"].encode()) <= 1024, d["answer"]
        body = json.loads(d["body"])
        events = body["events"] if isinstance(body, dict) else body
        paths = [e["api_path"] for e in events]
        ids = {e["id"] for e in events}
        assert len(paths) == len(set(paths)) == len(ids) == 100, (len(paths), len(ids))
        assert set(paths) == refused, "the dead letter holds exactly the refused entries"
        assert not ids & {i for v in got.values() for i in v}, "a dead-lettered event was also delivered"
    finally:
        st.close()


def test_dead_letter_refused_batch():
    """The collector refuses one batch with 401: with --dead-letter it is one JSON line (time,
    destination, status, answer, body), counted, not lost; reading goes on; the dead-lettered
    ids and the delivered ones are every written entry, none in both."""
    refused_batch(dead_letter=True)


def test_refused_batch_counted_lost():
    """Without --dead-letter, the refused batch's 100 entries are counted in
    usage_agent_entries_lost_total{reason="refused"}; every other entry arrives once."""
    refused_batch(dead_letter=False)


def test_dead_letter_poisoned_event():
    """The collector answers 400 to any batch holding /dl/777: the filter splits the batch down
    to that event (the other 99 are sent again and delivered), and the agent dead-letters that
    one event only, once: a batch it split is not dead-lettered, so nothing delivered is in the
    dead letter and nothing is lost."""
    st = file_stack()
    try:
        w = Writer(st.path("logs/access.log"), "dl")
        dl = st.path("dead-letter.ndjson")
        faults(st, {"reject_when_path_contains": "/dl/777"})
        follow(st, plugin_config(st, batch_size=100, flush_interval_ms=200), extra=["--dead-letter", dl])
        w.write(1000)
        m = check(st, w.paths(), lost_ok={"/dl/777"}, poisoned=1)
        assert "/dl/777" not in collector_events(st)
        assert m["usage_filter_events_dropped_rejected"] == 1, m
        assert gauge(m, "usage_agent_batches_dead_lettered_total") == 1, m
        assert m.get('usage_agent_entries_lost_total{reason="refused"}', 0) == 0, m
        lines = open(dl).read().splitlines()
        assert len(lines) == 1, lines
        d = json.loads(lines[0])
        assert d["status"] == 400, d
        body = json.loads(d["body"])
        events = body["events"] if isinstance(body, dict) else body
        assert [e["api_path"] for e in events] == ["/dl/777"], events
    finally:
        st.close()


def test_rolled_file_deleted_unread_is_counted():
    """Reading paused in access.log (the collector answers 503, buffer 300); the log is rolled
    (dateext), the new access.log gets 1,000 entries and shows as a second file pending, then it
    is rolled too and deleted, never read. Its bytes are counted in
    usage_agent_bytes_lost_total{reason="deleted_unread"} and logged ("lost <N> bytes of
    <path>"); everything else arrives once. (If the agent had already opened the middle file,
    nothing is lost and nothing may be counted.)"""
    st = file_stack()
    try:
        log = st.path("logs/access.log")
        w = Writer(log, "del")
        faults(st, {"status": 503, "count": -1})
        follow(st, plugin_config(st, buffer_size=300, batch_size=100, flush_interval_ms=200,
                                 retry={"max_backoff_ms": 300}))
        w.write(2000)
        wait_for(lambda: metrics(st)["usage_filter_batch_retries"] >= 2, 20, "failed attempts")
        m = metrics(st)
        assert gauge(m, "usage_agent_bytes_unread") > 0 and m["usage_filter_events_dropped_buffer_full"] == 0, m
        first = w.count
        rotation.logrotate_roll(log, dateext="20261205")
        w.write(1000)
        middle = set(f"/del/{n}" for n in range(first, w.count))
        size = os.path.getsize(log)
        # The agent knows the middle file is there (paused or not): two files pending.
        wait_for(lambda: metrics(st)["usage_agent_files_pending"] >= 2, 10,
                 "usage_agent_files_pending to count the rolled file and the new access.log")
        gone = rotation.logrotate_roll(log, dateext="20261206")
        os.remove(gone)
        w.write(500)
        faults(st)
        m = check(st, w.paths(), lost_ok=middle, timeout=60)
        got = set(collector_events(st))
        lost = m.get('usage_agent_bytes_lost_total{reason="deleted_unread"}', 0)
        if middle <= got:
            print("  the middle file was read before it was deleted: nothing lost", flush=True)
            assert lost == 0, lost
            return
        assert not middle & got, "the deleted file's entries either all arrived or none did"
        assert lost == size, f'usage_agent_bytes_lost_total{{reason="deleted_unread"}} {lost}, the file held {size}'
        said = [l for l in st.stderr("agent").splitlines() if "lost" in l]
        assert any(f"lost {size} bytes of " in l and (log in l or gone in l) for l in said), said
    finally:
        st.close()


TESTS = [test_restart_resumes_from_state, test_outage_150k_default_config, test_outage_150k_max_attempts_20,
         test_cold_backlog_slow_collector, test_outage_at_200_per_s_503, test_outage_at_200_per_s_closed_port,
         test_caddy_two_plain_rolls_while_stopped, test_caddy_gzip_roll_while_stopped,
         test_caddy_gzip_rolls_while_stopped_inode_reuse, test_inode_reuse_by_new_access_log,
         test_inode_reuse_by_state_file, test_kills_plain_rolls_20k_per_s,
         test_kills_gzip_rolls_20k_per_s, test_two_renames_while_stalled_caddy_names,
         test_two_renames_while_stalled_logrotate, test_copytruncate_while_stalled, test_copytruncate_while_stopped,
         test_dead_letter_refused_batch, test_dead_letter_poisoned_event, test_refused_batch_counted_lost, test_rolled_file_deleted_unread_is_counted]


if __name__ == "__main__":
    caddy_binary()
    require_binaries()
    runner.main(TESTS, "caddy agent file e2e")
