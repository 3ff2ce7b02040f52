"""Pull-through cache rules (issue 17 item 2): pulls through Berth of images that live upstream.

Upstreams: Debian's reference registry (`docker-registry`, htpasswd Basic auth, through a credential
set), a second `berth serve` (token auth), and a scripted upstream that serves a tampered layer. The
cache allows loopback outbound explicitly (`BERTH_OUTBOUND_ALLOW`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import free_port
from helpers import OCI_INDEX, OCI_MANIFEST, Api, sha256_digest, skopeo
from test_oras import oras_client
from test_import import LOOPBACK, berth, berth_source, login, push_image, reference_source  # noqa: F401 (fixtures)

pytestmark = pytest.mark.berth_only   # Berth's cache rules


def served_blob_gets(source, digest: str) -> int:
    # Answered with the blob (a 401 before the credentials is not a fetch).
    text = source.log.read_text(errors="replace")
    return len(re.findall(r'"GET /v2/[^ ]*/blobs/' + re.escape(digest) + r' HTTP/[0-9.]+" 200', text))


def manifest_gets(source, repo: str, ref: str) -> int:
    text = source.log.read_text(errors="replace")
    return text.count(f'"GET /v2/{repo}/manifests/{ref} HTTP')


def manifest_asks(source, repo: str, ref: str) -> int:
    """The source's GETs and HEADs of a manifest."""
    text = source.log.read_text(errors="replace")
    return sum(text.count(f'"{method} /v2/{repo}/manifests/{ref} HTTP') for method in ("GET", "HEAD"))


def head_manifest(registry, repo: str, ref: str):
    """A client's HEAD of a manifest, as docker and containerd send before a pull."""
    return registry.api().req("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})


def settled(count, quiet: float = 1.0, limit: float = 30.0) -> int:
    """`count()` once it has not changed for `quiet` seconds: the reference registry writes a request's
    access-log line after its response, so a count read right after Berth answers can still grow
    (under load that made the negative-cache check below read 1 and then 3)."""
    deadline = time.monotonic() + limit
    last = count()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = count()
        if now == last:
            return now
        last = now
    return last


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_pull_through_the_reference_registry_with_a_credential_set(registry, login, reference_source, tmp_path):
    src = Api(reference_source.host, auth=reference_source.creds)
    layers = [os.urandom(300_000), b"small layer"]
    manifest = push_image(src, "lib/app", "v1", layers)
    digest = sha256_digest(manifest)
    user, password = reference_source.creds
    berth(registry, login, "credential-set", "create", "--name", "ref", "--login-server", reference_source.host,
          "--username", user, "--password-stdin", input=password + "\n")
    rule = json.loads(berth(registry, login, "cache-rule", "create", "--name", "ref", "--source-repo", f"{reference_source.host}/lib/*",
                            "--target-repo", "mirror/*", "--credential-set", "ref", "--plain-http", "--tag-freshness-seconds", "3600",
                            "-o", "json").stdout)
    assert rule["credentialSet"] == "ref" and rule["tagFreshnessSeconds"] == 3600, rule
    shown = berth(registry, login, "credential-set", "show", "--name", "ref", "-o", "json").stdout.decode()
    assert password not in shown and json.loads(shown)["username"] == user
    # A second rule over the same repositories is refused.
    p = berth(registry, login, "cache-rule", "create", "--name", "other", "--source-repo", f"{reference_source.host}/lib/x",
              "--target-repo", "mirror/x", "--plain-http", check=False)
    assert p.returncode != 0 and "overlaps" in p.stderr.decode(), p.stderr.decode()

    # skopeo pulls the tag through the cache: manifest and blobs fetched, verified, stored, served.
    ref = f"docker://{registry.host}/mirror/app:v1"
    assert skopeo("inspect", "--tls-verify=false", "--raw", ref, creds=registry.creds).stdout == manifest
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'layout'}:v1", creds=registry.creds)
    assert registry.api().get_blob("mirror/app", sha256_digest(layers[0])).content == layers[0]
    assert reference_source.blob_gets(sha256_digest(layers[0])) == 1
    # A covered repository takes no push, even from its Owner: a pushed manifest would be served
    # as the upstream's tag. Elsewhere the same push is fine.
    p = skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:v1", f"docker://{registry.host}/mirror/app:v1",
               creds=registry.creds, check=False)
    assert p.returncode != 0 and b"pull-through cache" in p.stderr, p.stderr
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:v1", f"docker://{registry.host}/elsewhere/copy:v1",
           creds=registry.creds)
    # The rule as shown; the credential set's password is sealed at rest (not in the database's files).
    shown_rule = json.loads(berth(registry, login, "cache-rule", "show", "--name", "ref", "-o", "json").stdout)
    assert shown_rule["targetRepository"] == "mirror/*" and shown_rule["credentialSet"] == "ref", shown_rule
    at_rest = b"".join(f.read_bytes() for f in registry.data.rglob("*") if f.is_file() and "blobs" not in f.parts)
    assert password.encode() not in at_rest
    # By digest too; a repository no rule covers is never fetched.
    assert registry.api().get_manifest("mirror/app", digest).content == manifest
    assert registry.api().get_manifest("elsewhere/app", "v1").status_code == 404

    # Concurrent pulls of one missing blob fetch it once.
    big = os.urandom(2_000_000)
    src.push_blob("lib/app", big)
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _: registry.api().get_blob("mirror/app", sha256_digest(big)), range(6)))
    assert all(r.status_code == 200 and r.content == big for r in got), [r.status_code for r in got]
    assert reference_source.blob_gets(sha256_digest(big)) == 1

    # The tag moves upstream: within the freshness window the cache answers GETs and HEADs
    # without asking upstream (neither a GET nor a HEAD reaches it).
    moved = push_image(src, "lib/app", "v1", [b"new layer"])
    asked = settled(lambda: manifest_asks(reference_source, "lib/app", "v1"))
    assert registry.api().get_manifest("mirror/app", "v1").content == manifest
    for _ in range(3):
        r = head_manifest(registry, "mirror/app", "v1")
        assert r.status_code == 200 and r.headers.get("Docker-Content-Digest") == digest, (r.status_code, dict(r.headers))
        assert int(r.headers["Content-Length"]) == len(manifest)
    assert settled(lambda: manifest_asks(reference_source, "lib/app", "v1")) == asked
    # After it (a window of 0 here), upstream is asked: a HEAD answers the new digest, the new
    # manifest is answered at once and its image filled behind it; the tag moves once the image
    # is stored.
    berth(registry, login, "cache-rule", "update", "--name", "ref", "--tag-freshness-seconds", "0")
    r = head_manifest(registry, "mirror/app", "v1")
    assert r.status_code == 200 and r.headers.get("Docker-Content-Digest") == sha256_digest(moved), (r.status_code, dict(r.headers))
    assert settled(lambda: manifest_asks(reference_source, "lib/app", "v1")) > asked
    assert registry.api().get_manifest("mirror/app", "v1").content == moved
    deadline = time.monotonic() + 120
    while True:
        tags = requests.get(f"{registry.base}/api/v1/repository/tags", params={"name": "mirror/app"}, auth=registry.creds,
                            timeout=10).json()
        if any(t["name"] == "v1" and t["digest"] == sha256_digest(moved) for t in tags):
            break
        assert time.monotonic() < deadline, tags
        time.sleep(0.2)

    # Upstream gone: the tag and the digest are served from the cache.
    reference_source.stop()
    assert skopeo("inspect", "--tls-verify=false", "--raw", ref, creds=registry.creds).stdout == moved
    assert registry.api().get_manifest("mirror/app", digest).content == manifest
    assert registry.api().get_blob("mirror/app", sha256_digest(layers[0])).content == layers[0]
    # What was never cached is a clean 502 while the upstream is down.
    assert registry.api().get_manifest("mirror/app", "v9").status_code == 502
    assert password not in registry.log_path.read_text(errors="replace")

    # The set is in use; the rule goes first.
    assert berth(registry, login, "credential-set", "delete", "--name", "ref", check=False).returncode != 0
    berth(registry, login, "cache-rule", "delete", "--name", "ref")
    berth(registry, login, "credential-set", "delete", "--name", "ref")


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_pull_through_a_berth_with_token_auth_caches_a_multi_arch_index(registry, login, berth_source, tmp_path):
    src = berth_source.api()
    amd = push_image(src, "lib/multi", "amd64", [b"amd64 layer"], arch="amd64")
    arm = push_image(src, "lib/multi", "arm64", [b"arm64 layer"], arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(m), "size": len(m), "platform": {"architecture": a, "os": "linux"}}
        for m, a in ((amd, "amd64"), (arm, "arm64"))]}).encode()
    assert src.put_manifest("lib/multi", "v1", index, media_type=OCI_INDEX).status_code == 201
    user, password = berth_source.creds
    berth(registry, login, "credential-set", "create", "--name", "peer", "--login-server", berth_source.host, "--username", user,
          "--password-stdin", input=password + "\n")
    berth(registry, login, "cache-rule", "create", "--name", "peer", "--source-repo", f"{berth_source.host}/lib/multi",
          "--target-repo", "hub/multi", "--credential-set", "peer", "--plain-http")
    listed = json.loads(berth(registry, login, "cache-rule", "list", "-o", "json").stdout)
    assert [r["name"] for r in listed] == ["peer"]

    # Pull rights on the target are needed: another repository's reader is refused and nothing is fetched.
    dev = ("dev", json.loads(berth(registry, login, "identity", "create", "--name", "dev", "-o", "json").stdout)["password"])
    berth(registry, login, "role", "assignment", "create", "--assignee", "dev", "--role", "Pull", "--scope", "other/*")
    assert Api(registry.host, auth=dev).get_manifest("hub/multi", "v1").status_code in (401, 403)
    assert registry.api().req("GET", "/v2/hub/multi/tags/list").status_code == 404

    # skopeo copies the whole index through the cache.
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/hub/multi:v1", f"oci:{tmp_path / 'all'}:v1",
           creds=registry.creds)
    assert registry.api().get_manifest("hub/multi", "v1").content == index
    # oras-py fetches a child by digest (cached by the index's copy: the upstream is not asked again).
    assert oras_client(registry.host, registry.creds).get_manifest(f"{registry.host}/hub/multi@{sha256_digest(arm)}") == json.loads(arm)
    # The upstream stops: the index and its children are still served.
    berth_source.stop()
    for ref, body in (("v1", index), (sha256_digest(amd), amd), (sha256_digest(arm), arm)):
        assert registry.api().get_manifest("hub/multi", ref).content == body


class TamperingUpstream:
    """A registry that serves a manifest whose layer comes back with other bytes of the same length."""

    def __init__(self):
        self.layer = os.urandom(100_000)
        self.config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(self.layer),
                        "size": len(self.layer)}],
        }).encode()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body, kind = b"{}", "application/json"
                if self.path.endswith("/manifests/v1"):
                    body, kind = upstream.manifest, OCI_MANIFEST
                elif self.path.endswith(sha256_digest(upstream.config)):
                    body, kind = upstream.config, "application/octet-stream"
                elif self.path.endswith(sha256_digest(upstream.layer)):
                    body, kind = bytes(b ^ 1 for b in upstream.layer), "application/octet-stream"
                elif self.path != "/v2/":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_tampered_upstream_is_refused_and_nothing_is_cached(registry, login):
    upstream = TamperingUpstream()
    try:
        berth(registry, login, "cache-rule", "create", "--name", "liar", "--source-repo", f"127.0.0.1:{upstream.port}/lib/*",
              "--target-repo", "liar/*", "--plain-http")
        # The manifest itself is genuine (its digest checked): a miss is answered with it at once,
        # and the image is filled behind it, which fails on the layer.
        r = registry.api().get_manifest("liar/app", "v1")
        assert r.status_code == 200 and r.content == upstream.manifest, (r.status_code, r.text)
        # A blob read alone is answered while it streams: the mismatch shows at its end, so the
        # response is cut before its last byte (never a complete 200), or a 502 when nothing was sent.
        try:
            r = registry.api().get_blob("liar/app", sha256_digest(upstream.layer))
            assert r.status_code == 502 or (r.status_code == 200 and len(r.content) < len(upstream.layer)), r.status_code
        except requests.exceptions.RequestException:
            pass   # the connection closed before Content-Length bytes: what a client must see
        # Nothing was stored: with the rule gone the repository has no tag and no layer.
        berth(registry, login, "cache-rule", "delete", "--name", "liar")
        assert registry.api().get_manifest("liar/app", "v1").status_code == 404
        assert registry.api().head_blob("liar/app", sha256_digest(upstream.layer)).status_code == 404
    finally:
        upstream.stop()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_blob_streams_through_the_cache_intact_and_a_missing_name_asks_upstream_once(registry, login, reference_source, tmp_path):
    src = Api(reference_source.host, auth=reference_source.creds)
    manifest = push_image(src, "lib/app", "v1", [b"a layer"])
    big = os.urandom(5_000_000)
    src.push_blob("lib/app", big)
    digest = sha256_digest(big)
    user, password = reference_source.creds
    berth(registry, login, "credential-set", "create", "--name", "ref", "--login-server", reference_source.host,
          "--username", user, "--password-stdin", input=password + "\n")
    berth(registry, login, "cache-rule", "create", "--name", "ref", "--source-repo", f"{reference_source.host}/lib/*",
          "--target-repo", "mirror/*", "--credential-set", "ref", "--plain-http")
    assert registry.api().get_manifest("mirror/app", "v1").content == manifest

    # curl pulls the missing blob: served as it streams from the upstream, complete and intact.
    out, head = tmp_path / "blob", tmp_path / "headers"
    p = subprocess.run(["curl", "-sS", "--fail", "-u", ":".join(registry.creds), "-o", str(out), "-D", str(head),
                        f"http://{registry.host}/v2/mirror/app/blobs/{digest}"], capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == digest
    headers = head.read_text().lower()
    assert "content-length: 5000000" in headers and f"docker-content-digest: {digest}" in headers, headers
    # And stored: a HEAD and a second GET are answered from the store, the upstream asked once.
    assert registry.api().head_blob("mirror/app", digest).status_code == 200
    assert registry.api().get_blob("mirror/app", digest).content == big
    gets = settled(lambda: served_blob_gets(reference_source, digest))
    assert gets == 1, f"the upstream served the blob {gets} times"

    # A storm of pulls of a name the upstream lacks asks it once (cache-negative-seconds, 30 by default).
    assert registry.api().get_manifest("mirror/app", "nope").status_code == 404
    asked = settled(lambda: manifest_gets(reference_source, "lib/app", "nope"))
    assert asked >= 1
    for _ in range(5):
        assert registry.api().get_manifest("mirror/app", "nope").status_code == 404
    again = settled(lambda: manifest_gets(reference_source, "lib/app", "nope"))
    assert again == asked, f"the negative cache let {again - asked} manifest GETs through"
    missing = sha256_digest(b"never pushed upstream")
    assert registry.api().get_blob("mirror/app", missing).status_code == 404
    asked = settled(lambda: reference_source.blob_gets(missing))
    assert asked >= 1
    for _ in range(5):
        assert registry.api().get_blob("mirror/app", missing).status_code == 404
    again = settled(lambda: reference_source.blob_gets(missing))
    assert again == asked, f"the negative cache let {again - asked} blob GETs through"


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_cache_rule_keeps_to_its_target_its_quota_and_its_makers(registry, login, tmp_path):
    """Tenant isolation of a cache rule (issue 17 item 5), with real clients: crafted names (``..``,
    encoded slashes, case) sent as-is by curl reach no upstream and fill nothing; only a
    registry-wide Owner makes a rule (a namespace's Owner may not, for its own namespace or
    another's); the target namespace's quota applies to fills: a pull that would pass it is
    refused with the quota error and neither that layer nor the manifest or tag is stored."""
    from test_import import ReferenceSource
    source = ReferenceSource(tmp_path / "source", None)
    try:
        src = Api(source.host)
        big = os.urandom(300_000)
        manifest = push_image(src, "lib/app", "v1", [big])
        owner = registry.api()

        # Two tenants: alice owns team-a/*, bob pushes to team-b/*. Neither makes a rule.
        passwords = {}
        for name, role, scope in (("alice", "Owner", "team-a/*"), ("bob", "Push", "team-b/*")):
            r = owner.req("POST", "/api/v1/identities", json={"name": name})
            assert r.status_code == 201, r.text
            passwords[name] = r.json()["password"]
            r = owner.req("POST", "/api/v1/role-assignments", json={"assignee": name, "role": role, "scope": scope})
            assert r.status_code == 201, r.text
        for name, target in (("alice", "team-b/*"), ("alice", "team-a/*"), ("bob", "team-b/*")):
            r = requests.post(f"{registry.base}/api/v1/cache-rules", auth=(name, passwords[name]), timeout=30,
                              json={"name": "tenant", "sourceRepository": f"{source.host}/lib/*", "targetRepository": target,
                                    "plainHTTP": True})
            assert r.status_code == 403, (name, target, r.status_code, r.text)
        # Crafted targets are refused by the grammar.
        for target in ("mirror/../team-b/*", "Mirror/*", "mirror%2Fteam-b/*", "*"):
            p = berth(registry, login, "cache-rule", "create", "--name", "crafted", "--source-repo", f"{source.host}/lib/*",
                      "--target-repo", target, "--plain-http", check=False)
            assert p.returncode != 0, target
        berth(registry, login, "cache-rule", "create", "--name", "lib", "--source-repo", f"{source.host}/lib/*",
              "--target-repo", "mirror/*", "--plain-http")

        # Crafted names, sent byte for byte (curl --path-as-is), never fill another tenant's repository.
        for path in ("mirror/../team-b/app", "mirror/%2e%2e/team-b/app", "mirror%2F..%2Fteam-b%2Fapp", "MIRROR/app",
                     "Mirror/app", "mirror//app", "mirror/./app", "mirror/app/../../team-b/app"):
            for user, password in ((registry.username, registry.password), ("bob", passwords["bob"])):
                status = subprocess.run(["curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                                         f"{user}:{password}", f"{registry.base}/v2/{path}/manifests/v1"],
                                        capture_output=True, text=True, timeout=60).stdout
                assert status != "200", (path, user, status)
        assert manifest_gets(source, "lib/app", "v1") == 0
        assert source.blob_gets(sha256_digest(big)) == 0
        catalog = owner.req("GET", "/v2/_catalog").json().get("repositories") or []
        assert catalog == [], catalog

        # The target's quota applies to fills: the layer would pass it, so the pull is refused
        # with the quota error (at the manifest: the whole image is asked of the quotas before it
        # is answered) and the layer is not stored.
        r = owner.req("POST", "/api/v1/quotas", json={"name": "mirrors", "prefix": "mirror/", "limitBytes": 100_000})
        assert r.status_code == 201, r.text
        p = skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/mirror/app:v1", f"oci:{tmp_path / 'layout'}:v1",
                   creds=registry.creds, check=False)
        assert p.returncode != 0 and b"denied" in p.stderr and b"mirrors" in p.stderr, p.stderr
        r = requests.get(f"{registry.base}/v2/mirror/app/blobs/{sha256_digest(big)}", auth=registry.creds, timeout=60)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED" and "mirrors" in r.text, r.text
        # No tag and no manifest was stored (what fitted before the layer, its config, may stay).
        tags = owner.req("GET", "/api/v1/repository/tags", params={"name": "mirror/app"})
        assert tags.status_code == 404 or "v1" not in tags.text, tags.text
        manifests = owner.req("GET", "/api/v1/repository/manifests", params={"name": "mirror/app"})
        assert manifests.status_code == 404 or sha256_digest(manifest) not in manifests.text, manifests.text
        usage = owner.req("GET", "/api/v1/quotas").json()
        used = [q for q in (usage if isinstance(usage, list) else usage.get("quotas", [])) if q["name"] == "mirrors"]
        assert used and used[0].get("usedBytes", 0) < 100_000, usage
        assert not any(f.stat().st_size >= len(big) for f in registry.data.rglob("*") if f.is_file()
                       and "blobs" in f.parts), "the refused layer's bytes are stored"
        # Room made, the same pull fills the image.
        assert owner.req("DELETE", "/api/v1/quotas/mirrors").status_code in (200, 204)
        skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/mirror/app:v1", f"oci:{tmp_path / 'layout'}:v1",
               creds=registry.creds)
        assert owner.get_manifest("mirror/app", "v1").content == manifest
        catalog = owner.req("GET", "/v2/_catalog").json().get("repositories") or []
        assert catalog == ["mirror/app"], catalog
        # (the checks above would see them: now they are there)
        assert '"v1"' in owner.req("GET", "/api/v1/repository/tags", params={"name": "mirror/app"}).text
        assert sha256_digest(manifest) in owner.req("GET", "/api/v1/repository/manifests", params={"name": "mirror/app"}).text
    finally:
        source.stop()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_an_index_whose_children_together_pass_the_quota_is_refused_whole(registry, login, tmp_path):
    """A multi-arch index whose two images each fit under the target's quota but together do not:
    the pull of the index (skopeo copy --all, and a plain GET of it) is refused with the quota's
    error before anything is stored: no manifest, no tag, no blob of either child, and the
    upstream is asked for no blob. With room made, the same pull fills the whole index."""
    from test_import import ReferenceSource
    source = ReferenceSource(tmp_path / "source", None)
    try:
        src = Api(source.host)
        layers = {"amd64": os.urandom(300_000), "arm64": os.urandom(300_000)}
        children = {arch: push_image(src, "lib/multi", arch, [layer], arch=arch) for arch, layer in layers.items()}
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256_digest(m), "size": len(m), "platform": {"architecture": a, "os": "linux"}}
            for a, m in children.items()]}).encode()
        r = src.put_manifest("lib/multi", "v1", index, media_type=OCI_INDEX)
        assert r.status_code == 201, r.text
        owner = registry.api()
        berth(registry, login, "cache-rule", "create", "--name", "lib", "--source-repo", f"{source.host}/lib/*",
              "--target-repo", "mirror/*", "--plain-http")
        # Each child (300 kB and a config) fits; both do not.
        r = owner.req("POST", "/api/v1/quotas", json={"name": "mirrors", "prefix": "mirror/", "limitBytes": 450_000})
        assert r.status_code == 201, r.text

        r = requests.get(f"{registry.base}/v2/mirror/multi/manifests/v1", auth=registry.creds, timeout=60,
                         headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED" and "mirrors" in r.text, r.text
        p = skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/mirror/multi:v1",
                   f"oci:{tmp_path / 'layout'}:v1", creds=registry.creds, check=False)
        assert p.returncode != 0 and b"denied" in p.stderr and b"mirrors" in p.stderr, p.stderr
        # Nothing of it is stored, and no blob was asked of the upstream.
        manifests = owner.req("GET", "/api/v1/repository/manifests", params={"name": "mirror/multi"})
        assert manifests.status_code == 404 or not any(sha256_digest(m) in manifests.text for m in [index, *children.values()]), \
            manifests.text
        for layer in layers.values():
            assert source.blob_gets(sha256_digest(layer)) == 0
        usage = owner.req("GET", "/api/v1/quotas").json()
        used = [q for q in (usage if isinstance(usage, list) else usage.get("quotas", [])) if q["name"] == "mirrors"]
        assert used and used[0].get("usedBytes", 0) == 0, usage

        # Room made, the same pull fills the whole index.
        assert owner.req("DELETE", "/api/v1/quotas/mirrors").status_code in (200, 204)
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/mirror/multi:v1",
               f"oci:{tmp_path / 'layout'}:v1", creds=registry.creds)
        assert owner.get_manifest("mirror/multi", "v1").content == index
    finally:
        source.stop()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_cache_rule_update_by_another_owner_rebinds_the_rule(registry, login, tmp_path):
    """`berth cache-rule update` by another principal than the rule's creator rebinds the rule to
    it (its fills then run with that principal's rights), and the change is audited with whom
    it was rebound from; the creator's own update keeps it bound as it was."""
    upstream = f"127.0.0.1:{free_port()}"
    created = json.loads(berth(registry, login, "cache-rule", "create", "--name", "lib", "--source-repo", f"{upstream}/lib/*",
                               "--target-repo", "mirror/*", "--plain-http", "-o", "json").stdout)
    creator = created["createdBy"]
    same = json.loads(berth(registry, login, "cache-rule", "update", "--name", "lib", "--tag-freshness-seconds", "20",
                            "-o", "json").stdout)
    assert same["createdBy"] == creator, same
    owner = registry.api()
    r = owner.req("POST", "/api/v1/identities", json={"name": "lead"})
    assert r.status_code == 201, r.text
    password = r.json()["password"]
    r = owner.req("POST", "/api/v1/role-assignments", json={"assignee": "lead", "role": "Owner", "scope": "*"})
    assert r.status_code == 201, r.text
    home = tmp_path / "lead"
    berth(registry, home, "login", registry.base, "-u", "lead", "--password-stdin", input=password + "\n")
    updated = json.loads(berth(registry, home, "cache-rule", "update", "--name", "lib", "--tag-freshness-seconds", "10",
                               "-o", "json").stdout)
    assert updated["createdBy"] == "identity:lead" and updated["tagFreshnessSeconds"] == 10, updated
    shown = json.loads(berth(registry, login, "cache-rule", "show", "--name", "lib", "-o", "json").stdout)
    assert shown["createdBy"] == "identity:lead", shown
    audit = owner.req("GET", "/api/v1/audit").json()
    entries = [e for e in audit if e["action"] == "cache-rule.update" and e["target"] == "lib"]
    assert len(entries) == 2, entries
    assert f"rebound from {creator} to identity:lead" in (entries[-1].get("detail") or ""), entries
    assert "rebound" not in (entries[0].get("detail") or ""), entries
