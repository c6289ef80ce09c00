#!/usr/bin/env bash
# The Caddy suite: builds the collector and demo upstream, installs Caddy and Envoy if needed,
# runs caddy/e2e.py (arguments select scenarios by name). Needs dist/usage_filter.wasm
# (make build), or USAGE_FILTER_WASM=path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
caddy/install-caddy.sh >/dev/null
envoy/install-envoy.sh >/dev/null
cargo build -q --release -p usage-collector
exec python3 caddy/e2e.py "$@"
