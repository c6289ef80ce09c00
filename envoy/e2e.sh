#!/usr/bin/env bash
# `make e2e`: builds the collector and demo upstream, installs Envoy (and openssl) if needed,
# runs envoy/e2e.py (arguments select scenarios by name).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
envoy/install-envoy.sh >/dev/null
# the TLS scenario makes its certificates with openssl
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
cargo build -q --release -p usage-collector
exec python3 envoy/e2e.py "$@"
