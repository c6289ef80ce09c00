#!/usr/bin/env python3
"""`make makefile-check`: every target the Makefile defines is in its .PHONY line, and .PHONY
names no target that does not exist (none of them makes a file of its name, so a file or
folder called like one, e.g. `fuzz/` or `docs/`, must not make make skip it). Standard library
only; run from anywhere, or give another Makefile's path."""
import os
import re
import sys


def targets_and_phony(text):
    text = text.replace("\\\n", " ")
    targets, phony = set(), set()
    for line in text.splitlines():
        if line.startswith(("\t", "#")) or not line.strip():
            continue
        m = re.match(r"^([A-Za-z0-9_.%/-][A-Za-z0-9_.%/ -]*?)\s*::?(?!=)", line)
        if not m:
            continue
        names = m.group(1).split()
        if names == [".PHONY"]:
            phony |= set(line.split(":", 1)[1].split())
        elif not any(n.startswith(".") or "%" in n for n in names):
            targets |= set(names)
    return targets, phony


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "Makefile")
    with open(path) as f:
        targets, phony = targets_and_phony(f.read())
    missing, stale = sorted(targets - phony), sorted(phony - targets)
    if missing:
        print(f"{path}: targets missing from .PHONY: {' '.join(missing)}", file=sys.stderr)
    if stale:
        print(f"{path}: .PHONY names no such target: {' '.join(stale)}", file=sys.stderr)
    if missing or stale:
        sys.exit(1)
    print(f"{path}: .PHONY lists all {len(targets)} targets")


if __name__ == "__main__":
    main()
