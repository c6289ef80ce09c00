#!/usr/bin/env bash
# `make run`: the demo upstream, the reference collector and Envoy with usage-filter, all on
# loopback. The banner is printed only after a keyed probe request went through Envoy and its
# event reached the collector. If any of the three exits or never becomes ready, the lines of
# its log that say why are printed, the others are stopped and the script exits 1 (within a
# fraction of a second). Ctrl-C stops everything this script started.
#
# Overrides, for tests and for trying a configuration without editing envoy/envoy.yaml:
#   USAGE_RUN_CONFIG=path    Envoy configuration to run (default envoy/envoy.yaml)
#   USAGE_RUN_DIR=path       where logs and events.ndjson go (default envoy/.run)
#   USAGE_RUN_API_PORT, USAGE_RUN_ADMIN_PORT, USAGE_RUN_UPSTREAM_PORT, USAGE_RUN_COLLECTOR_PORT
#                            ports (defaults 10000, 9901, 18081, 18080); a port that differs
#                            from the configuration's is substituted in a copy under the run dir
#   USAGE_RUN_READY_S=N      how long Envoy may take to become ready (default 20)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
envoy=$(envoy/install-envoy.sh)
cargo build -q --release -p usage-collector

config="${USAGE_RUN_CONFIG:-envoy/envoy.yaml}"
run="${USAGE_RUN_DIR:-$root/envoy/.run}"
api="${USAGE_RUN_API_PORT:-10000}"
admin="${USAGE_RUN_ADMIN_PORT:-9901}"
upstream="${USAGE_RUN_UPSTREAM_PORT:-18081}"
collector="${USAGE_RUN_COLLECTOR_PORT:-18080}"
ready_s="${USAGE_RUN_READY_S:-20}"
mkdir -p "$run"
: > "$run/events.ndjson"
[ -r "$config" ] || { echo "make run: cannot read the Envoy configuration $config" >&2; exit 1; }
if [ "$api $admin $upstream $collector" != "10000 9901 18081 18080" ]; then
  sed -e "s/port_value: 10000\b/port_value: $api/" -e "s/port_value: 9901\b/port_value: $admin/" \
      -e "s/port_value: 18081\b/port_value: $upstream/" \
      -e "s/port_value: 18080\b/port_value: $collector/" "$config" > "$run/envoy.yaml"
  config="$run/envoy.yaml"
fi

names=() pids=() logs=()
stopping=0
stop_all() {
  stopping=1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Give each two seconds, then kill what is left.
  for _ in $(seq 20); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
on_signal() { trap - INT TERM; echo; echo "stopping..."; stop_all; exit 0; }
trap on_signal INT TERM
trap '[ "$stopping" = 1 ] || stop_all' EXIT

# The lines of a log that say why: Envoy's error and critical lines (and their continuation
# lines), else the last 20 lines.
why() {
  local log=$1 lines
  lines=$(grep -E '\]\[(error|critical)\]|^[^[]' "$log" 2>/dev/null | tail -n 20 || true)
  [ -n "$lines" ] || lines=$(tail -n 20 "$log" 2>/dev/null || true)
  if [ -n "$lines" ]; then printf '%s\n' "$lines" | sed 's/^/  | /'; else echo "  | (its log $log is empty)"; fi
}

# fail NAME REASON: say what happened with the log of NAME (if any), stop the rest, exit 1.
fail() {
  local name=$1 reason=$2 i
  {
    echo
    echo "make run: $name $reason"
    for i in "${!names[@]}"; do
      if [ "${names[$i]}" = "$name" ]; then
        echo "  from ${logs[$i]}:"
        why "${logs[$i]}"
      fi
    done
    echo "make run: stopping the rest; nothing is running."
  } >&2
  stop_all
  exit 1
}

# A process that has exited: "NAME exited with status N", else nothing.
check_alive() {
  local i status
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      status=0; wait "${pids[$i]}" 2>/dev/null || status=$?
      fail "${names[$i]}" "exited (status $status)"
    fi
  done
}

start() { names+=("$1"); logs+=("$2"); pids+=("$3"); }

target/release/demo-upstream --listen "127.0.0.1:$upstream" 2>"$run/upstream.log" &
start upstream "$run/upstream.log" $!
target/release/collector --listen "127.0.0.1:$collector" --out "$run/events.ndjson" \
  2>"$run/collector.log" &
start collector "$run/collector.log" $!
# The collector's token reaches the filter through the VM environment, not the YAML.
export COLLECTOR_TOKEN="${COLLECTOR_TOKEN:-Bearer demo-token}"
echo "starting envoy -c $config" >&2
# Event lines are flushed to stdout every 100 ms (Envoy waits 10 s by default).
"$envoy" -c "$config" --concurrency 2 --disable-hot-restart --log-level warn --file-flush-interval-msec 100 \
  > >(tee "$run/usage-lines.ndjson") 2>"$run/envoy.log" &
start envoy "$run/envoy.log" $!

# wait_ready NAME SECONDS COMMAND...: poll COMMAND every 0.1 s while watching every process.
wait_ready() {
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    check_alive
    [ "$SECONDS" -lt "$deadline" ] || fail "$name" "was not ready after ${seconds} s"
    sleep 0.1
  done
}
wait_ready upstream 10 curl -sf -m 1 "http://127.0.0.1:$upstream/ready-check"
wait_ready collector 10 curl -sf -m 1 "http://127.0.0.1:$collector/healthz"
wait_ready envoy "$ready_s" curl -sf -m 1 "http://127.0.0.1:$admin/ready"

# The proof: a keyed request through Envoy whose event reaches the collector.
probe_path=/make-run/probe
code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'x-subscription-key: make-run-probe' \
  "http://127.0.0.1:$api$probe_path?status=200&bytes=2" || true)
check_alive
[ "$code" = 200 ] || fail envoy "answered the probe request with ${code:-no response} (expected 200 from the upstream)"
deadline=$((SECONDS + 10))
until probe_event=$(grep -m1 -F "\"api_path\":\"$probe_path\"" "$run/events.ndjson"); do
  check_alive
  [ "$SECONDS" -lt "$deadline" ] || fail envoy "passed the probe request but its event did not reach the collector within 10 s"
  sleep 0.1
done

shown_run=${run#"$root"/}   # relative to the repository root when inside it
# What the filter says of itself at VM start, read from the .wasm `make build` just made
# (Envoy runs here at --log-level warn, which hides that info line).
build=$(grep -aoE 'usage-filter [0-9]+\.[0-9]+\.[0-9]+[^ ]* \(([0-9a-f]+|unknown)\)' dist/usage_filter.wasm \
  | head -n1 || true)
cat <<MSG

usage-filter is running in Envoy (API on 127.0.0.1:$api, admin on 127.0.0.1:$admin).
Build: ${build:-unknown (no version line found in dist/usage_filter.wasm)}, as each Wasm VM logs it at start.
A probe request went through it and its event reached the collector:
  $probe_event

Try (only requests with the x-subscription-key header make an event; without it: none):
  curl -i -H 'x-subscription-key: demo-key' 'http://127.0.0.1:$api/v1/hello?status=200&bytes=42'
  curl -i -X POST -d '{"q":1}' -H 'x-subscription-key: demo-key' 'http://127.0.0.1:$api/v1/orders?status=201&delay_ms=30'
The demo upstream answers what the query asks: status (200..599), bytes (body size), delay_ms.

Events appear
  - on this terminal (Envoy's stdout): one JSON line per request (log sink),
  - at the collector within a second: $shown_run/events.ndjson
    (curl 127.0.0.1:$collector/stats for its counts; POST /faults makes it fail, POST /reset empties it),
  - as counters: curl -s 127.0.0.1:$admin/stats | grep wasmcustom

Ctrl-C stops everything.
MSG

# Running: a process that exits now is reported the same way.
while :; do
  check_alive
  sleep 0.2
done
