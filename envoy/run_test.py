#!/usr/bin/env python3
"""`make run-test`: envoy/run.sh (what `make run` runs) tells the truth.

- a broken filter configuration (http.batch_size 0): exit 1 within 2 s of Envoy's exit, the
  line naming the key printed, the upstream and the collector stopped, no banner;
- a port already taken by someone else: the process that could not start is named with its log;
- a good configuration: the banner comes only after the probe's event reached the collector;
  a request's log line shows on stdout within a second (Envoy flushes every 100 ms);
  Envoy dying later is reported (exit 1); Ctrl-C (SIGINT) stops everything with exit 0.

Each case runs run.sh in a temporary folder on ports reserved for it (tests/e2e_lib/ports.py;
USAGE_RUN_* overrides). Ends with `run-test: N passed, M failed`.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from e2e_lib import free_port, runner, wait_for  # noqa: E402
RUN = os.path.join(ROOT, "envoy", "run.sh")
KEY_LINE = "invalid plugin configuration: http.batch_size: must be between 1 and 100000, got 0"


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Run:
    """run.sh in its own session, its output collected line by line with arrival times."""

    def __init__(self, tmp, config=None, ports=None):
        self.ports = dict(zip(("API", "ADMIN", "UPSTREAM", "COLLECTOR"), (free_port() for _ in range(4))))
        self.ports.update(ports or {})
        env = dict(os.environ, USAGE_RUN_DIR=tmp)
        env.update({f"USAGE_RUN_{k}_PORT": str(v) for k, v in self.ports.items()})
        if config:
            env["USAGE_RUN_CONFIG"] = config
        self.lines = []  # (monotonic time, line)
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(["bash", RUN], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True,
                                     # SIGINT as at a terminal, even when this test was started
                                     # with it ignored (a background job): bash cannot trap a
                                     # signal ignored on entry.
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()

    def wait_line(self, needle, timeout):
        """The arrival time of the first line containing needle."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    if needle in line:
                        return t
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"no line with {needle!r} within {timeout} s:\n{self.text()}")
                self.cond.wait(min(left, 0.1))

    def finish(self, timeout):
        """Exit code and exit time (run.sh's own exit, not the end of its output)."""
        rc = self.proc.wait(timeout)
        t = time.monotonic()
        self.reader.join(5)
        return rc, t

    def child(self, comm):
        """The pid of run.sh's child (same process group) named comm, or None."""
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                if name == comm and int(fields[2]) == self.proc.pid:  # its process group
                    return entry
        return None

    def process_exit_time(self, comm, timeout):
        """Finds run.sh's child named comm and returns when it exited (gone or a zombie), to
        10 ms."""
        pid = wait_for(lambda: self.child(comm), timeout, f"a {comm} process under run.sh", interval=0.01)

        def exited():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    gone = f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                gone = True
            return time.monotonic() if gone else None
        return wait_for(exited, timeout, f"{comm} to exit", interval=0.01)

    def text(self):
        return "\n".join(line for _, line in self.lines)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def broken_config(tmp):
    with open(os.path.join(ROOT, "envoy", "envoy.yaml")) as f:
        text = f.read()
    anchor = "                      format: veil\n"
    assert anchor in text, "envoy/envoy.yaml changed: update run_test.py's anchor"
    path = os.path.join(tmp, "broken.yaml")
    with open(path, "w") as f:
        f.write(text.replace(anchor, anchor + "                      batch_size: 0\n"))
    return path


def test_broken_config_exits_fast():
    with tempfile.TemporaryDirectory(prefix="usage-run-test-") as tmp:
        run = Run(tmp, broken_config(tmp))
        try:
            run.wait_line("starting envoy", 60)
            envoy_exit = run.process_exit_time("envoy", 30)
            rc, ended = run.finish(30)
        finally:
            run.kill()
        out = run.text()
        assert rc == 1, f"exit code {rc}, expected 1:\n{out}"
        assert ended - envoy_exit < 2.0, f"exited {ended - envoy_exit:.2f} s after Envoy:\n{out}"
        assert KEY_LINE in out, f"the line naming the key is missing:\n{out}"
        assert "make run: envoy exited (status 1)" in out, out
        assert "usage-filter is running" not in out, f"a banner after a failure:\n{out}"
        for name in ("UPSTREAM", "COLLECTOR"):
            assert not listening(run.ports[name]), f"the {name.lower()} still runs after the failure"
        print(f"  exit 1 {ended - envoy_exit:.2f} s after Envoy's, key line shown, the rest stopped")


def test_port_taken_names_the_process():
    with tempfile.TemporaryDirectory(prefix="usage-run-test-") as tmp:
        # The collector's port, taken by someone else before run.sh starts.
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        run = Run(tmp, ports={"COLLECTOR": taken})
        try:
            t0 = time.monotonic()
            rc, ended = run.finish(60)
        finally:
            run.kill()
            blocker.close()
        out = run.text()
        assert rc == 1, f"exit code {rc}:\n{out}"
        assert "make run: collector exited (status 1)" in out, out
        assert f"cannot listen on 127.0.0.1:{taken}" in out, out
        assert "usage-filter is running" not in out, out
        for name in ("UPSTREAM", "API", "ADMIN"):
            assert not listening(run.ports[name]), f"{name.lower()} port still served after the failure"
        print(f"  collector named with its log line, exit 1 after {ended - t0:.2f} s")


def test_banner_only_after_the_probe_then_envoy_death_reported():
    with tempfile.TemporaryDirectory(prefix="usage-run-test-") as tmp:
        run = Run(tmp)
        try:
            run.wait_line("usage-filter is running in Envoy", 60)
            out = run.text()
            # The probe's event, as the collector stored it, is in the banner and in the file.
            with open(os.path.join(tmp, "events.ndjson")) as f:
                stored = f.read()
            assert '"api_path":"/make-run/probe"' in stored, stored
            assert stored.splitlines()[0] in out, f"the banner does not show the stored event:\n{out}"
            assert "without it: none" in out, out
            # A request after the banner: its log line is on run.sh's stdout within a second.
            req = urllib.request.Request(f"http://127.0.0.1:{run.ports['API']}/v1/after-banner",
                                         headers={"x-subscription-key": "k"})
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
            sent = time.monotonic()
            shown = run.wait_line('"api_path":"/v1/after-banner"', 5) - sent
            assert shown < 1.0, f"the event's log line took {shown:.2f} s to show"
            # Envoy quits after the banner: reported, the rest stopped, exit 1.
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{run.ports['ADMIN']}/quitquitquit", method="POST"), timeout=5)
            quit_at = time.monotonic()
            rc, ended = run.finish(30)
        finally:
            run.kill()
        out = run.text()
        assert rc == 1, f"exit code {rc}:\n{out}"
        assert "make run: envoy exited (status 0)" in out, out
        assert ended - quit_at < 2.0, f"noticed Envoy's exit after {ended - quit_at:.2f} s"
        for name in ("UPSTREAM", "COLLECTOR"):
            assert not listening(run.ports[name]), f"the {name.lower()} still runs"
        print(f"  banner after the probe's event; a request's log line shown in {shown:.2f} s; "
              f"Envoy's exit noticed in {ended - quit_at:.2f} s")


def test_ctrl_c_stops_everything():
    with tempfile.TemporaryDirectory(prefix="usage-run-test-") as tmp:
        run = Run(tmp)
        try:
            run.wait_line("Ctrl-C stops everything", 60)
            os.kill(run.proc.pid, signal.SIGINT)
            sent = time.monotonic()
            rc, ended = run.finish(30)
        finally:
            run.kill()
        assert rc == 0, f"exit code {rc}:\n{run.text()}"
        for name, port in run.ports.items():
            assert not listening(port), f"{name.lower()} port still served after Ctrl-C"
        print(f"  SIGINT: everything stopped, exit 0 after {ended - sent:.2f} s")


TESTS = [test_broken_config_exits_fast, test_port_taken_names_the_process,
         test_banner_only_after_the_probe_then_envoy_death_reported, test_ctrl_c_stops_everything]


if __name__ == "__main__":
    runner.main(TESTS, "run-test")
