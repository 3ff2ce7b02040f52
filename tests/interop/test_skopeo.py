"""skopeo <-> registry interop, using OCI image layouts built with umoci."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import (
    Api, OCI_INDEX, OCI_MANIFEST, layout_add_index, layout_blob, layout_descriptor,
    sha256_digest, skopeo, skopeo_raw_manifest, umoci_image,
)


@pytest.fixture
def image_layout(tmp_path):
    """A 3-layer OCI image at ``layout:v1``; returns (layout, manifest digest)."""
    layout = tmp_path / "src-layout"
    digest = umoci_image(layout, "v1", [
        {"etc/hello.txt": b"hello from layer 1\n"},
        {"usr/share/berth/data.bin": bytes(range(256)) * 64},
        {"etc/hello.txt": b"overwritten in layer 3\n", "opt/x": b"x"},
    ], workdir=tmp_path)
    return layout, digest


def _manifest_layers(layout: Path, digest: str):
    return json.loads(layout_blob(layout, digest))["layers"]


def test_copy_layout_in_and_out_preserves_digest(host, creds, api, image_layout, tmp_path):
    layout, digest = image_layout
    layers = _manifest_layers(layout, digest)
    assert len(layers) == 3, "fixture should build a multi-layer image"

    digestfile = tmp_path / "pushed.digest"
    skopeo("copy", "--dest-tls-verify=false", "--digestfile", str(digestfile),
           f"oci:{layout}:v1", f"docker://{host}/interop/skopeo:v1", creds=creds)
    assert digestfile.read_text().strip() == digest

    raw = skopeo_raw_manifest(f"docker://{host}/interop/skopeo:v1", creds=creds)
    assert sha256_digest(raw) == digest
    assert raw == layout_blob(layout, digest), "registry must serve the exact manifest bytes"

    # the registry's own view agrees
    r = api.get_manifest("interop/skopeo", "v1")
    assert r.status_code == 200
    assert r.headers.get("Docker-Content-Digest") == digest
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_MANIFEST
    r = api.get_manifest("interop/skopeo", digest)
    assert r.status_code == 200 and r.content == raw
    for layer in layers:
        b = api.get_blob("interop/skopeo", layer["digest"])
        assert b.status_code == 200
        assert b.content == layout_blob(layout, layer["digest"])

    # and back out to a fresh OCI layout
    out = tmp_path / "out-layout"
    skopeo("copy", "--src-tls-verify=false",
           f"docker://{host}/interop/skopeo:v1", f"oci:{out}:copied", creds=creds)
    desc = layout_descriptor(out, "copied")
    assert desc["digest"] == digest
    assert layout_blob(out, digest) == raw
    for layer in layers:
        assert layout_blob(out, layer["digest"]) == layout_blob(layout, layer["digest"])

    # pulling by digest works too
    out2 = tmp_path / "out-by-digest"
    skopeo("copy", "--src-tls-verify=false",
           f"docker://{host}/interop/skopeo@{digest}", f"oci:{out2}:bydigest", creds=creds)
    assert layout_descriptor(out2, "bydigest")["digest"] == digest


def test_list_tags(host, creds, api, image_layout):
    layout, digest = image_layout
    tags = ["v1", "latest", "1.0.0", "stable"]
    for t in tags:
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://{host}/interop/tags:{t}", creds=creds)
    out = skopeo("list-tags", "--tls-verify=false", f"docker://{host}/interop/tags", creds=creds).stdout
    listed = json.loads(out)
    assert sorted(listed["Tags"]) == sorted(tags)

    r = api.req("GET", "/v2/interop/tags/tags/list")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "interop/tags"
    assert sorted(body["tags"]) == sorted(tags)

    # unknown repository: skopeo must fail
    p = skopeo("list-tags", "--tls-verify=false", f"docker://{host}/interop/nope", check=False, creds=creds)
    assert p.returncode != 0


def test_inspect(host, creds, image_layout):
    layout, digest = image_layout
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
           f"docker://{host}/interop/inspect:v1", creds=creds)
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{host}/interop/inspect:v1", creds=creds).stdout)
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Labels"] == {"org.berth.test": "v1"}
    assert info["Layers"] == [l["digest"] for l in _manifest_layers(layout, digest)]
    assert "v1" in info["RepoTags"]

    cfg = json.loads(skopeo("inspect", "--tls-verify=false", "--config", "--raw",
                            f"docker://{host}/interop/inspect:v1", creds=creds).stdout)
    manifest = json.loads(layout_blob(layout, digest))
    assert cfg == json.loads(layout_blob(layout, manifest["config"]["digest"]))


def test_delete(host, creds, api, image_layout):
    layout, digest = image_layout
    ref = f"docker://{host}/interop/delete:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref, creds=creds)
    assert sha256_digest(skopeo_raw_manifest(ref, creds=creds)) == digest

    skopeo("delete", "--tls-verify=false", ref, creds=creds)

    p = skopeo("inspect", "--tls-verify=false", "--raw", ref, check=False, creds=creds)
    assert p.returncode != 0, "inspect must fail after delete"
    p = skopeo("inspect", "--tls-verify=false", "--raw",
               f"docker://{host}/interop/delete@{digest}", check=False, creds=creds)
    assert p.returncode != 0, "manifest by digest must be gone after delete"
    r = api.get_manifest("interop/delete", digest)
    assert r.status_code == 404
    r = api.get_manifest("interop/delete", "v1")
    assert r.status_code == 404

    # pushing again after delete works
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref, creds=creds)
    assert sha256_digest(skopeo_raw_manifest(ref, creds=creds)) == digest


def test_registry_to_registry_copy(host, creds, api, image_layout):
    layout, digest = image_layout
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
           f"docker://{host}/a:t", creds=creds)
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{host}/a:t", f"docker://{host}/b/c:t", creds=creds)
    raw = skopeo_raw_manifest(f"docker://{host}/b/c:t", creds=creds)
    assert sha256_digest(raw) == digest
    assert raw == layout_blob(layout, digest)
    for layer in _manifest_layers(layout, digest):
        r = api.head_blob("b/c", layer["digest"])
        assert r.status_code == 200, f"layer {layer['digest']} missing in b/c"
        assert int(r.headers["Content-Length"]) == layer["size"]
    # source still intact
    assert sha256_digest(skopeo_raw_manifest(f"docker://{host}/a:t", creds=creds)) == digest

    r = api.req("GET", "/v2/_catalog")
    assert r.status_code == 200
    repos = r.json()["repositories"]
    assert "a" in repos and "b/c" in repos, repos


def test_copy_multi_arch_index(host, creds, api, tmp_path):
    layout = tmp_path / "multi"
    amd = umoci_image(layout, "amd64", [{"arch.txt": b"amd64\n"}], arch="amd64", workdir=tmp_path)
    arm = umoci_image(layout, "arm64", [{"arch.txt": b"arm64\n"}], arch="arm64", workdir=tmp_path)
    index_digest = layout_add_index(layout, "multi", ["amd64", "arm64"])

    skopeo("copy", "--all", "--dest-tls-verify=false",
           f"oci:{layout}:multi", f"docker://{host}/interop/multi:1", creds=creds)

    raw = skopeo_raw_manifest(f"docker://{host}/interop/multi:1", creds=creds)
    assert sha256_digest(raw) == index_digest
    assert raw == layout_blob(layout, index_digest)
    assert json.loads(raw)["mediaType"] == OCI_INDEX
    r = api.get_manifest("interop/multi", "1")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX
    assert r.headers.get("Docker-Content-Digest") == index_digest
    for child in (amd, arm):
        r = api.get_manifest("interop/multi", child)
        assert r.status_code == 200
        assert r.content == layout_blob(layout, child)

    # platform selection through the index
    for arch, child in (("amd64", amd), ("arm64", arm)):
        info = json.loads(skopeo("--override-arch", arch, "--override-os", "linux",
                                 "inspect", "--tls-verify=false",
                                 f"docker://{host}/interop/multi:1", creds=creds).stdout)
        # skopeo reports the digest of the top-level (index) manifest, and
        # the platform/layers of the child it resolved through the index
        assert info["Digest"] == index_digest
        assert info["Architecture"] == arch
        child_layers = [l["digest"] for l in json.loads(layout_blob(layout, child))["layers"]]
        assert info["Layers"] == child_layers

    # registry -> registry and back out, whole index preserved
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{host}/interop/multi:1", f"docker://{host}/interop/multi-copy:1", creds=creds)
    assert sha256_digest(skopeo_raw_manifest(f"docker://{host}/interop/multi-copy:1", creds=creds)) == index_digest

    out = tmp_path / "multi-out"
    skopeo("copy", "--all", "--src-tls-verify=false",
           f"docker://{host}/interop/multi-copy:1", f"oci:{out}:back", creds=creds)
    assert layout_descriptor(out, "back")["digest"] == index_digest
    for child in (amd, arm):
        assert layout_blob(out, child) == layout_blob(layout, child)


def test_sync_repository(host, creds, api, image_layout, tmp_path):
    """skopeo sync: tag listing + copy of every tag to a mirror namespace."""
    layout, digest = image_layout
    other = umoci_image(layout, "v2", [{"etc/v2": b"second image\n"}], workdir=tmp_path)
    for src_tag, dst_tag in (("v1", "one"), ("v1", "one-again"), ("v2", "two")):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{src_tag}",
               f"docker://{host}/interop/sync-src:{dst_tag}", creds=creds)
    skopeo("sync", "--src", "docker", "--dest", "docker",
           "--src-tls-verify=false", "--dest-tls-verify=false",
           f"{host}/interop/sync-src", f"{host}/mirror", creds=creds)
    r = api.req("GET", "/v2/mirror/sync-src/tags/list")
    assert r.status_code == 200, (r.status_code, r.text)
    assert sorted(r.json()["tags"]) == ["one", "one-again", "two"]
    for tag, want in (("one", digest), ("one-again", digest), ("two", other)):
        raw = skopeo_raw_manifest(f"docker://{host}/mirror/sync-src:{tag}", creds=creds)
        assert sha256_digest(raw) == want


def test_copy_with_format_conversion(host, creds, api, image_layout):
    """A copy that changes the manifest: OCI -> Docker v2s2."""
    layout, digest = image_layout
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s2",
           f"oci:{layout}:v1", f"docker://{host}/interop/convert:v2s2", creds=creds)
    r = api.get_manifest("interop/convert", "v2s2")
    assert r.status_code == 200
    m = json.loads(r.content)
    assert m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert r.headers.get("Content-Type", "").split(";")[0] == m["mediaType"]
    assert r.headers.get("Docker-Content-Digest") == sha256_digest(r.content)
    assert m["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"


def test_large_layer_roundtrip(host, creds, api, tmp_path):
    """A ~48 MiB layer: streamed (chunked transfer encoding) by skopeo."""
    layout = tmp_path / "big"
    big = os.urandom(48 * 1024 * 1024)
    digest = umoci_image(layout, "big", [{"big.bin": big}], workdir=tmp_path)
    layer = json.loads(layout_blob(layout, digest))["layers"][0]
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:big",
           f"docker://{host}/interop/big:1", creds=creds)
    h = api.head_blob("interop/big", layer["digest"])
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == layer["size"]
    out = tmp_path / "big-out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/interop/big:1", f"oci:{out}:big", creds=creds)
    assert layout_descriptor(out, "big")["digest"] == digest
    got = layout_blob(out, layer["digest"])
    assert sha256_digest(got) == layer["digest"] and len(got) == layer["size"]
