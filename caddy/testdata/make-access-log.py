#!/usr/bin/env python3
"""Regenerates access.log: real lines from Caddy (caddy/Caddyfile.beside, JSON access log)
proxying to the demo upstream. Run from anywhere after `cargo build --release -p
usage-collector`; writes caddy/testdata/access.log. The keys are demo values."""
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import e2e  # noqa: E402  caddy/e2e.py: Stack, caddyfile

e2e.CADDY = subprocess.check_output([os.path.join(e2e.ROOT, "caddy", "install-caddy.sh")], text=True).strip()
st = e2e.Stack()
try:
    log = st.path("access.log")
    st.start_upstream()
    st.start_caddy(e2e.caddyfile("beside", st.ports, log_path=log))
    K = "demo-key"
    st.request("GET", "/v1/hello?status=200&bytes=42", K)
    st.request("GET", "/v1/hello?status=200&bytes=42&q=a%20b&lang=en", "key-2")
    st.request("POST", "/v1/orders?status=201&bytes=16", K, b'{"item":"book","qty":2}',
               {"Content-Type": "application/json"})
    st.request("PUT", "/v1/orders/7?status=200&bytes=0", K, b"x" * 1000)
    st.request("PATCH", "/v1/orders/7?status=200&bytes=5", K, b'{"qty":3}')
    st.request("DELETE", "/v1/orders/7?status=204", K)
    st.request("GET", "/v1/old?status=301&bytes=0", K)
    st.request("GET", "/v1/missing?status=404&bytes=9", K)
    st.request("GET", "/v1/fail?status=500&bytes=21", K)
    st.request("GET", "/v1/busy?status=503&bytes=0", K)
    st.request("GET", "/v1/bad?status=abc", K)  # the upstream answers 400
    st.request("GET", "/v1/slow?delay_ms=150", K)
    st.request("GET", "/v1/big?bytes=100000", K)
    st.request("HEAD", "/v1/hello?bytes=42", K)
    st.request("GET", "/v1/hello", K, headers={"Authorization": "Bearer secret", "Cookie": "session=s1",
                                               "X-Request-Id": "8f14e45f-ceea-467f-a9f3-0a8a1b2c3d4e"})
    st.request("GET", "/v1/hello?bytes=3", headers={"X-Subscription-Key": "", "X-Organization-Id": "org-1"})
    st.request("GET", "/v1/hello?status=200&bytes=7")  # unkeyed
    st.request("POST", "/v1/orders?status=201", body=b'{"anon":true}')  # unkeyed, with a body
    st.request("GET", "/healthz?bytes=2")
    # a chunked request body
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", st.ports["caddy"])
    c.request("POST", "/v1/upload?status=202&bytes=0", body=iter([b"a" * 100, b"b" * 23]),
              headers={"X-Subscription-Key": K}, encode_chunked=True)
    c.getresponse().read()
    # the key header twice
    c.putrequest("GET", "/v1/hello?bytes=1")
    c.putheader("X-Subscription-Key", "key-a")
    c.putheader("X-Subscription-Key", "key-b")
    c.endheaders()
    c.getresponse().read()
    c.close()
    # the client gives up before the answer (Caddy logs 499)
    s = socket.create_connection(("127.0.0.1", st.ports["caddy"]))
    s.sendall(b"GET /v1/slow?delay_ms=1000 HTTP/1.1\r\nHost: api.example.com\r\nX-Subscription-Key: demo-key\r\n\r\n")
    time.sleep(0.2)
    s.close()
    time.sleep(1.2)
    for i in range(12):
        st.request(["GET", "POST", "PUT"][i % 3], f"/v1/items/{i}?status={[200, 201, 404, 500][i % 4]}&bytes={i * 10}",
                   f"key-{i % 3}", b"y" * (i * 7 if i % 3 else 0))
    # Caddy's own answer: the upstream is down (502, never reached an upstream)
    st.kill("upstream")
    st.local.conn = None
    st.request("GET", "/v1/hello?status=200", K)
    st.request("POST", "/v1/orders", K, b'{"item":"pen"}')
    time.sleep(0.5)
    shutil.copy(log, os.path.join(HERE, "access.log"))
    print(f"{sum(1 for _ in open(log))} lines written to caddy/testdata/access.log")
finally:
    st.stop()
