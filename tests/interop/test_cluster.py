"""Three `berth serve` nodes over one PostgreSQL database and one Ceph RGW bucket, nginx in front
(cluster.py): real clients through the balancer, an upload carried across nodes, caches that
follow a change made on another node, a node SIGKILLed under load, and GC on one node while the
others take changes. One cluster for the whole file."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import requests

from cluster import Cluster
from helpers import OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST, layout_blob, layout_descriptor, sha256_digest, skopeo, \
    umoci_image

pytestmark = pytest.mark.berth_only

INLINE_LIMIT = 64 << 10     # blobs up to this size are kept in the metadata store, not in the bucket
POLL = 3.0                  # how long a change made on one node may take to be seen by another
                            # (seen in 0.01-0.3 s; the margin is for a loaded CI machine, and stays
                            # below the caches' 5 s backstop, so only the event feed can pass it)


@pytest.fixture(scope="module")
def cluster():
    # No service name configured: the nodes' default must already be one name for the cluster.
    c = Cluster.from_environment(nodes=3, service_name=None)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request, cluster):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n" + cluster.logs())


# --- a small registry client that retries what a real client retries -------------------------------

class Retry(Exception):
    pass


class Client:
    """Raw OCI distribution calls against one base URL, HTTP Basic. ``retries``: how often a step
    that failed on the way (connection error, a body cut short, 502/503/504, an upload the node
    lost) is tried again, the way container clients retry; 0 for calls that must work at once."""

    def __init__(self, base: str, creds, retries: int = 0):
        self.base = base
        self.s = requests.Session()
        self.s.auth = tuple(creds) if creds else None
        self.retries = retries
        self.retried = 0

    def url(self, location: str) -> str:
        return urllib.parse.urljoin(self.base + "/", location)

    def req(self, method: str, location: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        kw.setdefault("allow_redirects", False)
        return self.s.request(method, self.url(location), **kw)

    def _attempts(self, what: str, step):
        last = None
        for attempt in range(self.retries + 1):
            try:
                return step()
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, Retry) as e:
                last = e
                self.retried += 1
                time.sleep(min(0.2 * (attempt + 1), 1.0))
        raise AssertionError(f"{what}: gave up after {self.retries + 1} attempts: {last!r}")

    @staticmethod
    def _transient(r: requests.Response) -> bool:
        return r.status_code in (502, 503, 504)

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)

        def step():
            r = self.req("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
            if self._transient(r):
                raise Retry(f"POST {r.status_code}")
            assert r.status_code == 202, (r.status_code, r.text)
            r = self.req("PUT", r.headers["Location"], params={"digest": digest}, data=data,
                         headers={"Content-Type": "application/octet-stream"})
            if self._transient(r) or (r.status_code == 404 and "BLOB_UPLOAD_UNKNOWN" in r.text):
                raise Retry(f"PUT {r.status_code}")
            assert r.status_code == 201, (r.status_code, r.text)
            return digest
        return self._attempts(f"blob {digest} into {repo}", step)

    def blob_exists(self, repo: str, digest: str) -> bool:
        def step():
            r = self.req("HEAD", f"/v2/{repo}/blobs/{digest}")
            if self._transient(r):
                raise Retry(f"HEAD {r.status_code}")
            assert r.status_code in (200, 404), r.status_code
            return r.status_code == 200
        return self._attempts(f"HEAD {digest}", step)

    def put_manifest(self, repo: str, ref: str, body: bytes) -> requests.Response:
        def step():
            r = self.req("PUT", f"/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": OCI_MANIFEST})
            if self._transient(r):
                raise Retry(f"PUT manifest {r.status_code}")
            return r
        return self._attempts(f"manifest {repo}:{ref}", step)

    def get(self, location: str, **kw) -> requests.Response:
        def step():
            r = self.req("GET", location, **kw)
            if self._transient(r):
                raise Retry(f"GET {r.status_code}")
            return r
        return self._attempts(f"GET {location}", step)


def image(layers: List[bytes], label: str) -> Tuple[bytes, Dict[str, bytes]]:
    """An OCI image manifest over ``layers`` and a config naming ``label``; returns the manifest
    and every blob it references by digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"t": label}},
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(l) for l in layers]}}).encode()
    blobs = {sha256_digest(config): config, **{sha256_digest(l): l for l in layers}}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": sha256_digest(l), "size": len(l)} for l in layers],
    }).encode()
    return manifest, blobs


def push_image(client: Client, repo: str, tag: str, manifest: bytes, blobs: Dict[str, bytes]) -> requests.Response:
    """Pushes as a client does: a blob the registry already has is not sent again."""
    for digest, data in blobs.items():
        if not client.blob_exists(repo, digest):
            client.push_blob(repo, data)
    return client.put_manifest(repo, tag, manifest)


def assert_pullable(client: Client, repo: str, tag: str, manifest: bytes, blobs: Dict[str, bytes]) -> None:
    r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, (client.base, repo, tag, r.status_code, r.text)
    assert r.content == manifest and r.headers["Docker-Content-Digest"] == sha256_digest(manifest)
    for digest, data in blobs.items():
        r = client.get(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200, (client.base, repo, digest, r.status_code, r.text)
        assert sha256_digest(r.content) == digest and r.content == data


def poll(what: str, check, seconds: float = POLL) -> float:
    """Calls ``check`` until it returns true, for at most ``seconds``; returns how long it took."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not seen within {seconds} s")
        time.sleep(0.05)


def blob_keys(cluster: Cluster) -> Dict[str, str]:
    """digest -> object key of every blob in the bucket."""
    prefix = f"{cluster.s3_prefix}/blobs/"
    return {f"{k.split('/')[-3]}:{k.split('/')[-1]}": k for k in cluster.bucket.keys(prefix)}


# --- a. real clients through the balancer ----------------------------------------------------------

def test_clients_work_through_the_balancer(cluster, tmp_path):
    from test_buildah_podman import Containers, _read_from_podman_image
    from test_oras import oras_client
    host, creds = cluster.balancer_host, cluster.creds
    node_hosts = [n.host for n in cluster.nodes]

    # Every URL Berth hands out points at the balancer: the realm follows the Host nginx passes
    # on, the service is one name for the whole cluster, and a token works on every node.
    r = requests.get(cluster.balancer_base + "/v2/", timeout=30)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert f'realm="http://{host}/oauth2/token"' in challenge, challenge
    service = re.search(r'service="([^"]+)"', challenge).group(1)
    assert not any(h in challenge for h in node_hosts), challenge
    r = requests.get(cluster.balancer_base + "/oauth2/token", params={"service": service}, auth=creds, timeout=30)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    for node in cluster.nodes:
        r = requests.get(node.base + "/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, (node.base, r.text)
        challenge = requests.get(node.base + "/v2/", timeout=30).headers["WWW-Authenticate"]
        assert f'service="{service}"' in challenge, challenge

    # skopeo in and out (a layer large enough to live in the bucket)
    layout = tmp_path / "src"
    digest = umoci_image(layout, "v1", [{"etc/hello.txt": b"hello\n"}, {"opt/big.bin": os.urandom(200 << 10)}],
                         workdir=tmp_path)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/cl/skopeo:v1", creds=creds)
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/cl/skopeo:v1", f"oci:{out}:v1", creds=creds)
    assert layout_descriptor(out, "v1")["digest"] == digest
    for layer in json.loads(layout_blob(layout, digest))["layers"]:
        assert layout_blob(out, layer["digest"]) == layout_blob(layout, layer["digest"])

    # an oras artifact
    art = tmp_path / "artifact"
    art.mkdir()
    (art / "sbom.json").write_bytes(json.dumps({"packages": [os.urandom(8).hex()]}).encode())
    reg = oras_client(host, creds)
    cwd = os.getcwd()
    os.chdir(art)
    try:
        reg.push(target=f"{host}/cl/oras:sbom", files=["sbom.json"], quiet=True)
    finally:
        os.chdir(cwd)
    pulled = tmp_path / "pulled"
    files = reg.pull(target=f"{host}/cl/oras:sbom", outdir=str(pulled))
    assert [Path(f).read_bytes() for f in files] == [(art / "sbom.json").read_bytes()]

    # buildah push, podman pull
    (tmp_path / "ctr").mkdir()
    ctr = Containers(tmp_path / "ctr", creds)
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "hello").write_bytes(b"hello from the cluster\n")
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY hello /hello\n")
        ref = f"{host}/cl/built:1"
        ctr.buildah("bud", "--isolation", "chroot", "--signature-policy", str(ctr.policy),
                    "-f", str(ctx / "Containerfile"), "-t", ref, str(ctx))
        ctr.buildah("push", "--tls-verify=false", *ctr.creds_flags, "--signature-policy", str(ctr.policy), ref)
        ctr.podman("rmi", "--all", check=False)
        ctr.podman("pull", "--tls-verify=false", *ctr.creds_flags, "--signature-policy", str(ctr.policy), ref)
        assert _read_from_podman_image(ctr, ref, ["/hello"]) == {"/hello": b"hello from the cluster\n"}
    finally:
        ctr.cleanup()


# --- b. one upload, three nodes --------------------------------------------------------------------

def test_a_chunked_upload_started_continued_and_finished_on_three_nodes(cluster):
    a, b, c = (Client(n.base, cluster.creds) for n in cluster.nodes)
    data = os.urandom((16 << 20) + 3_333_333)     # more than one 16 MiB part; B's chunk crosses the boundary
    cuts = [0, 5_000_001, 17_000_000, len(data)]
    repo = "cl/chunked"
    r = a.req("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    for client, (lo, hi) in zip((a, b, c), zip(cuts, cuts[1:])):
        assert loc.startswith("/v2/"), f"a Location names no node: {loc}"
        r = client.req("PATCH", loc, data=data[lo:hi], timeout=120, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{lo}-{hi - 1}"})
        assert r.status_code == 202, (client.base, r.status_code, r.text)
        assert r.headers["Range"] == f"0-{hi - 1}"
        loc = r.headers["Location"]
    digest = sha256_digest(data)
    r = c.req("PUT", loc, params={"digest": digest}, headers={"Content-Length": "0"}, timeout=120)
    assert r.status_code == 201, (r.status_code, r.text)
    for client in (a, b, c, Client(cluster.balancer_base, cluster.creds)):
        r = client.req("GET", f"/v2/{repo}/blobs/{digest}", timeout=120)
        assert r.status_code == 200 and sha256_digest(r.content) == digest, (client.base, r.status_code)
    assert not cluster.bucket.keys(f"{cluster.s3_prefix}/uploads/"), "the upload leaves nothing behind"


# --- c. a change on one node is seen by the others -------------------------------------------------

def test_changes_on_one_node_are_seen_by_another_within_a_second_or_two(cluster):
    a_node, b_node = cluster.node(0), cluster.node(1)
    a, b = Client(a_node.base, cluster.creds), Client(b_node.base, cluster.creds)
    repo = "cl/cache"
    seen: Dict[str, float] = {}

    # Two pull-only repository tokens, made on A.
    creds = {}
    for name in ("cl-revoked", "cl-reader"):
        r = a.req("POST", "/api/v1/tokens", json={"name": name, "scopeMap": "_repositories_pull"})
        assert r.status_code == 201, r.text
        creds[name] = (name, r.json()["credentials"]["password1"])

    first, first_blobs = image([b"first layer"], "first")
    second, second_blobs = image([b"second layer"], "second")
    assert push_image(a, repo, "moving", first, first_blobs).status_code == 201
    assert push_image(a, repo, "q", second, second_blobs).status_code == 201

    def on_b(cred, ref, method="GET"):
        return requests.request(method, f"{b_node.base}/v2/{repo}/manifests/{ref}", auth=cred,
                                headers={"Accept": OCI_MANIFEST}, timeout=30)

    # B has seen all of it (its caches hold the tag, the verdict and the credentials) ...
    assert on_b(creds["cl-revoked"], "moving").headers["Docker-Content-Digest"] == sha256_digest(first)
    assert on_b(creds["cl-reader"], "q").status_code == 200
    r = requests.get(f"{a_node.base}/oauth2/token", params={"service": _service(cluster), "scope": f"repository:{repo}:pull"},
                     auth=creds["cl-revoked"], timeout=30)
    assert r.status_code == 200, r.text
    bearer = {"Authorization": "Bearer " + r.json()["token"]}
    assert requests.get(f"{b_node.base}/v2/{repo}/tags/list", headers=bearer, timeout=30).status_code == 200
    unknown_blob = sha256_digest(os.urandom(16))
    assert b.req("DELETE", f"/v2/{repo}/blobs/{unknown_blob}").status_code == 404   # no lock yet

    # ... when A changes it.
    # A token disabled on A: B refuses its password and the access token issued for it.
    r = a.req("PATCH", "/api/v1/tokens/cl-revoked", json={"status": "disabled"})
    assert r.status_code == 200, r.text
    seen["token"] = poll("a token disabled on A refused by B", lambda: on_b(creds["cl-revoked"], "moving").status_code == 401)
    assert requests.get(f"{b_node.base}/v2/{repo}/tags/list", headers=bearer, timeout=30).status_code == 401

    # A Failed verdict on A: B refuses the pull.
    r = a.req("PATCH", "/api/v1/quarantine/manifests",
              json={"repository": repo, "digest": sha256_digest(second), "state": "Failed", "reason": "cluster test"})
    assert r.status_code == 200, r.text
    seen["quarantine"] = poll("a Failed verdict on A refused by B", lambda: on_b(creds["cl-reader"], "q").status_code == 403)

    # A tag moved on A: B serves the new digest.
    assert a.put_manifest(repo, "moving", second).status_code == 201
    seen["tag"] = poll("a tag moved on A served by B",
                       lambda: b.get(f"/v2/{repo}/manifests/moving").headers.get("Docker-Content-Digest") == sha256_digest(second))

    # A lock set on A: B refuses deletes and overwrites.
    r = a.req("PATCH", "/api/v1/repository", params={"name": repo}, json={"writeEnabled": False, "deleteEnabled": False})
    assert r.status_code == 200, r.text
    seen["lock"] = poll("a lock set on A enforced by B",
                        lambda: b.req("DELETE", f"/v2/{repo}/blobs/{unknown_blob}").status_code == 403)
    r = b.put_manifest(repo, "moving", first)
    assert r.status_code == 403 and "DENIED" in r.text, (r.status_code, r.text)
    r = b.req("DELETE", f"/v2/{repo}/manifests/{sha256_digest(second)}")
    assert r.status_code == 403 and "DENIED" in r.text, (r.status_code, r.text)
    assert b.get(f"/v2/{repo}/manifests/moving").headers.get("Docker-Content-Digest") == sha256_digest(second)
    print("seen on B after:", {k: f"{v:.2f}s" for k, v in seen.items()})


def _service(cluster: Cluster) -> str:
    challenge = requests.get(cluster.balancer_base + "/v2/", timeout=30).headers["WWW-Authenticate"]
    return re.search(r'service="([^"]+)"', challenge).group(1)


# --- d. a node killed under load -------------------------------------------------------------------

def test_a_node_killed_while_clients_push_and_pull_through_the_balancer(cluster):
    victim = 2
    pushes, threads = 18, 3
    repo = "cl/killed"
    acknowledged: List[Tuple[str, bytes, Dict[str, bytes]]] = []
    attempted: Dict[str, bytes] = {}
    bad: List[str] = []
    errors: List[str] = []
    lock = threading.Lock()
    base_layer = os.urandom(100 << 10)
    stop_pulling = threading.Event()

    clients: List[Client] = []

    def pusher(worker: int):
        client = Client(cluster.balancer_base, cluster.creds, retries=10)
        clients.append(client)
        try:
            for i in range(worker, pushes, threads):
                manifest, blobs = image([base_layer, os.urandom(random.randint(INLINE_LIMIT + 1, 160 << 10))], f"k{i}")
                with lock:
                    attempted.update(blobs)
                r = push_image(client, repo, f"t{i}", manifest, blobs)
                assert r.status_code == 201, (r.status_code, r.text)
                with lock:
                    acknowledged.append((f"t{i}", manifest, blobs))
        except AssertionError as e:
            with lock:
                errors.append(f"pusher {worker}: {e}")

    def puller():
        client = Client(cluster.balancer_base, cluster.creds, retries=10)
        while not stop_pulling.is_set():
            with lock:
                done = list(acknowledged)
            if not done:
                time.sleep(0.05)
                continue
            tag, manifest, blobs = random.choice(done)
            try:
                for digest in blobs:
                    r = client.get(f"/v2/{repo}/blobs/{digest}")
                    if r.status_code == 200 and sha256_digest(r.content) != digest:
                        with lock:
                            bad.append(f"GET {digest} during the run: other bytes")
                    elif r.status_code != 200:
                        with lock:
                            errors.append(f"an acknowledged blob {digest} answered {r.status_code}")
            except AssertionError as e:
                with lock:
                    errors.append(f"puller: {e}")

    workers = [threading.Thread(target=pusher, args=(w,)) for w in range(threads)]
    workers.append(threading.Thread(target=puller))
    for w in workers:
        w.start()
    try:
        poll("a few pushes before the kill", lambda: len(acknowledged) >= 4, seconds=120)
        cluster.kill(victim)
        acknowledged_before_kill = len(acknowledged)
        for w in workers[:threads]:
            w.join(timeout=300)
    finally:
        stop_pulling.set()
        for w in workers:
            w.join(timeout=60)
    assert not errors, errors
    assert not bad, bad
    assert len(acknowledged) == pushes
    assert acknowledged_before_kill < pushes, "the node was killed while pushes went on"
    print(f"acknowledged before the kill: {acknowledged_before_kill}/{pushes}; "
          f"client retries: {sum(c.retried for c in clients)}")

    survivors = [Client(n.base, cluster.creds) for i, n in enumerate(cluster.nodes) if i != victim]
    for client in survivors:
        for tag, manifest, blobs in acknowledged:
            assert_pullable(client, repo, tag, manifest, blobs)
    # No blob whose bytes are not its digest: not through any node, not in the bucket.
    for digest, data in attempted.items():
        for client in survivors:
            r = client.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code in (200, 404), r.status_code
            if r.status_code == 200:
                assert r.content == data, digest
    for digest, key in blob_keys(cluster).items():
        r = cluster.bucket.request("GET", key)
        assert r.status_code == 200 and sha256_digest(r.content) == digest, key

    cluster.restart(victim)
    assert_pullable(Client(cluster.node(victim).base, cluster.creds), repo, *acknowledged[0])


# --- e. GC on one node while the others change things ----------------------------------------------

def test_gc_on_one_node_while_the_others_push_move_tags_and_delete(cluster):
    gc_node, pusher_node, deleter_node = cluster.nodes
    admin = Client(gc_node.base, cluster.creds)
    pusher, deleter = Client(pusher_node.base, cluster.creds), Client(deleter_node.base, cluster.creds)
    grace = 5     # seconds; a push here takes well under one, also on a loaded machine
    r = admin.req("PATCH", "/api/v1/config/gc", json={"graceSeconds": grace})
    assert r.status_code == 200 and r.json()["graceSeconds"] == grace, r.text
    repo = "cl/gc"
    big = lambda: os.urandom(random.randint(INLINE_LIMIT + 1, 150 << 10))
    base = big()
    kept: Dict[str, Tuple[bytes, Dict[str, bytes]]] = {}     # tag -> image that must stay pullable
    deleted: List[Dict[str, bytes]] = []

    # Before: a kept image, and images to delete while GC runs.
    manifest, blobs = image([base, big()], "keep")
    assert push_image(pusher, repo, "keep", manifest, blobs).status_code == 201
    kept["keep"] = (manifest, blobs)
    doomed = []
    for i in range(3):
        manifest, blobs = image([big()], f"doomed{i}")
        assert push_image(pusher, repo, f"doomed{i}", manifest, blobs).status_code == 201
        doomed.append((manifest, blobs))

    gc_runs, refused, problems = [], [], []
    done = threading.Event()

    def collect():
        while not done.is_set():
            r = admin.req("POST", "/api/v1/gc", headers={"Content-Length": "0"}, timeout=120)
            if r.status_code == 200:
                gc_runs.append(r.json())
            elif r.status_code != 409:          # another run in progress
                problems.append(f"gc: {r.status_code} {r.text}")
            time.sleep(0.2)

    def delete_doomed():
        for manifest, blobs in doomed:
            r = deleter.req("DELETE", f"/v2/{repo}/manifests/{sha256_digest(manifest)}")
            if r.status_code != 202:
                problems.append(f"delete: {r.status_code} {r.text}")
            else:
                deleted.append({d: b for d, b in blobs.items() if d not in kept["keep"][1]})
            time.sleep(0.5)

    collector = threading.Thread(target=collect)
    collector.start()
    deleter_thread = threading.Thread(target=delete_doomed)
    deleter_thread.start()
    try:
        previous = None
        for i in range(10):
            manifest, blobs = image([base, big()], f"new{i}")
            started = time.monotonic()
            r = push_image(pusher, repo, f"new{i}", manifest, blobs)
            took = time.monotonic() - started
            if r.status_code != 201 and took >= grace - 1:
                # A push slower than the grace period (a stalled CI machine) may rightly lose a
                # link to GC; its client pushes again, which must then succeed.
                r = push_image(pusher, repo, f"new{i}", manifest, blobs)
            if r.status_code != 201:
                refused.append((f"new{i}", r.status_code, r.text, f"{took:.1f} s"))
                continue
            kept[f"new{i}"] = (manifest, blobs)
            # the tag `moving` follows the newest push; every other image it leaves is deleted on
            # the third node
            assert pusher.put_manifest(repo, "moving", manifest).status_code == 201
            kept["moving"] = (manifest, blobs)
            if i % 2 == 1 and previous is not None:
                gone_manifest, gone_blobs = kept.pop(previous)
                r = deleter.req("DELETE", f"/v2/{repo}/manifests/{sha256_digest(gone_manifest)}")
                assert r.status_code == 202, (r.status_code, r.text)
                deleted.append({d: b for d, b in gone_blobs.items() if d not in kept["keep"][1]})
            previous = f"new{i}"
            time.sleep(0.2)
    finally:
        deleter_thread.join(timeout=60)
        done.set()
        collector.join(timeout=120)
    assert not problems, problems
    assert gc_runs, "GC ran at least once while the others worked"
    # A push refused because GC took a blob it had just sent would be the cross-node pin race.
    assert not refused, f"pushes refused while GC ran: {refused}"

    # Everything still referenced is whole: its bytes are in the bucket, and every node serves it.
    def assert_kept():
        in_bucket = blob_keys(cluster)
        lost = [(tag, d) for tag, (_, blobs) in kept.items() for d, data in blobs.items()
                if len(data) > INLINE_LIMIT and d not in in_bucket]
        by = {d: [(run["id"], run["orphanFilesRemoved"]) for run in gc_runs if d in run["digests"]] for _, d in lost}
        assert not lost, (f"acknowledged pushes whose bytes GC took from the bucket: {lost}; "
                          f"the GC runs (id, orphan files removed) that listed them: {by}")
        for node in cluster.nodes:
            client = Client(node.base, cluster.creds)
            for tag, (manifest, blobs) in kept.items():
                assert_pullable(client, repo, tag, manifest, blobs)
        return in_bucket
    assert_kept()

    # The bytes of what was deleted are reclaimed once their grace period is over.
    time.sleep(grace + 0.5)
    r = admin.req("POST", "/api/v1/gc", headers={"Content-Length": "0"}, timeout=120)
    assert r.status_code == 200, r.text
    in_bucket = assert_kept()
    gone = {d for blobs in deleted for d in blobs if len(blobs[d]) > INLINE_LIMIT}
    assert len(gone) == len(doomed) + 5, gone
    assert not gone & set(in_bucket), f"deleted images' blobs still in the bucket: {gone & set(in_bucket)}"


def test_a_blob_a_client_was_told_exists_on_one_node_outlives_gc_on_another(cluster):
    """The cross-node pin race, made deterministic: a blob unreferenced for longer than the grace
    period is HEADed on B (so the client does not send it again), GC runs on A, then B takes the
    manifest. The HEAD's touch must reach A's GC: the push is accepted and the bytes stay."""
    a, b = Client(cluster.node(0).base, cluster.creds), Client(cluster.node(1).base, cluster.creds)
    grace = 5     # the HEAD's touch covers GC runs up to grace + slack later: room for a stalled machine
    r = a.req("PATCH", "/api/v1/config/gc", json={"graceSeconds": grace})
    assert r.status_code == 200, r.text
    repo = "cl/touched"
    layer = os.urandom(INLINE_LIMIT + 4096)
    old, old_blobs = image([layer], "old")
    assert push_image(b, repo, "old", old, old_blobs).status_code == 201
    assert b.req("DELETE", f"/v2/{repo}/manifests/{sha256_digest(old)}").status_code == 202
    time.sleep(grace + 0.5)                       # the layer is now unreferenced past its grace period

    new, new_blobs = image([layer], "new")
    assert b.blob_exists(repo, sha256_digest(layer)), "B tells the client it has the layer"
    r = a.req("POST", "/api/v1/gc", headers={"Content-Length": "0"}, timeout=120)
    assert r.status_code == 200, r.text
    assert sha256_digest(layer) not in r.json()["digests"], "GC on A took the layer B just told a client it has"
    r = push_image(b, repo, "new", new, new_blobs)   # sends only the config: the layer exists
    assert r.status_code == 201, (r.status_code, r.text)
    for node in cluster.nodes:
        assert_pullable(Client(node.base, cluster.creds), repo, "new", new, new_blobs)


# --- f. who runs the cluster-once work ------------------------------------------------------------

def cli_list(cluster: Cluster, via: int, *words: str) -> List[dict]:
    """``berth WORDS list -o json`` through node ``via``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update({"BERTH_REGISTRY": cluster.node(via).base, "BERTH_USERNAME": cluster.username,
                "BERTH_PASSWORD": cluster.password, "XDG_CONFIG_HOME": str(cluster.workdir / "cli-config")})
    out = subprocess.run([str(cluster.berth), *words, "list", "-o", "json"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def lease_list(cluster: Cluster, via: int) -> Dict[str, dict]:
    """``berth lease list`` through node ``via``: lease name -> lease."""
    return {lease["name"]: lease for lease in cli_list(cluster, via, "lease")}


def poll_slowly(what: str, check, seconds: float) -> float:
    """``poll`` for a check that runs the CLI (a login each time): once a second."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"{what}: not seen within {seconds} s")
        time.sleep(1)
    return time.monotonic() - start


def holder_pid(lease: dict) -> int:
    """A node's lease holder name is host:pid:nonce."""
    return int(lease["holder"].split(":")[-2])


def test_each_lease_is_held_by_one_running_node_and_moves_when_it_dies(cluster):
    running = {n.proc.pid: i for i, n in enumerate(cluster.nodes) if n.is_running()}
    assert len(running) == 3
    core = ("lifecycle", "consumer:retention")

    def taken_by_running_nodes() -> bool:
        leases = lease_list(cluster, 0)
        return all(name in leases and leases[name]["live"] and holder_pid(leases[name]) in running for name in core)

    # (a node killed by an earlier test may hold one until its time runs out)
    poll_slowly("the lifecycle and retention leases held by running nodes", taken_by_running_nodes, seconds=60)
    leases = lease_list(cluster, 0)
    other = lease_list(cluster, 1)
    assert {n: other[n]["holder"] for n in core} == {n: leases[n]["holder"] for n in core}, \
        "every node answers from the one shared store"
    for name, lease in leases.items():
        if lease["live"]:
            assert holder_pid(lease) in running, (name, lease, running)
    # each event consumer names its lease and that lease's holder, as the lease list does
    consumers = {c["name"]: c for c in cli_list(cluster, 2, "event-consumer")}
    assert consumers["retention"]["lease"] == "consumer:retention", consumers["retention"]
    assert consumers["retention"].get("leaseHolder") == leases["consumer:retention"]["holder"], (consumers, leases)
    before = leases["lifecycle"]
    victim = running[holder_pid(before)]
    cluster.kill(victim)
    try:
        survivor = next(i for i in range(3) if i != victim)

        def moved() -> bool:
            now = lease_list(cluster, survivor)["lifecycle"]
            return now["live"] and holder_pid(now) in running and running[holder_pid(now)] != victim

        # a dead holder stops renewing: the lease runs out (15 s) and another node takes it
        took = poll_slowly("the lifecycle lease taken over by a surviving node", moved, seconds=90)
        after = lease_list(cluster, survivor)["lifecycle"]
        assert after["token"] > before["token"], (before, after)
        print(f"lifecycle lease moved from node {victim} to node {running[holder_pid(after)]} in {took:.1f} s")
    finally:
        cluster.restart(victim)


# --- g. break-glass recovery on the shared database -------------------------------------------------

def test_recover_owner_works_on_the_shared_database_while_the_nodes_run(cluster):
    workdir = cluster.workdir / "recover"
    workdir.mkdir(exist_ok=True)
    env = cluster.node_environment()
    env.pop("BERTH_BOOTSTRAP_OWNER_PASSWORD")
    # the metadata store as an operator names it: one URL (it holds the test database's password,
    # so not on the command line)
    env["BERTH_METADATA"] = env.pop("BERTH_POSTGRES_URL")

    def recover(name: str, environment: Dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([str(cluster.berth), "recover", "owner", "--name", name], capture_output=True, text=True,
                              env=environment, cwd=workdir, timeout=120)

    # The signing keys are sealed in the database under the cluster's key-file: without it, or with
    # another key, nothing is changed.
    no_key = {k: v for k, v in env.items() if k != "BERTH_KEY_FILE"}
    out = recover("cl-rescue", no_key)
    assert out.returncode != 0 and "key-file" in out.stderr, out.stderr
    wrong = workdir / "wrong.key"
    wrong.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    wrong.chmod(0o600)
    out = recover("cl-rescue", {**env, "BERTH_KEY_FILE": str(wrong)})
    assert out.returncode != 0 and out.stdout == "", (out.stdout, out.stderr)

    # A database no registry uses (a mistyped name) is refused and left as it was: no schema.
    empty = "cluster_empty_" + os.urandom(4).hex()
    cluster._psql(f"CREATE DATABASE {empty}")
    try:
        parts = urllib.parse.urlsplit(env["BERTH_METADATA"])
        out = recover("cl-rescue", {**env, "BERTH_METADATA": urllib.parse.urlunsplit(parts._replace(path="/" + empty))})
        assert out.returncode != 0 and "no Berth registry" in out.stderr and out.stdout == "", (out.stdout, out.stderr)
        tables = subprocess.run(["psql", urllib.parse.urlunsplit(urllib.parse.urlsplit(cluster.admin_url)._replace(path="/" + empty)),
                                 "-Atc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
                                capture_output=True, text=True, timeout=60)
        assert tables.returncode == 0 and tables.stdout.strip() == "0", (tables.stdout, tables.stderr)
    finally:
        cluster._psql(f"DROP DATABASE IF EXISTS {empty}")

    out = recover("cl-rescue", env)
    assert out.returncode == 0, out.stderr
    password = out.stdout.strip()
    assert len(password) >= 32 and "\n" not in password, out.stdout
    assert password not in out.stderr
    assert not (workdir / "berth-data").exists(), "a recovery on PostgreSQL writes no data directory"
    rescue = ("cl-rescue", password)
    # every running node lets it in without a restart, and it holds Owner on *
    for node in cluster.nodes:
        poll(f"the recovered owner accepted by node {node.index}",
             lambda: requests.get(f"{node.base}/v2/", auth=rescue, timeout=30).status_code == 200)
    r = requests.get(f"{cluster.balancer_base}/api/v1/identities", auth=rescue, timeout=30)
    assert r.status_code == 200 and "cl-rescue" in {i["name"] for i in r.json()}, r.text
    audit = requests.get(f"{cluster.balancer_base}/api/v1/audit", params={"since": "1h"}, auth=rescue, timeout=30).json()
    assert any(a["action"] == "identity.recover-owner" and a["target"] == "cl-rescue" for a in audit), audit

    try:
        # run again: a new password, and the one before stops working on every node
        out = recover("cl-rescue", env)
        assert out.returncode == 0, out.stderr
        again = ("cl-rescue", out.stdout.strip())
        assert again[1] != password
        for node in cluster.nodes:
            poll(f"the replaced password refused by node {node.index}",
                 lambda: requests.get(f"{node.base}/v2/", auth=rescue, timeout=30).status_code == 401)
            assert requests.get(f"{node.base}/v2/", auth=again, timeout=30).status_code == 200
    finally:
        r = requests.delete(f"{cluster.balancer_base}/api/v1/identities/cl-rescue", auth=cluster.creds, timeout=30)
        assert r.status_code == 204, (r.status_code, r.text)
