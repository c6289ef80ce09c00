#!/usr/bin/env bash
# Builds the three .wasm files the benchmarks use into dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >/dev/null
cargo build -q -p usage-filter --target wasm32-wasip1 --profile wasm --features bench
cp target/wasm32-wasip1/wasm/usage_filter.wasm dist/usage_filter_bench.wasm
cargo build -q -p null-filter --target wasm32-wasip1 --profile wasm
cp target/wasm32-wasip1/wasm/null_filter.wasm dist/null_filter.wasm
# the bench build overwrote the shared target path: restore the real artifact
make -s build >/dev/null
