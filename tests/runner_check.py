#!/usr/bin/env python3
"""`make runner-check`: the suites' runner (tests/e2e_lib/runner.py) does what the suites rely
on, checked on a suite of three trivial tests run as a child process (standard library only,
under a second): a name filter that matches nothing exits 5 and names the tests there are,
instead of passing with nothing run; a filter runs only the tests it matches; a failing test
makes the run exit 1 with its traceback; no filter runs every test."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = f"""
import sys
sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
from e2e_lib import runner


def test_alpha():
    print("ran alpha")


def test_beta():
    print("ran beta")


def test_broken():
    assert 1 == 2, "broken on purpose"


runner.main([test_alpha, test_beta, test_broken], "tiny")
"""


def run(path, *args):
    p = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def check(cond, what, out):
    if not cond:
        print(f"runner-check: {what}; the run printed:\n{out}", file=sys.stderr)
        sys.exit(1)


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tiny_suite.py")
        with open(path, "w") as f:
            f.write(SUITE)
        rc, out = run(path, "no_such_test")
        check(rc == 5, f"a filter matching no test exited {rc}, not 5", out)
        check("tiny: no test matches no_such_test (tests: test_alpha, test_beta, test_broken)" in out,
              "a filter matching no test does not say so", out)
        check("ran " not in out, "a filter matching no test ran a test", out)
        rc, out = run(path, "alpha", "no_such_test")
        check(rc == 0 and "ran alpha" in out and "ran beta" not in out and "tiny: 1 passed, 0 failed" in out,
              f"`alpha` did not run test_alpha alone (exit {rc})", out)
        rc, out = run(path, "broken")
        check(rc == 1 and "test test_broken ... FAILED" in out and "broken on purpose" in out
              and "tiny: 0 passed, 1 failed" in out, f"a failing test did not fail the run (exit {rc})", out)
        rc, out = run(path)
        check(rc == 1 and "ran alpha" in out and "ran beta" in out and "tiny: 2 passed, 1 failed" in out,
              f"no filter did not run every test (exit {rc})", out)
    print("runner-check: a filter matching nothing exits 5; filters select; a failure exits 1")


if __name__ == "__main__":
    main()
