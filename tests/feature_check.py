#!/usr/bin/env python3
"""`make feature-check`: every release invocation of cargo that make test makes resolves the
same features for every crate the host (wasmtime, cranelift, ...) is built from, so wasmtime is
compiled once per clean build and not once per invocation. workspace-hack/Cargo.toml is what
makes that true; this check names a crate whose features drifted apart (a new dependency of the
agent, say) and what to add there. Uses `cargo tree` (offline, a few seconds)."""
import collections
import subprocess
import sys

# the host's own build: every crate of its tree is checked in the others
HOST_BUILD = "cargo build -p proxy-wasm-host"
# (label, cargo tree arguments): the agent's build (make build) and tests (agent-test), the
# host's binaries (wasm-unit's runner, fuzz-slice) and tests (host-test).
INVOCATIONS = [
    ("cargo build -p usage-agent", ["-p", "usage-agent", "-e", "normal,build"]),
    ("cargo test -p usage-agent", ["-p", "usage-agent", "-e", "normal,build,dev"]),
    (HOST_BUILD, ["-p", "proxy-wasm-host", "-e", "normal,build"]),
    ("cargo test -p proxy-wasm-host", ["-p", "proxy-wasm-host", "-e", "normal,build,dev"]),
]


def features(args):
    """{(crate, version): set of feature lists} (a crate built for the target and again for
    build scripts can have two)."""
    out = subprocess.run(
        ["cargo", "tree", *args, "-f", "{p} {f}", "--prefix", "none", "--no-dedupe"],
        capture_output=True, text=True, check=True,
    ).stdout
    found = collections.defaultdict(set)
    for line in out.splitlines():
        parts = line.replace(" (*)", "").replace(" (proc-macro)", "").split(" ")
        if len(parts) < 2:
            continue
        rest = " ".join(parts[2:])
        if rest.startswith("("):  # a workspace crate: "(path) features"
            rest = rest.split(")", 1)[1]
        found[(parts[0], parts[1])].add(rest.strip())
    return found


def main():
    resolved = [(label, features(args)) for label, args in INVOCATIONS]
    host = dict(resolved)[HOST_BUILD]
    drift = []
    for crate in sorted(host):
        # Each feature set the host's own build needs must be one every invocation builds too.
        # An extra set elsewhere is a second copy for build scripts (the agent's indexmap with
        # `default` under rdkafka's build), which wasmtime does not link.
        seen = {label: f[crate] for label, f in resolved if crate in f}
        if any(not host[crate] <= sets for sets in seen.values()):
            drift.append((crate, seen))
    for (name, version), seen in drift:
        print(f"feature-check: {name} {version} is built with different features:", file=sys.stderr)
        for label, sets in seen.items():
            print(f"  {label}: {' | '.join(sorted(sets)) or '(none)'}", file=sys.stderr)
    if drift:
        print("feature-check: add the union of those features to workspace-hack/Cargo.toml "
              "([build-dependencies] for a proc-macro's or build script's dependency)", file=sys.stderr)
        return 1
    print(f"feature-check: {len(host)} crates of the host's tree, one feature set across "
          f"{len(INVOCATIONS)} invocations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
