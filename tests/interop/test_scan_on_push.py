"""Scan on push against a running `berth serve`: the cached Debian test image (sbom_images.py)
pushed with skopeo is inventoried by the server's scan consumer, which pushes an SPDX 2.3 and a
CycloneDX 1.5 document as OCI referrers of the image. The referrers API lists them, the real
validators accept them (spdx-tools, cyclonedx-python-lib's strict validator), and `berth sbom
show` prints the same packages Syft finds in the same image."""

import json
import os
import subprocess
import time

import pytest
import requests

import sbom_images
import test_sbom
from conftest import berth_bin
from helpers import skopeo

pytestmark = pytest.mark.berth_only

REPO = "library/debian"
SBOM_TYPES = {"application/spdx+json", "application/vnd.cyclonedx+json"}


@pytest.fixture(scope="module")
def debian_layout():
    return sbom_images.debian_image()


def wait_for_sboms(api, digest, timeout=180):
    """The referrers the scanner pushed, once both are listed (it works after the push)."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.req("GET", f"/v2/{REPO}/referrers/{digest}")
        assert r.status_code == 200, r.text
        found = {m["artifactType"]: m for m in r.json()["manifests"] if m.get("artifactType") in SBOM_TYPES}
        if set(found) == SBOM_TYPES:
            return found
        assert time.monotonic() < deadline, f"no SBOM referrers after {timeout}s: {r.json()}"
        time.sleep(0.5)


def document(api, referrer):
    r = api.req("GET", f"/v2/{REPO}/manifests/{referrer['digest']}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert manifest["artifactType"] == referrer["artifactType"]
    assert len(manifest["layers"]) == 1 and manifest["layers"][0]["mediaType"] == referrer["artifactType"]
    blob = api.get_blob(REPO, manifest["layers"][0]["digest"])
    assert blob.status_code == 200
    return manifest, blob.text


@pytest.mark.server_env(BERTH_SCAN_ON_PUSH="true")
def test_pushed_image_gets_valid_sbom_referrers_matching_syft(registry, api, debian_layout, tmp_path):
    skopeo("copy", "--dest-tls-verify=false", f"oci:{debian_layout}:scan", f"docker://{registry.host}/{REPO}:12",
           creds=registry.creds)
    digest = api.get_manifest(REPO, "12").headers["Docker-Content-Digest"]
    found = wait_for_sboms(api, digest)

    spdx_manifest, spdx_text = document(api, found["application/spdx+json"])
    assert spdx_manifest["subject"]["digest"] == digest
    spdx_path = tmp_path / "pushed.spdx.json"
    spdx_path.write_text(spdx_text)
    test_sbom.validate_spdx(spdx_path)
    _, cdx_text = document(api, found["application/vnd.cyclonedx+json"])
    test_sbom.validate_cyclonedx(cdx_text)

    # The inventory the API shows is complete; `berth sbom show` prints the referrer's document.
    env = dict(os.environ, BERTH_REGISTRY=registry.base, BERTH_USERNAME=registry.username, BERTH_PASSWORD=registry.password)
    inventory = api.req("GET", "/api/v1/scans/inventory", params={"repository": REPO, "reference": digest})
    assert inventory.status_code == 200, inventory.text
    assert inventory.json()["status"] == "complete", inventory.json().get("detail")
    # Judged per repository: no credentials, no inventory; an unknown manifest is 404, not a 500.
    anonymous = requests.get(f"{registry.base}/api/v1/scans/inventory", params={"repository": REPO, "reference": digest}, timeout=30)
    assert anonymous.status_code == 401
    unknown = api.req("GET", "/api/v1/scans/sbom", params={"repository": REPO, "reference": "nope", "format": "spdx"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    for fmt, text in (("spdx", spdx_text), ("cyclonedx", cdx_text)):
        p = subprocess.run([str(berth_bin()), "sbom", "show", f"{registry.host}/{REPO}:12", "--format", fmt],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == json.loads(text)

    # Its packages are Syft's on the same image.
    ours = {(p["name"], p["versionInfo"]) for p in json.loads(spdx_text)["packages"] if p["primaryPackagePurpose"] == "LIBRARY"}
    theirs = {(test_sbom.syft_name(a), a["version"]) for a in test_sbom.syft_packages(debian_layout, tmp_path)
              if a["type"] in test_sbom.SHARED_TYPES}
    known = {(name, version) for _, name, version in test_sbom.KNOWN_DIFFERENCES}
    assert ours - known == theirs - known, f"only Berth: {sorted(ours - theirs)[:20]}; only Syft: {sorted(theirs - ours)[:20]}"

    # Pushed again under another tag (the scanner handles the push event again): once the consumer
    # has caught up, there is still one SBOM per format.
    skopeo("copy", "--dest-tls-verify=false", f"oci:{debian_layout}:scan", f"docker://{registry.host}/{REPO}:again",
           creds=registry.creds)
    deadline = time.monotonic() + 60
    while True:
        consumers = api.req("GET", "/api/v1/event-consumers")
        assert consumers.status_code == 200, consumers.text
        scan = next(c for c in consumers.json() if c["name"] == "scan:inventory")
        if scan["lag"] == 0:
            break
        assert time.monotonic() < deadline, scan
        time.sleep(0.2)
    r = api.req("GET", f"/v2/{REPO}/referrers/{digest}")
    sboms = [m["digest"] for m in r.json()["manifests"] if m.get("artifactType") in SBOM_TYPES]
    assert sorted(sboms) == sorted(m["digest"] for m in found.values())


def test_scan_on_push_is_on_by_default(tmp_path):
    """The mission's premium controls are on by default: a server started without
    `scan-on-push` (the suite's servers turn it off unless a test asks for it) inventories a push."""
    from conftest import RegistryServer
    import test_scan_findings

    s = RegistryServer(tmp_path / "server")
    s.extra_env.pop("BERTH_SCAN_ON_PUSH", None)
    s.start()
    try:
        digest = test_scan_findings.push_image(s.api(), "default")
        deadline = time.monotonic() + 60
        while True:
            r = s.api().req("GET", "/api/v1/scans/inventory", params={"repository": test_scan_findings.REPO, "reference": digest})
            if r.status_code == 200:
                break
            assert r.status_code == 404 and "not been inventoried" in r.text, r.text
            assert time.monotonic() < deadline, f"not inventoried by default:\n{s.log_tail()}"
            time.sleep(0.3)
        assert r.json()["status"] == "complete"
        assert any(p["name"] == "libc6" for p in r.json()["packages"])
    finally:
        s.stop()


@pytest.mark.server_env(BERTH_SCAN_ON_PUSH="true")
def test_zstd_and_uncompressed_layers_are_inventoried_on_push(registry, api, tmp_path):
    """One layer pushed three ways: gzip and zstd by skopeo (a real client recompressing), and
    uncompressed through the API. Each is inventoried on push to the same packages."""
    import gzip
    import hashlib
    import test_scan_findings
    import test_sbom

    gz = test_scan_findings.layer()
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = test_sbom._put(layout, json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **test_sbom._put(layout, gz)}]}
    top = {"mediaType": manifest["mediaType"], **test_sbom._put(layout, json.dumps(manifest).encode()),
           "annotations": {"org.opencontainers.image.ref.name": "one"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))

    repo = "scan/compression"
    # zstd first: skopeo reuses a layer the repository already holds rather than recompressing it.
    skopeo("copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd", f"oci:{layout}:one",
           f"docker://{registry.host}/{repo}:zstd", creds=registry.creds)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:one", f"docker://{registry.host}/{repo}:gzip", creds=registry.creds)
    tar = gzip.decompress(gz)
    plain = dict(manifest, layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": api.push_blob(repo, tar),
                                    "size": len(tar)}])
    plain["config"] = dict(manifest["config"], digest=api.push_blob(repo, (layout / "blobs/sha256" / config["digest"][7:]).read_bytes()))
    r = api.put_manifest(repo, "plain", json.dumps(plain).encode())
    assert r.status_code == 201, r.text

    inventories = {}
    for tag, media_type in (("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
                            ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
                            ("plain", "application/vnd.oci.image.layer.v1.tar")):
        m = api.req("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert m.status_code == 200, m.text
        assert [l["mediaType"] for l in m.json()["layers"]] == [media_type], (tag, m.json())
        digest = "sha256:" + hashlib.sha256(m.content).hexdigest()
        deadline = time.monotonic() + 60
        while True:
            inv = api.req("GET", "/api/v1/scans/inventory", params={"repository": repo, "reference": digest})
            if inv.status_code == 200:
                break
            assert inv.status_code == 404 and "not been inventoried" in inv.text, inv.text
            assert time.monotonic() < deadline, f"{tag} not inventoried:\n{registry.log_tail()}"
            time.sleep(0.3)
        assert inv.json()["status"] == "complete", (tag, inv.json())
        inventories[tag] = {(p["type"], p["name"], p["version"]) for p in inv.json()["packages"]}
    assert inventories["gzip"] == {("deb", "libc6", "2.36-9+deb12u3"), ("deb", "libssl3", "3.0.11-1~deb12u2")}, inventories
    assert inventories["zstd"] == inventories["gzip"] == inventories["plain"], inventories
