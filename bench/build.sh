#!/usr/bin/env bash
# Builds the three .wasm files the benchmarks use into dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >/dev/null
opt="wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"
cargo build -q -p usage-filter --target wasm32-wasip1 --profile wasm --features bench
$opt target/wasm32-wasip1/wasm/usage_filter.wasm -o dist/usage_filter_bench.wasm
# the floor is built exactly like the filter: same SDK, profile and post-optimisation
cargo build -q -p null-filter --target wasm32-wasip1 --profile wasm
$opt target/wasm32-wasip1/wasm/null_filter.wasm -o dist/null_filter.wasm
# the bench build overwrote the shared target path: restore the real artifact
make -s build >/dev/null
