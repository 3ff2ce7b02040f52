"""Issue 14: HTTP/1.0 clients, and client mistakes answered as client errors (never 500)."""

from __future__ import annotations

import socket
import time

import pytest

from helpers import basic_auth_header, oci_error_codes

pytestmark = pytest.mark.berth_only


from test_server import _connect, _read_head  # noqa: E402  (shared raw-socket helpers)


def _closed(sock: socket.socket) -> bool:
    """True when the server closes the connection (within the socket timeout)."""
    try:
        return sock.recv(4096) == b""
    except socket.timeout:
        return False


def _head_v2(registry, version: str, extra: str = "") -> bytes:
    return (f"HEAD /v2/ HTTP/{version}\r\nHost: {registry.host}\r\n{basic_auth_header(registry.creds)}"
            f"{extra}\r\n").encode()


def test_http10_head_completes_and_closes(registry):
    sock = _connect(registry.host)
    sock.sendall(_head_v2(registry, "1.0"))
    head = _read_head(sock)
    assert head.startswith(b"HTTP/1.0 200"), head
    assert b"connection: close" in head.lower(), head
    assert _closed(sock), "the server must close an HTTP/1.0 connection without keep-alive"
    sock.close()


def test_http10_keep_alive_is_announced_and_kept(registry):
    sock = _connect(registry.host)
    for _ in range(3):
        sock.sendall(_head_v2(registry, "1.0", "Connection: keep-alive\r\n"))
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.0 200"), head
        assert b"connection: keep-alive" in head.lower(), head
    # HTTP/1.1 on the same connection is answered as before
    sock.sendall(_head_v2(registry, "1.1"))
    head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 200") and b"connection:" not in head.lower(), head
    sock.close()


def test_client_mistakes_are_client_errors(registry, api):
    auth = basic_auth_header(registry.creds)
    # malformed chunked framing: 400, connection closed
    sock = _connect(registry.host)
    sock.sendall(f"PUT /v2/in/manifests/x HTTP/1.1\r\nHost: {registry.host}\r\n{auth}"
                 "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n".encode())
    head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 400"), head
    sock.close()
    # a body over the limit: 413 SIZE_INVALID
    r = api.req("POST", "/api/v1/identities", data=b'{"name":"' + b"a" * (1 << 20) + b'"}')
    assert r.status_code == 413 and "SIZE_INVALID" in oci_error_codes(r), r.text
    # a client that goes away mid-body
    sock = _connect(registry.host)
    sock.sendall(f"POST /v2/in/blobs/uploads/?digest=sha256:{'0' * 64} HTTP/1.1\r\nHost: {registry.host}\r\n{auth}"
                 "Content-Length: 100000\r\n\r\n".encode() + b"x" * 1000)
    time.sleep(0.3)
    sock.close()
    # an impossible tag is simply unknown
    r = api.get_manifest("in", ".INVALID_MANIFEST_NAME")
    assert r.status_code == 404 and "MANIFEST_UNKNOWN" in oci_error_codes(r), r.text
    deadline = time.monotonic() + 10
    while "upload_start" not in (metrics := api.req("GET", "/metrics").text) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 'route="upload_start",method="POST",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert " error " not in registry.log_tail(200)
