# usage-filter — see README.md. Every target installs what it needs.
SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
DIST := dist/usage_filter.wasm
CARGO ?= cargo

.PHONY: build test unit wasm-unit host-test agent-test e2e e2e-caddy bench bench-report run run-test e2e-receivers e2e-llm e2e-identity run-caddy clippy toolchain fmt fmt-check wasm-opt fuzz fuzz-slice docs-check makefile-check runner-check sleep-check seed-check feature-check e2e-kafka

toolchain:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# The features wasm32-wasip1 code uses; wasm-opt must not assume more.
WASM_OPT := wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

## build: the filter (opt-level 3, LTO, panic=abort, stripped, then wasm-opt -Oz) at dist/usage_filter.wasm
build: toolchain wasm-opt
	$(CARGO) build -p usage-filter --target $(WASM_TARGET) --profile wasm
	@mkdir -p dist
	$(WASM_OPT) target/$(WASM_TARGET)/wasm/usage_filter.wasm -o $(DIST)
	@echo "built $(DIST) ($$(stat -c %s $(DIST)) bytes)"
	$(CARGO) build --release -p usage-agent
	@install -m 0755 target/release/usage-agent dist/usage-agent
	@echo "built dist/usage-agent"

# Binaryen's wasm-opt, from Debian
wasm-opt:
	@command -v wasm-opt >/dev/null || { apt-get update -qq && apt-get install -y -qq binaryen >/dev/null; }

## test: everything — native unit tests, the same tests inside wasm, the harness, Envoy e2e
test: docs-check makefile-check runner-check sleep-check feature-check build fmt-check clippy unit wasm-unit host-test agent-test e2e e2e-caddy fuzz-slice seed-check run-test e2e-receivers e2e-llm e2e-identity e2e-kafka

# clippy on the filter as it ships (wasm32), then on every crate natively with its tests
# (bench/probe-filter without a feature is the null filter; bench/build.sh builds one per feature).
# --release: the build scripts' output and the proc-macros are make build's, so librdkafka
# (rdkafka-sys's build script, ~2 CPU-minutes) is not compiled again for the dev profile.
clippy: toolchain
	$(CARGO) clippy -p usage-filter --target $(WASM_TARGET) --profile wasm -- -D warnings
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# README and docs/: every link and #anchor, README's headline numbers = docs/bench.md's, README's
# YAML a piece of envoy/envoy.yaml, README ≤ 250 lines (docs/check.py, standard library only)
docs-check:
	python3 docs/check.py

# every target of this Makefile in .PHONY, and nothing else there (tests/makefile_check.py)
makefile-check:
	python3 tests/makefile_check.py

# the suites' runner: a name filter matching no test exits 5, filters select, a failure exits 1
# (tests/runner_check.py, on a suite of three trivial tests)
runner-check:
	python3 tests/runner_check.py

# no test waits by sleeping: every sleep in the suites is marked `poll:` (a wait's interval) or
# `pace:` (the scenario's own timing) (tests/sleep_check.py)
sleep-check:
	python3 tests/sleep_check.py

# one feature set for the host's crates in every release invocation of cargo that make test
# makes, so wasmtime is compiled once (workspace-hack/; tests/feature_check.py, cargo tree, ~1 s)
feature-check:
	python3 tests/feature_check.py

# rustfmt over every crate; `make fmt` fixes what this finds
fmt-check:
	$(CARGO) fmt --all --check

# the collector's tests in --release: its dependencies are then the ones agent-test and the suites
# build (cargo build --release -p usage-collector), not a second, dev-profile tokio and hyper
unit:
	$(CARGO) test -p usage-filter
	$(CARGO) test --release -p usage-collector

# The filter's unit tests compiled for wasm32-wasip1 (libtest) and run on our host's WASI.
wasm-unit: toolchain
	$(CARGO) build --release -p proxy-wasm-host --bin wasi-test-runner
	@set -euo pipefail; \
	tests=$$($(CARGO) test -p usage-filter --target $(WASM_TARGET) --no-run --message-format=json \
	    | python3 -c 'import sys,json; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("executable")]'); \
	[ -n "$$tests" ] || { echo "wasm-unit: the wasm test build produced no test binary" >&2; exit 1; }; \
	for t in $$tests; do echo "wasm unit tests: $$t"; target/release/wasi-test-runner $$t; done

host-test: build
	$(CARGO) test -p proxy-wasm-host --release -- --test-threads=2

e2e: build
	envoy/e2e.sh

# usage-agent against the real reference collector, on the filter just built
agent-test: build
	$(CARGO) build --release -p usage-collector
	USAGE_FILTER_WASM=$(abspath $(DIST)) $(CARGO) test --release -p usage-agent

# Caddy: in the path through Envoy, and beside Caddy with usage-agent (real Caddy from PyPI)
e2e-caddy: build
	caddy/e2e.sh

# Caddy → usage-agent → Kafka and Envoy → usage-agent --listen-http → Kafka (~40 s; the first run
# installs tansu with cargo install, unoptimised, ~9 CPU-minutes, into .tools/, which .ci/run
# starts early in the background): a real tansu broker (sqlite storage) read back by kafka-python:
# every event once by id, keyed by organization (murmur2 partitions), a broker restart (both
# paths) and a broker down at the start lose nothing.
e2e-kafka: build
	kafka/e2e.sh

# Real receivers, filter in the real Envoy: ClickHouse (JSONEachRow inserts, a lost answer's
# retry deduplicated), the CloudEvents SDK, Prometheus scraping Envoy plus promtool on the
# alerting rules (examples/). Installs clickhouse-server and prometheus (apt) and the SDK (.tools/).
e2e-receivers: build
	@set -euo pipefail; py=$$(examples/receivers/install.sh); \
	$(CARGO) build -q --release -p usage-collector; \
	$$py examples/receivers/e2e.py

# LLM token metering in the real Envoy (~75 s): a fake LLM upstream streaming SSE with delays or
# in awkward pieces, the official openai, anthropic and google-genai SDKs (.tools/llm-venv) as
# clients; exact tokens and cost at the collector, streams not delayed (llm on, llm off, filter
# off in the same run); examples/llm-token-limit/envoy.yaml against a fake rate limit service.
e2e-llm: build
	@set -euo pipefail; py=$$(envoy/install-llm-sdks.sh); \
	$(CARGO) build -q --release -p usage-collector; \
	$$py envoy/e2e_llm.py

# Billing the verified identity (~6 s): Envoy's own jwt_authn (local JWKS, HS256 tokens signed
# by the test) before the filter; the key is the verified sub, kafka-rest keyed by organization,
# and what proxy_get_property returns for each kind of claim (docs/identity.md).
e2e-identity: build
	@envoy/install-envoy.sh >/dev/null
	$(CARGO) build -q --release -p usage-collector
	python3 envoy/e2e_identity.py

# Generated inputs against dist/usage_filter.wasm in our host (host/src/bin/fuzz):
# FUZZ_CASES (default 10,000,000), FUZZ_SEED (printed), FUZZ_THREADS (changes the speed, not the cases:
# the run ends with a digest of the cases to compare); FUZZ_SCENARIO=<seed> replays one.
fuzz: build
	$(CARGO) run --release -q -p proxy-wasm-host --bin fuzz

# The slice make test runs: a fixed seed, well under a minute.
fuzz-slice: build
	FUZZ_CASES=$${FUZZ_CASES:-300000} FUZZ_SEED=$${FUZZ_SEED:-1} $(CARGO) run --release -q -p proxy-wasm-host --bin fuzz

# make test's generated cases printed, fixed and the same on any CPU count: the fuzz slice's
# command (from make -n) with FUZZ_THREADS 1 and 2 prints one seed and one digest, the harness's
# proptest seed line the same in two runs (tests/seed_check.py, under a minute once built)
seed-check: build
	python3 tests/seed_check.py

## bench: Envoy and fuel benchmarks (not part of test; 7–8 min estimated), report in bench/results/ (docs/bench.md says how)
bench: build
	bench/run.sh

## bench-report: the same run, written to docs/bench.md, docs/bench.svg and docs/bench-breakdown.svg (README's headline: copy it)
bench-report: build
	BENCH_WRITE=1 bench/run.sh

run: build
	envoy/run.sh

# make run's script on free ports: a broken config, a taken port, the probe, Envoy dying, Ctrl-C (~6 s)
run-test: build
	python3 envoy/run_test.py

# The demo beside Caddy: upstream, collector, Caddy (caddy/Caddyfile.beside), usage-agent on its log
run-caddy: build
	caddy/run.sh

fmt:
	$(CARGO) fmt --all
