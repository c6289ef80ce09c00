#!/usr/bin/env bash
# `make bench`: (a) fuel, host calls and memory in our host, (a2) the wasm alone timed in V8
# (Node's, when node is installed), (b) overhead in the real Envoy 1.40,
# per host call and against the floor, (b3) the same with every configuration loaded at once
# (~3 min at its default 10 rounds), (c) delivery. Writes bench/results/ (git-ignored):
# fuel.json, envoy.json, bench.md, bench.svg, bench-breakdown.svg. With BENCH_WRITE=1 (`make bench-report`) the
# report goes to docs/bench.md, docs/bench.svg and docs/bench-breakdown.svg instead (README's headline numbers are
# copied from docs/bench.md by hand; `make docs-check` fails while they differ). Measured once built: 12 minutes with BENCH_ROUNDS=7 (the `chat` route, added since, adds about 2) (175
# measurements of 3 s plus settling, (a) and (a2) ~1 min, (d) ~1 min, plus ~2 min for its Kafka part); about 9 with the default 5.
#
# Settings (environment; see bench/envoy_bench.py and docs/bench.md):
#   BENCH_ROUNDS=5 BENCH_SECONDS=3 BENCH_ROUTES=direct,proxy,sse,chat BENCH_PROBE_ROUTES=direct
#   BENCH_CONNECTIONS=32 BENCH_ENVOY_CPU=0 BENCH_LOAD_CPU=1 BENCH_CONFIGS=...
#   BENCH_VARIANTS=name=path,...   other builds of the filter in the same run
#   BENCH_BEFORE=path              the "before" build: fuel-bench compares it per callback and
#                                  the Envoy run measures it as variant `before`
#   BENCH_NO_BUILD=1               measure the .wasm files already in dist/
#   BENCH_WRITE=1                  write docs/bench.md, bench.svg and bench-breakdown.svg instead of bench/results/
#   BENCH_BACKLOG=1                (e) also: draining a full buffer after an outage, with and without
#                                  http.backlog_batch_size (bench/backlog_bench.py, ~3 min)
set -euo pipefail
if [ -n "${BENCH_BEFORE:-}" ]; then
  BENCH_BEFORE=$(realpath "$BENCH_BEFORE"); export BENCH_BEFORE
  [ -f "$BENCH_BEFORE" ] || { echo "BENCH_BEFORE: no file $BENCH_BEFORE" >&2; exit 1; }
fi
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
command -v taskset >/dev/null || (apt-get update -qq && apt-get install -y -qq util-linux) >/dev/null
envoy/install-envoy.sh >/dev/null
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  bench/build.sh
fi
# separate invocations: building them together unifies features and rebuilds wasmtime
cargo build -q --release -p usage-collector
cargo build -q --release -p proxy-wasm-host --bin fuel-bench
mkdir -p bench/results
echo "== (a) fuel, host calls and memory in our host"
target/release/fuel-bench dist/usage_filter.wasm dist/usage_filter_bench.wasm dist/null_filter.wasm \
  ${BENCH_BEFORE:+"$BENCH_BEFORE"} > bench/results/fuel.json
echo "== (a2) the wasm alone in V8 (node), when there is a node"
python3 bench/v8_bench.py ${BENCH_BEFORE:+"$BENCH_BEFORE"}
echo "== (b, c) Envoy 1.40, ${BENCH_ROUNDS:-5} interleaved rounds of ${BENCH_SECONDS:-3}s"
python3 bench/envoy_bench.py
echo "== (b3) Envoy 1.40, every configuration loaded at once on one CPU (${CONC_ROUNDS:-10} rounds of ${CONC_SECONDS:-6}s)"
python3 bench/concurrent_bench.py
echo "== (b2) one batch callout in Envoy, step by step (burst mode, ${CALLOUT_ROUNDS:-15} rounds)"
python3 bench/callout_bench.py
echo "== (d) usage-agent beside Caddy: entries per second on one core into the collector, and into Kafka"
caddy/install-caddy.sh >/dev/null
kafka/install-tansu.sh >/dev/null
python3 caddy/bench_agent.py > bench/results/agent.json
cat bench/results/agent.json
if [ -n "${BENCH_BACKLOG:-}" ]; then
  echo "== (e) draining a backlog after an outage, with and without http.backlog_batch_size (${BACKLOG_ROUNDS:-3} rounds)"
  python3 bench/backlog_bench.py
fi
python3 bench/report.py
