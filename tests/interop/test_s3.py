"""`berth serve` with its blobs in an S3-compatible store (a real Ceph RGW, see
scripts/services/ceph-rgw): images in and out with skopeo, a chunked upload, a ranged GET."""

from __future__ import annotations

import json
import os

import pytest

from helpers import Api, layout_blob, layout_descriptor, sha256_digest, skopeo, umoci_image

pytestmark = pytest.mark.berth_only


def test_images_chunked_uploads_and_ranges_on_s3(s3_registry, s3_service, tmp_path):
    server, bucket = s3_registry
    host, creds = server.host, server.creds
    api = Api(host, auth=creds)

    # A multi-layer image, one layer too big to be kept inline (random bytes do not compress).
    layout = tmp_path / "src"
    digest = umoci_image(layout, "v1", [
        {"etc/hello.txt": b"hello from layer 1\n"},
        {"opt/random.bin": os.urandom(300 << 10)},
        {"etc/hello.txt": b"layer 3\n"},
    ], workdir=tmp_path)
    layers = json.loads(layout_blob(layout, digest))["layers"]
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/s3/app:v1", creds=creds)
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/s3/app:v1", f"oci:{out}:v1", creds=creds)
    assert layout_descriptor(out, "v1")["digest"] == digest
    for layer in layers:
        assert layout_blob(out, layer["digest"]) == layout_blob(layout, layer["digest"])
    # The big layer's bytes are in the bucket, where the store puts blobs.
    big = max(layers, key=lambda l: l["size"])["digest"].split(":")[1]
    assert f"reg/blobs/sha256/{big[:2]}/{big}" in s3_service.keys(bucket, "reg/blobs/")

    # A chunked upload of odd-sized PATCHes, more than one 16 MiB part in all.
    data = os.urandom((16 << 20) + 1_234_567)
    cuts = [0, 3_000_001, 3_000_002, 17_000_000, len(data)]
    loc = api.start_upload("s3/chunked")
    for a, b in zip(cuts, cuts[1:]):
        r = api.req("PATCH", loc, data=data[a:b], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{a}-{b - 1}"}, timeout=120)
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["Range"] == f"0-{b - 1}"
        loc = r.headers["Location"]
    d = sha256_digest(data)
    r = api.req("PUT", loc, params={"digest": d}, headers={"Content-Length": "0"}, timeout=120)
    assert r.status_code == 201, (r.status_code, r.text)
    assert not s3_service.keys(bucket, "reg/uploads/"), "the upload leaves nothing behind"

    # Whole and ranged GETs stream from the store.
    r = api.get_blob("s3/chunked", d)
    assert r.status_code == 200 and r.content == data
    start = (16 << 20) - 100  # across the part boundary
    r = api.req("GET", f"/v2/s3/chunked/blobs/{d}", headers={"Range": f"bytes={start}-{start + 299}"})
    assert r.status_code == 206, r.status_code
    assert r.headers["Content-Range"] == f"bytes {start}-{start + 299}/{len(data)}"
    assert r.content == data[start:start + 300]


def test_a_wrong_secret_is_reported_at_start_and_never_logged(s3_service, tmp_path):
    import requests
    from conftest import RegistryServer
    server = RegistryServer(tmp_path)
    server.extra_env.update({
        "BERTH_BLOB_STORE": "s3", "BERTH_S3_ENDPOINT": s3_service.endpoint, "BERTH_S3_BUCKET": s3_service.create_bucket(),
        "BERTH_S3_ACCESS_KEY": s3_service.access_key, "BERTH_S3_SECRET_KEY": "wrong-" + s3_service.secret_key,
    })
    server.start()
    try:
        assert requests.get(server.base + "/readyz", timeout=10).status_code == 503
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "the blob store is not usable" in log and "SignatureDoesNotMatch" in log, log[-2000:]
    assert s3_service.secret_key not in log


def test_a_chunked_upload_continues_on_another_node(postgres_database, s3_service, tmp_path):
    """Two servers over one PostgreSQL database and one bucket: PATCHes on A and on B, the PUT on A
    (whose own hasher no longer covers the upload: it continues the hash state B saved); a chunk
    sent with a stale offset is refused with 416 and the current Range."""
    import base64
    from conftest import RegistryServer

    class Node(RegistryServer):
        def _command(self, port: int):
            return super()._command(port) + ["--metadata-store", "postgres"]

    key_file = tmp_path / "berth.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key_file.chmod(0o600)
    bucket = s3_service.create_bucket()
    nodes = []
    try:
        for name in ("a", "b"):
            node = Node(tmp_path / name)
            node.password = "it-shared-owner-password"
            node.extra_env.update({
                "BERTH_POSTGRES_URL": postgres_database, "BERTH_KEY_FILE": str(key_file),
                "BERTH_BLOB_STORE": "s3", "BERTH_S3_ENDPOINT": s3_service.endpoint, "BERTH_S3_BUCKET": bucket,
                "BERTH_S3_REGION": s3_service.region, "BERTH_S3_PREFIX": "reg",
                "BERTH_S3_ACCESS_KEY": s3_service.access_key, "BERTH_S3_SECRET_KEY": s3_service.secret_key,
            })
            node.start()
            nodes.append(node)
        a, b = (Api(n.host, auth=n.creds) for n in nodes)
        data = os.urandom((16 << 20) + 777_777)
        cut = (16 << 20) + 5
        loc = a.start_upload("s3/moving")
        r = a.req("PATCH", loc, data=data[:cut], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"0-{cut - 1}"}, timeout=120)
        assert r.status_code == 202, (r.status_code, r.text)
        loc = r.headers["Location"]
        r = b.req("PATCH", loc, data=data[cut:], headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{cut}-{len(data) - 1}"}, timeout=120)
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        stale = a.req("PATCH", loc, data=b"x", headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{cut}-{cut}"})
        assert stale.status_code == 416 and stale.headers["Range"] == f"0-{len(data) - 1}", (stale.status_code, stale.text)
        d = sha256_digest(data)
        r = a.req("PUT", r.headers["Location"], params={"digest": d}, headers={"Content-Length": "0"}, timeout=120)
        assert r.status_code == 201, (r.status_code, r.text)
        assert not s3_service.keys(bucket, "reg/uploads/"), "the upload leaves nothing behind"
        got = b.get_blob("s3/moving", d)
        assert got.status_code == 200 and got.content == data
    finally:
        for node in nodes:
            node.stop()


def test_blob_gets_redirect_to_a_presigned_url_when_turned_on(s3_service, tmp_path):
    """s3-redirect-blob-gets: a client allowed to pull gets a 307 to a short-lived presigned URL
    (curl -L and skopeo follow it); a client that may not pull gets no URL; HEAD is answered here."""
    import subprocess
    from conftest import RegistryServer
    server = RegistryServer(tmp_path / "node")
    server.extra_env.update({
        "BERTH_BLOB_STORE": "s3", "BERTH_S3_ENDPOINT": s3_service.endpoint, "BERTH_S3_BUCKET": s3_service.create_bucket(),
        "BERTH_S3_REGION": s3_service.region, "BERTH_S3_PREFIX": "reg",
        "BERTH_S3_ACCESS_KEY": s3_service.access_key, "BERTH_S3_SECRET_KEY": s3_service.secret_key,
        "BERTH_S3_REDIRECT_BLOB_GETS": "true", "BERTH_S3_REDIRECT_TTL": "120",
    })
    server.start()
    try:
        host, creds = server.host, server.creds
        api = Api(host, auth=creds)
        layout = tmp_path / "src"
        digest = umoci_image(layout, "v1", [{"opt/random.bin": os.urandom(200 << 10)}], workdir=tmp_path)
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/s3/redirect:v1", creds=creds)
        layer = json.loads(layout_blob(layout, digest))["layers"][0]["digest"]
        path = f"/v2/s3/redirect/blobs/{layer}"

        r = api.req("GET", path, allow_redirects=False)
        assert r.status_code == 307, (r.status_code, r.text)
        assert r.headers["Location"].startswith(s3_service.endpoint + "/") and "X-Amz-Expires=120" in r.headers["Location"]
        assert r.headers["Docker-Content-Digest"] == layer
        assert api.req("HEAD", path).status_code == 200
        anonymous = Api(host, auth=None).req("GET", path, allow_redirects=False)
        assert anonymous.status_code == 401 and "Location" not in anonymous.headers

        out = tmp_path / "blob"
        user, password = creds
        subprocess.run(["curl", "-sSfL", "-u", f"{user}:{password}", "-o", str(out), f"http://{host}{path}"],
                       check=True, timeout=60)
        assert out.read_bytes() == layout_blob(layout, layer)

        pulled = tmp_path / "out"
        skopeo("copy", "--src-tls-verify=false", f"docker://{host}/s3/redirect:v1", f"oci:{pulled}:v1", creds=creds)
        assert layout_blob(pulled, layer) == layout_blob(layout, layer)
    finally:
        server.stop()
