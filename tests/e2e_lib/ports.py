"""Ports without the bind-then-close race.

A server in this process binds port 0 and keeps the socket (`listening_socket`). A child
process told its port on the command line or in a file gets one from `free_port`, which
reserves it: the port is bound to 127.0.0.1:0 by the kernel, a connection to it is accepted
and closed from the server side first, so the port stays in TIME_WAIT for a minute. During
that minute the kernel hands it to no other bind(0) or outgoing connect(), while a server
binding it on purpose with SO_REUSEADDR (Rust's std, Go, Envoy, ClickHouse, Python's
http.server all set it) gets it at once. A port is never handed out twice in one process.
Binaries that accept `--listen 127.0.0.1:0` and print their address are better still
(procs.Stack.listening_on): no port is chosen for them at all.
"""
import socket

_HANDED_OUT = set()


def _reserve():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    client.close()
    server.close()
    return port


def free_port():
    """A port reserved (TIME_WAIT) for a child to bind with SO_REUSEADDR, new to this process."""
    while True:
        port = _reserve()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def listening_socket(backlog=64):
    """A socket listening on 127.0.0.1 on a port the kernel chose, for a server in this process."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s
