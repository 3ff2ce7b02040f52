"""`berth import` (issue 17): a server-side copy from another registry.

Sources: Debian's reference registry (`docker-registry`) with htpasswd Basic auth, and a second
`berth serve` (token auth). The target allows loopback outbound explicitly
(`BERTH_OUTBOUND_ALLOW`); one test shows that the default refuses a loopback source.
"""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import RegistryServer, berth_bin, free_port
from helpers import OCI_INDEX, OCI_MANIFEST, Api, sha256_digest, skopeo

pytestmark = pytest.mark.berth_only   # imports into Berth

LOOPBACK = "127.0.0.1/32"


class ReferenceSource:
    """docker-registry with htpasswd (bcrypt) Basic auth, or anonymous when ``user`` is None; its
    access log counts requests."""

    def __init__(self, workdir: Path, user: str | None, password: str | None = None):
        self.workdir = workdir
        self.port = free_port()
        self.creds = (user, password) if user else None
        workdir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if user:
            htpasswd = workdir / "htpasswd"
            # A bcrypt entry (the only hash docker-registry's htpasswd accepts) by Apache's `htpasswd -B`
            # (Debian apache2-utils), the password on stdin: Python's `crypt` is gone in 3.13.
            entry = subprocess.run(["htpasswd", "-niB", user], input=password + "\n", capture_output=True, text=True,
                                   check=True, timeout=60).stdout.strip()
            assert entry.startswith(f"{user}:$2"), entry
            htpasswd.write_text(entry + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: import-test\n    path: {htpasswd}\n"
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: import-test\n" + auth)
        self.log = workdir / "registry.log"
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)], stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/v2/", timeout=2).status_code == (401 if user else 200):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("docker-registry did not start:\n" + self.log.read_text(errors="replace")[-3000:])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_gets(self, digest: str) -> int:
        text = self.log.read_text(errors="replace")
        return len(re.findall(r'"GET /v2/[^ ]*/blobs/' + re.escape(digest) + r' HTTP', text))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def reference_source(tmp_path):
    source = ReferenceSource(tmp_path / "source", "mirror-bot", "s3cret-" + os.urandom(4).hex())
    yield source
    source.stop()


@pytest.fixture
def berth_source():
    workdir = Path(tempfile.mkdtemp(prefix="berth-import-source-"))
    server = RegistryServer(workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def push_image(api: Api, repo: str, tag: str, layers, arch: str = "amd64") -> bytes:
    for layer in layers:
        api.push_blob(repo, layer)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(l) for l in layers]}}).encode()
    api.push_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(l), "size": len(l)}
                   for l in layers],
    }).encode()
    r = api.put_manifest(repo, tag, manifest)
    assert r.status_code == 201, (r.status_code, r.text)
    return manifest


def berth(registry, config_home: Path, *args, input: str = "", check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("BERTH_REGISTRY", "BERTH_USERNAME", "BERTH_PASSWORD")}
    env["XDG_CONFIG_HOME"] = str(config_home)
    proc = subprocess.run([str(berth_bin()), *args], input=input.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=120)
    if check:
        assert proc.returncode == 0, (args, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    return proc


def berth_popen(registry, config_home: Path, *args) -> subprocess.Popen:
    """``berth`` started in the background, its standard input a pipe (as ``berth`` above)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BERTH_REGISTRY", "BERTH_USERNAME", "BERTH_PASSWORD")}
    env["XDG_CONFIG_HOME"] = str(config_home)
    return subprocess.Popen([str(berth_bin()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.fixture
def login(registry, tmp_path):
    home = tmp_path / "xdg"
    berth(registry, home, "login", registry.base, "-u", registry.username, "--password-stdin", input=registry.password + "\n")
    return home


def manifest_of(registry, repo: str, ref: str) -> requests.Response:
    return registry.api().get_manifest(repo, ref)


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_import_from_the_reference_registry_resumes_and_needs_force_to_move_a_tag(registry, login, reference_source, tmp_path):
    src = Api(reference_source.host, auth=reference_source.creds)
    layers = [os.urandom(200_000), b"small layer", os.urandom(70_000)]
    manifest = push_image(src, "lib/app", "v1", layers)
    digest = sha256_digest(manifest)
    source_ref = f"{reference_source.host}/lib/app:v1"
    user, password = reference_source.creds

    def run_import(*extra, check=True, image="mirror/app:v1", source=source_ref):
        return berth(registry, login, "import", "--source", source, "--image", image, "--plain-http",
                     "--username", user, "--password-stdin", *extra, input=password + "\n", check=check)

    # Without credentials the source refuses.
    p = berth(registry, login, "import", "--source", source_ref, "--image", "mirror/app:v1", "--plain-http", check=False)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode != 0 and ("401" in out or "credentials" in out), out

    # A failure half-way (the last layer is gone at the source): nothing is tagged.
    r = src.req("DELETE", f"/v2/lib/app/blobs/{sha256_digest(layers[2])}")
    assert r.status_code == 202, (r.status_code, r.text)
    p = run_import(check=False)
    assert p.returncode != 0 and "404" in p.stderr.decode(), p.stderr.decode()
    assert manifest_of(registry, "mirror/app", "v1").status_code == 404

    # Re-run once the source is whole again: the blobs already copied are not fetched again.
    src.push_blob("lib/app", layers[2])
    config_digest = json.loads(manifest)["config"]["digest"]
    before = {d: reference_source.blob_gets(d) for d in (config_digest, sha256_digest(layers[0]), sha256_digest(layers[1]))}
    assert all(n == 1 for n in before.values()), before
    p = run_import("-o", "json")
    job = json.loads(p.stdout)
    assert job["state"] == "succeeded" and job["digest"] == digest, job
    assert job["blobsSkipped"] == 3 and job["blobsCopied"] == 1, job
    assert {d: reference_source.blob_gets(d) for d in before} == before
    # Plain progress lines when standard error is not a terminal.
    assert "import " in p.stderr.decode() and "blobs" in p.stderr.decode()

    # Digests preserved: the same bytes, as skopeo sees them.
    got = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/mirror/app:v1", creds=registry.creds).stdout
    assert got == manifest
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/mirror/app:v1",
                                  creds=registry.creds).stdout)
    assert inspected["Digest"] == digest

    # Another image onto the same tag: refused without --force, moved with it.
    other = push_image(src, "lib/app", "v2", [b"another layer"])
    p = run_import(check=False, source=f"{reference_source.host}/lib/app:v2")
    assert p.returncode != 0 and "force" in p.stderr.decode(), p.stderr.decode()
    assert manifest_of(registry, "mirror/app", "v1").content == manifest
    run_import("--force", source=f"{reference_source.host}/lib/app:v2")
    assert manifest_of(registry, "mirror/app", "v1").content == other
    # The source password was used, never logged.
    assert password not in registry.log_path.read_text(errors="replace")


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_import_from_a_berth_with_token_auth_copies_an_index_and_its_referrers(registry, login, berth_source, tmp_path):
    src = berth_source.api()
    amd = push_image(src, "lib/multi", "amd64", [b"amd64 layer"], arch="amd64")
    arm = push_image(src, "lib/multi", "arm64", [b"arm64 layer"], arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(m), "size": len(m), "platform": {"architecture": a, "os": "linux"}}
        for m, a in ((amd, "amd64"), (arm, "arm64"))]}).encode()
    r = src.put_manifest("lib/multi", "v1", index, media_type=OCI_INDEX)
    assert r.status_code == 201, r.text
    # A signature-like artifact referring to the index.
    empty = b"{}"
    src.push_blob("lib/multi", empty)
    sig_layer = b"signature bytes"
    src.push_blob("lib/multi", sig_layer)
    signature = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig", "digest": sha256_digest(sig_layer), "size": len(sig_layer)}],
        "subject": {"mediaType": OCI_INDEX, "digest": sha256_digest(index), "size": len(index)},
    }).encode()
    r = src.put_manifest("lib/multi", sha256_digest(signature), signature)
    assert r.status_code == 201, r.text
    user, password = berth_source.creds

    p = berth(registry, login, "import", "--source", f"{berth_source.host}/lib/multi:v1", "--image", "mirror/multi:all",
              "--plain-http", "--username", user, "--password-stdin", "--all-platforms", "--include-referrers", "-o", "json",
              input=password + "\n")
    job = json.loads(p.stdout)
    assert job["state"] == "succeeded" and job["digest"] == sha256_digest(index) and job["referrersCopied"] == 1, job
    assert manifest_of(registry, "mirror/multi", "all").content == index
    for child in (amd, arm):
        assert manifest_of(registry, "mirror/multi", sha256_digest(child)).content == child
    refs = registry.api().req("GET", f"/v2/mirror/multi/referrers/{sha256_digest(index)}").json()
    assert [m["digest"] for m in refs["manifests"]] == [sha256_digest(signature)]

    # Without --all-platforms: the linux/amd64 image, by the source's index given by digest.
    # A credentials file others may read is refused, as the server refuses its secret files.
    creds_file = tmp_path / "creds"
    creds_file.write_text(f"{user}:{password}\n")
    creds_file.chmod(0o644)
    p = berth(registry, login, "import", "--source", f"{berth_source.host}/lib/multi@{sha256_digest(index)}",
              "--image", "mirror/single:v1", "--plain-http", "--source-creds-file", str(creds_file), check=False)
    assert p.returncode != 0 and b"may be read by others" in p.stderr and password.encode() not in p.stderr + p.stdout
    creds_file.chmod(0o600)
    p = berth(registry, login, "import", "--source", f"{berth_source.host}/lib/multi@{sha256_digest(index)}",
              "--image", "mirror/single:v1", "--plain-http", "--source-creds-file", str(creds_file), "-o", "json")
    assert json.loads(p.stdout)["digest"] == sha256_digest(amd)
    # the JSON form of the file
    json_creds = tmp_path / "creds.json"
    json_creds.write_text(json.dumps({"username": user, "password": password}))
    json_creds.chmod(0o600)
    p = berth(registry, login, "import", "--source", f"{berth_source.host}/lib/multi:amd64",
              "--image", "mirror/json-creds:v1", "--plain-http", "--source-creds-file", str(json_creds), "-o", "json")
    assert json.loads(p.stdout)["digest"] == sha256_digest(amd)
    assert manifest_of(registry, "mirror/single", "v1").content == amd
    assert manifest_of(registry, "mirror/single", sha256_digest(arm)).status_code == 404

    # On a terminal the progress is a bar redrawn in place.
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("BERTH_REGISTRY", "BERTH_USERNAME", "BERTH_PASSWORD")}
    env["XDG_CONFIG_HOME"] = str(login)
    proc = subprocess.run([str(berth_bin()), "import", "--source", f"{berth_source.host}/lib/multi:amd64", "--image", "mirror/tty:v1",
                           "--plain-http", "--source-creds-file", str(creds_file)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=secondary, env=env, timeout=120)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.returncode == 0, shown
    assert b"\r" in shown and b"] " in shown and b"[#" in shown, shown


def test_import_refuses_a_loopback_source_by_default_and_needs_push_rights(registry, login):
    p = berth(registry, login, "import", "--source", "127.0.0.1:9/lib/app:v1", "--image", "mirror/app:v1", "--plain-http",
              check=False)
    err = p.stderr.decode()
    assert p.returncode != 0 and "loopback" in err and "outbound" in err.lower(), err
    # Anonymous callers are challenged; nothing is started.
    body = {"source": "127.0.0.1:9/lib/app:v1", "image": "mirror/app:v1", "plainHTTP": True}
    r = requests.post(f"{registry.base}/api/v1/imports", json=body, timeout=10)
    assert r.status_code == 401
    # Pull rights on the target are not enough; push rights are.
    dev = ("dev", json.loads(berth(registry, login, "identity", "create", "--name", "dev", "-o", "json").stdout)["password"])
    berth(registry, login, "role", "assignment", "create", "--assignee", "dev", "--role", "Pull", "--scope", "mirror/*")
    r = requests.post(f"{registry.base}/api/v1/imports", json=body, auth=dev, timeout=10)
    assert r.status_code == 403, r.text
    berth(registry, login, "role", "assignment", "create", "--assignee", "dev", "--role", "Push", "--scope", "mirror/*")
    r = requests.post(f"{registry.base}/api/v1/imports", json=body, auth=dev, timeout=10)
    assert r.status_code == 202, r.text
    job = r.json()
    assert "password" not in json.dumps(job)
    # Only who may push to the target sees the job.
    assert requests.get(f"{registry.base}/api/v1/imports/{job['id']}", auth=dev, timeout=10).status_code == 200
    other = ("other", json.loads(berth(registry, login, "identity", "create", "--name", "other", "-o", "json").stdout)["password"])
    assert requests.get(f"{registry.base}/api/v1/imports/{job['id']}", auth=other, timeout=10).status_code == 404


class DroppingProxy:
    """A loopback HTTP proxy in front of a source registry that cuts the first GET of one blob
    after ``cut`` bytes (the whole length announced, then the connection closed). With
    ``ignore_range`` it drops the Range header of what it forwards, as a source without range
    support answers 200 with the whole blob. It notes the Range header of every GET of that blob."""

    def __init__(self, upstream: str, digest: str, cut: int, ignore_range: bool = False, own_realm: bool = False):
        import http.server
        import threading

        self.upstream, self.digest, self.cut, self.ignore_range = upstream, digest, cut, ignore_range
        # With ``own_realm`` the source's token realm is named on the proxy (a client sends its
        # credentials only to the host it talks to), and token requests pass through it too.
        self.own_realm = own_realm
        self.ranges: list[str | None] = []
        # While set, every GET of the blob after the first is dropped before its first byte (the
        # source keeps failing). The bytes of the blob sent by each GET, in order.
        self.dropping = False
        self.sent: list[int] = []
        # When set to an Event, the first GET of the blob pauses after ``cut`` bytes until it is
        # set (at most 60 s) and then sends the rest, instead of dropping the connection.
        self.hold: threading.Event | None = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                blob = self.path.split("?")[0].endswith("/blobs/" + proxy.digest)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept", "range")}
                first = False
                if blob:
                    first = not proxy.ranges
                    proxy.ranges.append(self.headers.get("Range"))
                    if proxy.ignore_range:
                        headers.pop("Range", None)
                    if proxy.dropping and not first:
                        proxy.sent.append(0)
                        self.close_connection = True
                        self.connection.shutdown(2)   # no answer at all
                        return
                with requests.get(f"http://{proxy.upstream}{self.path}", headers=headers, stream=True,
                                  allow_redirects=False, timeout=30) as r:
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() in ("content-type", "content-length", "content-range", "docker-content-digest",
                                         "www-authenticate", "location", "accept-ranges"):
                            if proxy.own_realm and k.lower() == "www-authenticate":
                                v = v.replace(proxy.upstream, proxy.host)
                            self.send_header(k, v)
                    if "content-length" not in {k.lower() for k in r.headers}:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    sent = 0
                    try:
                        for chunk in r.raw.stream(65536, decode_content=False):
                            if blob and first and proxy.hold is not None and sent < proxy.cut <= sent + len(chunk):
                                self.wfile.write(chunk[:proxy.cut - sent])
                                self.wfile.flush()
                                proxy.hold.wait(60)
                                self.wfile.write(chunk[proxy.cut - sent:])
                                sent += len(chunk)
                                continue
                            if blob and first and proxy.hold is None and sent + len(chunk) >= proxy.cut:
                                self.wfile.write(chunk[:proxy.cut - sent])
                                self.wfile.flush()
                                sent = proxy.cut
                                self.close_connection = True
                                self.connection.shutdown(2)   # the connection drops mid-blob
                                return
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    finally:
                        if blob:
                            proxy.sent.append(sent)

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("ignore_range", [False, True], ids=["source-with-ranges", "source-ignoring-ranges"])
@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_import_goes_on_within_a_blob_whose_connection_drops(registry, login, reference_source, ignore_range):
    """The source's connection drops 1 MB into a 3 MB layer: the import asks for the rest with a
    Range request (a source that ignores it sends the whole layer again, and the copy starts the
    layer over), and what is stored is the source's layer, verified against its digest."""
    import_through_a_dropping_proxy(registry, login, reference_source, ignore_range)


def test_import_goes_on_within_a_blob_in_the_s3_blob_store(s3_registry, reference_source, tmp_path):
    """The same with the blobs in S3 (Ceph RGW): the partial blob is a multipart upload that the
    resumed piece continues."""
    server, _ = s3_registry
    server.extra_env["BERTH_OUTBOUND_ALLOW"] = LOOPBACK
    server.stop()
    server.start(port=server.port)
    home = tmp_path / "xdg"
    berth(server, home, "login", server.base, "-u", server.username, "--password-stdin", input=server.password + "\n")
    import_through_a_dropping_proxy(server, home, reference_source, ignore_range=False)


def import_through_a_dropping_proxy(registry, login, reference_source, ignore_range: bool):
    src = Api(reference_source.host, auth=reference_source.creds)
    big = os.urandom(3 * 1024 * 1024)
    layers = [big, b"a small layer"]
    manifest = push_image(src, "lib/big", "v1", layers)
    proxy = DroppingProxy(reference_source.host, sha256_digest(big), cut=1024 * 1024, ignore_range=ignore_range)
    try:
        user, password = reference_source.creds
        p = berth(registry, login, "import", "--source", f"{proxy.host}/lib/big:v1", "--image", "mirror/big:v1", "--plain-http",
                  "--username", user, "--password-stdin", "-o", "json", input=password + "\n")
        job = json.loads(p.stdout)
    finally:
        proxy.stop()
    assert job["state"] == "succeeded" and job["digest"] == sha256_digest(manifest), job
    # The first GET was cut; the second asked for the rest from where the received bytes ended.
    assert len(proxy.ranges) == 2 and proxy.ranges[0] is None, proxy.ranges
    m = re.fullmatch(r"bytes=(\d+)-", proxy.ranges[1] or "")
    assert m and 0 < int(m.group(1)) <= 1024 * 1024, proxy.ranges
    if ignore_range:
        assert job.get("blobRestarts") == 1 and not job.get("blobResumes"), job
        assert "1 started over" in p.stderr.decode(), p.stderr.decode()
    else:
        assert job.get("blobResumes") == 1 and not job.get("blobRestarts"), job
        assert "1 resumed after a dropped connection" in p.stderr.decode(), p.stderr.decode()
    # Every byte counted once, whatever was received twice.
    assert job["bytesCopied"] == job["bytesTotal"], job
    # What is stored is the source's layer, byte for byte, and no upload session is left behind.
    r = registry.api().get_blob("mirror/big", sha256_digest(big))
    assert r.status_code == 200 and r.content == big
    assert manifest_of(registry, "mirror/big", "v1").content == manifest
    leftovers = [p for d in registry.data.rglob("uploads") if d.is_dir() for p in d.iterdir()]
    assert leftovers == [], leftovers
    assert "removed abandoned uploads" not in registry.log_path.read_text(errors="replace")


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_failed_import_keeps_its_partial_blob_and_a_rerun_resumes_it(registry, login, reference_source):
    """The source's connection drops 1 MB into a 3 MB layer and then fails every request: the
    import fails, nothing of the layer is a blob, and its bytes stay in a private upload session
    (not reachable through /v2/). Run again once the source is back, the import asks only for the
    rest of the layer (a Range from where the kept bytes end: fewer bytes than the layer from the
    source, by the proxy's count), verifies it whole and leaves no session behind."""
    rerun_resumes_the_partial_blob(registry, login, reference_source, files=True)


def test_a_rerun_resumes_the_partial_blob_in_the_s3_blob_store(s3_registry, reference_source, tmp_path):
    """The same with the blobs in S3 (Ceph RGW): the kept partial is a multipart upload and its
    session record, which the re-run continues."""
    server, _ = s3_registry
    server.extra_env["BERTH_OUTBOUND_ALLOW"] = LOOPBACK
    server.stop()
    server.start(port=server.port)
    home = tmp_path / "xdg"
    berth(server, home, "login", server.base, "-u", server.username, "--password-stdin", input=server.password + "\n")
    rerun_resumes_the_partial_blob(server, home, reference_source, files=False)


def rerun_resumes_the_partial_blob(registry, login, reference_source, files: bool):
    src = Api(reference_source.host, auth=reference_source.creds)
    big = os.urandom(3 * 1024 * 1024)
    manifest = push_image(src, "lib/big", "v1", [big, b"a small layer"])
    proxy = DroppingProxy(reference_source.host, sha256_digest(big), cut=1024 * 1024)
    proxy.dropping = True
    user, password = reference_source.creds
    args = ["import", "--source", f"{proxy.host}/lib/big:v1", "--image", "mirror/big:v1", "--plain-http",
            "--username", user, "--password-stdin", "-o", "json"]
    try:
        p = berth(registry, login, *args, input=password + "\n", check=False)
        assert p.returncode != 0, (p.stdout, p.stderr)
        # Nothing visible: no blob, no tag; the partial bytes are kept in one upload session.
        assert registry.api().get_blob("mirror/big", sha256_digest(big)).status_code == 404
        assert manifest_of(registry, "mirror/big", "v1").status_code == 404
        if files:
            kept = [f for d in registry.data.rglob("uploads") if d.is_dir() for f in d.iterdir()]
            assert len(kept) == 1, kept
            # A /v2/ upload call of the repository does not reach it under its name.
            r = requests.get(f"{registry.base}/v2/mirror/big/blobs/uploads/{kept[0].name}", auth=registry.creds, timeout=30)
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", r.text
        first_run = len(proxy.sent)
        assert first_run >= 2 and proxy.sent[0] > 0, proxy.sent

        proxy.dropping = False
        p = berth(registry, login, *args, input=password + "\n")
        job = json.loads(p.stdout)
    finally:
        proxy.stop()
    assert job["state"] == "succeeded" and job["digest"] == sha256_digest(manifest), job
    # The re-run fetched the layer once, from where the kept bytes end: less than the layer.
    second = proxy.sent[first_run:]
    assert len(second) == 1 and 0 < second[0] < len(big), proxy.sent
    m = re.fullmatch(r"bytes=(\d+)-", proxy.ranges[-1] or "")
    assert m and int(m.group(1)) + second[0] == len(big), (proxy.ranges, proxy.sent)
    assert job.get("blobResumes") == 1 and not job.get("blobRestarts"), job
    assert job["bytesCopied"] == job["bytesTotal"], job
    r = registry.api().get_blob("mirror/big", sha256_digest(big))
    assert r.status_code == 200 and r.content == big
    if files:
        leftovers = [f for d in registry.data.rglob("uploads") if d.is_dir() for f in d.iterdir()]
        assert leftovers == [], leftovers


def quota_list(registry, login) -> dict:
    return {q["name"]: q for q in json.loads(berth(registry, login, "quota", "list", "-o", "json").stdout)}


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_an_import_whose_referrers_pass_the_quota_stores_nothing(registry, login, berth_source):
    """The referrers ``--include-referrers`` copies are in the image's quota total: an image that
    fits with a referrer that does not is refused before anything is stored (no blob, no
    manifest, no tag, no upload), not half-way; without its referrers the image is imported."""
    src = berth_source.api()
    layer = os.urandom(200_000)
    image = push_image(src, "lib/app", "v1", [layer])
    empty, sbom = b"{}", os.urandom(300_000)
    src.push_blob("lib/app", empty)
    src.push_blob("lib/app", sbom)
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sbom.layer", "digest": sha256_digest(sbom), "size": len(sbom)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256_digest(image), "size": len(image)},
    }).encode()
    assert src.put_manifest("lib/app", sha256_digest(referrer), referrer).status_code == 201
    r = requests.post(f"{registry.base}/api/v1/quotas", auth=registry.creds, timeout=30,
                      json={"name": "mirrors", "prefix": "mirror/", "limitBytes": 400_000})
    assert r.status_code == 201, r.text
    user, password = berth_source.creds
    args = ["import", "--source", f"{berth_source.host}/lib/app:v1", "--image", "mirror/app:v1", "--plain-http",
            "--username", user, "--password-stdin", "-o", "json"]

    p = berth(registry, login, *args, "--include-referrers", input=password + "\n", check=False)
    assert p.returncode != 0 and b"mirrors" in p.stderr + p.stdout, (p.stdout, p.stderr)
    assert registry.api().get_blob("mirror/app", sha256_digest(layer)).status_code == 404
    assert manifest_of(registry, "mirror/app", sha256_digest(image)).status_code == 404
    assert manifest_of(registry, "mirror/app", "v1").status_code == 404
    assert [f for d in registry.data.rglob("uploads") if d.is_dir() for f in d.iterdir()] == []
    assert quota_list(registry, login)["mirrors"]["usedBytes"] == 0

    job = json.loads(berth(registry, login, *args, input=password + "\n").stdout)
    assert job["state"] == "succeeded" and job["digest"] == sha256_digest(image), job
    assert registry.api().get_blob("mirror/app", sha256_digest(sbom)).status_code == 404
    assert 200_000 < quota_list(registry, login)["mirrors"]["usedBytes"] < 400_000


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_kept_partial_blobs_are_shown_and_count_against_the_quota(registry, login, reference_source):
    """A failed import's partial blob (kept for a re-run) is shown under the quota that covers it
    (``berth quota list``'s ``partialBytes``) and counts as used: another import into the same
    namespace that would fit without it is refused, while the re-run that resumes it (its own
    partial copy, counted once) completes and leaves nothing partial."""
    src = Api(reference_source.host, auth=reference_source.creds)
    big = os.urandom(3 * 1024 * 1024)
    manifest = push_image(src, "lib/big", "v1", [big, b"a small layer"])
    proxy = DroppingProxy(reference_source.host, sha256_digest(big), cut=1024 * 1024)
    proxy.dropping = True
    user, password = reference_source.creds
    args = ["import", "--source", f"{proxy.host}/lib/big:v1", "--image", "mirror/big:v1", "--plain-http",
            "--username", user, "--password-stdin", "-o", "json"]
    try:
        p = berth(registry, login, *args, input=password + "\n", check=False)
        assert p.returncode != 0, (p.stdout, p.stderr)
        # Room for the whole image of the re-run; another image is made to fit in that room
        # by itself, with half the kept partial bytes to spare, but not beside them.
        limit = 3_200_000
        r = requests.post(f"{registry.base}/api/v1/quotas", auth=registry.creds, timeout=30,
                          json={"name": "mirrors", "prefix": "mirror/", "limitBytes": limit})
        assert r.status_code == 201, r.text
        shown = quota_list(registry, login)["mirrors"]
        partial = shown["partialBytes"]
        assert 4096 < partial <= 1024 * 1024, shown
        other = os.urandom(limit - shown["usedBytes"] - 1024 - partial // 2)
        push_image(src, "lib/other", "v1", [other])
        table = berth(registry, login, "quota", "list").stdout.decode()
        assert table.splitlines()[0].split()[-1] == "PARTIAL", table

        p = berth(registry, login, "import", "--source", f"{reference_source.host}/lib/other:v1", "--image", "mirror/other:v1",
                  "--plain-http", "--username", user, "--password-stdin", input=password + "\n", check=False)
        assert p.returncode != 0 and b"mirrors" in p.stderr, (p.stdout, p.stderr)
        assert registry.api().get_blob("mirror/other", sha256_digest(other)).status_code == 404

        proxy.dropping = False
        job = json.loads(berth(registry, login, *args, input=password + "\n").stdout)
    finally:
        proxy.stop()
    assert job["state"] == "succeeded" and job["digest"] == sha256_digest(manifest) and job.get("blobResumes") == 1, job
    shown = quota_list(registry, login)["mirrors"]
    assert shown["partialBytes"] == 0 and shown["usedBytes"] > len(big), shown


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW=LOOPBACK)
def test_a_forced_import_does_not_cancel_the_blob_another_import_is_copying(registry, login, reference_source):
    """While one import streams a large blob (its source pauses mid-blob), a ``--force`` import of
    the same image into the same repository waits for it instead of failing or cancelling its
    partial copy (images sharing a layer, imported at once); once the source goes on, both
    complete, with the whole blob and no upload session left behind."""
    import subprocess
    import threading

    src = Api(reference_source.host, auth=reference_source.creds)
    big = os.urandom(3 * 1024 * 1024)
    manifest = push_image(src, "lib/big", "v1", [big])
    proxy = DroppingProxy(reference_source.host, sha256_digest(big), cut=1024 * 1024)
    proxy.hold = threading.Event()
    user, password = reference_source.creds
    forced = None
    try:
        r = requests.post(f"{registry.base}/api/v1/imports", auth=registry.creds, timeout=30, json={
            "source": f"{proxy.host}/lib/big:v1", "image": "mirror/big:v1", "plainHTTP": True,
            "username": user, "password": password})
        assert r.status_code == 202, r.text
        first = r.json()["id"]

        def job() -> dict:
            return requests.get(f"{registry.base}/api/v1/imports/{first}", auth=registry.creds, timeout=30).json()

        deadline = time.monotonic() + 60
        while job().get("bytesCopied", 0) < 512 * 1024:
            assert time.monotonic() < deadline and job()["state"] == "running", job()
            time.sleep(0.1)
        forced = berth_popen(registry, login, "import", "--source", f"{proxy.host}/lib/big:v1", "--image", "mirror/big:v1",
                             "--plain-http", "--username", user, "--password-stdin", "--force")
        forced.stdin.write((password + "\n").encode())
        forced.stdin.close()
        forced.stdin = None   # closed: communicate() below only reads
        # It waits for the first: still running a few seconds on, and so is the first.
        time.sleep(3)
        assert forced.poll() is None, b"".join(forced.communicate(timeout=30)).decode(errors="replace")
        assert job()["state"] == "running", job()
    finally:
        proxy.hold.set()
    try:
        deadline = time.monotonic() + 120
        while job()["state"] == "running":
            assert time.monotonic() < deadline, job()
            time.sleep(0.2)
        out, err = forced.communicate(timeout=120)
    finally:
        if forced is not None and forced.poll() is None:
            forced.kill()
        proxy.stop()
    said = (out + err).decode()
    assert forced.returncode == 0, said
    done = job()
    assert done["state"] == "succeeded" and done["digest"] == sha256_digest(manifest), done
    r = registry.api().get_blob("mirror/big", sha256_digest(big))
    assert r.status_code == 200 and r.content == big
    assert [f for d in registry.data.rglob("uploads") if d.is_dir() for f in d.iterdir()] == []
