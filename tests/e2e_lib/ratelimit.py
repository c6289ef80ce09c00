"""A rate limit service (Envoy's `envoy.service.ratelimit.v3.RateLimitService`, gRPC) for the
e2e suites: a budget of hits per descriptor, counted as envoyproxy/ratelimit counts them
(a request is over the limit when the count after adding its hits exceeds the budget), and a
record of every call. grpcio (PyPI) serves it; the messages are read and written by hand
(three small protobuf messages), so no generated code or .proto files are needed.

    rls = RateLimitService(budget=100); rls.port; rls.calls; rls.close()
"""
import os
import threading
from concurrent import futures

# the suites start processes while the server's threads run: no fork handlers (and no warning)
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # noqa: E402

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
OK, OVER_LIMIT = 1, 2


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf):
    """A protobuf message's fields in order: (number, value), value an int (varint) or bytes
    (length-delimited); fixed32/64 are skipped (none of these messages has one)."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def parse_request(raw):
    """RateLimitRequest: domain (1), descriptors (2: entries (1: key 1, value 2), hits_addend
    (3, a UInt64Value: None when absent)), the request's own hits_addend (3, 0 when absent)."""
    req = {"domain": "", "descriptors": [], "hits_addend": 0}
    for number, value in fields(raw):
        if number == 1:
            req["domain"] = value.decode()
        elif number == 3:
            req["hits_addend"] = value
        elif number == 2:
            d = {"entries": [], "hits_addend": None}
            for n, v in fields(value):
                if n == 1:
                    e = dict(fields(v))
                    d["entries"].append((e.get(1, b"").decode(), e.get(2, b"").decode()))
                elif n == 3:
                    d["hits_addend"] = dict(fields(v)).get(1, 0)
            req["descriptors"].append(d)
    return req


class RateLimitService:
    """Counts hits per descriptor (its entries) against `budget`: a descriptor's hits are its
    own hits_addend when set, else the request's, else 1 (as Envoy documents). `calls` holds
    every request parsed, with the answer given."""

    def __init__(self, budget):
        self.budget = budget
        self.counts = {}
        self.calls = []
        self.lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(self.should_rate_limit)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def should_rate_limit(self, raw, _context):
        req = parse_request(raw)
        code = OK
        with self.lock:
            for d in req["descriptors"]:
                hits = d["hits_addend"] if d["hits_addend"] is not None else (req["hits_addend"] or 1)
                key = tuple(d["entries"])
                self.counts[key] = self.counts.get(key, 0) + hits
                if self.counts[key] > self.budget:
                    code = OVER_LIMIT
            req["answer"] = code
            self.calls.append(req)
        return bytes([0x08, code])  # RateLimitResponse{overall_code}

    def close(self):
        self.server.stop(0)
