#!/usr/bin/env python3
"""`make seed-check`: `make test`'s generated cases are printed, fixed, and the same on any
CPU count.

- The fuzz slice: the command `make fuzz-slice` runs (read from `make -n`, so a change to the
  Makefile is what is checked) is run on a smaller count with FUZZ_THREADS=1 and
  FUZZ_THREADS=2, FUZZ_SEED unset as in `make test`: both runs print the same seed and end with
  the same digest of the cases they ran (a seed from the clock, or cases that depend on the
  thread count, differ).
- The harness's property test: its seed line is printed, the same in two runs
  (`generated: proptest seed N`); that the generator uses that seed is
  `generated::the_generators_seed_is_fixed_unless_named` in `make host-test`.

Needs `make build` (dist/usage_filter.wasm). Standard library only."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = "20000"
ENV = {k: v for k, v in os.environ.items() if k not in ("FUZZ_SEED", "FUZZ_THREADS", "FUZZ_CASES",
                                                         "FUZZ_SCENARIO", "PROPTEST_RNG_SEED", "MAKEFLAGS")}


def fail(msg):
    print(f"seed-check: {msg}", file=sys.stderr)
    sys.exit(1)


def slice_command():
    out = subprocess.run(["make", "-n", "--no-print-directory", "fuzz-slice"], cwd=ROOT, env=ENV, text=True,
                         capture_output=True, check=True).stdout
    lines = [l for l in out.splitlines() if "--bin fuzz" in l]
    if len(lines) != 1:
        fail(f"`make -n fuzz-slice` has {len(lines)} commands running --bin fuzz:\n{out}")
    return lines[0]


def run_slice(cmd, threads):
    p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=dict(ENV, FUZZ_CASES=CASES, FUZZ_THREADS=str(threads)),
                       text=True, capture_output=True, timeout=600)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        fail(f"the fuzz slice with FUZZ_THREADS={threads} failed ({p.returncode}):\n{out[-3000:]}")
    seed = re.search(r"^fuzz: \d+ cases in \d+ scenarios, seed (0x[0-9a-f]+)", out, re.M)
    digest = re.search(r"^fuzz: digest (0x[0-9a-f]+)", out, re.M)
    if not seed or not digest:
        fail(f"the fuzz slice with FUZZ_THREADS={threads} printed no seed or no digest:\n{out[-3000:]}")
    return seed.group(1), digest.group(1)


def proptest_seed():
    p = subprocess.run(["cargo", "test", "-q", "--release", "-p", "proxy-wasm-host", "--test", "harness",
                        "generated::the_generators_seed", "--", "--test-threads=1"],
                       cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=1200)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        fail(f"the harness's seed test failed ({p.returncode}):\n{out[-3000:]}")
    seeds = re.findall(r"^generated: proptest seed (\d+) ", out, re.M)
    if not seeds:
        fail(f"the harness printed no proptest seed:\n{out[-3000:]}")
    return seeds[0]


def main():
    cmd = slice_command()
    one, two = run_slice(cmd, 1), run_slice(cmd, 2)
    if one[0] != two[0]:
        fail(f"the fuzz slice's seed changes between runs ({one[0]}, then {two[0]}): not fixed in make test ({cmd})")
    if one[1] != two[1]:
        fail(f"the fuzz slice ran other cases with FUZZ_THREADS=2 than with 1 (seed {one[0]}, {CASES} cases): "
             f"digest {one[1]} vs {two[1]}")
    a, b = proptest_seed(), proptest_seed()
    if a != b:
        fail(f"proptest's seed changes between runs ({a}, then {b})")
    print(f"seed-check: fuzz slice seed {one[0]}, digest {one[1]} with 1 and 2 threads ({CASES} cases); "
          f"proptest seed {a}, printed and the same in two runs")


if __name__ == "__main__":
    main()
