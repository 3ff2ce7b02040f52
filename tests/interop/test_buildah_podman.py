"""buildah build/push and podman pull against the registry.

What works in this sandbox (root, no overlay, no user namespaces needed):
  * storage: ``--storage-driver vfs`` with private ``--root``/``--runroot``
    temp dirs per test (isolated from any system store),
  * builds: ``buildah bud --isolation chroot`` (no RUN steps are needed; the
    Containerfiles only use FROM/COPY),
  * fully qualified image names ``127.0.0.1:PORT/repo:tag`` so no
    registries.conf search is involved, ``--tls-verify=false`` for plain HTTP,
  * a private ``--signature-policy`` file (insecureAcceptAnything) so the tests
    do not depend on /etc/containers/policy.json,
  * credentials (Berth requires auth): ``--creds user:password`` on every
    command that talks to the registry (``bud`` for its FROM pull, ``push``,
    ``pull``), or ``podman login`` into a private ``REGISTRY_AUTH_FILE``
    (which starts out empty, so nothing from the host's auth.json is used).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import (
    DOCKER_MANIFEST, OCI_MANIFEST, layout_blob, run, sha256_digest, skopeo,
    skopeo_raw_manifest, umoci_image,
)

POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class Containers:
    def __init__(self, tmp: Path, creds=None):
        self.tmp = tmp
        self.creds = creds
        # a private containers-auth.json, empty until a `podman login`
        self.auth_file = tmp / "auth.json"
        self.auth_file.write_text('{"auths": {}}')
        self.policy = tmp / "policy.json"
        self.policy.write_text(json.dumps(POLICY))
        # an empty registries.conf: only fully qualified names are used
        self.registries = tmp / "registries.conf"
        self.registries.write_text("unqualified-search-registries = []\n")
        self.env = {
            "BUILDAH_ISOLATION": "chroot",
            "CONTAINERS_REGISTRIES_CONF": str(self.registries),
            "TMPDIR": str(tmp / "tmp"),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
        }
        (tmp / "tmp").mkdir(exist_ok=True)
        # podman refuses a --runroot longer than 50 characters, so the
        # runroots live in short private dirs under /tmp
        self.runroot_base = Path(tempfile.mkdtemp(prefix="bi-", dir="/tmp"))

    def _store(self, tool: str):
        return ["--root", str(self.tmp / f"{tool}-root"),
                "--runroot", str(self.runroot_base / tool),
                "--storage-driver", "vfs"]

    @property
    def creds_flags(self):
        """``--creds user:password`` ([] when the registry has no auth)."""
        if self.creds is None:
            return []
        return ["--creds", f"{self.creds[0]}:{self.creds[1]}"]

    def buildah(self, *args: str, **kw):
        return run(["buildah", *self._store("buildah"), *args], env=self.env, **kw)

    def podman(self, *args: str, **kw):
        return run(["podman", *self._store("podman"),
                    "--cgroup-manager", "cgroupfs", "--events-backend", "none",
                    *args], env=self.env, **kw)

    def cleanup(self):
        # release mounts/images from the vfs stores before pytest removes tmp
        run(["buildah", *self._store("buildah"), "rm", "--all"], env=self.env, check=False)
        run(["podman", *self._store("podman"), "image", "unmount", "--all"], env=self.env, check=False)
        shutil.rmtree(self.runroot_base, ignore_errors=True)


@pytest.fixture
def ctr(tmp_path, creds):
    c = Containers(tmp_path, creds)
    yield c
    c.cleanup()


def _read_from_podman_image(ctr: Containers, ref: str, paths):
    mnt = ctr.podman("image", "mount", ref).stdout.decode().strip()
    try:
        return {p: (Path(mnt) / p.lstrip("/")).read_bytes() for p in paths}
    finally:
        ctr.podman("image", "unmount", ref)


def test_buildah_bud_from_registry_push_and_podman_pull(host, creds, api, ctr, tmp_path):
    # base image: a umoci-built OCI layout pushed with skopeo
    layout = tmp_path / "base-layout"
    base_digest = umoci_image(layout, "base", [{"etc/base.txt": b"base layer\n"}], workdir=tmp_path)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:base", f"docker://{host}/interop/base:1", creds=creds)

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "added.txt").write_bytes(b"added by buildah\n")
    (ctx / "Containerfile").write_text(
        f"FROM {host}/interop/base:1\n"
        "COPY added.txt /added.txt\n"
        "LABEL org.berth.built=yes\n"
    )
    image = f"{host}/interop/built:1"
    # bud pulls the FROM image from the registry: it needs the credentials
    ctr.buildah("bud", "--isolation", "chroot", "--tls-verify=false", *ctr.creds_flags,
                "--signature-policy", str(ctr.policy),
                "-f", str(ctx / "Containerfile"), "-t", image, str(ctx))

    digestfile = tmp_path / "push.digest"
    ctr.buildah("push", "--tls-verify=false", *ctr.creds_flags,
                "--signature-policy", str(ctr.policy),
                "--digestfile", str(digestfile), image)
    pushed = digestfile.read_text().strip()

    raw = skopeo_raw_manifest(f"docker://{image}", creds=creds)
    assert sha256_digest(raw) == pushed
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    base_layers = json.loads(layout_blob(layout, base_digest))["layers"]
    assert len(manifest["layers"]) == len(base_layers) + 1
    r = api.get_manifest("interop/built", pushed)
    assert r.status_code == 200 and r.content == raw
    for l in manifest["layers"]:
        assert api.head_blob("interop/built", l["digest"]).status_code == 200

    # pull with podman into a separate store and check the files
    ctr.podman("pull", "--tls-verify=false", *ctr.creds_flags,
               "--signature-policy", str(ctr.policy), image)
    images = json.loads(ctr.podman("images", "--digests", "--format", "json").stdout)
    assert any(pushed == img.get("Digest") for img in images), images
    files = _read_from_podman_image(ctr, image, ["/added.txt", "/etc/base.txt"])
    assert files == {"/added.txt": b"added by buildah\n", "/etc/base.txt": b"base layer\n"}

    # buildah pull by digest
    ctr.buildah("pull", "--tls-verify=false", *ctr.creds_flags,
                "--signature-policy", str(ctr.policy),
                f"{host}/interop/built@{pushed}")


def test_buildah_push_docker_format_and_podman_pull(host, creds, api, ctr, tmp_path):
    """FROM scratch image, pushed as Docker schema 2 (v2s2)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello").write_bytes(b"hello from scratch\n")
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    image = f"{host}/interop/scratch:v2s2"
    ctr.buildah("bud", "--isolation", "chroot", "--format", "docker",
                "--signature-policy", str(ctr.policy),
                "-f", str(ctx / "Containerfile"), "-t", image, str(ctx))
    digestfile = tmp_path / "push.digest"
    ctr.buildah("push", "--tls-verify=false", *ctr.creds_flags,
                "--signature-policy", str(ctr.policy),
                "--format", "v2s2", "--digestfile", str(digestfile), image)
    pushed = digestfile.read_text().strip()

    r = api.get_manifest("interop/scratch", "v2s2")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").split(";")[0] == DOCKER_MANIFEST
    assert r.headers.get("Docker-Content-Digest") == pushed
    assert sha256_digest(r.content) == pushed
    assert json.loads(r.content)["mediaType"] == DOCKER_MANIFEST

    # podman authenticates from the credentials `podman login` stored in the
    # private REGISTRY_AUTH_FILE (no --creds on pull/push here)
    if creds is not None:
        ctr.podman("login", "--tls-verify=false", "-u", creds[0], "--password-stdin", host,
                   input=creds[1].encode())
        auths = json.loads(ctr.auth_file.read_text())["auths"]
        assert host in auths, auths
    ctr.podman("pull", "--tls-verify=false", "--signature-policy", str(ctr.policy), image)
    assert _read_from_podman_image(ctr, image, ["/hello"]) == {"/hello": b"hello from scratch\n"}

    # podman push of the pulled image to another repo, as OCI
    image2 = f"{host}/interop/scratch-oci:1"
    ctr.podman("tag", image, image2)
    ctr.podman("push", "--tls-verify=false", "--signature-policy", str(ctr.policy),
               "--format", "oci", image2)
    raw = skopeo_raw_manifest(f"docker://{image2}", creds=creds)
    assert json.loads(raw)["mediaType"] == OCI_MANIFEST
    r = api.get_manifest("interop/scratch-oci", "1")
    assert r.status_code == 200 and r.content == raw
