"""Backup and restore (issue 14, item 17): ``berth backup`` of a registry that keeps taking pushes,
``berth restore`` into a new directory, a server started on it serves every image whose push was
acknowledged before the backup began (pulled with skopeo, digest checked)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import RegistryServer, berth_bin
from helpers import OCI_MANIFEST, layout_descriptor, sha256_digest, skopeo

pytestmark = pytest.mark.berth_only


def berth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(berth_bin()), *args], capture_output=True, text=True, timeout=300)


def push_image(api, repo: str, tag: str, n: int) -> str:
    """An image with one layer kept as a file (above the 64 KiB inline limit) and one inline."""
    layers = [os.urandom(100_000 + n), f"small layer {n}".encode()]
    for layer in layers:
        api.push_blob(repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(l) for l in layers]}}).encode()
    api.push_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(l),
                    "size": len(l)} for l in layers],
    }).encode()
    r = api.put_manifest(repo, tag, manifest)
    assert r.status_code == 201, r.text
    return sha256_digest(manifest)


def test_backup_while_pushing_then_restore(registry, tmp_path):
    api = registry.api(timeout=60)
    acknowledged = {}           # (repo, tag) -> digest, all acknowledged before the backup begins
    for n in range(6):
        repo = f"backup/app{n % 2}"
        acknowledged[(repo, f"v{n}")] = push_image(api, repo, f"v{n}", n)

    stop = threading.Event()
    failures: list[str] = []
    during = []

    def pusher(w: int):
        papi = registry.api(timeout=60)
        n = 0
        while not stop.is_set() and not failures:
            n += 1
            try:
                during.append(push_image(papi, f"backup/during{w}", f"t{n}", 1000 * w + n))
            except Exception as e:           # noqa: BLE001 - reported below
                failures.append(repr(e))

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    try:
        while len(during) < 2 and not failures:    # pushes are going on when the backup begins
            threading.Event().wait(0.02)
        backup = tmp_path / "backup"
        out = berth("backup", "--data", str(registry.data), "--out", str(backup))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not failures, failures
    assert out.returncode == 0, out.stderr
    assert (backup / "berth-backup.json").is_file() and (backup / "metadata.sqlite").is_file()
    # the key file that seals the signing keys kept in metadata.sqlite: without it the restored
    # server could not open them (it refuses to start then)
    assert (backup / "keys" / "key-encryption.key").is_file()
    assert len(during) > 2   # pushes went on while the backup ran

    # a second backup into the same directory is refused
    again = berth("backup", "--data", str(registry.data), "--out", str(backup))
    assert again.returncode != 0 and "not empty" in again.stderr

    # restore refuses a non-empty target, and one whose lock a server holds
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("x")
    refused = berth("restore", "--from", str(backup), "--data", str(occupied))
    assert refused.returncode != 0 and "not empty" in refused.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    with open(locked / "berth.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = berth("restore", "--from", str(backup), "--data", str(locked))
    assert busy.returncode != 0 and "is using" in busy.stderr, busy.stderr

    # restore into a new directory and serve it
    restored = RegistryServer(tmp_path / "restored")
    restored.data.rmdir()
    ok = berth("restore", "--from", str(backup), "--data", str(restored.data))
    assert ok.returncode == 0, ok.stderr
    restored.password = registry.password      # the owner comes from the backup
    registry.stop()
    restored.start()
    try:
        for (repo, tag), digest in acknowledged.items():
            layout = tmp_path / "pulled" / repo.replace("/", "_") / tag
            layout.parent.mkdir(parents=True, exist_ok=True)
            skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"docker://{restored.host}/{repo}@{digest}",
                   f"oci:{layout}:{tag}", creds=restored.creds)
            assert layout_descriptor(layout, tag)["digest"] == digest
        # the restored registry takes pushes too
        assert push_image(restored.api(), "backup/after", "v1", 7)
    finally:
        restored.stop()
        if not os.environ.get("INTEROP_KEEP"):
            shutil.rmtree(restored.workdir, ignore_errors=True)
