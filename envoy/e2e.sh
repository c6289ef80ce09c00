#!/usr/bin/env bash
# `make e2e`: builds the collector and demo upstream, installs Envoy if needed, runs envoy/e2e.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
envoy/install-envoy.sh >/dev/null
cargo build -q --release -p usage-collector
exec python3 envoy/e2e.py "$@"
