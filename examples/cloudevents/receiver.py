#!/usr/bin/env python3
"""A CloudEvents receiver for usage-filter's `cloudevents` format, built on the official
CloudEvents SDK for Python (PyPI `cloudevents`, tested with 2.2.0).

The filter POSTs `application/cloudevents-batch+json`: a JSON array of CloudEvents in
structured mode (CloudEvents JSON format, "JSON Batch Format"). The SDK has no batch reader,
so each element of the array goes through the SDK's structured-mode HTTP reader
(`cloudevents.core.bindings.http.from_http` with `JSONFormat`), which validates it as a
CloudEvent 1.0 (required attributes, types, `time` as RFC 3339). A single structured event
(`application/cloudevents+json`) or a binary-mode event (`ce-*` headers) is read the same way.

A batch with an invalid event is refused whole with 400 (the filter does not retry a 4xx).
Valid events are appended to --out as CloudEvents JSON, one per line; an event id seen
before (a retried batch) is not written again. GET /stats answers the counts.

    .tools/receivers-venv/bin/python examples/cloudevents/receiver.py --listen 127.0.0.1:18090 --out events.ce.ndjson

and in the filter's configuration: `http: {cluster: ce_receiver, format: cloudevents}`.
"""

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

BATCH = "application/cloudevents-batch+json"
FORMAT = JSONFormat()


def parse(content_type, headers, body):
    """The CloudEvents in one request, each validated by the SDK. Raises ValueError."""
    if content_type == BATCH:
        items = json.loads(body)
        if not isinstance(items, list) or not items:
            raise ValueError("a batch must be a non-empty JSON array")
        events = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"batch element {i} is not an object")
            message = HTTPMessage(headers={"content-type": "application/cloudevents+json"},
                                  body=json.dumps(item).encode())
            try:
                events.append(from_http(message, FORMAT))
            except Exception as e:  # the SDK's validation errors
                raise ValueError(f"batch element {i}: {e}") from e
        return events
    # A single event, structured (application/cloudevents+json) or binary (ce-* headers).
    try:
        return [from_http(HTTPMessage(headers=headers, body=body), FORMAT)]
    except Exception as e:
        raise ValueError(f"not a CloudEvent: {e}") from e


class Receiver:
    def __init__(self, out):
        self.lock = threading.Lock()
        self.out = open(out, "a", encoding="utf-8")
        self.seen = set()
        self.stats = {"batches": 0, "events": 0, "duplicate_events": 0, "rejected_batches": 0}

    def accept(self, events):
        with self.lock:
            self.stats["batches"] += 1
            for event in events:
                if event.get_id() in self.seen:
                    self.stats["duplicate_events"] += 1
                    continue
                self.seen.add(event.get_id())
                self.out.write(FORMAT.write(event).decode() + "\n")
                self.stats["events"] += 1
            self.out.flush()

    def reject(self):
        with self.lock:
            self.stats["rejected_batches"] += 1


def handler(receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                with receiver.lock:
                    self.answer(200, dict(receiver.stats))
            else:
                self.answer(404, {"error": "GET /stats only"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                events = parse(content_type, headers, body)
            except ValueError as e:
                receiver.reject()
                sys.stderr.write(f"receiver: refused {self.headers.get('x-usage-batch-id', '-')}: {e}\n")
                self.answer(400, {"error": str(e)})
                return
            receiver.accept(events)
            self.answer(200, {"accepted": len(events)})

        def log_message(self, *args):
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:18090", help="host:port (port 0: any)")
    ap.add_argument("--out", default="events.ce.ndjson", help="file the events are appended to")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(Receiver(args.out)))
    print(f"cloudevents receiver listening on {host}:{server.server_address[1]}", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
