#!/usr/bin/env bash
# The Kafka suite: installs Caddy, tansu (kafka/install-tansu.sh: cargo install, about 9
# CPU-minutes the first time, which .ci/run starts early in the background) and kafka-python (kafka/install-client.sh) if needed, builds the demo upstream,
# and runs kafka/e2e.py with the client's python. Arguments select scenarios by name.
# Needs dist/usage_filter.wasm and dist/usage-agent (make build), or USAGE_FILTER_WASM /
# USAGE_AGENT. The agent builds librdkafka from source (rdkafka crate).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
caddy/install-caddy.sh >/dev/null
kafka/install-tansu.sh >/dev/null
python=$(kafka/install-client.sh)
cargo build -q --release -p usage-collector
exec "$python" kafka/e2e.py "$@"
