"""Nodes and clients without secrets (issue 17, item 3), through their real protocols.

* ``berth-credential-provider``: the kubelet's CredentialProviderRequest on stdin, the
  CredentialProviderResponse on stdout. A loopback OIDC issuer with a Kubernetes-like issuer path
  signs service-account-shaped tokens (``sub`` ``system:serviceaccount:NS:NAME``, a list ``aud``,
  the ``kubernetes.io`` claim); the registry has an identity with a federated credential for it.
  skopeo then pulls with exactly what the provider answered.
* ``docker-credential-berth``: skopeo finds it through ``credHelpers`` of its auth file and pulls
  with what it hands out; podman logs in through it (``podman login`` hands the password to the
  helper's ``store``, which keeps only a refresh token: no password in any auth file) and pulls and
  pushes with the tokens it refreshes; ``get``/``store``/``erase``/``list`` are driven directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import berth_bin, free_port
from helpers import skopeo
from oidc_issuer import OIDCIssuer
from test_buildah_podman import Containers
from test_cli import Cli, layout, push  # noqa: F401  (layout is a fixture)
from test_tls import tls_registry  # noqa: F401  (a fixture)

# The issuer listens on loopback, which Berth refuses to contact unless the operator allows it.
pytestmark = [pytest.mark.berth_only, pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")]

API = "credentialprovider.kubelet.k8s.io/v1"
SUBJECT = "system:serviceaccount:apps:puller"
REFRESH_USER = "00000000-0000-0000-0000-000000000000"
NOT_FOUND = "credentials not found in native keychain"


def tool(name: str) -> str:
    path = berth_bin().parent / name
    assert path.exists(), f"{path} not built (swift build builds every product)"
    return str(path)


def sa_token(issuer: OIDCIssuer, sub: str = SUBJECT, aud: str = "berth", lifetime: int = 600) -> str:
    ns, name = sub.split(":")[2:4] if sub.count(":") == 3 else ("x", "y")
    return issuer.token(sub, aud, lifetime=lifetime, extra={
        "aud": [aud],
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": "7d1c2c8e-0000-4000-8000-000000000001"},
                          "pod": {"name": "api-5d9c", "uid": "7d1c2c8e-0000-4000-8000-000000000002"}},
    })


def request(image: str, token: str | None = None, api: str = API) -> bytes:
    body = {"apiVersion": api, "kind": "CredentialProviderRequest", "image": image, "serviceAccountAnnotations": {}}
    if token is not None:
        body["serviceAccountToken"] = token
    return json.dumps(body).encode()


def provide(registry, body: bytes, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    full_env.update(env or {})
    return subprocess.run([tool("berth-credential-provider"), "--registry", registry.base, *args], input=body,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, timeout=60)


def go_seconds(duration: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s", duration)
    assert m, duration
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


@pytest.fixture
def cluster_issuer():
    issuer = OIDCIssuer(path="/clusters/prod")
    try:
        yield issuer
    finally:
        issuer.close()


@pytest.fixture
def owner(registry, tmp_path, layout):  # noqa: F811
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    push(registry, layout, "apps/api", registry.creds)
    return cli


@pytest.fixture
def puller(owner, cluster_issuer):
    owner("identity", "create", "--name", "k8s-puller", "--kind", "service-principal", "--no-password")
    owner("role", "assignment", "create", "--assignee", "k8s-puller", "--role", "Pull", "--scope", "apps/*")
    owner("identity", "federated-credential", "create", "--identity", "k8s-puller", "--name", "prod",
          "--issuer", cluster_issuer.url, "--subject", SUBJECT, "--audiences", "berth")
    return owner


# ---------------------------------------------------------------------------
# berth-credential-provider
# ---------------------------------------------------------------------------

def test_pod_token_becomes_credentials_skopeo_pulls_with(registry, puller, cluster_issuer, tmp_path):
    token = sa_token(cluster_issuer)
    p = provide(registry, request(f"{registry.host}/apps/api:v1", token))
    assert p.returncode == 0, p.stderr
    answer = json.loads(p.stdout)
    assert answer["apiVersion"] == API and answer["kind"] == "CredentialProviderResponse"
    assert answer["cacheKeyType"] == "Registry"
    assert list(answer["auth"]) == [registry.host]
    creds = answer["auth"][registry.host]
    assert creds["username"] == REFRESH_USER and creds["password"] != token
    # cached for less than the registry token lives (Berth's refresh tokens: 3 h)
    cached = go_seconds(answer["cacheDuration"])
    assert 0 < cached < 3 * 3600, answer["cacheDuration"]
    assert token not in p.stderr.decode() and creds["password"] not in p.stderr.decode()

    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/apps/api:v1", f"oci:{out}:v1",
           creds=(creds["username"], creds["password"]))
    assert (out / "index.json").exists()
    # the identity's role still decides: a pull-only credential cannot push
    denied = skopeo("copy", "--dest-tls-verify=false", f"oci:{out}:v1", f"docker://{registry.host}/apps/api:v2",
                    creds=(creds["username"], creds["password"]), check=False)
    assert denied.returncode != 0


def test_node_token_file_is_used_without_a_pod_token(registry, puller, cluster_issuer, tmp_path):
    token_file = tmp_path / "node-token"
    token_file.write_text(sa_token(cluster_issuer) + "\n")
    p = provide(registry, request(f"{registry.host}/apps/api:v1"), env={"BERTH_TOKEN_FILE": str(token_file)})
    assert p.returncode == 0, p.stderr
    creds = json.loads(p.stdout)["auth"][registry.host]
    skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/apps/api:v1",
           creds=(creds["username"], creds["password"]))
    # neither a pod token nor a token file: a clear failure
    none = provide(registry, request(f"{registry.host}/apps/api:v1"))
    assert none.returncode != 0 and b"no service-account token" in none.stderr and none.stdout == b""


@pytest.mark.parametrize("case", ["wrong-audience", "unknown-subject", "expired"])
def test_a_token_the_registry_does_not_trust_gets_a_clear_failure(registry, puller, cluster_issuer, case):
    token = {
        "wrong-audience": lambda: sa_token(cluster_issuer, aud="kubernetes"),
        "unknown-subject": lambda: sa_token(cluster_issuer, sub="system:serviceaccount:apps:intruder"),
        "expired": lambda: sa_token(cluster_issuer, lifetime=-300),
    }[case]()
    p = provide(registry, request(f"{registry.host}/apps/api:v1", token))
    err = p.stderr.decode()
    assert p.returncode != 0 and p.stdout == b""
    assert err.startswith("berth-credential-provider: error: ") and "refused the token" in err, err
    assert token not in err and token.split(".")[1] not in err


def test_another_registrys_image_gets_no_credentials(registry, puller, cluster_issuer):
    token = sa_token(cluster_issuer)
    for image in ("quay.io/apps/api:v1", "nginx", f"127.0.0.1:{free_port()}/apps/api:v1"):
        p = provide(registry, request(image, token))
        assert p.returncode == 0, p.stderr
        answer = json.loads(p.stdout)
        assert answer["auth"] == {} and answer["cacheDuration"] == "0s", answer
    # the token went nowhere: the registry never needed the issuer's keys to check it
    assert cluster_issuer.requests == 0


def test_requests_that_are_not_v1_requests_are_refused(registry):
    for body, expected in ((request(f"{registry.host}/a", "t", api="credentialprovider.kubelet.k8s.io/v1beta1"), b"speaks"),
                           (b'{"apiVersion":"%s","image":"a","image":"b"}' % API.encode(), b"duplicate key"),
                           (b"x" * (300 * 1024), b"larger than"),
                           (b" \n", b"no CredentialProviderRequest")):
        p = provide(registry, body)
        assert p.returncode != 0 and p.stdout == b"" and expected in p.stderr, p.stderr


def test_the_ca_file_is_what_a_tls_registry_is_trusted_by(tls_registry, tmp_path):  # noqa: F811
    host, cert, _ = tls_registry
    issuer = OIDCIssuer()
    try:
        body = request(f"{host}/apps/api:v1", sa_token(issuer))
    finally:
        issuer.close()

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        full_env.update(env or {})
        return subprocess.run([tool("berth-credential-provider"), "--registry", f"https://{host}", *args], input=body,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, timeout=60)

    # the registry's self-signed certificate is not trusted by default: nothing is sent
    untrusted = run()
    assert untrusted.returncode != 0 and b"cannot reach" in untrusted.stderr, untrusted.stderr
    # with it as the CA file the exchange reaches the registry (which knows no such issuer)
    trusted = run(env={"BERTH_CA_FILE": str(cert)})
    assert trusted.returncode != 0 and b"refused the token" in trusted.stderr, trusted.stderr
    missing = run("--ca-file", str(tmp_path / "none.pem"))
    assert missing.returncode != 0 and b"cannot read CA certificates" in missing.stderr, missing.stderr


@contextlib.contextmanager
def redirected_elsewhere(redirect: set[str], token_on_post: bool = False):
    """Two loopback servers: the first answers the methods in `redirect` with a 307 to the second,
    which records every request that reaches it as (method, Authorization, body). With
    `token_on_post` the first answers a POST with a token, as Berth's token endpoint does.
    Yields (first server's port, the recorded requests)."""
    import http.server
    import threading

    reached: list[tuple[str, str, bytes]] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def record(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reached.append((self.command, self.headers.get("Authorization") or "", body))
            answer = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = record

        def log_message(self, *args):
            pass

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class First(http.server.BaseHTTPRequestHandler):
        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command in redirect:
                self.send_response(307)
                self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.command == "POST" and token_on_post:
                body = json.dumps({"access_token": "the-management-token", "token": "the-management-token",
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), First)
    for server in (elsewhere, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield first.server_port, reached
    finally:
        for server in (elsewhere, first):
            server.shutdown()
            server.server_close()


def test_a_redirect_never_carries_a_secret_to_another_host(tmp_path):
    # A 307/308 keeps the method and the form: followed, it would post the pod's token (provider)
    # or the password (helper's store) to the host it names. Neither helper follows it.
    with redirected_elsewhere({"POST"}) as (port, reached):
        host = f"127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["XDG_CONFIG_HOME"] = str(tmp_path)
        p = subprocess.run([tool("berth-credential-provider"), "--registry", f"http://{host}"],
                           input=request(f"{host}/apps/api:1", "pod.sa.token"), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert p.returncode != 0 and p.stdout == b"" and b"pod.sa.token" not in p.stderr, (p.returncode, p.stderr)
        s = subprocess.run([tool("docker-credential-berth"), "store"], env=env, timeout=60,
                           input=json.dumps({"ServerURL": host, "Username": "ci", "Secret": "the-password"}).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert s.returncode == 1 and b"the-password" not in s.stdout + s.stderr, (s.stdout, s.stderr)
        # berth login shares the token client: its password stays home too.
        b = subprocess.run([str(berth_bin()), "login", f"http://{host}", "-u", "ci", "--password-stdin"], env=env, timeout=60,
                           input=b"the-password\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert b.returncode != 0 and b"the-password" not in b.stdout + b.stderr, (b.stdout, b.stderr)
        assert reached == [], reached


def test_a_management_call_never_follows_a_redirect_with_its_token():
    # `/api/v1` never redirects. Before the fix the CLI followed a 307 and printed another host's
    # answer as the registry's (AsyncHTTPClient dropped the bearer token on the way: the other host
    # saw an empty Authorization). The CLI's management client follows no redirect now.
    with redirected_elsewhere({"GET"}, token_on_post=True) as (port, reached):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(BERTH_REGISTRY=f"http://127.0.0.1:{port}", BERTH_USERNAME="ci", BERTH_PASSWORD="the-password")
        p = subprocess.run([str(berth_bin()), "identity", "list"], env=env, timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode != 0, (p.stdout, p.stderr)
        assert b"307" in p.stderr, p.stderr
        assert reached == [], reached


# ---------------------------------------------------------------------------
# docker-credential-berth
# ---------------------------------------------------------------------------

def helper(cli: Cli, command: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([tool("docker-credential-berth"), command], input=stdin.encode(), env=cli.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def config(cli: Cli) -> dict:
    return json.loads((cli.config_home / "berth" / "config.json").read_text())


def test_skopeo_pulls_through_cred_helpers(registry, owner, tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {}, "credHelpers": {registry.host: "berth"}}))
    env = dict(owner.env(), REGISTRY_AUTH_FILE=str(auth),
               PATH=f"{berth_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}")
    stored = config(owner)["logins"][registry.base]["refreshToken"]
    out = tmp_path / "pulled"
    p = subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                        f"docker://{registry.host}/apps/api:v1", f"oci:{out}:v1"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (out / "index.json").exists()
    # skopeo asked the helper: the login was refreshed (a new refresh token stored)
    assert config(owner)["logins"][registry.base]["refreshToken"] != stored
    # without the helper the same pull is anonymous and refused
    auth.write_text(json.dumps({"auths": {}}))
    p = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", "--raw",
                        f"docker://{registry.host}/apps/api:v1"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert p.returncode != 0


def test_podman_logs_in_pulls_and_pushes_through_cred_helpers(registry, owner, tmp_path):
    # podman's own auth file names the helper for this registry and holds nothing else; a fresh
    # berth configuration (no `berth login`): `podman login` is what signs in.
    (tmp_path / "podman").mkdir()
    ctr = Containers(tmp_path / "podman")
    ctr.auth_file.write_text(json.dumps({"auths": {}, "credHelpers": {registry.host: "berth"}}))
    cli = Cli(registry, tmp_path / "podman-xdg")
    ctr.env.update({k: v for k, v in cli.env().items() if k == "XDG_CONFIG_HOME" or k.startswith("BERTH_")})
    ctr.env["PATH"] = f"{berth_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}"
    berth_config = cli.config_home / "berth" / "config.json"
    try:
        assert not berth_config.exists()
        ctr.podman("login", "--tls-verify=false", "-u", registry.username, "--password-stdin", registry.host,
                   input=registry.password.encode())
        # the helper's `store` exchanged the password for a refresh token; no file holds the password
        auth = json.loads(ctr.auth_file.read_text())
        assert auth.get("auths", {}) == {} and auth["credHelpers"] == {registry.host: "berth"}, auth
        assert registry.password not in ctr.auth_file.read_text() and registry.password not in berth_config.read_text()
        first = config(cli)["logins"][registry.base]["refreshToken"]
        assert first and stat.S_IMODE(berth_config.stat().st_mode) == 0o600
        assert subprocess.run(["podman", "login", "--get-login", registry.host], env={**os.environ, **ctr.env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60).stdout.decode().strip() == REFRESH_USER

        # pull: podman asks the helper (`get`), which refreshes the token
        image = f"{registry.host}/apps/api:v1"
        ctr.podman("pull", "--tls-verify=false", "--signature-policy", str(ctr.policy), image)
        refreshed = config(cli)["logins"][registry.base]["refreshToken"]
        assert refreshed != first
        # push of the pulled image to another tag, with the next refreshed token
        pushed = f"{registry.host}/apps/api:from-podman"
        ctr.podman("tag", image, pushed)
        ctr.podman("push", "--tls-verify=false", "--signature-policy", str(ctr.policy), "--format", "oci", pushed)
        assert config(cli)["logins"][registry.base]["refreshToken"] not in (first, refreshed)
        skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{pushed}", creds=registry.creds)
        assert registry.password not in ctr.auth_file.read_text() and registry.password not in berth_config.read_text()

        # podman logout erases the helper's login; the next pull is anonymous and refused
        ctr.podman("logout", registry.host)
        assert registry.base not in json.loads(berth_config.read_text()).get("logins", {})
        ctr.podman("rmi", "--all", "--force")
        refused = ctr.podman("pull", "--tls-verify=false", "--signature-policy", str(ctr.policy), image, check=False)
        assert refused.returncode != 0
    finally:
        ctr.cleanup()


def test_get_store_erase_list(registry, owner, tmp_path):  # noqa: F811
    cli = Cli(registry, tmp_path / "helper-xdg")
    assert helper(cli, "list").stdout == b"{}"
    p = helper(cli, "get", registry.host)
    assert p.returncode == 1 and p.stdout.decode().strip() == NOT_FOUND

    # store: a password is exchanged for a refresh token at once; only that is written (0600)
    creds = {"ServerURL": registry.host, "Username": registry.username, "Secret": registry.password}
    p = helper(cli, "store", json.dumps(creds))
    assert p.returncode == 0, p.stdout
    path = cli.config_home / "berth" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert registry.password not in path.read_text()
    assert json.loads(helper(cli, "list").stdout) == {registry.base: registry.username}

    # get: a fresh token for the well-known refresh-token user, never the password; skopeo uses it
    p = helper(cli, "get", f"{registry.host}\n")
    assert p.returncode == 0, p.stdout
    got = json.loads(p.stdout)
    assert got["ServerURL"] == registry.host and got["Username"] == REFRESH_USER
    assert got["Secret"] != registry.password
    assert config(cli)["logins"][registry.base]["refreshToken"] == got["Secret"]
    skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/apps/api:v1",
           creds=(got["Username"], got["Secret"]))
    # the server URL may come with a scheme and a path
    assert helper(cli, "get", f"{registry.base}/v2/").returncode == 0

    # store of an identity token (docker's "<token>" user) keeps the login, named after its subject
    assert helper(cli, "store", json.dumps({"ServerURL": registry.base, "Username": "<token>",
                                            "Secret": got["Secret"]})).returncode == 0
    assert json.loads(helper(cli, "list").stdout) == {registry.base: registry.username}

    # a refused store writes nothing; a login the registry no longer honours says so
    bad = helper(cli, "store", json.dumps(dict(creds, ServerURL=f"127.0.0.1:{registry.port}", Secret="wrong")))
    assert bad.returncode == 1 and b"authentication failed" in bad.stdout, bad.stdout
    data = config(cli)
    data["logins"][registry.base]["refreshToken"] = "not-a-token"
    path.write_text(json.dumps(data))
    expired = helper(cli, "get", registry.host)
    assert expired.returncode == 1 and b"no longer valid" in expired.stdout and b"berth login" in expired.stdout

    # erase forgets it; a second erase and a get find nothing
    assert helper(cli, "erase", registry.host).returncode == 0
    assert helper(cli, "list").stdout == b"{}"
    for command in ("erase", "get"):
        p = helper(cli, command, registry.host)
        assert p.returncode == 1 and p.stdout.decode().strip() == NOT_FOUND
    # hostile input is refused with a message, never a crash
    for command, stdin in (("store", "x" * 100_000), ("store", '{"ServerURL":"a","Username":"b"}'),
                           ("get", "user:pw@host"), ("get", "")):
        p = helper(cli, command, stdin)
        assert p.returncode == 1 and p.stdout.strip(), (command, p.stdout)


# --- the README's kubelet configuration, checked as the kubelet checks it ----------------------
# The kubelet decodes CredentialProviderConfig strictly (unknown fields refused) and validates it
# (pkg/credentialprovider/plugin/config.go): the fields below are the ones it requires. A config
# the kubelet refuses means nodes that never start pulling, so the README's example is a test.

KUBELET_PROVIDER_FIELDS = {"name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env", "tokenAttributes"}
KUBELET_TOKEN_FIELDS = {"serviceAccountTokenAudience", "cacheType", "requireServiceAccount",
                        "requiredServiceAccountAnnotationKeys", "optionalServiceAccountAnnotationKeys"}


def readme_kubelet_config() -> dict:
    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    configs = [b for b in blocks if "kind: CredentialProviderConfig" in b]
    assert len(configs) == 1, "the README shows one kubelet credential provider configuration"
    return yaml.safe_load(configs[0])


def test_the_readmes_kubelet_configuration_is_one_the_kubelet_accepts():
    config = readme_kubelet_config()
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1" and config["kind"] == "CredentialProviderConfig"
    [provider] = config["providers"]
    assert set(provider) <= KUBELET_PROVIDER_FIELDS, set(provider) - KUBELET_PROVIDER_FIELDS
    # the executable's name, as `swift build` makes it
    assert provider["name"] == "berth-credential-provider" and Path(tool("berth-credential-provider")).name == provider["name"]
    assert provider["matchImages"] and all(isinstance(m, str) and m for m in provider["matchImages"])
    # a Go duration such as 10m or 1h30m (the response's cacheDuration is checked by go_seconds)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", provider["defaultCacheDuration"])
    assert m and any(m.groups()) and sum(int(g or 0) for g in m.groups()) > 0, provider["defaultCacheDuration"]
    # tokenAttributes are accepted only with the v1 request format
    assert provider["apiVersion"] == API
    attrs = provider["tokenAttributes"]
    assert set(attrs) <= KUBELET_TOKEN_FIELDS, set(attrs) - KUBELET_TOKEN_FIELDS
    assert isinstance(attrs["serviceAccountTokenAudience"], str) and attrs["serviceAccountTokenAudience"]
    assert attrs["cacheType"] in {"Token", "ServiceAccount"}          # required since Kubernetes 1.34
    assert isinstance(attrs["requireServiceAccount"], bool)           # required: the kubelet has no default
    # the provider accepts the arguments the README gives it
    args = provider.get("args", [])
    assert args[:1] == ["--registry"] and args[1].startswith("https://")


@pytest.fixture(scope="module")
def dockerd():
    """Debian's docker daemon on a socket of its own (vfs storage, no bridge or iptables: pulls
    and pushes only), for this module; docker treats 127.0.0.0/8 registries as plain HTTP."""
    import shutil
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="/tmp/dkd-"))
    socket = root / "d.sock"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(["/usr/sbin/dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                             "--storage-driver=vfs", "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
                             "--pidfile", str(root / "d.pid"), "-H", f"unix://{socket}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    host = f"unix://{socket}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "-H", host, "version"], capture_output=True, timeout=30).returncode == 0:
            break
        assert proc.poll() is None, (root / "dockerd.log").read_text(errors="replace")[-3000:]
        time.sleep(0.3)
    else:
        raise AssertionError("dockerd did not start:\n" + (root / "dockerd.log").read_text(errors="replace")[-3000:])
    yield host
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)


def test_docker_logs_in_pulls_and_pushes_through_cred_helpers(registry, owner, dockerd, tmp_path):
    """docker (the CLI and Debian's daemon) with only ``credHelpers`` in its config: ``docker login``
    hands the password to the helper's ``store`` (kept as a refresh token, in no file), pull and
    push go with tokens the helper refreshes, and ``docker logout`` erases the login."""
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "berth"}}))
    cli = Cli(registry, tmp_path / "docker-xdg")
    env = {**os.environ, **{k: v for k, v in cli.env().items() if k == "XDG_CONFIG_HOME" or k.startswith("BERTH_")},
           "DOCKER_CONFIG": str(docker_config), "DOCKER_HOST": dockerd,
           "PATH": f"{berth_bin().parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    berth_config = cli.config_home / "berth" / "config.json"

    def docker(*args, check=True, input=None):
        p = subprocess.run(["docker", *args], env=env, input=input, capture_output=True, timeout=300)
        if check:
            assert p.returncode == 0, (args, p.stdout.decode()[-2000:], p.stderr.decode()[-2000:])
        return p

    assert not berth_config.exists()
    docker("login", "-u", registry.username, "--password-stdin", registry.host, input=registry.password.encode())
    stored = (docker_config / "config.json").read_text()
    assert registry.password not in stored and json.loads(stored).get("auths", {}).get(registry.host, {}) == {}, stored
    assert registry.password not in berth_config.read_text()
    first = config(cli)["logins"][registry.base]["refreshToken"]
    assert first and stat.S_IMODE(berth_config.stat().st_mode) == 0o600

    image = f"{registry.host}/apps/api:v1"
    docker("pull", image)
    refreshed = config(cli)["logins"][registry.base]["refreshToken"]
    assert refreshed != first
    pushed = f"{registry.host}/apps/api:from-docker"
    docker("tag", image, pushed)
    docker("push", pushed)
    assert config(cli)["logins"][registry.base]["refreshToken"] not in (first, refreshed)
    skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{pushed}", creds=registry.creds)
    assert registry.password not in (docker_config / "config.json").read_text()

    docker("logout", registry.host)
    assert registry.base not in json.loads(berth_config.read_text()).get("logins", {})
    docker("rmi", "--force", image, pushed)
    refused = docker("pull", image, check=False)
    assert refused.returncode != 0
