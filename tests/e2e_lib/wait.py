"""Waiting on a condition with a deadline: the only way the suites wait for something."""
import time


def wait_for(pred, timeout, what, interval=0.05, ignore=()):
    """Calls pred until it returns something true (returned), at most `timeout` seconds;
    then AssertionError naming `what` and the last value. Exceptions of the types in
    `ignore` (e.g. OSError while a server starts) count as a false answer."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except ignore as e:  # noqa: PERF203
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)  # poll: the condition's interval
