#!/usr/bin/env bash
# `make run-caddy`: usage-filter beside Caddy. The demo upstream, the reference collector,
# Caddy 2.11.7 (caddy/Caddyfile.beside) writing its JSON access log, and usage-agent running
# dist/usage_filter.wasm on that log (caddy/usage-agent.json), all on loopback. Needs
# `make build`. Ctrl-C stops everything this script started; if something does not start,
# it stops the rest and exits non-zero saying what.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
caddy=$(caddy/install-caddy.sh)
cargo build -q --release -p usage-collector
for f in dist/usage_filter.wasm dist/usage-agent; do
  [ -e "$f" ] || { echo "run-caddy: $f is missing (make build)" >&2; exit 1; }
done
run="$root/caddy/.run"
mkdir -p "$run"
: > "$run/events.ndjson"
rm -rf "$run/agent-state.json" "$run/log"
mkdir -p "$run/log"

pids=()
names=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

fail() { # name, log file
  echo "run-caddy: $1 did not start; the end of $2:" >&2
  tail -n 15 "$2" >&2 || true
  exit 1
}

# Waits until host:port accepts a connection, or the process (pid) exits, or 10 s pass.
wait_port() { # pid, port, name, log
  for _ in $(seq 100); do
    kill -0 "$1" 2>/dev/null || fail "$3" "$4"
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$3" "$4"
}

start() { # name, port, log, command...
  local name=$1 port=$2 log=$3; shift 3
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run-caddy: $name: port $port is already in use" >&2
    exit 1
  fi
  "$@" 2>"$log" & pids+=($!)
  wait_port "$!" "$port" "$name" "$log"
}

start "the demo upstream (127.0.0.1:18081)" 18081 "$run/upstream.log" \
  target/release/demo-upstream --listen 127.0.0.1:18081
start "the collector (127.0.0.1:18080)" 18080 "$run/collector.log" \
  target/release/collector --listen 127.0.0.1:18080 --out "$run/events.ndjson"
# Caddy's autosave and data folders stay under caddy/.run, not in $HOME.
start "Caddy (127.0.0.1:10080)" 10080 "$run/caddy.log" \
  env XDG_CONFIG_HOME="$run/caddy-config" XDG_DATA_HOME="$run/caddy-data" \
  "$caddy" run --config caddy/Caddyfile.beside --adapter caddyfile
# The collector's token reaches the filter through the VM environment, not the JSON.
export COLLECTOR_TOKEN="${COLLECTOR_TOKEN:-Bearer demo-token}"
start "usage-agent (metrics 127.0.0.1:9412)" 9412 "$run/agent.log" \
  dist/usage-agent --wasm dist/usage_filter.wasm --config caddy/usage-agent.json \
  --follow caddy/.run/log/access.log --state caddy/.run/agent-state.json \
  --dead-letter caddy/.run/refused.jsonl \
  --cluster collector=127.0.0.1:18080 --metrics 127.0.0.1:9412 --env COLLECTOR_TOKEN

cat <<MSG

usage-filter is running beside Caddy: Caddy on 127.0.0.1:10080 proxies to the demo upstream
and writes $run/log/access.log; usage-agent runs each entry through dist/usage_filter.wasm.

Try:
  curl -i -H 'x-subscription-key: demo-key' 'http://127.0.0.1:10080/v1/hello?status=200&bytes=42'
  curl -i -X POST -d '{"q":1}' -H 'x-subscription-key: demo-key' 'http://127.0.0.1:10080/v1/orders?status=201'

Events appear
  - at the collector within a second: $run/events.ndjson  (stats: curl 127.0.0.1:18080/stats),
  - as counters: curl -s 127.0.0.1:9412/metrics   (the filter's and the agent's own).
Logs: $run/{caddy,agent,collector,upstream}.log

Ctrl-C stops everything.
MSG
# Ends when any of them ends (then the trap stops the others).
wait -n "${pids[@]}" || true
echo "run-caddy: a process exited; stopping the rest" >&2
exit 1
