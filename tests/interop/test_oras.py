"""oras-py (PyPI ``oras``) <-> registry interop: artifacts and referrers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import oras.oci
import oras.provider
import pytest

from helpers import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, sha256_digest

ARTIFACT_CONFIG_TYPE = "application/vnd.berth.test.config.v1+json"
SBOM_TYPE = "application/vnd.berth.test.sbom.v1+json"
SIG_TYPE = "application/vnd.berth.test.signature.v1"
EMPTY_JSON = b"{}"


def oras_client(host, creds, auth_backend="basic"):
    """An oras-py client for ``host`` logged in with ``creds`` (no login
    without credentials).

    The suite uses oras-py's ``basic`` backend for pushes: its ``token``
    backend (oras-py 0.2.x) caches the one token it got for the first
    challenge (e.g. ``repository:R:pull`` for the HEAD before an upload) and,
    on a later 401 ``error="insufficient_scope"`` (the POST that needs
    ``pull,push``), retries with that same token instead of fetching a new
    one, so a push fails against any registry with per-scope tokens. The
    Bearer flow of oras-py is exercised for pulls in test_auth.py.

    ``auth.set_basic_auth`` is what ``OrasClient.login`` does for the client;
    login itself would also write the user's ~/.docker/config.json."""
    reg = oras.provider.Registry(hostname=host, insecure=True, auth_backend=auth_backend)
    if creds is not None:
        reg.auth.set_basic_auth(*creds)
    return reg


@pytest.fixture
def oras_registry(host, creds):
    return oras_client(host, creds)


def _write(dirpath: Path, name: str, data: bytes) -> Path:
    p = dirpath / name
    p.write_bytes(data)
    return p


def _push_files(reg, target, workdir: Path, files, **kw):
    """oras-py's push wants paths relative to the cwd."""
    old = os.getcwd()
    os.chdir(workdir)
    try:
        return reg.push(target=target, files=[str(f) for f in files], quiet=True, **kw)
    finally:
        os.chdir(old)


def test_push_pull_artifact(host, api, oras_registry, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    readme = _write(src, "README.md", b"# berth interop artifact\n")
    payload = _write(src, "payload.bin", os.urandom(300_000))
    config = _write(src, "config.json", b'{"berth":"interop"}')

    target = f"{host}/interop/artifact:v1"
    resp = _push_files(
        oras_registry, target, src,
        ["README.md:text/markdown", "payload.bin:application/octet-stream"],
        manifest_config=f"config.json:{ARTIFACT_CONFIG_TYPE}",
        manifest_annotations={"org.opencontainers.image.title": "interop"},
    )
    assert resp.status_code == 201
    manifest_digest = resp.headers.get("Docker-Content-Digest")
    assert manifest_digest and manifest_digest.startswith("sha256:")

    manifest = oras_registry.get_manifest(target)
    assert manifest["config"]["mediaType"] == ARTIFACT_CONFIG_TYPE
    assert manifest["config"]["digest"] == sha256_digest(config.read_bytes())
    assert [l["mediaType"] for l in manifest["layers"]] == ["text/markdown", "application/octet-stream"]
    assert manifest["annotations"]["org.opencontainers.image.title"] == "interop"

    # the stored manifest bytes hash to the digest the registry reported
    r = api.get_manifest("interop/artifact", "v1")
    assert r.status_code == 200
    assert sha256_digest(r.content) == manifest_digest
    assert r.headers.get("Docker-Content-Digest") == manifest_digest

    out = tmp_path / "out"
    files = oras_registry.pull(target=target, outdir=str(out))
    pulled = {Path(f).name: Path(f).read_bytes() for f in files}
    assert pulled == {"README.md": readme.read_bytes(), "payload.bin": payload.read_bytes()}

    # chunked upload path of oras-py (POST, PATCH..., PUT)
    big = _write(src, "big.bin", os.urandom(3 * 1024 * 1024 + 17))
    resp = _push_files(oras_registry, f"{host}/interop/artifact:chunked", src, ["big.bin"],
                       do_chunked=True, chunk_size=1024 * 1024)
    assert resp.status_code == 201
    out2 = tmp_path / "out2"
    files = oras_registry.pull(target=f"{host}/interop/artifact:chunked", outdir=str(out2))
    assert [Path(f).read_bytes() for f in files] == [big.read_bytes()]

    assert sorted(oras_registry.get_tags(f"{host}/interop/artifact")) == ["chunked", "v1"]


def _push_subject(oras_registry, host, tmp_path):
    src = tmp_path / "subject"
    src.mkdir(exist_ok=True)
    _write(src, "app.txt", b"the subject artifact\n")
    resp = _push_files(oras_registry, f"{host}/interop/refs:app", src, ["app.txt"])
    assert resp.status_code == 201
    return resp.headers["Docker-Content-Digest"]


@pytest.mark.berth_only
def test_referrers(host, api, oras_registry, tmp_path):
    name = "interop/refs"
    subject_digest = _push_subject(oras_registry, host, tmp_path)
    r = api.get_manifest(name, subject_digest)
    assert r.status_code == 200
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(r.content))

    # no referrers yet: an empty image index, not a 404
    r = api.req("GET", f"/v2/{name}/referrers/{subject_digest}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX
    assert r.json()["manifests"] == []

    # referrer 1: pushed with oras-py, subject set, artifact type given by the
    # config media type (oras-py has no artifactType field)
    ref_dir = tmp_path / "sbom"
    ref_dir.mkdir()
    _write(ref_dir, "sbom.json", b'{"packages":[]}')
    _write(ref_dir, "sbom-config.json", b"{}")
    resp = _push_files(oras_registry, f"{host}/{name}:sbom", ref_dir, [f"sbom.json:{SBOM_TYPE}"],
                       manifest_config=f"sbom-config.json:{SBOM_TYPE}",
                       manifest_annotations={"org.berth.kind": "sbom"},
                       subject=subject)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject_digest, dict(resp.headers)
    sbom_digest = resp.headers["Docker-Content-Digest"]

    # referrer 2: explicit artifactType + empty config, blobs via oras-py,
    # manifest via oras-py's upload_manifest (untagged: PUT by digest)
    sig_dir = tmp_path / "sig"
    sig_dir.mkdir()
    sig_file = _write(sig_dir, "sig.bin", b"not-really-a-signature")
    empty_file = _write(sig_dir, "empty.json", EMPTY_JSON)
    container = oras_registry.get_container(f"{host}/{name}:unused")
    empty_desc = {"mediaType": OCI_EMPTY, "digest": sha256_digest(EMPTY_JSON), "size": 2}
    sig_layer = oras.oci.NewLayer(str(sig_file), media_type=SIG_TYPE)
    for path, desc in ((empty_file, empty_desc), (sig_file, sig_layer)):
        rr = oras_registry.upload_blob(str(path), container, desc)
        assert rr.status_code in (200, 201), rr.status_code
    sig_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG_TYPE,
        "config": empty_desc,
        "layers": [{"mediaType": SIG_TYPE, "digest": sig_layer["digest"], "size": sig_layer["size"]}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject.size},
        "annotations": {"org.berth.kind": "signature", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    body = json.dumps(sig_manifest, separators=(",", ":")).encode()
    sig_digest = sha256_digest(body)
    resp = api.put_manifest(name, sig_digest, body)
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert resp.headers.get("OCI-Subject") == subject_digest, dict(resp.headers)
    assert resp.headers.get("Docker-Content-Digest") == sig_digest

    # list all referrers
    r = api.req("GET", f"/v2/{name}/referrers/{subject_digest}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {sbom_digest, sig_digest}

    sig = by_digest[sig_digest]
    assert sig["mediaType"] == OCI_MANIFEST
    assert sig["artifactType"] == SIG_TYPE
    assert sig["size"] == len(body)
    assert sig["annotations"] == sig_manifest["annotations"]

    sbom = by_digest[sbom_digest]
    assert sbom["mediaType"] == OCI_MANIFEST
    # no artifactType in the manifest: the config media type is used
    assert sbom["artifactType"] == SBOM_TYPE
    assert sbom["annotations"] == {"org.berth.kind": "sbom"}
    rs = api.get_manifest(name, sbom_digest)
    assert sbom["size"] == len(rs.content)

    # filter by artifactType
    r = api.req("GET", f"/v2/{name}/referrers/{subject_digest}", params={"artifactType": SIG_TYPE})
    assert r.status_code == 200
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sig_digest]

    r = api.req("GET", f"/v2/{name}/referrers/{subject_digest}",
                params={"artifactType": "application/vnd.berth.nothing"})
    assert r.status_code == 200
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert r.json()["manifests"] == []

    # referrers of a digest that does not exist (yet): empty index
    missing = sha256_digest(b"no such manifest")
    r = api.req("GET", f"/v2/{name}/referrers/{missing}")
    assert r.status_code == 200
    assert r.json()["manifests"] == []

    # the subject is still pullable untouched by oras-py
    files = oras_registry.pull(target=f"{host}/{name}:app", outdir=str(tmp_path / "pulled"))
    assert [Path(f).read_bytes() for f in files] == [b"the subject artifact\n"]

    # deleting a referrer removes it from the list
    r = api.req("DELETE", f"/v2/{name}/manifests/{sig_digest}")
    assert r.status_code == 202
    r = api.req("GET", f"/v2/{name}/referrers/{subject_digest}")
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom_digest]


def test_manifest_with_subject_is_accepted(host, api, oras_registry, tmp_path):
    """Pushing a manifest with ``subject`` works on any registry (a 1.0
    registry ignores the field); the subject's bytes come back unchanged."""
    name = "interop/refs"
    subject_digest = _push_subject(oras_registry, host, tmp_path)
    size = len(api.get_manifest(name, subject_digest).content)
    ref_dir = tmp_path / "att"
    ref_dir.mkdir()
    _write(ref_dir, "att.txt", b"attestation")
    resp = _push_files(oras_registry, f"{host}/{name}:att", ref_dir, ["att.txt"],
                       subject=oras.oci.Subject(OCI_MANIFEST, subject_digest, size))
    assert resp.status_code == 201
    m = api.get_manifest(name, "att")
    assert m.status_code == 200
    assert json.loads(m.content)["subject"]["digest"] == subject_digest
    assert sha256_digest(m.content) == resp.headers["Docker-Content-Digest"]
