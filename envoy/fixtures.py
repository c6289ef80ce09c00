"""Fixtures of envoy/e2e.py's scenarios that are not tests: the Front (a server between
Envoy and the collector that misbehaves on cue, optionally over TLS), the certificates of the
TLS scenario, the shared_queue (envoy/envoy-singleton.yaml) and ECDS
(envoy/envoy-ecds.yaml) configurations. Python standard library only."""
import email.utils
import http.client
import json
import os
import ssl
import subprocess
import threading
import time

from e2e_lib import BIN
from e2e_lib.envoy import TOKEN, EnvoyStack, read_config, replace_value_block, with_wasm
from e2e_lib.ports import listening_socket
from e2e_lib.procs import ROOT


class Front:
    """A loopback HTTP/1.1 server between Envoy and the collector, optionally over TLS. Each
    request takes the next behaviour of `script` ("forward" once it is used up):
    - "forward": pass the request to the collector and its answer back;
    - "big200": forward, then answer 200 with a 50 MB body instead of the collector's answer;
    - "trickle": forward, then send the collector's answer one byte a second;
    - "close_mid": forward, then send half the answer's head and close the connection;
    - "retry_after_date" / "retry_after_garbage": 503 with `Retry-After` as an HTTP date
      (2 s ahead) / as `soon`, without forwarding.
    `seen` records (behaviour, x-usage-batch-id, authorization) per request; `sni` the server
    names TLS clients asked for; `handshake_failures` the TLS handshakes that failed."""

    def __init__(self, collector_port, script=(), tls=None):
        self.collector_port = collector_port
        self.script = list(script)
        self.tls = tls
        self.seen, self.sni, self.handshake_failures = [], [], 0
        self.lock = threading.Lock()
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.sock.close()
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    with self.lock:
                        self.handshake_failures += 1
                    return
                self.conns.append(conn)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = []
                while True:
                    h = f.readline().decode()
                    if h in ("\r\n", "\n", ""):
                        break
                    k, v = h.split(":", 1)
                    headers.append((k.strip(), v.strip()))
                hd = {k.lower(): v for k, v in headers}
                if hd.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(f.readline().split(b";")[0], 16)
                        chunk = f.read(size + 2)[:size]
                        if size == 0:
                            break
                        body += chunk
                else:
                    body = f.read(int(hd.get("content-length", "0")))
                with self.lock:
                    behaviour = self.script.pop(0) if self.script else "forward"
                    self.seen.append((behaviour, hd.get("x-usage-batch-id"), hd.get("authorization")))
                if behaviour.startswith("retry_after"):
                    value = email.utils.formatdate(time.time() + 2, usegmt=True) if behaviour.endswith("date") \
                        else "soon"
                    conn.sendall(f"HTTP/1.1 503 Service Unavailable\r\nretry-after: {value}\r\n"
                                 f"content-length: 0\r\n\r\n".encode())
                    continue
                answer = self._forward(method, target, headers, body)
                if behaviour == "forward":
                    conn.sendall(answer)
                elif behaviour == "big200":
                    size = 50 * 1000 * 1000
                    conn.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 f"content-length: {size}\r\n\r\n".encode())
                    block = b" " * (1 << 20)
                    for _ in range(size // len(block)):
                        conn.sendall(block)
                    conn.sendall(b" " * (size % len(block)))
                elif behaviour == "trickle":
                    for byte in answer:
                        conn.sendall(bytes([byte]))
                        time.sleep(1)  # pace: the trickle, a byte a second
                elif behaviour == "close_mid":
                    conn.sendall(answer[:len(answer) // 2])
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _forward(self, method, target, headers, body):
        c = http.client.HTTPConnection("127.0.0.1", self.collector_port, timeout=10)
        skip = {"connection", "transfer-encoding", "content-length", "keep-alive"}
        c.request(method, target, body=body, headers={k: v for k, v in headers if k.lower() not in skip})
        r = c.getresponse()
        data = r.read()
        c.close()
        head = f"HTTP/1.1 {r.status} {r.reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in r.getheaders() if k.lower() not in skip)
        return (head + f"content-length: {len(data)}\r\n\r\n").encode() + data


def singleton_config(filter_http=None, service_http=None):
    """envoy/envoy-singleton.yaml (shared_queue mode, singleton service) for EnvoyStack(config_text=)."""
    def make(st, ports):
        text = read_config("envoy-singleton.yaml", ports)
        if filter_http:
            extra = "".join(f"\n                      {k}: {json.dumps(v)}" for k, v in filter_http.items())
            anchor = "                    http:\n                      cluster: collector"
            assert anchor in text
            text = text.replace(anchor, anchor + extra, 1)
        if service_http:
            extra = "".join(f"\n            {k}: {json.dumps(v)}" for k, v in service_http.items())
            anchor = "            cluster: collector"
            assert anchor in text
            text = text.replace(anchor, anchor + extra, 1)
        return text
    return make


def ecds_config(first_value):
    """envoy/envoy-ecds.yaml (the plugin from a file Envoy watches) with this run's ports, its
    resource file envoy/usage_filter.ecds.yaml in the scenario's folder holding `first_value`,
    and a second collector cluster `collector_b` (its port set by the scenario)."""
    def make(st, ports):
        text = read_config("envoy-ecds.yaml", ports)
        st.ecds_path = st.path("usage_filter.ecds.yaml")
        write_ecds(st, first_value)
        assert "path: envoy/usage_filter.ecds.yaml" in text
        text = text.replace("path: envoy/usage_filter.ecds.yaml", f"path: {st.ecds_path}")
        return text + collector_b_cluster(st)
    return make


class TwoCollectorStack(EnvoyStack):
    """An EnvoyStack with a second reference collector, `collector_b` (same token), writing to
    `events_b`; `collector_b_cluster` is its cluster for the Envoy configuration."""

    def start_collector(self, port=None):
        super().start_collector(port)
        if "collector_b" not in self.procs:
            self.events_b = self.path("events_b.ndjson")
            self.spawn("collector_b", [os.path.join(BIN, "collector"), "--listen", "127.0.0.1:0",
                                       "--out", self.events_b, "--require-auth", TOKEN])
            self.ports["collector_b"] = self.listening_on("collector_b", "collector listening on ")


def collector_b_cluster(st):
    """The static cluster `collector_b` (appended to a configuration's clusters)."""
    return f"""
  - name: collector_b
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: collector_b
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {st.ports['collector_b']} }} }} }}
"""


def write_ecds(st, value):
    """A new plugin configuration, as an operator would: a new file renamed over the old."""
    text = with_wasm(replace_value_block(open(os.path.join(ROOT, "envoy", "usage_filter.ecds.yaml")).read(), value))
    with open(st.ecds_path + ".new", "w") as f:
        f.write(text)
    os.rename(st.ecds_path + ".new", st.ecds_path)


# The collector cluster over TLS, as docs/hosts/envoy.md shows it (appended to the `collector` cluster).
TLS_TRANSPORT = """    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: collector.test
        common_tls_context:
          validation_context:
            trusted_ca: { filename: CA_FILE }
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: { exact: collector.test }
"""


def make_certs(folder):
    """A CA, a certificate for collector.test it signed (`good`) and one it signed for
    other.test (`wrong-name`); another CA's certificate for collector.test (`wrong-ca`). Server
    contexts by those names. `openssl` from Debian."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "wrong-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=usage-e2e {ca}")
    for name, ca, host in (("good", "ca", "collector.test"), ("wrong-ca", "wrong-ca", "collector.test"),
                           ("wrong-name", "ca", "other.test")):
        with open(os.path.join(folder, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{host}\n")
        run("req", *ec, "-keyout", f"{name}-server.key", "-out", f"{name}-server.csr", "-subj", f"/CN={host}")
        run("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}-server.pem", "-days", "2", "-extfile", f"{name}.ext")

    def context(name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(folder, f"{name}-server.pem"), os.path.join(folder, f"{name}-server.key"))
        return ctx
    return {name: context(name) for name in ("good", "wrong-ca", "wrong-name")}
