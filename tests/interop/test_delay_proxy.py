"""The delay proxy of the geo tests (tests/interop/delay_proxy.py), on its own: bytes pass intact
and in order, each way late by the delay, a partition cuts open connections and blackholes new ones,
and a heal restores forwarding. Needs no registry."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from delay_proxy import DelayProxy


class EchoServer:
    """A loopback TCP echo server that counts the bytes it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                conn.sendall(data)

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def _connect(proxy, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=timeout)
    s.settimeout(timeout)
    return s


def _recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_bytes_pass_intact_in_order_and_late_by_the_delay_each_way(echo):
    proxy = DelayProxy("127.0.0.1", "127.0.0.1", echo.port, delay=0.2).start()
    try:
        with _connect(proxy) as s:
            started = time.monotonic()
            s.sendall(b"ping")
            assert _recv_exactly(s, 4) == b"ping"
            # one way there, one way back: never sooner than twice the delay (a lower bound only)
            assert time.monotonic() - started >= 2 * 0.2 * 0.95
            payload = os.urandom(3 * 1024 * 1024 + 17)
            sender = threading.Thread(target=s.sendall, args=(payload,))
            sender.start()
            echoed = _recv_exactly(s, len(payload))
            sender.join(timeout=30)
            assert echoed == payload
    finally:
        proxy.stop()


def test_a_partition_cuts_open_connections_and_blackholes_new_ones_until_healed(echo):
    proxy = DelayProxy("127.0.0.1", "127.0.0.1", echo.port, delay=0.01).start()
    try:
        open_conn = _connect(proxy)
        open_conn.sendall(b"before")
        assert _recv_exactly(open_conn, 6) == b"before"

        proxy.partition()
        # the open connection is cut: reset or end of stream, never an answer
        with pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)):
            open_conn.sendall(b"after")
            data = open_conn.recv(16)
            assert data, "end of stream"
        open_conn.close()
        # a new connection is accepted and hangs: nothing reaches the server, nothing comes back
        before = echo.received
        held = _connect(proxy, timeout=1.0)
        held.sendall(b"into the void")
        with pytest.raises(socket.timeout):
            held.recv(16)
        assert echo.received == before

        proxy.heal()
        # the held connection is reset by the heal (its client retries) ...
        held.settimeout(10)
        with pytest.raises((ConnectionResetError, AssertionError)):
            assert held.recv(16), "end of stream"
        held.close()
        # ... and new connections are forwarded again
        with _connect(proxy) as s:
            s.sendall(b"healed")
            assert _recv_exactly(s, 6) == b"healed"
        assert proxy.cut >= 2
    finally:
        proxy.stop()
