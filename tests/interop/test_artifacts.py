"""Artifacts beyond images (issue 17 item 6): a Helm chart, WASM modules and arbitrary oras
artifacts round-trip through oras-py (PyPI ``oras``) with their media types, annotations and
digests unchanged; referrers of an image and of a chart are found by ``artifactType``; a locked
artifact tag cannot be overwritten, as for an image.

Helm: Debian ships no ``helm`` package (``apt-cache show helm`` finds none), so the chart is
pushed the way Helm 3 pushes it (``helm push oci://…``, helm.sh/helm/v3 pkg/registry) with
oras-py: the ``.tgz`` is built like ``helm package`` builds it (a gzipped tar whose top directory
is the chart name), the config blob is the Chart.yaml fields as JSON with media type
``application/vnd.cncf.helm.config.v1+json``, the chart layer is
``application/vnd.cncf.helm.chart.content.v1.tar+gzip``, the provenance layer
``application/vnd.cncf.helm.chart.provenance.v1.prov``, the manifest annotations are the ones
Helm derives from Chart.yaml and the tag is the chart version. It is pulled back the way
``helm pull`` does: manifest, check of the config media type, the chart and provenance layers.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Dict, Optional

import oras.oci
import pytest
import yaml

from helpers import OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, sha256_digest
from test_oras import _push_files, oras_registry  # noqa: F401  (oras_registry is a fixture)

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"        # CNCF TAG Runtime Wasm OCI artifact
WASM_LAYER = "application/wasm"
WASM_TO_OCI_CONFIG = "application/vnd.wasm.config.v1+json"  # wasm-to-oci layout
WASM_TO_OCI_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
NOTATION_SIG = "application/vnd.cncf.notary.signature"
BUNDLE_TYPE = "application/vnd.berth.test.bundle.v1"
EMPTY_JSON = b"{}"
EMPTY_DESC = {"mediaType": OCI_EMPTY, "digest": sha256_digest(EMPTY_JSON), "size": 2}

CHART_YAML = """\
apiVersion: v2
name: berth-demo
description: A chart pushed to Berth as an OCI artifact
type: application
version: 0.1.0
appVersion: "1.16.0"
"""
CHART_FILES = {
    "Chart.yaml": CHART_YAML,
    "values.yaml": "replicaCount: 1\ngreeting: hello from berth\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"),
}

# (module (func (export "answer") (result i32) i32.const 42)): header, type, function, export
# and code sections; WebAssembly.validate accepts it and answer() returns 42
WASM_MODULE = bytes.fromhex(
    "0061736d01000000" "010501600001" "7f" "03020100" "070a0106616e737765720000" "0a06010400412a0b")


def _blob(reg, container, tmp: Path, data: bytes, media_type: str,
          annotations: Optional[Dict[str, str]] = None) -> dict:
    """Uploads ``data`` with oras-py; returns its descriptor."""
    path = tmp / ("blob-" + sha256_digest(data)[7:23])
    path.write_bytes(data)
    desc = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    r = reg.upload_blob(str(path), container, dict(desc))
    assert r.status_code in (200, 201), (r.status_code, r.text)
    if annotations:
        desc["annotations"] = annotations
    return desc


def _put_manifest(reg, target: str, manifest: dict) -> str:
    """PUT with oras-py's ``upload_manifest`` (JSON serialised by requests, as ``json.dumps``);
    returns the digest the registry reported, checked against the bytes sent."""
    r = reg.upload_manifest(manifest, reg.get_container(target))
    assert r.status_code == 201, (r.status_code, r.text)
    digest = r.headers["Docker-Content-Digest"]
    assert digest == sha256_digest(json.dumps(manifest).encode())
    return digest


def _get_manifest(api, name: str, ref: str, digest: str) -> dict:
    """The stored manifest: same bytes (digest), OCI manifest content type."""
    r = api.get_manifest(name, ref)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("Docker-Content-Digest") == digest
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_MANIFEST
    assert sha256_digest(r.content) == digest
    return json.loads(r.content)


def _download(reg, target: str, digest: str, tmp: Path) -> bytes:
    out = tmp / ("pulled-" + digest[7:23])
    reg.download_blob(reg.get_container(target), digest, str(out))
    return out.read_bytes()


# ---------------------------------------------------------------------------------------- Helm

def helm_package(src: Path) -> bytes:
    """``helm package``: a gzipped tar of the chart directory under the chart's name."""
    name = yaml.safe_load((src / "Chart.yaml").read_text())["name"]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{name}/{path.relative_to(src).as_posix()}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_chart(tmp: Path):
    src = tmp / "chart-src"
    for rel, text in CHART_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    meta = yaml.safe_load(CHART_YAML)
    tgz = helm_package(src)
    # the layout of a `helm package --sign` .prov (the signature itself is not checked by a registry)
    prov = (f"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{CHART_YAML}\n...\nfiles:\n"
            f"  {meta['name']}-{meta['version']}.tgz: {sha256_digest(tgz)}\n"
            "-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQBQJnot-a-real-signature\n"
            "-----END PGP SIGNATURE-----\n").encode()
    return meta, tgz, prov


def helm_manifest(reg, container, tmp: Path, meta: dict, tgz: bytes, prov: bytes):
    """The manifest ``helm push`` builds (blobs uploaded); returns it and the config bytes."""
    config = json.dumps({k: meta[k] for k in ("name", "version", "description", "apiVersion", "appVersion", "type")},
                        separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _blob(reg, container, tmp, config, HELM_CONFIG),
        "layers": [_blob(reg, container, tmp, tgz, HELM_CHART), _blob(reg, container, tmp, prov, HELM_PROV)],
        "annotations": {
            "org.opencontainers.image.created": "2026-11-30T12:00:00Z",
            "org.opencontainers.image.description": meta["description"],
            "org.opencontainers.image.title": meta["name"],
            "org.opencontainers.image.version": meta["version"],
        },
    }
    return manifest, config


def helm_push(reg, host: str, tmp: Path, repo: str, meta: dict, tgz: bytes, prov: bytes):
    """What ``helm push CHART.tgz oci://HOST/REPO`` sends: the chart lands in REPO/NAME:VERSION."""
    target = f"{host}/{repo}/{meta['name']}:{meta['version']}"
    manifest, config = helm_manifest(reg, reg.get_container(target), tmp, meta, tgz, prov)
    return target, manifest, config, _put_manifest(reg, target, manifest)


def test_helm_chart_round_trip(host, api, oras_registry, tmp_path):
    meta, tgz, prov = build_chart(tmp_path)
    target, sent, config, digest = helm_push(oras_registry, host, tmp_path, "charts", meta, tgz, prov)
    name = f"charts/{meta['name']}"

    # `helm pull oci://HOST/charts/berth-demo --version 0.1.0`
    manifest = oras_registry.get_manifest(target)
    assert manifest == sent
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    assert [l["mediaType"] for l in manifest["layers"]] == [HELM_CHART, HELM_PROV]
    by_type = {l["mediaType"]: l["digest"] for l in manifest["layers"]}
    assert _download(oras_registry, target, by_type[HELM_CHART], tmp_path) == tgz
    assert _download(oras_registry, target, by_type[HELM_PROV], tmp_path) == prov
    assert json.loads(_download(oras_registry, target, manifest["config"]["digest"], tmp_path)) == json.loads(config)

    # the pulled package is the chart: top directory = chart name, every file as written
    with tarfile.open(fileobj=io.BytesIO(_download(oras_registry, target, by_type[HELM_CHART], tmp_path))) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert files == {f"{meta['name']}/{rel}": text for rel, text in CHART_FILES.items()}

    assert _get_manifest(api, name, meta["version"], digest) == sent
    assert _get_manifest(api, name, digest, digest) == sent
    assert oras_registry.get_tags(f"{host}/{name}") == [meta["version"]]


# ---------------------------------------------------------------------------------------- WASM

def test_wasm_modules_round_trip(host, api, oras_registry, tmp_path):
    container = oras_registry.get_container(f"{host}/wasm/answer:unused")
    layer = _blob(oras_registry, container, tmp_path, WASM_MODULE, WASM_LAYER,
                  {"org.opencontainers.image.title": "answer.wasm"})
    config = json.dumps({"created": "2026-11-30T12:00:00Z", "architecture": "wasm", "os": "wasip1",
                         "layerDigests": [layer["digest"]]}).encode()
    wasm = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": WASM_CONFIG,
            "config": _blob(oras_registry, container, tmp_path, config, WASM_CONFIG), "layers": [layer]}
    wasm_digest = _put_manifest(oras_registry, f"{host}/wasm/answer:v1", wasm)

    # wasm-to-oci: its own config type and layer type, pushed with oras-py's own push
    src = tmp_path / "w2o"
    src.mkdir()
    (src / "answer.wasm").write_bytes(WASM_MODULE)
    (src / "config.json").write_bytes(EMPTY_JSON)
    resp = _push_files(oras_registry, f"{host}/wasm/answer:w2o", src, [f"answer.wasm:{WASM_TO_OCI_LAYER}"],
                       manifest_config=f"config.json:{WASM_TO_OCI_CONFIG}")
    assert resp.status_code == 201
    w2o_digest = resp.headers["Docker-Content-Digest"]

    assert _get_manifest(api, "wasm/answer", "v1", wasm_digest) == wasm
    w2o = _get_manifest(api, "wasm/answer", "w2o", w2o_digest)
    assert w2o["config"]["mediaType"] == WASM_TO_OCI_CONFIG
    assert [l["mediaType"] for l in w2o["layers"]] == [WASM_TO_OCI_LAYER]
    for tag in ("v1", "w2o"):
        files = oras_registry.pull(target=f"{host}/wasm/answer:{tag}", outdir=str(tmp_path / tag))
        assert [(Path(f).name, Path(f).read_bytes()) for f in files] == [("answer.wasm", WASM_MODULE)]
    assert sorted(oras_registry.get_tags(f"{host}/wasm/answer")) == ["v1", "w2o"]


# ---------------------------------------------------------------------------------------- oras

def test_arbitrary_oras_artifacts_round_trip(host, api, oras_registry, tmp_path):
    # a custom type with several files, per-file annotations (oras' annotation file) and manifest
    # annotations; oras-py sets no artifactType, so the config media type carries the type
    src = tmp_path / "bundle"
    (src / "docs").mkdir(parents=True)
    files = {"policy.rego": b"package berth\ndefault allow := false\n", "data.bin": bytes(range(256)) * 64,
             "docs/notes.txt": b"notes\n"}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    (src / "config.json").write_bytes(b'{"bundle":"policies","revision":7}')
    (src / "annotations.json").write_text(json.dumps({
        "policy.rego": {"org.berth.test.role": "policy"}, "$manifest": {"org.berth.test.source": "annotation-file"}}))
    resp = _push_files(oras_registry, f"{host}/oras/bundle:v1", src,
                       ["policy.rego:application/vnd.berth.test.rego", "data.bin", "docs/notes.txt:text/plain"],
                       manifest_config=f"config.json:{BUNDLE_TYPE}+json", annotation_file="annotations.json",
                       manifest_annotations={"org.opencontainers.image.title": "bundle", "org.berth.test.n": "3"})
    assert resp.status_code == 201
    bundle = _get_manifest(api, "oras/bundle", "v1", resp.headers["Docker-Content-Digest"])
    assert bundle["config"]["mediaType"] == BUNDLE_TYPE + "+json"
    assert bundle["annotations"] == {"org.berth.test.source": "annotation-file",
                                     "org.opencontainers.image.title": "bundle", "org.berth.test.n": "3"}
    layers = {l["annotations"]["org.opencontainers.image.title"]: l for l in bundle["layers"]}
    assert sorted(layers) == ["data.bin", "notes.txt", "policy.rego"]
    assert layers["policy.rego"]["annotations"]["org.berth.test.role"] == "policy"
    assert layers["policy.rego"]["mediaType"] == "application/vnd.berth.test.rego"
    out = oras_registry.pull(target=f"{host}/oras/bundle:v1", outdir=str(tmp_path / "out"))
    assert {Path(f).name: Path(f).read_bytes() for f in out} == {Path(k).name: v for k, v in files.items()}
    for l in bundle["layers"]:
        assert sha256_digest(_download(oras_registry, f"{host}/oras/bundle:v1", l["digest"], tmp_path)) == l["digest"]

    # an artifact with an explicit artifactType and the empty config (what `oras push --artifact-type` sends)
    container = oras_registry.get_container(f"{host}/oras/bundle:empty")
    note = b"an artifact with no config\n"
    empty = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_TYPE,
             "config": _blob(oras_registry, container, tmp_path, EMPTY_JSON, OCI_EMPTY),
             "layers": [_blob(oras_registry, container, tmp_path, note, "text/plain",
                              {"org.opencontainers.image.title": "note.txt"})],
             "annotations": {"org.opencontainers.image.created": "2026-11-30T12:00:00Z"}}
    assert empty["config"] == EMPTY_DESC
    empty_digest = _put_manifest(oras_registry, f"{host}/oras/bundle:empty", empty)
    assert _get_manifest(api, "oras/bundle", "empty", empty_digest) == empty
    assert _download(oras_registry, f"{host}/oras/bundle:empty", EMPTY_DESC["digest"], tmp_path) == EMPTY_JSON
    out = oras_registry.pull(target=f"{host}/oras/bundle:empty", outdir=str(tmp_path / "out-empty"))
    assert [(Path(f).name, Path(f).read_bytes()) for f in out] == [("note.txt", note)]
    assert sorted(oras_registry.get_tags(f"{host}/oras/bundle")) == ["empty", "v1"]


# ---------------------------------------------------------------------------------------- referrers

def _referrers(api, name: str, digest: str, artifact_type: Optional[str] = None) -> list:
    params = {"artifactType": artifact_type} if artifact_type else None
    r = api.req("GET", f"/v2/{name}/referrers/{digest}", params=params)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX
    if artifact_type:
        assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    return r.json()["manifests"]


def _small_image(api, name: str, tag: str) -> dict:
    layer = gzip.compress(b"not really a tar\n", mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"not really a tar\n")]}}).encode()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": api.push_blob(name, config), "size": len(config)},
                       "layers": [{"mediaType": OCI_LAYER_TAR + "+gzip", "digest": api.push_blob(name, layer),
                                   "size": len(layer)}]}).encode()
    r = api.put_manifest(name, tag, body)
    assert r.status_code == 201, (r.status_code, r.text)
    return {"mediaType": OCI_MANIFEST, "digest": sha256_digest(body), "size": len(body)}


def _signature(reg, host: str, tmp: Path, name: str, subject: dict) -> tuple:
    """A notation-style signature of ``subject`` pushed untagged (by digest), as notation does."""
    container = reg.get_container(f"{host}/{name}:unused")
    sig = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTATION_SIG,
           "config": _blob(reg, container, tmp, EMPTY_JSON, OCI_EMPTY),
           "layers": [_blob(reg, container, tmp, b"signature of " + subject["digest"].encode(),
                            "application/jose+json")],
           "subject": subject, "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": '["ab12"]'}}
    digest = sha256_digest(json.dumps(sig).encode())
    assert _put_manifest(reg, f"{host}/{name}@{digest}", sig) == digest
    return sig, digest


@pytest.mark.berth_only
def test_referrers_of_an_image_and_a_chart_by_artifact_type(host, api, oras_registry, tmp_path):
    image = _small_image(api, "apps/web", "v1")
    # an SBOM-like artifact with a subject, through oras-py's push (type = config media type)
    src = tmp_path / "sbom"
    src.mkdir()
    (src / "sbom.json").write_bytes(b'{"spdxVersion":"SPDX-2.3","packages":[]}')
    (src / "config.json").write_bytes(EMPTY_JSON)
    resp = _push_files(oras_registry, f"{host}/apps/web:sbom", src, ["sbom.json:application/spdx+json"],
                       manifest_config="config.json:application/spdx+json",
                       manifest_annotations={"org.berth.test.kind": "sbom"},
                       subject=oras.oci.Subject(image["mediaType"], image["digest"], image["size"]))
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == image["digest"]
    sbom_digest = resp.headers["Docker-Content-Digest"]
    sig, sig_digest = _signature(oras_registry, host, tmp_path, "apps/web", image)

    assert {d["digest"] for d in _referrers(api, "apps/web", image["digest"])} == {sbom_digest, sig_digest}
    [only_sig] = _referrers(api, "apps/web", image["digest"], NOTATION_SIG)
    assert only_sig == {"mediaType": OCI_MANIFEST, "digest": sig_digest, "size": len(json.dumps(sig).encode()),
                        "artifactType": NOTATION_SIG, "annotations": sig["annotations"]}
    [only_sbom] = _referrers(api, "apps/web", image["digest"], "application/spdx+json")
    assert (only_sbom["digest"], only_sbom["artifactType"]) == (sbom_digest, "application/spdx+json")
    assert _get_manifest(api, "apps/web", sig_digest, sig_digest) == sig

    # a Helm chart is a subject like any other: its signature is listed under the chart's digest
    meta, tgz, prov = build_chart(tmp_path)
    _, chart, _, chart_digest = helm_push(oras_registry, host, tmp_path, "charts", meta, tgz, prov)
    chart_name = f"charts/{meta['name']}"
    assert _referrers(api, chart_name, chart_digest) == []
    subject = {"mediaType": OCI_MANIFEST, "digest": chart_digest, "size": len(json.dumps(chart).encode())}
    _, chart_sig_digest = _signature(oras_registry, host, tmp_path, chart_name, subject)
    assert [d["digest"] for d in _referrers(api, chart_name, chart_digest, NOTATION_SIG)] == [chart_sig_digest]
    assert _referrers(api, chart_name, chart_digest, HELM_CONFIG) == []
    # untagged referrers do not show up as tags
    assert oras_registry.get_tags(f"{host}/{chart_name}") == [meta["version"]]

    # an artifactType that is not a media type is refused, not stored and listed
    for bad in ("", "not a media type", "application/x; charset=utf-8"):
        r = oras_registry.upload_manifest(dict(sig, artifactType=bad), oras_registry.get_container(f"{host}/apps/web:bad"))
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert [e["code"] for e in r.json()["errors"]] == ["MANIFEST_INVALID"]
    assert {d["digest"] for d in _referrers(api, "apps/web", image["digest"])} == {sbom_digest, sig_digest}


# ---------------------------------------------------------------------------------------- locks

@pytest.mark.berth_only
def test_locked_chart_tag_cannot_be_overwritten(host, api, oras_registry, tmp_path):
    meta, tgz, prov = build_chart(tmp_path)
    target, _, _, digest = helm_push(oras_registry, host, tmp_path, "charts", meta, tgz, prov)
    name = f"charts/{meta['name']}"
    r = api.req("PATCH", "/api/v1/repository", params={"name": name, "tag": meta["version"]},
                json={"writeEnabled": False})
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["writeEnabled"] is False

    # the same version rebuilt with other content, as `helm push` would send it, is refused
    container = oras_registry.get_container(target)
    rebuilt, _ = helm_manifest(oras_registry, container, tmp_path, dict(meta, description="rebuilt"),
                               helm_package_changed(tmp_path), prov)
    r = oras_registry.upload_manifest(rebuilt, container)
    assert r.status_code == 403, (r.status_code, r.text)
    assert [e["code"] for e in r.json()["errors"]] == ["DENIED"]
    assert "lock" in r.json()["errors"][0]["message"].lower()

    # the chart is untouched and a push of the very same chart is still accepted
    assert oras_registry.get_manifest(target)["layers"][0]["digest"] == sha256_digest(tgz)
    assert helm_push(oras_registry, host, tmp_path, "charts", meta, tgz, prov)[3] == digest
    assert api.get_manifest(name, meta["version"]).headers["Docker-Content-Digest"] == digest


def helm_package_changed(tmp: Path) -> bytes:
    src = tmp / "chart-changed"
    for rel, text in CHART_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text.replace("hello from berth", "hello again"))
    return helm_package(src)
