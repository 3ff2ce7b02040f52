"""The Berth container image (issue 14, item 13): ``packaging/build-image`` builds it with buildah
(``--isolation chroot``) from a berth binary, podman runs it (runc), and skopeo pushes an image
into the registry in the container and pulls it back with its digest; ``podman stop`` ends it
gracefully.

The image is built from the binary under test (``BERTH_BIN``), so CI needs no release build; set
``BERTH_IMAGE_BIN=.build-release/release/berth`` to check the production binary's image instead.
Both work: build-image copies whatever shared libraries ``ldd`` lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, berth_bin, free_port
from helpers import layout_descriptor, run, skopeo, umoci_image

pytestmark = [pytest.mark.berth_only, pytest.mark.slow]

TAG = "localhost/berth-interop:test"
PASSWORD = "it-image-owner-password"


@pytest.fixture
def containers(tmp_path):
    """Private storage (vfs) and engine settings (runc; crun cannot run here) for buildah and podman."""
    base = Path(tempfile.mkdtemp(prefix="bi-", dir="/tmp"))   # podman wants a short runroot
    storage = tmp_path / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{base}/run"\ngraphroot = "{tmp_path}/graph"\n')
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n')
    registries = tmp_path / "registries.conf"
    registries.write_text("unqualified-search-registries = []\n")
    (tmp_path / "tmp").mkdir()
    env = {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf),
           "CONTAINERS_REGISTRIES_CONF": str(registries), "BUILDAH_ISOLATION": "chroot",
           "TMPDIR": str(tmp_path / "tmp")}
    yield env
    run(["podman", "rm", "--all", "--force"], env=env, check=False)
    run(["podman", "rmi", "--all", "--force"], env=env, check=False)
    shutil.rmtree(base, ignore_errors=True)


def test_image_builds_runs_and_serves_skopeo(containers, tmp_path):
    assert shutil.which("runc"), "runc is needed (Debian package runc)"
    binary = Path(os.environ.get("BERTH_IMAGE_BIN") or berth_bin())
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    built = run([str(REPO_ROOT / "packaging" / "build-image"), "--binary", str(binary), "--tag", TAG],
                env=containers, timeout=600)
    assert built.stdout.decode().strip() == TAG
    user = run(["podman", "image", "inspect", "--format", "{{.Config.User}}", TAG], env=containers)
    assert user.stdout.decode().strip() == "65532:65532"

    port = free_port()
    run(["podman", "run", "-d", "--name", "berth-it", "--network", "host",
         "-e", f"BERTH_LISTEN=127.0.0.1:{port}", "-e", f"BERTH_BOOTSTRAP_OWNER_PASSWORD={PASSWORD}", TAG],
        env=containers, timeout=120)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            logs = run(["podman", "logs", "berth-it"], env=containers, check=False)
            assert time.monotonic() < deadline, logs.stdout.decode() + logs.stderr.decode()
            time.sleep(0.2)

        layout = tmp_path / "layout"
        digest = umoci_image(layout, "v1", [{"etc/hello": b"hello from the image test\n"}])
        creds = ("owner", PASSWORD)
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://127.0.0.1:{port}/image/app:v1", creds=creds)
        back = tmp_path / "back"
        skopeo("copy", "--preserve-digests", "--src-tls-verify=false",
               f"docker://127.0.0.1:{port}/image/app@{digest}", f"oci:{back}:v1", creds=creds)
        assert layout_descriptor(back, "v1")["digest"] == digest
    finally:
        stopped = run(["podman", "stop", "-t", "30", "berth-it"], env=containers, check=False, timeout=120)
    assert stopped.returncode == 0
    code = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", "berth-it"], env=containers)
    assert code.stdout.decode().strip() == "0"
    logs = run(["podman", "logs", "berth-it"], env=containers)
    assert "berth stopped" in logs.stdout.decode() + logs.stderr.decode()
