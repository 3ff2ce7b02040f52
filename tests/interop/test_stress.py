"""Concurrent pushes, tag moves, deletes and pulls against a real server for a bounded time;
afterwards every image that should exist pulls with every digest verified, and no request ever
answered 5xx or MANIFEST_BLOB_UNKNOWN."""

from __future__ import annotations

import json
import os
import random
import threading
import time

from helpers import OCI_MANIFEST, sha256_digest

DURATION = float(os.environ.get("STRESS_SECONDS", "8"))
WORKERS = 6


def test_concurrent_push_tag_delete_pull_loses_nothing(registry):
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
                if r.status_code == 200:
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

    threads = [threading.Thread(target=run, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DURATION + 120)
    assert not failures, failures[0]
    assert not errors, errors

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
