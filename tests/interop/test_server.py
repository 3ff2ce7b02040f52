"""Server behaviour seen from outside: 100-continue, graceful shutdown, probes, access log."""

from __future__ import annotations

import hashlib
import signal
import socket
import time

import pytest
import requests

from helpers import basic_auth_header

pytestmark = pytest.mark.berth_only


def _connect(host: str) -> socket.socket:
    h, p = host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    return s


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_expect_100_continue_is_answered_at_once(registry, api):
    location = api.start_upload("edge/continue")
    body = b"x" * 100_000
    sock = _connect(registry.host)
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    sock.sendall(
        f"PATCH {path} HTTP/1.1\r\nHost: {registry.host}\r\nContent-Type: application/octet-stream\r\n"
        f"{basic_auth_header(registry.creds)}"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    sock.settimeout(0.5)   # curl waits 1 s before sending anyway; we must answer well before
    interim = _read_head(sock)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    sock.settimeout(10)
    sock.sendall(body)
    final = _read_head(sock)
    assert final.startswith(b"HTTP/1.1 202"), final
    assert b"Range: 0-99999" in final or b"range: 0-99999" in final.lower()
    sock.close()


def test_sigterm_lets_in_flight_upload_finish(registry, api):
    location = api.start_upload("edge/graceful")
    body = bytes(range(256)) * 4096            # 1 MiB
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    sep = "&" if "?" in path else "?"
    sock = _connect(registry.host)
    sock.sendall(
        f"PUT {path}{sep}digest={digest} HTTP/1.1\r\nHost: {registry.host}\r\n"
        f"{basic_auth_header(registry.creds)}"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    sock.sendall(body[:300_000])
    time.sleep(0.3)
    registry.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert registry.proc.poll() is None, "server exited with a request in flight"
    sock.sendall(body[300_000:])
    final = _read_head(sock)
    assert final.startswith(b"HTTP/1.1 201"), final
    sock.close()
    assert registry.proc.wait(timeout=15) == 0
    registry.proc = None
    # after a restart on the same data the blob is there, complete
    registry.start(port=registry.port)
    r = api.get_blob("edge/graceful", digest)
    assert r.status_code == 200 and r.content == body


def test_probes_metrics_and_access_log(registry, api):
    base = f"http://{registry.host}"
    # probes and metrics answer without credentials
    assert requests.get(base + "/healthz", timeout=10).status_code == 200
    assert requests.get(base + "/readyz", timeout=10).status_code == 200
    api.push_blob("edge/metrics", b"metrics-blob")
    assert api.req("GET", "/v2/edge/metrics/blobs/sha256:" + "0" * 64).status_code == 404
    m = requests.get(base + "/metrics", timeout=10)
    assert m.status_code == 200
    text = m.text
    assert 'berth_http_requests_total{route="blob_get",method="GET",status="404"} 1' in text
    assert "berth_http_request_duration_seconds_bucket" in text
    assert "berth_stored_bytes 12" in text
    assert "berth_upload_sessions_open" in text
    log = registry.log_path.read_text(errors="replace")
    assert "route=blob_get" in log and "status=404" in log


def test_second_server_on_the_same_data_directory_is_refused(registry):
    """The embedded backends keep per-process caches: a second `berth serve` on the same data
    directory would serve stale answers, so it is refused at start with a message naming the lock."""
    from conftest import berth_bin, free_port
    import subprocess
    port = free_port()
    proc = subprocess.run([str(berth_bin()), "serve", "--data", str(registry.data),
                           "--listen", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "berth.lock" in proc.stderr and "holds" in proc.stderr, proc.stderr
    # the first server is unaffected
    assert requests.get(f"{registry.base}/healthz", timeout=10).status_code == 200
