"""Untrusted upstreams (issue 17 item 5), end to end: an import source or a cache upstream that
serves a manifest over the size bound, a redirect loop, a redirect chain longer than the bound, or
a layer whose bytes are not its digest. ``berth import`` fails with a clear reason and a cache
pull with an error status; nothing of it is stored: no tag, no manifest, not the layer, no upload
session left."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from helpers import OCI_MANIFEST, sha256_digest
from test_import import berth, login  # noqa: F401  (the fixture)

pytestmark = pytest.mark.berth_only

LOOPBACK = "127.0.0.0/8"
MAX_MANIFEST = 4 * 1024 * 1024


class HostileUpstream:
    """One registry, a trap per repository:
    - ``lib/huge``: a manifest one byte over the bound (a valid document padded with an annotation);
    - ``lib/loop``: the manifest redirects to itself;
    - ``lib/chain``: the manifest goes through 8 redirects, each to the next (the bound is 5);
    - ``lib/liar``: a genuine manifest whose layer is served with other bytes of the same length.
    Every request is counted by path."""

    def __init__(self):
        self.layer = os.urandom(100_000)
        self.config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        base = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(self.layer),
                        "size": len(self.layer)}],
        }
        self.manifest = json.dumps(base).encode()
        padded = dict(base, annotations={"pad": ""})
        pad = MAX_MANIFEST + 1 - len(json.dumps(padded).encode())
        padded["annotations"]["pad"] = "x" * pad
        self.huge = json.dumps(padded).encode()
        assert len(self.huge) == MAX_MANIFEST + 1
        self.requests: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body=b"", kind="application/json", location=None):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = self.path.split("?")[0]
                upstream.requests.append(path)
                if path == "/v2/":
                    return self.send(200, b"{}")
                if path.startswith("/v2/lib/huge/manifests/"):
                    return self.send(200, upstream.huge, OCI_MANIFEST)
                if path.startswith("/v2/lib/loop/manifests/"):
                    return self.send(302, location=path)
                if path.startswith("/v2/lib/chain/manifests/"):
                    return self.send(302, location="/hop/1")
                if path.startswith("/hop/"):
                    n = int(path.rsplit("/", 1)[1])
                    if n < 8:
                        return self.send(302, location=f"/hop/{n + 1}")
                    return self.send(200, upstream.manifest, OCI_MANIFEST)
                if path.startswith("/v2/lib/liar/manifests/"):
                    return self.send(200, upstream.manifest, OCI_MANIFEST)
                if path.endswith(sha256_digest(upstream.config)):
                    return self.send(200, upstream.config, "application/octet-stream")
                if path.endswith(sha256_digest(upstream.layer)):
                    return self.send(200, bytes(b ^ 1 for b in upstream.layer), "application/octet-stream")
                return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')

        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def asked(self, prefix: str) -> int:
        return sum(1 for p in list(self.requests) if p.startswith(prefix))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    upstream = HostileUpstream()
    yield upstream
    upstream.stop()


def nothing_stored(registry, repo: str, upstream: HostileUpstream):
    """No tag, no manifest, not the layer, no upload session. (A genuine blob the source served
    before the bad one, verified, may stay: content-addressed, it is what a re-run would skip.)"""
    api = registry.api()
    assert api.get_manifest(repo, "v1").status_code == 404
    assert api.head_blob(repo, sha256_digest(upstream.layer)).status_code == 404
    assert [f for d in registry.data.rglob("uploads") if d.is_dir() for f in d.iterdir()] == []


CASES = [
    ("huge", "manifest", "exceeds the limit"),
    ("loop", "redirect", "redirect loop"),
    ("chain", "redirect", "more than 5 redirects"),
    ("liar", "digest", "served with other content"),
]


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
@pytest.mark.parametrize("trap,_kind,said", CASES, ids=[c[0] for c in CASES])
def test_an_import_from_a_hostile_source_fails_clearly_and_stores_nothing(registry, login, hostile, trap, _kind, said):
    p = berth(registry, login, "import", "--source", f"{hostile.host}/lib/{trap}:v1", "--image", f"got/{trap}:v1",
              "--plain-http", check=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert said in out.lower(), out
    nothing_stored(registry, f"got/{trap}", hostile)
    if trap == "loop":
        # The loop was cut short: a handful of requests, not one per hop forever.
        assert hostile.asked("/v2/lib/loop/manifests/") <= 2 * 6, hostile.asked("/v2/lib/loop/manifests/")
    if trap == "chain":
        # Five redirects followed (the bound), the sixth refused.
        assert hostile.asked("/hop/5") >= 1 and hostile.asked("/hop/6") == 0, hostile.requests


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_cache_rule_on_a_hostile_upstream_serves_and_stores_nothing_of_it(registry, login, hostile):
    berth(registry, login, "cache-rule", "create", "--name", "hostile", "--source-repo", f"{hostile.host}/lib/*",
          "--target-repo", "hostile/*", "--plain-http")
    api = registry.api()
    reasons = {"huge": "exceeds the limit", "loop": "redirect loop", "chain": "more than 5 redirects"}
    for trap in ("huge", "loop", "chain"):
        for method in ("GET", "HEAD"):
            r = api.req(method, f"/v2/hostile/{trap}/manifests/v1", headers={"Accept": OCI_MANIFEST})
            # 502: the upstream failed; the reason names the bound it broke.
            assert r.status_code == 502, (trap, r.status_code, r.text)
            if method == "GET":
                assert reasons[trap] in r.text, r.text
            assert len(r.content) < 64 * 1024, "the upstream's manifest was passed through"
    assert hostile.asked("/hop/5") >= 1 and hostile.asked("/hop/6") == 0, hostile.requests
    berth(registry, login, "cache-rule", "delete", "--name", "hostile")
    for trap in ("huge", "loop", "chain"):
        nothing_stored(registry, f"hostile/{trap}", hostile)
