"""Shared helpers for the Berth interop suite.

Everything here drives real tools (umoci, skopeo, buildah, podman) or raw
HTTP. A missing tool is a hard failure, never a skip.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

ALL_MANIFEST_TYPES = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

# "berth" (default) or "reference" (Debian's CNCF docker-registry, used to
# validate the tests themselves)
TARGET = os.environ.get("INTEROP_TARGET", "berth").strip().lower()

REQUIRED_TOOLS = ("skopeo", "umoci", "buildah", "podman", "docker-registry", "jq")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"required tool {name!r} is not installed; run scripts/install-test-deps "
            "(interop tests are never skipped for a missing tool)"
        )
    return path


class CommandError(AssertionError):
    pass


def run(cmd: Sequence[str], *, timeout: float = 300, check: bool = True,
        env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
        input: Optional[bytes] = None) -> subprocess.CompletedProcess:
    """Run a command, capture output, and raise with full output on failure."""
    require_tool(cmd[0])
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=timeout, env=full_env, cwd=cwd, input=input,
    )
    if check and proc.returncode != 0:
        raise CommandError(
            f"command failed (rc={proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout.decode(errors='replace')[-6000:]}\n"
            f"--- stderr ---\n{proc.stderr.decode(errors='replace')[-6000:]}"
        )
    return proc


# --------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------

Creds = Optional[Tuple[str, str]]

# skopeo subcommands and the flags that carry registry credentials for them
_SKOPEO_CRED_FLAGS = {
    "copy": ("--src-creds", "--dest-creds"),
    "sync": ("--src-creds", "--dest-creds"),
    "inspect": ("--creds",),
    "list-tags": ("--creds",),
    "delete": ("--creds",),
}


def skopeo(*args: str, creds: Creds = None, check: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run skopeo. With ``creds=(user, password)`` the matching credential
    flags (``--creds`` or ``--src-creds``/``--dest-creds``) are added right
    after the subcommand; ``None`` (reference registry) adds nothing.

    ``REGISTRY_AUTH_FILE`` points at an empty file so that no credentials
    from the environment (auth.json, docker config) are ever used: only the
    ones passed here."""
    argv = list(args)
    if creds is not None:
        sub = next((i for i, a in enumerate(argv) if a in _SKOPEO_CRED_FLAGS), None)
        assert sub is not None, f"no credential flags known for skopeo {argv}"
        flags = [f"{flag}={creds[0]}:{creds[1]}" for flag in _SKOPEO_CRED_FLAGS[argv[sub]]]
        argv[sub + 1:sub + 1] = flags
    # --insecure-policy: do not depend on /etc/containers/policy.json
    return run(["skopeo", "--insecure-policy", *argv], check=check, timeout=timeout,
               env={"REGISTRY_AUTH_FILE": empty_auth_file()})


def skopeo_raw_manifest(ref: str, creds: Creds = None) -> bytes:
    return skopeo("inspect", "--tls-verify=false", "--raw", ref, creds=creds).stdout


_EMPTY_AUTH_FILE: Optional[str] = None


def empty_auth_file() -> str:
    """A containers-auth.json with no credentials (shared, read-only use)."""
    global _EMPTY_AUTH_FILE
    if _EMPTY_AUTH_FILE is None or not os.path.exists(_EMPTY_AUTH_FILE):
        fd, path = tempfile.mkstemp(prefix="berth-interop-noauth-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write('{"auths": {}}')
        _EMPTY_AUTH_FILE = path
        atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return _EMPTY_AUTH_FILE


def basic_auth_header(creds: Creds) -> str:
    """``Authorization: Basic ...\r\n`` for raw-socket requests ("" without
    credentials)."""
    if creds is None:
        return ""
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


# --------------------------------------------------------------------------
# OCI image layouts built with umoci
# --------------------------------------------------------------------------

def layout_index(layout: Path) -> dict:
    return json.loads((Path(layout) / "index.json").read_text())


def layout_descriptor(layout: Path, tag: str) -> dict:
    for desc in layout_index(layout)["manifests"]:
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return desc
    raise AssertionError(f"tag {tag!r} not found in {layout}/index.json")


def layout_blob(layout: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":", 1)
    return (Path(layout) / "blobs" / algo / hexpart).read_bytes()


def layout_write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = Path(layout) / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def umoci_image(layout: Path, tag: str, layers: List[Dict[str, bytes]], *,
                arch: str = "amd64", os_name: str = "linux",
                workdir: Optional[Path] = None) -> str:
    """Build image ``layout:tag`` with one layer per dict in ``layers``
    (each mapping a path inside the rootfs to its content).

    Returns the manifest digest recorded in index.json."""
    layout = Path(layout)
    workdir = Path(workdir or layout.parent)
    if not (layout / "index.json").exists():
        run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    bundle = workdir / f"bundle-{tag}"
    if bundle.exists():
        shutil.rmtree(bundle)
    run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle)])
    for files in layers:
        for rel, content in files.items():
            target = bundle / "rootfs" / rel.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        # repack creates a new layer with the delta and re-tags
        run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:{tag}", str(bundle)])
    run(["umoci", "config", "--image", f"{layout}:{tag}",
         "--architecture", arch, "--os", os_name,
         "--config.cmd", "/bin/true",
         "--config.label", f"org.berth.test={tag}"])
    shutil.rmtree(bundle)
    return layout_descriptor(layout, tag)["digest"]


def layout_add_index(layout: Path, tag: str, child_tags: Iterable[str]) -> str:
    """Create an OCI image index (multi-arch) in ``layout`` from existing
    child tags, using each child's config for the platform, and tag it."""
    layout = Path(layout)
    manifests = []
    for child in child_tags:
        desc = layout_descriptor(layout, child)
        manifest = json.loads(layout_blob(layout, desc["digest"]))
        config = json.loads(layout_blob(layout, manifest["config"]["digest"]))
        manifests.append({
            "mediaType": desc["mediaType"],
            "digest": desc["digest"],
            "size": desc["size"],
            "platform": {"architecture": config["architecture"], "os": config["os"]},
        })
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    data = json.dumps(index, indent=2).encode()
    digest = layout_write_blob(layout, data)
    idx = layout_index(layout)
    idx["manifests"].append({
        "mediaType": OCI_INDEX, "digest": digest, "size": len(data),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    (layout / "index.json").write_text(json.dumps(idx))
    return digest


# --------------------------------------------------------------------------
# raw HTTP helpers (requests)
# --------------------------------------------------------------------------

class Api:
    """Minimal OCI distribution client over requests, for raw-HTTP tests.

    ``auth=(user, password)`` sends HTTP Basic credentials with every request
    (Berth accepts them directly on ``/v2/``); ``None`` sends none."""

    def __init__(self, host: str, timeout: float = 30, auth: Creds = None):
        self.host = host
        self.base = f"http://{host}"
        self.s = requests.Session()
        # the session sends the credentials on every request, also to the
        # absolute upload Locations the server hands out
        self.s.auth = tuple(auth) if auth is not None else None
        self.timeout = timeout

    def url(self, path_or_location: str) -> str:
        if path_or_location.startswith("http://") or path_or_location.startswith("https://"):
            return path_or_location
        return self.base + path_or_location

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        return self.s.request(method, self.url(path), **kw)

    # blobs
    def head_blob(self, name: str, digest: str) -> requests.Response:
        return self.req("HEAD", f"/v2/{name}/blobs/{digest}")

    def get_blob(self, name: str, digest: str) -> requests.Response:
        # follow redirects for blob GET (a registry may redirect to storage)
        return self.req("GET", f"/v2/{name}/blobs/{digest}", allow_redirects=True)

    def start_upload(self, name: str) -> str:
        r = self.req("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
        assert r.status_code == 202, (r.status_code, r.headers, r.text)
        loc = r.headers.get("Location")
        assert loc, f"no Location in upload POST answer: {dict(r.headers)}"
        return loc

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256_digest(data)
        loc = self.start_upload(name)
        r = self.req("PUT", loc, params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.headers, r.text)
        return digest

    # manifests
    def put_manifest(self, name: str, ref: str, body: bytes,
                     media_type: str = OCI_MANIFEST) -> requests.Response:
        return self.req("PUT", f"/v2/{name}/manifests/{ref}", data=body,
                        headers={"Content-Type": media_type})

    def get_manifest(self, name: str, ref: str) -> requests.Response:
        return self.req("GET", f"/v2/{name}/manifests/{ref}",
                        headers={"Accept": ALL_MANIFEST_TYPES})


def with_query(location: str, **params: str) -> str:
    from urllib.parse import urlencode
    sep = "&" if "?" in location else "?"
    return location + sep + urlencode(params)


def oci_error_codes(resp: requests.Response) -> List[str]:
    try:
        return [e.get("code") for e in resp.json().get("errors", [])]
    except Exception:
        return []
