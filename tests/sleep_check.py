#!/usr/bin/env python3
"""`make sleep-check`: no test waits by sleeping. Every sleep in the test suites (the Python
suites and their library, and the Rust crates' tests/) says what it is, in a comment on its
line or the line above:

- `poll:` the interval of a wait on a condition with a deadline (tests/e2e_lib/wait.py's
  `wait_for`, or a loop of the same shape);
- `pace:` the scenario's own timing: an outage's length, a writer's or a sender's pace, an
  upstream streaming slowly.

Any other sleep is synchronisation by guessing how long something takes: wait on the
condition instead (`wait_for(pred, timeout, what)`). Benchmarks (bench/, caddy/bench_agent.py)
and the test data generator (caddy/testdata/) are not suites. Standard library only."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".tools", "target", "dist", "bench", "testdata", "node_modules", "__pycache__"}
SKIP_FILES = {"caddy/bench_agent.py"}
SLEEP = re.compile(r"\btime\.sleep\(|\bthread::sleep\(|\btokio::time::sleep\(")
MARK = re.compile(r"(#|//).*\b(poll|pace):")


def suite_files():
    for dirpath, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, ROOT)
        parts = rel_dir.split(os.sep)
        for f in sorted(files):
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if rel in SKIP_FILES:
                continue
            # Python anywhere outside the skipped folders; Rust only under a crate's tests/
            if f.endswith(".py") or (f.endswith(".rs") and "tests" in parts):
                yield rel


def unmarked(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for n, line in enumerate(lines):
        code = line.split("#", 1)[0] if rel.endswith(".py") else line.split("//", 1)[0]
        if SLEEP.search(code) and not MARK.search(line) and not (n and MARK.search(lines[n - 1])):
            yield n + 1, line.strip()


def main():
    found = [(rel, n, text) for rel in suite_files() for n, text in unmarked(rel)]
    for rel, n, text in found:
        print(f"{rel}:{n}: a sleep that is neither a poll (`poll:`) nor the scenario's pace (`pace:`): "
              f"{text}", file=sys.stderr)
    if found:
        print("sleep-check: wait on a condition with a deadline instead (tests/e2e_lib/wait.py)", file=sys.stderr)
        sys.exit(1)
    print("sleep-check: every sleep in the suites is a poll interval or the scenario's pace")


if __name__ == "__main__":
    main()
