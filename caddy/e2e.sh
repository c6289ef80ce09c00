#!/usr/bin/env bash
# The Caddy suite: builds the collector and demo upstream, installs Caddy and Envoy if needed,
# runs caddy/e2e.py (in the path: Caddy → Envoy with the filter), caddy/e2e_agent.py
# (beside: usage-agent on Caddy's access log) and caddy/e2e_agent_file.py (usage-agent --follow:
# nothing lost while the file holds it, issue 18). Arguments select scenarios by name in all;
# a name that matches no scenario in any of them is an error.
# Needs dist/usage_filter.wasm and dist/usage-agent (make build), or USAGE_FILTER_WASM /
# USAGE_AGENT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
caddy/install-caddy.sh >/dev/null
envoy/install-envoy.sh >/dev/null
cargo build -q --release -p usage-collector
# A suite exits 5 when no test of its own matches the arguments (tests/e2e_lib/runner.py):
# that is an error only when it is so for all three.
rc=0 matched=0
for suite in caddy/e2e.py caddy/e2e_agent.py caddy/e2e_agent_file.py; do
    python3 "$suite" "$@" && r=0 || r=$?
    case $r in
        0) matched=1 ;;
        5) ;;
        *) matched=1 rc=1 ;;
    esac
done
[ "$matched" = 1 ] || { echo "caddy/e2e.sh: no test in the three suites matches: $*" >&2; exit 5; }
exit $rc
