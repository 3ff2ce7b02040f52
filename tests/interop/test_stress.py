"""Concurrent pushes, tag moves, deletes, pulls and online garbage collection runs against a real
server for a bounded time; afterwards a last GC with no grace period runs, every image that should
exist pulls with every digest verified, no request ever answered 5xx or MANIFEST_BLOB_UNKNOWN, and
the usage the registry reports equals the sizes of the distinct digests still referenced."""

from __future__ import annotations

import json
import os
import random
import threading
import time

from helpers import OCI_MANIFEST, TARGET, sha256_digest

DURATION = float(os.environ.get("STRESS_SECONDS", "25"))
WORKERS = 6
# GC grace period during the run: longer than any push takes from its first blob upload to its
# manifest PUT (blobs younger than this are never collected), short enough that the blobs of
# images deleted early in the run are collected while the workers go on
GC_GRACE = int(os.environ.get("STRESS_GC_GRACE_SECONDS", "10"))


def test_concurrent_push_tag_delete_pull_gc_loses_nothing(registry):
    # garbage collection is Berth's (/api/v1/gc); against the reference registry the rest runs without it
    with_gc = TARGET == "berth"
    admin = registry.api(timeout=120)
    if with_gc:
        r = admin.req("PATCH", "/api/v1/config/gc", json={"graceSeconds": GC_GRACE})
        assert r.status_code == 200 and r.json()["graceSeconds"] == GC_GRACE, r.text
    shared = [os.urandom(random.randint(1, 200_000)) for _ in range(4)]   # layers many images share
    errors: list[str] = []
    lock = threading.Lock()
    expected: dict[str, dict] = {}          # (repo, digest) -> image, for manifests that must exist
    tags: dict[tuple, str] = {}             # (repo, tag) -> digest, per-worker tags only

    def check(r, what):
        if r.status_code >= 500 or "MANIFEST_BLOB_UNKNOWN" in r.text[:500]:
            with lock:
                errors.append(f"{what}: {r.status_code} {r.text[:200]}")
        return r

    def worker(n: int):
        api = registry.api(timeout=60)
        rng = random.Random(n)
        repo = f"stress/w{n % 3}"              # workers share repositories
        mine: list[str] = []
        deadline = time.monotonic() + DURATION
        i = 0
        while time.monotonic() < deadline and len(errors) < 5:
            i += 1
            op = rng.random()
            if op < 0.5 or not mine:
                layers = [rng.choice(shared), os.urandom(rng.randint(0, 100_000))]
                config = json.dumps({"worker": n, "i": i}).encode()
                for blob in [config] + layers:
                    api.push_blob(repo, blob)
                manifest = json.dumps({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": sha256_digest(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": sha256_digest(b), "size": len(b)} for b in layers],
                }).encode()
                tag = f"w{n}-t{rng.randint(0, 3)}"
                r = check(api.put_manifest(repo, tag, manifest), "push")
                assert r.status_code == 201, r.text
                digest = r.headers["Docker-Content-Digest"]
                with lock:
                    expected[(repo, digest)] = {"manifest": manifest, "blobs": [config] + layers}
                    tags[(repo, tag)] = digest
                mine.append(digest)
            elif op < 0.65:
                # move a tag onto one of my images
                digest = rng.choice(mine)
                tag = f"w{n}-t{rng.randint(0, 3)}"
                with lock:
                    body = expected.get((repo, digest), {}).get("manifest")
                if body is None:
                    continue
                r = check(api.put_manifest(repo, tag, body), "tag move")
                assert r.status_code == 201
                with lock:
                    tags[(repo, tag)] = digest
            elif op < 0.75:
                # delete one of my images by digest (its tags go with it)
                digest = mine.pop(rng.randrange(len(mine)))
                r = check(api.req("DELETE", f"/v2/{repo}/manifests/{digest}"), "delete")
                assert r.status_code in (202, 404)
                with lock:
                    expected.pop((repo, digest), None)
                    for key in [k for k, v in tags.items() if k[0] == repo and v == digest]:
                        tags.pop(key)
            else:
                # pull one of my images and verify every digest
                digest = rng.choice(mine)
                r = check(api.get_manifest(repo, digest), "pull manifest")
                # mine: nobody else deletes it, and GC must never take a manifest
                assert r.status_code == 200, r.text
                assert sha256_digest(r.content) == digest
                for layer in json.loads(r.content)["layers"]:
                    b = check(api.get_blob(repo, layer["digest"]), "pull blob")
                    assert b.status_code == 200 and sha256_digest(b.content) == layer["digest"]

    failures: list[BaseException] = []

    def run(t_index):
        try:
            worker(t_index)
        except BaseException as e:   # surfaced below
            failures.append(e)

    gc_runs: list[dict] = []
    workers_done = threading.Event()

    def collector():
        """POST /api/v1/gc every 1-2 s while the workers run."""
        api = registry.api(timeout=120)
        rng = random.Random(99)
        while not workers_done.is_set() and len(errors) < 5:
            r = check(api.req("POST", "/api/v1/gc", json={"dryRun": False}), "gc")
            assert r.status_code in (200, 409), r.text      # 409: a periodic run was going on
            if r.status_code == 200:
                report = r.json()
                assert report["kind"] == "gc" and report["dryRun"] is False, report
                gc_runs.append(report)
            workers_done.wait(rng.uniform(1.0, 2.0))

    def run_collector():
        try:
            collector()
        except BaseException as e:   # surfaced below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(WORKERS)]
    gc_thread = threading.Thread(target=run_collector)
    for t in threads:
        t.start()
    if with_gc:
        gc_thread.start()
    for t in threads:
        t.join(timeout=DURATION + 120)
    workers_done.set()
    if with_gc:
        gc_thread.join(timeout=300)
    assert not failures, failures[0]
    assert not errors, errors
    if with_gc:
        check_gc(admin, gc_runs)
    check_everything_pulls(registry, expected, tags)
    if with_gc:
        check_usage(admin, expected, tags)


def check_gc(admin, gc_runs: list) -> None:
    assert len(gc_runs) >= 2, f"only {len(gc_runs)} GC runs completed during the workload"
    if DURATION >= GC_GRACE + 10:
        # images deleted early in the run had their unique layers collected while pushes went on
        assert sum(g["blobsDeleted"] for g in gc_runs) > 0, gc_runs

    # a last collection without grace: whatever nothing references goes, whatever is referenced stays
    r = admin.req("PATCH", "/api/v1/config/gc", json={"graceSeconds": 0})
    assert r.status_code == 200, r.text
    r = admin.req("POST", "/api/v1/gc", json={"dryRun": False})
    assert r.status_code == 200, r.text


def check_everything_pulls(registry, expected: dict, tags: dict) -> None:
    api = registry.api(timeout=60)
    assert expected, "the workload pushed nothing"
    for (repo, digest), image in expected.items():
        r = api.get_manifest(repo, digest)
        assert r.status_code == 200 and r.content == image["manifest"], (repo, digest, r.status_code)
        for blob in image["blobs"]:
            b = api.get_blob(repo, sha256_digest(blob))
            assert b.status_code == 200 and b.content == blob
    for (repo, tag), digest in tags.items():
        r = api.get_manifest(repo, tag)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest, (repo, tag)


def check_usage(admin, expected: dict, tags: dict) -> None:
    """Usage after the last GC: the distinct digests still referenced (blobs, configs, layers,
    manifests), each counted once."""
    sizes: dict[str, int] = {}
    for (repo, digest), image in expected.items():
        sizes[digest] = len(image["manifest"])
        for blob in image["blobs"]:
            sizes[sha256_digest(blob)] = len(blob)
    r = admin.req("GET", "/api/v1/usage")
    assert r.status_code == 200, r.text
    usage = r.json()
    assert usage["bytes"] == sum(sizes.values()), (usage, len(sizes), sum(sizes.values()))
    assert usage["manifests"] == len(expected) and usage["tags"] == len(tags), (usage, len(expected), len(tags))
