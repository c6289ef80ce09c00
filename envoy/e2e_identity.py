"""Billing the verified identity, in the real Envoy 1.40 with its own jwt_authn filter (not a
header the test sets): tokens signed here (HS256, standard library) against a local JWKS of
kty "oct"; `payload_in_metadata: jwt_payload`; the filter reads the verified `sub` as the
key and the `org` claim as `organization_id` through proxy_get_property, the route name
through ["xds", "route_name"], a query parameter, and `path_templates`; kafka-rest records
keyed by organization. It also records what Envoy's proxy_get_property returns for a string,
a number, a boolean and a nested claim (docs/identity.md quotes it).

Run: `make e2e-identity` (arguments select tests by name)."""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from e2e_lib import runner, wait_for  # noqa: E402
from e2e_lib.envoy import EnvoyStack, envoy_config, settled  # noqa: E402

SECRET = b"e2e-identity-hmac-secret-0123456789abcdef"
ISSUER = "https://issuer.e2e.test"
JWT = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload"]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(claims, secret=SECRET, kid="k1"):
    """An HS256 JWT (RFC 7519) signed with `secret`."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(dict({"iss": ISSUER, "exp": int(time.time()) + 3600}, **claims)).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


JWKS = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "kid": "k1", "k": b64url(SECRET)}]})

# Envoy's jwt_authn before the filter: it verifies the bearer token and puts its payload in
# dynamic metadata, where the filter reads it at the end of the request. /healthz is open.
JWT_FILTER = f"""          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                e2e:
                  issuer: {ISSUER}
                  local_jwks:
                    inline_string: '{JWKS}'
                  payload_in_metadata: jwt_payload
              rules:
              - match: {{ prefix: /healthz }}
              - match: {{ prefix: / }}
                requires: {{ provider_name: e2e }}
"""


def config_text(filter_value):
    """envoy/envoy.yaml with jwt_authn first, the route named `api_all`, and `filter_value`."""
    def text(st, ports):
        t = envoy_config(ports, filter_value)
        anchor = "          - name: envoy.filters.http.wasm\n"
        assert t.count(anchor) == 1
        t = t.replace(anchor, JWT_FILTER + anchor)
        route = '              - match: { prefix: "/" }\n'
        assert t.count(route) == 1
        return t.replace(route, '              - name: api_all\n                match: { prefix: "/" }\n')
    return text


class Recorder:
    """Stands where the collector is: keeps every batch body, answers 200."""

    def __init__(self, st):
        self.bodies = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                rec.bodies.append((self.headers.get("content-type"), self.rfile.read(n)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def records(self):
        out = []
        for ct, body in self.bodies:
            assert ct == "application/vnd.kafka.json.v2+json", ct
            out += json.loads(body)["records"]
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Stack(EnvoyStack):
    """EnvoyStack with Envoy's log files flushed every 100 ms (the log sink's lines)."""

    def __init__(self, **kw):
        super().__init__(start_envoy=False, **kw)

    def __enter__(self):
        super().__enter__()
        try:
            self.start_envoy(["--file-flush-interval-msec", "100"])
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self


def lines(st):
    return [json.loads(l) for l in st.envoy_stdout().splitlines() if l.startswith("{")]


def every_line(st, n):
    """The event lines once at least `n` are out and nothing more can come: Envoy logs a
    stream (the filter's on_log, then the access log line into its buffer) as the stream
    ends, before the answer leaves, so once every request has its answer the lines still to
    come are those in the access log's buffer, and filesystem.write_total_buffered 0 says it
    is flushed (a condition, not a pause)."""
    wait_for(lambda: len(lines(st)) >= n, 15, f"{n} log lines")
    wait_for(lambda: st.stat("filesystem.write_total_buffered") == 0, 5, "Envoy's access log flushed")
    return lines(st)


def get(st, path, tok=None, headers=None):
    h = dict(headers or {})
    if tok:
        h["authorization"] = f"Bearer {tok}"
    return st.request("GET", path, headers=h)[0]


def test_the_key_is_the_verified_sub_and_kafka_records_are_keyed_by_organization():
    value = {
        "enabled": True, "sinks": ["log", "http"], "log_output": "filter_state",
        "exclude_paths": ["/healthz"],
        "subscription_key_property": JWT + ["sub"],
        "attributes": {
            "organization_id": {"property": JWT + ["org"]},
            "route_name": {"property": ["xds", "route_name"]},
            "plan": {"query": "plan"},
            "seats": {"property": JWT + ["seats"], "as": "double"},
        },
        "path_templates": ["/v1/users/{id}", "/v1/users/{id}/orders/{order_id}", "/v1/{*rest}"],
        "http": {"cluster": "collector", "format": "kafka-rest", "kafka_key": "organization_id",
                 "flush_interval_ms": 100, "headers": {"authorization": "${COLLECTOR_TOKEN}"}},
    }
    with Stack(config_text=config_text(value), front=Recorder) as st:
        alice = token({"sub": "user-42", "org": "acme", "seats": 25})
        bob = token({"sub": "user-7", "org": "globex", "seats": 3})
        # a header the client sends is not an identity: the key is the token's sub
        assert get(st, "/v1/users/42?plan=team+pro", alice, {"x-subscription-key": "forged"}) == 200
        assert get(st, "/v1/users/42/orders/9", alice) == 200
        assert get(st, "/v1/other/thing", bob) == 200
        assert get(st, "/v2/none", bob) == 200
        # verification fails (Envoy's 401): no event; nor without a token; nor /healthz
        assert get(st, "/v1/users/1", token({"sub": "mallory", "org": "evil"}, secret=b"x" * 40)) == 401
        assert get(st, "/v1/users/1", None, {"x-subscription-key": "k"}) == 401
        assert get(st, "/healthz") == 200
        ev = every_line(st, 4)
        assert len(ev) == 4, ev
        # the http sink had the same events: all acknowledged, nothing held or in flight
        wait_for(lambda: len(st.front.records()) >= 4, 15, "4 kafka-rest records")
        settled(st, 4)
        recs = st.front.records()
        assert len(ev) == 4 and len(recs) == 4, (ev, recs)
        by_path = {e["api_path"]: e for e in ev}
        a = by_path["/v1/users/42"]
        assert a["subscription_key"] == "user-42", a
        assert a["organization_id"] == "acme" and a["plan"] == "team pro", a
        assert a["route_name"] == "api_all", a
        assert a["api_route"] == "/v1/users/{id}", a
        assert a["seats"] == 25 and isinstance(a["seats"], int), a
        assert by_path["/v1/users/42/orders/9"]["api_route"] == "/v1/users/{id}/orders/{order_id}"
        assert by_path["/v1/other/thing"]["api_route"] == "/v1/{*rest}"
        assert by_path["/v1/other/thing"]["subscription_key"] == "user-7"
        assert "api_route" not in by_path["/v2/none"]
        assert not any(e["subscription_key"] in ("mallory", "forged", "k") for e in ev)
        keys = sorted(r["key"] for r in recs)
        assert keys == ["acme", "acme", "globex", "globex"], keys
        for r in recs:
            assert r["key"] == r["value"]["organization_id"], r


def test_key_mode_sha256_over_a_claim():
    value = {"enabled": True, "log_output": "filter_state", "key_mode": "sha256",
             "subscription_key_property": JWT + ["sub"]}
    with Stack(config_text=config_text(value)) as st:
        assert get(st, "/v1/a", token({"sub": "user-42"})) == 200
        # a token without sub: verified, but unkeyed, so no event (require_key)
        assert get(st, "/v1/b", token({"org": "acme"})) == 200
        ev = every_line(st, 1)
        assert len(ev) == 1, f"{len(ev)} event lines for the one keyed request: {[e['api_path'] for e in ev]}"
        assert ev[0]["subscription_key"] == hashlib.sha256(b"user-42").hexdigest(), ev


def test_what_envoy_returns_for_each_kind_of_claim():
    """proxy_get_property on jwt_authn's payload_in_metadata, each claim read as a string
    (the bytes as they came, when UTF-8) and as each other type."""
    claims = {"sub": "user-42", "seats": 25, "ratio": 1.5, "admin": True, "team": {"tier": "gold"},
              "big": 12345678901}
    attrs = {}
    for name in claims:
        attrs[f"{name}_string"] = {"property": JWT + [name]}
        for as_ in ("double", "int", "bool"):
            attrs[f"{name}_{as_}"] = {"property": JWT + [name], "as": as_}
    attrs["tier_string"] = {"property": JWT + ["team", "tier"]}
    attrs["route_string"] = {"property": ["xds", "route_name"]}
    attrs["cluster_string"] = {"property": ["xds", "cluster_name"]}
    attrs["code_int"] = {"property": ["response", "code"], "as": "int"}
    value = {"enabled": True, "log_output": "filter_state", "require_key": False, "attributes": attrs,
             "subscription_key_property": JWT + ["seats"], "subscription_key_property_as": "double"}
    with Stack(config_text=config_text(value)) as st:
        assert get(st, "/v1/probe", token(claims)) == 200
        wait_for(lambda: lines(st), 10, "the event line")
        e = lines(st)[0]
        found = {k: e.get(k) for k in sorted(attrs)}
        print("proxy_get_property under payload_in_metadata:", json.dumps(found, ensure_ascii=True))
        # a string claim: its text
        assert e["sub_string"] == "user-42", found
        assert "sub_double" not in e and "sub_int" not in e, found
        # a JSON number: an 8-byte little-endian double (Struct's number_value)
        assert e["seats_string"] == struct.pack("<d", 25.0).decode("latin-1"), found
        assert e["seats_double"] == 25 and e["ratio_double"] == 1.5 and e["big_double"] == 12345678901, found
        assert e["seats_int"] == struct.unpack("<q", struct.pack("<d", 25.0))[0], "an int read of a double's bytes"
        # a boolean: one byte
        assert e["admin_bool"] is True and e["admin_string"] == "\x01", found
        # an object claim comes as a proxy-wasm pairs map (count, sizes, NUL-ended strings);
        # a claim inside it is reached by its path
        assert e["team_string"] == "\x01\0\0\0\x04\0\0\0\x04\0\0\0tier\0gold\0", found
        assert e["tier_string"] == "gold", found
        # route and cluster names are text; response.code an 8-byte integer
        assert e["route_string"] == "api_all" and e["cluster_string"] == "upstream", found
        assert e["code_int"] == 200, found
        # the key as a number claim, in decimal
        assert e["subscription_key"] == "25", e


TESTS = [test_the_key_is_the_verified_sub_and_kafka_records_are_keyed_by_organization,
         test_key_mode_sha256_over_a_claim, test_what_envoy_returns_for_each_kind_of_claim]

if __name__ == "__main__":
    runner.main(TESTS, "e2e_identity")
