"""Starting, stopping and identifying a real ``berth serve`` (issue 14, items 13 and 16):
``--version`` and the build-info metric, the bootstrap password on stderr while the server runs,
start-up errors that name the address or the path, a hint for ``https://`` sent to a plain-HTTP
listener, bounded graceful shutdown with a second signal that forces the exit, and SIGHUP
reloading the TLS certificate."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import berth_bin, free_port

pytestmark = pytest.mark.berth_only

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+\S*$")


def berth(*args: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(berth_bin()), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def log_text(registry) -> str:
    return registry.log_path.read_text(errors="replace")


def test_version_and_build_info(registry):
    out = berth("--version")
    assert out.returncode == 0, out.stderr
    version = out.stdout.strip()
    assert VERSION_RE.match(version), version
    metrics = requests.get(f"{registry.base}/metrics", timeout=10).text
    assert f'berth_build_info{{version="{version}"}} 1' in metrics


def test_bootstrap_password_reaches_stderr_while_serving(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BERTH_BOOTSTRAP_OWNER_PASSWORD"}
    proc = subprocess.Popen([str(berth_bin()), "serve", "--data", str(tmp_path / "data"),
                             "--listen", f"127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    lines: list[str] = []

    def read():
        for raw in proc.stderr:
            lines.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # read from the pipe while the server is still running: nothing may wait in a buffer
        def password():
            for i, line in enumerate(lines):
                if "Created identity 'owner'" in line and i + 1 < len(lines):
                    return lines[i + 1].strip()
            return None
        secret = wait_for(password, "the bootstrap password on stderr")
        assert proc.poll() is None
        assert secret == (tmp_path / "data" / "bootstrap-owner-password").read_text().strip()
        r = wait_for(lambda: _get_or_none(f"http://127.0.0.1:{port}/v2/", ("owner", secret)), "the server")
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reader.join(timeout=5)


def _get_or_none(url, auth):
    try:
        return requests.get(url, auth=auth, timeout=2)
    except requests.RequestException:
        return None


def test_bind_error_names_the_address(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = berth("serve", "--data", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}")
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr, out.stderr
    assert "Address already in use" in out.stderr, out.stderr


def test_unusable_data_directory_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data = blocker / "data"
    out = berth("serve", "--data", str(data), "--listen", f"127.0.0.1:{free_port()}")
    assert out.returncode != 0
    assert str(data) in out.stderr and "Not a directory" in out.stderr, out.stderr


def test_https_to_plain_http_gets_a_hint_and_400(registry):
    # a real TLS client: the handshake fails, the log says why
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            context.wrap_socket(raw, server_hostname="localhost")
    wait_for(lambda: "TLS handshake to this plain-HTTP listener" in log_text(registry), "the hint in the log")
    # the bytes a TLS client sends first get a plain 400 naming the problem
    with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x2a" + b"\x01" + bytes(41))
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"use http://" in answer
    # plain HTTP is unaffected
    assert requests.get(f"{registry.base}/healthz", timeout=10).status_code == 200


def _stalled_upload(registry) -> socket.socket:
    """A PATCH whose body stops coming: a request in flight."""
    r = registry.api().req("POST", "/v2/ops/stall/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    s = socket.create_connection(("127.0.0.1", registry.port), timeout=30)
    s.sendall((f"PATCH {r.headers['Location']} HTTP/1.1\r\nHost: {registry.host}\r\n"
               f"Authorization: Basic {token}\r\nContent-Type: application/octet-stream\r\n"
               "Content-Length: 10000000\r\n\r\n").encode() + b"x" * 4096)
    # in flight once the server has written part of the body to the upload's file
    upload = registry.data / "storage" / "uploads" / r.headers["Location"].rstrip("/").split("/")[-1] / "data"
    wait_for(lambda: upload.is_file() and upload.stat().st_size > 0, "the upload to be in flight")
    return s


def test_graceful_shutdown_logs_drain_and_stop(registry):
    proc = registry.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    registry.proc = None
    log = log_text(registry)
    assert "SIGTERM: shutting down" in log and "draining in-flight requests" in log
    assert "berth stopped" in log


def test_second_signal_forces_exit(registry):
    proc = registry.proc
    conn = _stalled_upload(registry)
    try:
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT: shutting down" in log_text(registry), "the drain message")
        # the stalled request keeps it draining (for up to the default 30 s)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) != 0
        registry.proc = None
        log = log_text(registry)
        assert "SIGINT again: stopping now" in log
        assert "berth stopped" not in log
    finally:
        conn.close()


@pytest.mark.server_env(BERTH_SHUTDOWN_TIMEOUT="1")
def test_shutdown_timeout_bounds_the_drain(registry):
    proc = registry.proc
    conn = _stalled_upload(registry)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        registry.proc = None
        assert "shutdown timeout of 1 s passed" in log_text(registry)
    finally:
        conn.close()


def test_sighup_reloads_the_tls_certificate(tmp_path):
    for name in ("first", "second"):
        out = berth("certificate", "create", "--common-name", f"{name}.berth.test", "--out", str(tmp_path / name))
        assert out.returncode == 0, out.stderr
    cert, key = tmp_path / "serve.crt", tmp_path / "serve.key"
    shutil.copy(tmp_path / "first.crt", cert)
    shutil.copy(tmp_path / "first.key", key)
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(berth_bin()), "serve", "--data", str(tmp_path / "data"),
                                 "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        def served_pem():
            try:
                return ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
            except OSError:
                return None

        def same(pem: str, path: Path) -> bool:
            return ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(path.read_text())

        assert same(wait_for(served_pem, "the TLS listener"), tmp_path / "first.crt")
        # replace the files as a certificate renewal would, then SIGHUP
        for src, dst in ((tmp_path / "second.crt", cert), (tmp_path / "second.key", key)):
            shutil.copy(src, str(dst) + ".new")
            os.replace(str(dst) + ".new", dst)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded the TLS certificate" in log_path.read_text(errors="replace"), "the reload")
        assert same(served_pem(), tmp_path / "second.crt")
        # a key that does not match is refused and the previous certificate stays
        shutil.copy(tmp_path / "first.key", key)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "cannot reload the TLS certificate" in log_path.read_text(errors="replace"),
                 "the refused reload")
        assert same(served_pem(), tmp_path / "second.crt")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
