#!/usr/bin/env bash
# The Caddy suite: builds the collector and demo upstream, installs Caddy and Envoy if needed,
# runs caddy/e2e.py (in the path: Caddy → Envoy with the filter), caddy/e2e_agent.py
# (beside: usage-agent on Caddy's access log) and caddy/e2e_agent_file.py (usage-agent --follow:
# nothing lost while the file holds it, issue 18). Arguments select scenarios by name in all.
# Needs dist/usage_filter.wasm and dist/usage-agent (make build), or USAGE_FILTER_WASM /
# USAGE_AGENT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
caddy/install-caddy.sh >/dev/null
envoy/install-envoy.sh >/dev/null
cargo build -q --release -p usage-collector
rc=0
python3 caddy/e2e.py "$@" || rc=1
python3 caddy/e2e_agent.py "$@" || rc=1
python3 caddy/e2e_agent_file.py "$@" || rc=1
exit $rc
