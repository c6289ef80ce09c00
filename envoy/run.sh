#!/usr/bin/env bash
# `make run`: the demo upstream, the reference collector and Envoy with usage-filter, all on
# loopback. Ctrl-C stops everything this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
envoy=$(envoy/install-envoy.sh)
cargo build -q --release -p usage-collector
run="$root/envoy/.run"
mkdir -p "$run"
: > "$run/events.ndjson"

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

target/release/demo-upstream --listen 127.0.0.1:18081 2>"$run/upstream.log" & pids+=($!)
target/release/collector --listen 127.0.0.1:18080 --out "$run/events.ndjson" 2>"$run/collector.log" & pids+=($!)
# The collector's token reaches the filter through the VM environment, not the YAML.
export COLLECTOR_TOKEN="${COLLECTOR_TOKEN:-Bearer demo-token}"
"$envoy" -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart --log-level warn \
  > >(tee "$run/usage-lines.ndjson") 2>"$run/envoy.log" & pids+=($!)

for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:9901/ready && break; sleep 0.2; done
cat <<MSG

usage-filter is running in Envoy (API on 127.0.0.1:10000, admin on 127.0.0.1:9901).

Try:
  curl -i -H 'x-subscription-key: demo-key' 'http://127.0.0.1:10000/v1/hello?status=200&bytes=42'
  curl -i -X POST -d '{"q":1}' -H 'x-subscription-key: demo-key' 'http://127.0.0.1:10000/v1/orders?status=201'

Events appear
  - on this terminal (Envoy's stdout): one JSON line per request (log sink),
  - at the collector within a second: $run/events.ndjson  (stats: curl 127.0.0.1:18080/stats),
  - as counters: curl -s 127.0.0.1:9901/stats | grep wasmcustom

Ctrl-C stops everything.
MSG
wait
