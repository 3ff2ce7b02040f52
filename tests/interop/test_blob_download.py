"""Blob downloads on a live server: full and ranged GETs of blobs stored as files (which Berth
sends with sendfile on plain HTTP), several responses of different kinds on one keep-alive
connection, clients that go away mid-download, and no descriptor left open afterwards."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import time

import pytest
import requests

from helpers import basic_auth_header, sha256_digest

pytestmark = pytest.mark.berth_only

MiB = 1024 * 1024


def push_blob(registry, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    r = requests.post(f"{registry.base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                      auth=registry.creds, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 201, r.text
    return digest


def open_fds(registry) -> int:
    return len(os.listdir(f"/proc/{registry.proc.pid}/fd"))


def wait_fds_at_most(registry, limit: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = open_fds(registry)
        if n <= limit or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def test_full_and_ranged_gets_on_one_connection(registry):
    big = os.urandom(9 * MiB + 123)
    small = os.urandom(1000)  # kept inline, streamed from memory
    big_digest = push_blob(registry, "dl/app", big)
    small_digest = push_blob(registry, "dl/app", small)
    auth = {"Authorization": "Basic " + base64.b64encode(":".join(registry.creds).encode()).decode()}
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    try:
        def get(path, headers=None):
            conn.request("GET", path, headers={**auth, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()

        # Interleave file-backed blobs, inline blobs, ranges and JSON answers on one connection:
        # every answer must be exactly its own bytes.
        for _ in range(3):
            status, headers, body = get(f"/v2/dl/app/blobs/{big_digest}")
            assert status == 200 and len(body) == len(big) and body == big
            assert headers["docker-content-digest"] == big_digest
            assert headers["content-length"] == str(len(big))

            status, _, body = get(f"/v2/dl/app/blobs/{small_digest}")
            assert status == 200 and body == small

            status, headers, body = get(f"/v2/dl/app/blobs/{big_digest}", {"Range": "bytes=1000-2999999"})
            assert status == 206 and body == big[1000:3000000]
            assert headers["content-range"] == f"bytes 1000-2999999/{len(big)}"

            status, headers, body = get(f"/v2/dl/app/blobs/{big_digest}", {"Range": "bytes=-4096"})
            assert status == 206 and body == big[-4096:]

            status, headers, body = get(f"/v2/dl/app/blobs/{big_digest}", {"Range": f"bytes={len(big) - 1}-"})
            assert status == 206 and body == big[-1:]

            status, headers, body = get(f"/v2/dl/app/blobs/{big_digest}", {"Range": f"bytes={len(big)}-"})
            assert status == 416 and headers["content-range"] == f"bytes */{len(big)}"

            status, _, body = get("/v2/dl/app/manifests/nope")
            assert status == 404 and b"MANIFEST_UNKNOWN" in body

            status, _, body = get(f"/v2/dl/other/blobs/{big_digest}")
            assert status == 404 and b"BLOB_UNKNOWN" in body
    finally:
        conn.close()


def test_clients_that_go_away_leave_nothing_open(registry):
    data = os.urandom(32 * MiB)
    digest = push_blob(registry, "dl/gone", data)
    # settle: one complete download first, so lazily opened descriptors are counted
    r = requests.get(f"{registry.base}/v2/dl/gone/blobs/{digest}", auth=registry.creds, timeout=60)
    assert r.status_code == 200 and sha256_digest(r.content) == digest
    baseline = open_fds(registry)

    request = (f"GET /v2/dl/gone/blobs/{digest} HTTP/1.1\r\nHost: {registry.host}\r\n"
               f"{basic_auth_header(registry.creds)}\r\n").encode()
    for i in range(12):
        s = socket.create_connection(("127.0.0.1", registry.port), timeout=10)
        # a small receive buffer, so the server is mid-file when the client leaves
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(request)
        got = 0
        while got < (i + 1) * 100_000:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()

    assert wait_fds_at_most(registry, baseline) <= baseline, os.listdir(f"/proc/{registry.proc.pid}/fd")
    # and the server still serves the whole blob
    r = requests.get(f"{registry.base}/v2/dl/gone/blobs/{digest}", auth=registry.creds, timeout=60)
    assert r.status_code == 200 and r.content == data


def test_blob_collected_while_downloading_finishes_the_download(registry):
    data = os.urandom(24 * MiB)
    digest = push_blob(registry, "dl/del", data)
    blob_file = registry.data / "storage" / "blobs" / "sha256" / digest[7:9] / digest[7:]
    assert blob_file.exists()
    r = requests.patch(f"{registry.base}/api/v1/config/gc", json={"graceSeconds": 0}, auth=registry.creds, timeout=30)
    assert r.status_code == 200, r.text
    with requests.get(f"{registry.base}/v2/dl/del/blobs/{digest}", auth=registry.creds, stream=True,
                      timeout=60) as r:
        assert r.status_code == 200
        first = r.raw.read(1 * MiB)
        d = requests.delete(f"{registry.base}/v2/dl/del/blobs/{digest}", auth=registry.creds, timeout=30)
        assert d.status_code == 202, d.text
        gc = requests.post(f"{registry.base}/api/v1/gc", json={"dryRun": False}, auth=registry.creds, timeout=60)
        assert gc.status_code == 200 and gc.json()["blobsDeleted"] >= 1, gc.text
        assert not blob_file.exists()
        rest = r.raw.read()
    # the download that started before the collection gets every byte
    assert first + rest == data
    gone = requests.get(f"{registry.base}/v2/dl/del/blobs/{digest}", auth=registry.creds, timeout=30)
    assert gone.status_code == 404 and "BLOB_UNKNOWN" in gone.text
