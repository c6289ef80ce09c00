#!/usr/bin/env bash
# Builds the .wasm files the benchmarks use into dist/: the filter (make build), its bench build
# (extra exports for fuel-bench), and the reference filters from bench/ (no SDK: the filter's exports, floor-filter/src/abi.rs),
# all with the workspace's profile `wasm` and the same wasm-opt pass:
#   null_filter.wasm       the null filter: every callback crosses, nothing done
#   floor_filter.wasm      the floor: only the four host calls a complete event needs
#   probe_<kind>.wasm      the null filter plus one host call (kind: header clock map set_property log cel callout),
#                          or a step of the batch-callout bisection (tick post_bare … post_bodyread, src/batch.rs);
#                          probe_floor*.wasm: the floor, alone or with a batch step (part b3)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >/dev/null
opt="wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"
out=target/wasm32-wasip1/wasm
cargo build -q -p usage-filter --target wasm32-wasip1 --profile wasm --features bench
$opt $out/usage_filter.wasm -o dist/usage_filter_bench.wasm
# the references are built exactly like the filter: same profile and post-optimisation
# the null filter is the probe crate without a feature, so a probe differs from it by its one call
cargo build -q -p probe-filter --target wasm32-wasip1 --profile wasm
$opt $out/probe_filter.wasm -o dist/null_filter.wasm
cargo build -q -p floor-filter --target wasm32-wasip1 --profile wasm
$opt $out/floor_filter.wasm -o dist/floor_filter.wasm
# probe_floor*: the floor built again (part b3's own error), and the floor beside a batch step
# (floor_post_bare: no http sink at batch_size 100 costs less); a name's `_post` is a second feature
for kind in header clock map set_property log cel callout tick post_bare post_headers post_hold post_encode post_tickwork post_answer post_handback post_bodyread post_cut floor floor_post_bare floor_post_cut; do
  cargo build -q -p probe-filter --target wasm32-wasip1 --profile wasm --features "${kind/_post/,post}"
  $opt $out/probe_filter.wasm -o "dist/probe_$kind.wasm"
done
# the bench build overwrote the shared target path: restore the real artifact
make -s build >/dev/null
