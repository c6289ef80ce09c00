#!/usr/bin/env python3
"""What a broker outage costs each path to Kafka (docs/delivery.md#which-path-for-envoy): 3,000
keyed requests sent in groups of 50 while tansu is killed (SIGKILL) once 300 are delivered and
restarted OUTAGE seconds later on its data; then the topic is read back. Prints one JSON line:
requests, lost (no record), records, repeats (same id), and the filter's counters.

Paths: `envoy` (Envoy → usage-agent --listen-http, kafka/envoy-filter.json: 10 attempts,
backoff ≤ 2 s), `envoy-defaults` (the same without its `retry` block: the filter's 3 attempts),
`follow` (Caddy → access log → usage-agent --follow). The producer runs with ?idempotence=false
(see docs/delivery.md#kafka). Not part of `make test` (a 60 s outage takes 2 minutes).
Usage: kafka/e2e.sh's python: .tools/kafka-venv/bin/python kafka/restart_loss.py OUTAGE PATH
"""
import json
import os
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e as k  # noqa: E402
from agent_checks import metrics  # noqa: E402
from e2e_lib import wait_for  # noqa: E402


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("envoy", "envoy-defaults", "follow"):
        sys.exit(__doc__.rsplit("Usage: ", 1)[1])
    outage, path = float(sys.argv[1]), sys.argv[2]
    if path.startswith("envoy"):
        cfg = json.load(open(k.ENVOY_FILTER))
        if path == "envoy-defaults":
            del cfg["http"]["retry"]
        k.ENVOY_FILTER = os.path.join(tempfile.mkdtemp(prefix="usage-kafka-loss-"), "filter.json")
        json.dump(cfg, open(k.ENVOY_FILTER, "w"))
        st = k.envoy_stack("idempotence=false")
        delivered = lambda: st.metrics().get("events_delivered", 0)
    else:
        st = k.stack()
        st.start_broker()
        st.start_agent("idempotence=false")
        delivered = lambda: metrics(st)["usage_filter_events_delivered"]
    try:
        reqs = k.plan(3000, "loss")
        # pace: 50 requests at a time, 20 ms apart
        sender = threading.Thread(target=lambda: [k.send(st, reqs[i:i + 50], workers=4) or time.sleep(0.02)
                                                  for i in range(0, len(reqs), 50)])
        sender.start()
        wait_for(lambda: delivered() >= 300, 30, "the first 300 delivered")
        st.kill("broker", signal.SIGKILL)
        # pace: the outage being measured
        time.sleep(outage)
        st.start_broker()
        sender.join()
        if path.startswith("envoy"):
            m = wait_for(lambda: (lambda m: m if m.get("buffer_events", 1) == 0 else None)(st.metrics()),
                         300, "Envoy's buffer empty")
            counters = {n: m[n] for n in ("batch_retries", "events_dropped_send_failed", "events_dropped_buffer_full")}
        else:
            m = k.settled(st, len(reqs))
            counters = {n: m["usage_filter_" + n] for n in ("batch_retries", "events_dropped_send_failed",
                                                            "events_dropped_buffer_full")}
        recs = st.records()
        got = {e["api_path"] for _, _, e in recs}
        print(json.dumps({"path": path, "outage_s": outage, "requests": len(reqs),
                          "lost": len({p["api_path"] for p in reqs} - got), "records": len(recs),
                          "repeats": len(recs) - len(got), **counters}), flush=True)
    finally:
        st.close()


if __name__ == "__main__":
    main()
