"""Authentication against Berth with real clients and raw HTTP.

Berth denies anonymous access. The ``registry`` fixture bootstraps the
identity ``owner`` with a random password (``registry.creds``). Every test
gets a fresh server, so failed logins of one test never count against
another (the rate limit on failed logins is kept in memory per process).

The reference registry runs without auth, so the whole module is
``berth_only``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest
import requests

from helpers import (
    Api, OCI_MANIFEST, layout_blob, layout_descriptor, oci_error_codes, sha256_digest,
    skopeo, umoci_image,
)
from test_buildah_podman import Containers
from test_oras import _push_files, oras_client

pytestmark = pytest.mark.berth_only

AUTH_ERROR = re.compile(r"unauthori[sz]ed|authenticat|invalid username/password", re.IGNORECASE)


def parse_challenge(value: str) -> Tuple[str, Dict[str, str]]:
    """``Bearer realm="..",service="..",scope=".."`` -> ("bearer", {...})."""
    assert value, "missing WWW-Authenticate"
    scheme, _, rest = value.strip().partition(" ")
    params = dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', rest))
    return scheme.lower(), params


def bearer_api(host: str, token: str) -> Api:
    api = Api(host)
    api.s.headers["Authorization"] = f"Bearer {token}"
    return api


def fetch_token(registry, scope: str, auth=None) -> requests.Response:
    """GET /oauth2/token (Docker token protocol) for ``scope``, with Basic
    credentials (the owner's unless ``auth`` is given)."""
    return requests.get(f"{registry.base}/oauth2/token",
                        params={"service": registry.host, "scope": scope},
                        auth=auth or registry.creds, timeout=30)


def post_token(registry, **form) -> requests.Response:
    return requests.post(f"{registry.base}/oauth2/token", data=form, timeout=30)


def small_manifest(api: Api, name: str, tag: str, note: str) -> Tuple[str, bytes, str, bytes]:
    """Push a config + one layer + manifest with ``api``; returns
    (layer digest, layer bytes, manifest digest, manifest bytes)."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(2048) + note.encode()
    cfg_digest = api.push_blob(name, config)
    layer_digest = api.push_blob(name, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
        "annotations": {"note": note},
    }).encode()
    r = api.put_manifest(name, tag, manifest)
    assert r.status_code == 201, (r.status_code, r.headers, r.text)
    assert r.headers.get("Docker-Content-Digest") == sha256_digest(manifest)
    return layer_digest, layer, sha256_digest(manifest), manifest


def assert_insufficient_scope(r: requests.Response, registry, scope: str) -> None:
    assert r.status_code == 401, (r.status_code, r.headers, r.text)
    scheme, params = parse_challenge(r.headers.get("WWW-Authenticate"))
    assert scheme == "bearer", r.headers.get("WWW-Authenticate")
    assert params.get("error") == "insufficient_scope", r.headers.get("WWW-Authenticate")
    assert params.get("scope") == scope, r.headers.get("WWW-Authenticate")
    assert params.get("realm") == f"{registry.base}/oauth2/token"
    assert "UNAUTHORIZED" in oci_error_codes(r), r.text


# ---------------------------------------------------------------------------
# 1. skopeo: nothing without credentials, everything with them
# ---------------------------------------------------------------------------

def test_skopeo_requires_credentials(registry, tmp_path):
    host, creds = registry.host, registry.creds
    layout = tmp_path / "layout"
    digest = umoci_image(layout, "v1", [{"etc/auth.txt": b"auth test\n"}], workdir=tmp_path)
    ref = f"docker://{host}/auth/skopeo:v1"

    # anonymous push is refused
    p = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref, check=False)
    assert p.returncode != 0, "anonymous push succeeded"
    assert AUTH_ERROR.search(p.stderr.decode()), p.stderr.decode()
    assert registry.api().get_manifest("auth/skopeo", "v1").status_code == 404

    # with the owner's credentials it works
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref, creds=creds)
    assert registry.api().get_manifest("auth/skopeo", "v1").status_code == 200

    # anonymous reads are refused too, even though the image exists
    for args in (("list-tags", "--tls-verify=false", f"docker://{host}/auth/skopeo"),
                 ("inspect", "--tls-verify=false", "--raw", ref),
                 ("inspect", "--tls-verify=false", ref),
                 ("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'anon-out'}:x")):
        p = skopeo(*args, check=False)
        assert p.returncode != 0, f"anonymous skopeo {args[0]} succeeded"
        assert AUTH_ERROR.search(p.stderr.decode()), (args, p.stderr.decode())
    assert not (tmp_path / "anon-out" / "index.json").exists() or \
        json.loads((tmp_path / "anon-out" / "index.json").read_text())["manifests"] == []

    # ... and work with credentials
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host}/auth/skopeo",
                             creds=creds).stdout)
    assert tags["Tags"] == ["v1"]
    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref, creds=creds).stdout
    assert sha256_digest(raw) == digest and raw == layout_blob(layout, digest)
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref, creds=creds).stdout)
    assert info["Digest"] == digest
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:v1", creds=creds)
    assert layout_descriptor(out, "v1")["digest"] == digest

    # a wrong password is refused
    p = skopeo("list-tags", "--tls-verify=false", f"docker://{host}/auth/skopeo",
               creds=(creds[0], creds[1] + "-wrong"), check=False)
    assert p.returncode != 0, "wrong password accepted"
    assert AUTH_ERROR.search(p.stderr.decode()), p.stderr.decode()
    p = skopeo("inspect", "--tls-verify=false", "--raw", ref,
               creds=("nobody", creds[1]), check=False)
    assert p.returncode != 0, "unknown user accepted"
    assert AUTH_ERROR.search(p.stderr.decode()), p.stderr.decode()


# ---------------------------------------------------------------------------
# 2. raw HTTP: challenge, wrong password, token endpoint, scopes
# ---------------------------------------------------------------------------

def test_bearer_token_flow_and_scopes(registry):
    host, creds = registry.host, registry.creds
    base = registry.base

    # anonymous: 401 with a Bearer challenge naming the token service
    r = requests.get(f"{base}/v2/", timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert "UNAUTHORIZED" in oci_error_codes(r), r.text
    scheme, challenge = parse_challenge(r.headers.get("WWW-Authenticate"))
    assert scheme == "bearer"
    assert challenge["realm"] == f"http://{host}/oauth2/token"
    assert challenge["service"] == host
    realm, service = challenge["realm"], challenge["service"]

    # Basic credentials directly on /v2/: right ones pass, wrong ones don't
    assert requests.get(f"{base}/v2/", auth=creds, timeout=30).status_code == 200
    r = requests.get(f"{base}/v2/", auth=(creds[0], "not-the-password"), timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert "UNAUTHORIZED" in oci_error_codes(r)
    r = requests.get(f"{base}/v2/x/y/tags/list", auth=("nobody", creds[1]), timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)

    # the token endpoint refuses a wrong password and anonymous requests
    scope = "repository:x/y:pull,push"
    r = requests.get(realm, params={"service": service, "scope": scope},
                     auth=(creds[0], "not-the-password"), timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert "token" not in r.json() and "access_token" not in r.json(), r.text
    r = requests.get(realm, params={"service": service, "scope": scope}, timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)

    # a pull,push token for x/y
    r = requests.get(realm, params={"service": service, "scope": scope}, auth=creds, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    token = body["token"]
    assert token and body["access_token"] == token
    assert body["expires_in"] == 300
    assert token.count(".") == 2, "expected a JWT"

    # push a blob + manifest and pull them back with the Bearer token only
    api = bearer_api(host, token)
    assert api.req("GET", "/v2/").status_code == 200
    layer_digest, layer, mdigest, manifest = small_manifest(api, "x/y", "v1", "bearer")
    g = api.get_manifest("x/y", "v1")
    assert g.status_code == 200 and g.content == manifest
    assert g.headers.get("Docker-Content-Digest") == mdigest
    b = api.get_blob("x/y", layer_digest)
    assert b.status_code == 200 and b.content == layer
    t = api.req("GET", "/v2/x/y/tags/list")
    assert t.status_code == 200 and t.json()["tags"] == ["v1"]

    # a token that was tampered with is refused
    head, payload, sig = token.split(".")
    forged = ".".join([head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    r = bearer_api(host, forged).get_manifest("x/y", "v1")
    assert r.status_code == 401, (r.status_code, r.text)
    r = bearer_api(host, "not-a-token").get_manifest("x/y", "v1")
    assert r.status_code == 401, (r.status_code, r.text)

    # pull-only token: pulls work, starting an upload is insufficient_scope
    r = fetch_token(registry, "repository:x/y:pull")
    assert r.status_code == 200, (r.status_code, r.text)
    pull_api = bearer_api(host, r.json()["token"])
    g = pull_api.get_manifest("x/y", "v1")
    assert g.status_code == 200 and g.content == manifest
    assert pull_api.get_blob("x/y", layer_digest).content == layer
    r = pull_api.req("POST", "/v2/x/y/blobs/uploads/", headers={"Content-Length": "0"})
    assert_insufficient_scope(r, registry, "repository:x/y:pull,push")
    r = pull_api.put_manifest("x/y", "v2", manifest)
    assert_insufficient_scope(r, registry, "repository:x/y:pull,push")
    assert api.get_manifest("x/y", "v2").status_code == 404, "pull-only token wrote a tag"

    # a token for x/y does not reach another repository
    owner = registry.api()
    small_manifest(owner, "other/repo", "t", "other")
    assert owner.req("GET", "/v2/other/repo/tags/list").status_code == 200
    r = api.req("GET", "/v2/other/repo/tags/list")
    assert_insufficient_scope(r, registry, "repository:other/repo:pull")
    r = api.get_manifest("other/repo", "t")
    assert_insufficient_scope(r, registry, "repository:other/repo:pull")
    r = api.req("POST", "/v2/other/repo/blobs/uploads/", headers={"Content-Length": "0"})
    assert_insufficient_scope(r, registry, "repository:other/repo:pull,push")


# ---------------------------------------------------------------------------
# 3. POST /oauth2/token: password grant with a refresh token, refresh grant
# ---------------------------------------------------------------------------

def test_refresh_token_grant(registry):
    host, creds = registry.host, registry.creds
    owner = registry.api()
    layer_digest, layer, mdigest, manifest = small_manifest(owner, "x/y", "v1", "refresh")

    # wrong password: no token
    r = post_token(registry, grant_type="password", username=creds[0], password="wrong",
                   service=host, scope="repository:x/y:pull,push", access_type="offline")
    assert r.status_code == 401, (r.status_code, r.text)
    assert "refresh_token" not in r.json() and "access_token" not in r.json(), r.text

    r = post_token(registry, grant_type="password", username=creds[0], password=creds[1],
                   service=host, scope="repository:x/y:pull,push", access_type="offline")
    assert r.status_code == 200, (r.status_code, r.text)
    first = r.json()
    refresh = first.get("refresh_token")
    assert refresh, first
    assert first["access_token"] and first["expires_in"] > 0

    # without access_type=offline there is no refresh token
    r = post_token(registry, grant_type="password", username=creds[0], password=creds[1],
                   service=host, scope="repository:x/y:pull")
    assert r.status_code == 200, (r.status_code, r.text)
    assert not r.json().get("refresh_token"), r.json()

    # refresh grant -> a new access token that works
    r = post_token(registry, grant_type="refresh_token", refresh_token=refresh,
                   service=host, scope="repository:x/y:pull,push")
    assert r.status_code == 200, (r.status_code, r.text)
    second = r.json()
    new_token = second.get("access_token")
    assert new_token and new_token != first["access_token"]
    api = bearer_api(host, new_token)
    g = api.get_manifest("x/y", "v1")
    assert g.status_code == 200 and g.content == manifest
    assert api.get_blob("x/y", layer_digest).content == layer
    # pull,push was granted: a push works too
    small_manifest(api, "x/y", "v2", "pushed with a refreshed token")
    assert owner.get_manifest("x/y", "v2").status_code == 200

    # the refreshed token carries only the scope asked for
    r = post_token(registry, grant_type="refresh_token", refresh_token=refresh,
                   service=host, scope="repository:x/y:pull")
    assert r.status_code == 200, (r.status_code, r.text)
    pull_only = bearer_api(host, r.json()["access_token"])
    assert pull_only.get_manifest("x/y", "v1").status_code == 200
    r = pull_only.req("POST", "/v2/x/y/blobs/uploads/", headers={"Content-Length": "0"})
    assert_insufficient_scope(r, registry, "repository:x/y:pull,push")

    # neither an access token nor garbage is a refresh token
    for bogus in (first["access_token"], "garbage", refresh[:-6] + "AAAAAA"):
        r = post_token(registry, grant_type="refresh_token", refresh_token=bogus,
                       service=host, scope="repository:x/y:pull")
        assert r.status_code == 401, (bogus[:20], r.status_code, r.text)
    # an unknown grant type is a client error
    r = post_token(registry, grant_type="client_credentials", service=host)
    assert r.status_code == 400, (r.status_code, r.text)


@pytest.mark.server_env(BERTH_SERVICE_NAME="registry.test")
def test_tokens_are_for_the_configured_service_not_the_host_header(registry, tmp_path):
    """The audience of every token (and the service of challenges) is the configured service
    name; the Host header only decides the realm URL, so clients reaching 127.0.0.1:PORT work."""
    base, host, creds = registry.base, registry.host, registry.creds
    r = requests.get(f"{base}/v2/", headers={"Host": "other.example"}, timeout=30)
    _, challenge = parse_challenge(r.headers.get("WWW-Authenticate"))
    assert challenge["service"] == "registry.test", challenge
    assert challenge["realm"] == "http://other.example/oauth2/token", challenge
    _, challenge = parse_challenge(requests.get(f"{base}/v2/", timeout=30).headers.get("WWW-Authenticate"))
    assert challenge == {"realm": f"http://{host}/oauth2/token", "service": "registry.test"}, challenge

    # a token asked for the name in the Host header is still only for the configured service
    r = requests.get(f"{base}/oauth2/token", params={"service": "other.example", "scope": "repository:x/y:pull"},
                     auth=creds, headers={"Host": "other.example"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    payload = r.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] in ("registry.test", ["registry.test"]), claims

    # a real client follows the challenge: skopeo through the token service
    layout = tmp_path / "layout"
    digest = umoci_image(layout, "v1", [{"etc/svc.txt": b"service name\n"}], workdir=tmp_path)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/svc/app:v1", creds=creds)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/svc/app:v1", creds=creds).stdout)
    assert info["Digest"] == digest


# ---------------------------------------------------------------------------
# 4. podman login
# ---------------------------------------------------------------------------

def test_podman_login(registry, tmp_path):
    host, creds = registry.host, registry.creds
    ctr = Containers(tmp_path, creds)
    try:
        p = ctr.podman("login", "--tls-verify=false", "-u", creds[0], "--password-stdin", host,
                       input=(creds[1] + "-wrong").encode(), check=False)
        assert p.returncode != 0, "podman login accepted a wrong password"
        assert AUTH_ERROR.search(p.stderr.decode()), p.stderr.decode()
        assert host not in json.loads(ctr.auth_file.read_text()).get("auths", {})
        p = ctr.podman("login", "--get-login", host, check=False)
        assert p.returncode != 0, p.stdout

        p = ctr.podman("login", "--tls-verify=false", "-u", creds[0], "--password-stdin", host,
                       input=creds[1].encode())
        assert b"Login Succeeded" in p.stdout, p.stdout
        auths = json.loads(ctr.auth_file.read_text())["auths"]
        assert base64.b64decode(auths[host]["auth"]).decode() == f"{creds[0]}:{creds[1]}"
        assert ctr.podman("login", "--get-login", host).stdout.decode().strip() == creds[0]

        # the stored login is what podman then uses: push a scratch image
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "f").write_bytes(b"logged in\n")
        (ctx / "Containerfile").write_text("FROM scratch\nCOPY f /f\n")
        image = f"{host}/auth/podman:1"
        ctr.podman("build", "--isolation", "chroot", "--signature-policy", str(ctr.policy),
                   "-f", str(ctx / "Containerfile"), "-t", image, str(ctx))
        ctr.podman("push", "--tls-verify=false", "--signature-policy", str(ctr.policy), image)
        assert registry.api().get_manifest("auth/podman", "1").status_code == 200

        ctr.podman("logout", host)
        assert host not in json.loads(ctr.auth_file.read_text()).get("auths", {})
        p = ctr.podman("push", "--tls-verify=false", "--signature-policy", str(ctr.policy),
                       image, f"docker://{host}/auth/podman:2", check=False)
        assert p.returncode != 0, "push after logout succeeded"
        assert AUTH_ERROR.search(p.stderr.decode()), p.stderr.decode()
        assert registry.api().get_manifest("auth/podman", "2").status_code == 404
    finally:
        ctr.cleanup()


# ---------------------------------------------------------------------------
# 5. oras-py: the Bearer challenge / token flow for pulls
# ---------------------------------------------------------------------------

def test_oras_token_flow_pull(registry, tmp_path):
    host, creds = registry.host, registry.creds
    src = tmp_path / "src"
    src.mkdir()
    (src / "doc.txt").write_bytes(b"pulled through a bearer token\n")
    pusher = oras_client(host, creds, auth_backend="basic")
    resp = _push_files(pusher, f"{host}/auth/oras:v1", src, ["doc.txt"])
    assert resp.status_code == 201

    # token backend with credentials: 401 challenge -> GET realm with Basic -> Bearer
    puller = oras_client(host, creds, auth_backend="token")
    files = puller.pull(target=f"{host}/auth/oras:v1", outdir=str(tmp_path / "out"))
    assert [Path(f).read_bytes() for f in files] == [b"pulled through a bearer token\n"]
    assert puller.auth.token, "oras-py did not obtain a bearer token"
    assert puller.get_tags(f"{host}/auth/oras") == ["v1"]

    # without credentials oras-py's anonymous-token request is refused, so it
    # has nothing to answer the challenge with (asked directly: a full
    # ``pull`` would retry with back-off for minutes before giving up)
    anon = oras_client(host, None, auth_backend="token")
    r = anon.session.get(f"{registry.base}/v2/auth/oras/manifests/v1", timeout=30)
    assert r.status_code == 401
    headers, changed = anon.auth.authenticate_request(r, {})
    assert not changed and "Authorization" not in headers, headers
    assert anon.auth.token is None


# ---------------------------------------------------------------------------
# 6. rate limiting of failed logins (last: it locks the user out)
# ---------------------------------------------------------------------------

def test_failed_logins_are_rate_limited(registry):
    host, creds = registry.host, registry.creds
    url = f"{registry.base}/v2/"
    assert requests.get(url, auth=creds, timeout=30).status_code == 200
    statuses = []
    for i in range(11):
        r = requests.get(url, auth=(creds[0], f"wrong-{i}"), timeout=30)
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10, statuses
    assert statuses[10] == 429, statuses
    retry_after = r.headers.get("Retry-After")
    assert retry_after is not None, dict(r.headers)
    assert retry_after.isdigit() and 0 < int(retry_after) <= 300, retry_after
    assert "TOOMANYREQUESTS" in oci_error_codes(r), r.text

    # the token endpoint is limited for that user as well
    r = requests.get(f"{registry.base}/oauth2/token",
                     params={"service": host, "scope": "repository:x/y:pull"},
                     auth=(creds[0], "wrong-again"), timeout=30)
    assert r.status_code == 429, (r.status_code, r.text)
    assert r.headers.get("Retry-After", "").isdigit(), dict(r.headers)
    r = post_token(registry, grant_type="password", username=creds[0], password="wrong-post",
                   service=host, scope="repository:x/y:pull")
    assert r.status_code == 429, (r.status_code, r.text)

    # the probes are unaffected
    assert requests.get(f"{registry.base}/healthz", timeout=10).status_code == 200


def test_garbage_refresh_tokens_lock_out_nobody(registry):
    """Refresh tokens all log in as one well-known user name: a dozen garbage ones must not lock
    out every refresh-token login (CLI logins, docker identity tokens) for the window."""
    host, creds = registry.host, registry.creds
    r = post_token(registry, grant_type="password", username=creds[0], password=creds[1],
                   service=host, access_type="offline")
    assert r.status_code == 200, (r.status_code, r.text)
    refresh = r.json()["refresh_token"]
    for i in range(12):
        r = post_token(registry, grant_type="refresh_token", refresh_token=f"garbage-{i}", service=host)
        assert r.status_code == 401, (i, r.status_code, r.text)
    r = post_token(registry, grant_type="refresh_token", refresh_token=refresh, service=host,
                   scope="repository:x/y:pull")
    assert r.status_code == 200, (r.status_code, r.text)
    r = requests.get(f"{registry.base}/v2/", auth=("00000000-0000-0000-0000-000000000000", refresh), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)


def test_docker_login_stores_an_identity_token_not_the_password(registry, tmp_path):
    """`docker login` (the CLI logs in by itself when no daemon runs) gets a refresh token from
    the token service and keeps that, not the password."""
    config = tmp_path / "docker"
    config.mkdir()
    env = dict(os.environ, DOCKER_CONFIG=str(config))
    import subprocess
    bad = subprocess.run(["docker", "login", registry.host, "-u", registry.username, "--password-stdin"],
                         input=b"wrong-password", capture_output=True, env=env, timeout=60)
    assert bad.returncode != 0
    assert b"unauthorized" in (bad.stderr + bad.stdout).lower()
    ok = subprocess.run(["docker", "login", registry.host, "-u", registry.username, "--password-stdin"],
                        input=registry.password.encode(), capture_output=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert b"Login Succeeded" in ok.stdout
    stored = (config / "config.json").read_text()
    assert registry.password not in stored
    entry = json.loads(stored)["auths"][registry.host]
    refresh = entry["identitytoken"]
    # the stored identity token works as a credential for the registry
    r = requests.get(f"{registry.base}/v2/", auth=("00000000-0000-0000-0000-000000000000", refresh), timeout=30)
    assert r.status_code == 200
