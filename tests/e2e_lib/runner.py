"""The suites' runner: `main(tests, "suite name")` at the end of every suite.

Arguments select tests by substring of their names; a filter that selects nothing is an
error (exit 5, as pytest's "no tests collected": caddy/e2e.sh runs three suites with the
same arguments and fails only if none of them had a match). One line per test
(`test <name> ... ok (1.2s)` or `... FAILED` with the traceback), then
`<suite>: N passed, M failed`. SIGTERM and SIGHUP stop the run like Ctrl-C, and every
stack still open is closed.
"""
import signal
import sys
import time
import traceback

from .procs import close_live_stacks

NO_MATCH = 5


def select(tests, only):
    return [t for t in tests if not only or any(o in t.__name__ for o in only)]


def run_tests(tests, only):
    """Runs the tests whose names contain one of `only` (all when empty), one line each;
    returns (passed, failed)."""
    passed = failed = 0
    for t in select(tests, only):
        start = time.time()
        try:
            t()
            passed += 1
            print(f"test {t.__name__} ... ok ({time.time() - start:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"test {t.__name__} ... FAILED ({time.time() - start:.1f}s)", flush=True)
            traceback.print_exc()
            sys.stdout.flush()
    return passed, failed


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(tests, suite, argv=None, after=None):
    """Runs the suite and exits: 0 all passed, 1 a failure, NO_MATCH when the name filters
    select no test. `after()` runs once the tests are done (a summary line)."""
    only = sys.argv[1:] if argv is None else argv
    if not select(tests, only):
        print(f"{suite}: no test matches {' '.join(only)} (tests: {', '.join(t.__name__ for t in tests)})",
              flush=True)
        sys.exit(NO_MATCH)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    start = time.time()
    passed = failed = 0
    try:
        passed, failed = run_tests(tests, only)
    finally:
        close_live_stacks()
    if after is not None:
        after()
    print(f"{suite}: {passed} passed, {failed} failed ({time.time() - start:.0f}s)", flush=True)
    sys.exit(1 if failed else 0)
