"""The ``berth`` management CLI against a real ``berth serve``, checked with
real clients (skopeo, raw HTTP).

Every test gets a fresh server (the ``registry`` fixture) and its own
``XDG_CONFIG_HOME``; the CLI logs in as the bootstrap owner with
``--password-stdin`` and then manages the registry over its HTTP API only.
The images the tests pull and push are built with umoci and pushed as the
owner with skopeo.

The reference registry has no management API, so the module is
``berth_only``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import requests

from conftest import berth_bin
from helpers import ALL_MANIFEST_TYPES, layout_descriptor, sha256_digest, skopeo, umoci_image

pytestmark = pytest.mark.berth_only

DENIED = re.compile(r"denied", re.IGNORECASE)
AUTH_FAILED = re.compile(r"unauthori[sz]ed|authenticat|invalid username/password|denied", re.IGNORECASE)


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------

class Cli:
    """Runs ``$BERTH_BIN`` with a private ``XDG_CONFIG_HOME`` and none of the
    ``BERTH_*`` client variables of the outer environment."""

    def __init__(self, registry, config_home: Path):
        self.registry = registry
        self.config_home = config_home
        self.extra_env: Dict[str, str] = {}

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("BERTH_REGISTRY", "BERTH_USERNAME", "BERTH_PASSWORD")}
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True, input: Optional[str] = None,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        full_env = self.env()
        if env:
            full_env.update(env)
        proc = subprocess.run([str(berth_bin()), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              input=(input or "").encode(), env=full_env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"berth {' '.join(args)} failed (rc={proc.returncode})\n"
                f"--- stdout ---\n{proc.stdout.decode(errors='replace')}\n"
                f"--- stderr ---\n{proc.stderr.decode(errors='replace')}")
        return proc

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(*args, **kw)

    def json(self, *args: str):
        out = self.run(*args, "-o", "json").stdout.decode()
        return json.loads(out)

    def fails(self, *args: str, env: Optional[Dict[str, str]] = None) -> str:
        """Runs a command that must fail; returns its (one-line) error message."""
        proc = self.run(*args, check=False, env=env)
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode != 0, f"berth {' '.join(args)} succeeded:\n{proc.stdout.decode()}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one error line, got:\n{err}"
        return lines[0]

    def login(self, user: Optional[str] = None, password: Optional[str] = None) -> None:
        user = user or self.registry.username
        password = password or self.registry.password
        self.run("login", self.registry.base, "-u", user, "--password-stdin", input=password + "\n")


@pytest.fixture
def cli(registry, tmp_path) -> Cli:
    """A ``berth`` CLI logged in to the fresh registry as the owner."""
    c = Cli(registry, tmp_path / "xdg")
    c.login()
    return c


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """An OCI layout with one small image, tag ``v1``."""
    work = tmp_path_factory.mktemp("cli-image")
    path = work / "layout"
    umoci_image(path, "v1", [{"etc/cli-test.txt": b"berth cli interop\n"}], workdir=work)
    return path


def push(registry, layout: Path, repo: str, creds: Optional[Tuple[str, str]], tag: str = "v1",
         check: bool = True) -> subprocess.CompletedProcess:
    return skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                  f"docker://{registry.host}/{repo}:{tag}", creds=creds, check=check)


def inspect(registry, repo: str, creds: Optional[Tuple[str, str]], tag: str = "v1",
            check: bool = True) -> subprocess.CompletedProcess:
    return skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/{repo}:{tag}",
                  creds=creds, check=check)


def stderr(p: subprocess.CompletedProcess) -> str:
    return p.stderr.decode(errors="replace")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get_manifest(registry, repo: str, auth: Optional[Tuple[str, str]], forwarded_for: Optional[str] = None,
                 tag: str = "v1") -> requests.Response:
    headers = {"Accept": ALL_MANIFEST_TYPES}
    if auth:
        headers["Authorization"] = basic(*auth)
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return requests.get(f"{registry.base}/v2/{repo}/manifests/{tag}", headers=headers, timeout=30)


def oci_errors(r: requests.Response) -> List[dict]:
    try:
        return r.json().get("errors", [])
    except ValueError:
        return []


def make_token(cli: Cli, name: str, scope_map: str) -> Tuple[str, str]:
    created = cli.json("token", "create", "--name", name, "--scope-map", scope_map)
    p1, p2 = created["credentials"]["password1"], created["credentials"]["password2"]
    assert p1 and p2 and p1 != p2
    return p1, p2


# ---------------------------------------------------------------------------
# 0. login stores a refresh token, never the password
# ---------------------------------------------------------------------------

def test_login_config_file_and_env_credentials(registry, tmp_path):
    c = Cli(registry, tmp_path / "xdg")
    # no login yet: a clear error
    msg = c.fails("token", "list")
    assert "not logged in" in msg or "no registry" in msg, msg

    # a wrong password is refused and nothing is stored
    p = c.run("login", registry.base, "-u", "owner", "--password-stdin", input="wrong\n", check=False)
    assert p.returncode != 0 and "failed" in stderr(p), stderr(p)
    assert not (tmp_path / "xdg" / "berth" / "config.json").exists()

    c.login()
    cfg_dir = tmp_path / "xdg" / "berth"
    cfg = cfg_dir / "config.json"
    assert stat.S_IMODE(cfg_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    text = cfg.read_text()
    assert registry.password not in text
    data = json.loads(text)
    assert data["registry"] == registry.base
    assert data["logins"][registry.base]["username"] == "owner"
    assert data["logins"][registry.base]["refreshToken"].count(".") == 2  # a JWT

    # the stored login works; -p is accepted with a warning
    assert any(sm["name"] for sm in c.json("scope-map", "list"))
    p = c.run("login", registry.base, "-u", "owner", "-p", registry.password)
    assert "insecure" in stderr(p)
    assert registry.password not in cfg.read_text()

    # logout forgets it
    c("logout")
    assert "not logged in" in c.fails("identity", "list")

    # CI style: BERTH_REGISTRY + BERTH_USERNAME/BERTH_PASSWORD without a stored login
    env = {"BERTH_REGISTRY": registry.base, "BERTH_USERNAME": "owner", "BERTH_PASSWORD": registry.password}
    out = json.loads(c.run("identity", "list", "-o", "json", env=env).stdout)
    assert [i["name"] for i in out] == ["owner"]
    msg = c.fails("identity", "list", env={**env, "BERTH_PASSWORD": "nope"})
    assert "authentication failed" in msg, msg


# ---------------------------------------------------------------------------
# 1. a pull-only token on payments/*
# ---------------------------------------------------------------------------

def test_token_pull_only_scope_map(registry, cli, layout):
    owner = registry.creds
    push(registry, layout, "payments/api", owner)
    push(registry, layout, "billing/api", owner)

    m = cli.json("scope-map", "create", "--name", "payments-pull",
                 "--repository", "payments/*", "content/read", "metadata/read")
    assert m["entries"] == [{"repository": "payments/*", "actions": ["content/read", "metadata/read"]}]
    p1, _ = make_token(cli, "payments-reader", "payments-pull")
    token = ("payments-reader", p1)

    # push is refused
    p = push(registry, layout, "payments/new", token, check=False)
    assert p.returncode != 0, "push with a pull-only token succeeded"
    assert DENIED.search(stderr(p)), stderr(p)
    assert get_manifest(registry, "payments/new", owner).status_code == 404

    # pull inside payments/* works, outside is refused
    raw = inspect(registry, "payments/api", token).stdout
    assert sha256_digest(raw) == layout_descriptor(layout, "v1")["digest"]
    p = inspect(registry, "billing/api", token, check=False)
    assert p.returncode != 0, "pull outside the scope map succeeded"
    assert DENIED.search(stderr(p)), stderr(p)


# ---------------------------------------------------------------------------
# 2. wildcard and exact entries add up
# ---------------------------------------------------------------------------

def test_wildcard_and_exact_grants_add_up(registry, cli, layout):
    owner = registry.creds
    push(registry, layout, "apps/api", owner)
    m = cli.json("scope-map", "create", "--name", "apps",
                 "--repository", "apps/*", "content/read", "metadata/read",
                 "--repository", "apps/web", "content/write", "metadata/write")
    assert m["entries"] == [
        {"repository": "apps/*", "actions": ["content/read", "metadata/read"]},
        {"repository": "apps/web", "actions": ["content/write", "metadata/write"]},
    ]
    p1, _ = make_token(cli, "apps-ci", "apps")
    token = ("apps-ci", p1)

    push(registry, layout, "apps/web", token)
    assert get_manifest(registry, "apps/web", owner).status_code == 200
    p = push(registry, layout, "apps/api", token, tag="v2", check=False)
    assert p.returncode != 0, "push to apps/api (read-only there) succeeded"
    assert DENIED.search(stderr(p)), stderr(p)
    assert get_manifest(registry, "apps/api", owner, tag="v2").status_code == 404
    inspect(registry, "apps/api", token)
    inspect(registry, "apps/web", token)  # read comes from apps/*, write from apps/web

    # scope-map update: add/remove actions, checked by a real client again
    cli("scope-map", "update", "--name", "apps", "--remove-repository", "apps/web")
    shown = cli.json("scope-map", "show", "--name", "apps")
    assert shown["entries"] == [{"repository": "apps/*", "actions": ["content/read", "metadata/read"]}]
    p = push(registry, layout, "apps/web", token, tag="v3", check=False)
    assert p.returncode != 0 and DENIED.search(stderr(p)), stderr(p)
    cli("scope-map", "update", "--name", "apps", "--add-repository", "apps/api", "content/write", "metadata/write")
    push(registry, layout, "apps/api", token, tag="v3")


# ---------------------------------------------------------------------------
# 3. two passwords, retiring one, disabling the token
# ---------------------------------------------------------------------------

def test_token_two_passwords_and_disable(registry, cli, layout):
    push(registry, layout, "rot/app", registry.creds)
    cli("scope-map", "create", "--name", "rot", "--repository", "rot/*", "content/read", "metadata/read")
    p1, p2 = make_token(cli, "rotating", "rot")
    inspect(registry, "rot/app", ("rotating", p1))
    inspect(registry, "rot/app", ("rotating", p2))

    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    gen = cli.json("token", "credential", "generate", "--name", "rotating", "--password1", "--expiration", past)
    assert gen["username"] == "rotating" and gen["name"] == "password1" and gen["password"]
    new_p1 = gen["password"]

    p = inspect(registry, "rot/app", ("rotating", p1), check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "old password1 still works"
    p = inspect(registry, "rot/app", ("rotating", new_p1), check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "password1 with an expiry in the past works"
    inspect(registry, "rot/app", ("rotating", p2))

    shown = cli.json("token", "show", "--name", "rotating")
    exp = {p["name"]: p.get("expiry") for p in shown["passwords"]}
    assert exp["password1"] is not None and exp["password2"] is None
    assert p2 not in json.dumps(shown) and new_p1 not in json.dumps(shown)
    table = cli("token", "list").stdout.decode()
    assert "rotating" in table and "expired" in table

    # a fresh password1 (90 days) works next to password2 ...
    fresh = cli.json("token", "credential", "generate", "--name", "rotating", "--password1",
                     "--expiration-in-days", "90")["password"]
    inspect(registry, "rot/app", ("rotating", fresh))
    inspect(registry, "rot/app", ("rotating", p2))

    # ... and disabling the token refuses both at once
    cli("token", "update", "--name", "rotating", "--status", "disabled")
    assert cli.json("token", "show", "--name", "rotating")["status"] == "disabled"
    # (few attempts: failed logins are rate limited, 10 per address in 5 minutes)
    p = inspect(registry, "rot/app", ("rotating", p2), check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "a disabled token still works (password2)"
    r = get_manifest(registry, "rot/app", ("rotating", fresh))
    assert r.status_code == 401, ("a disabled token still works (password1)", r.status_code, r.text)
    failed = [a for a in cli.json("audit", "list", "--since", "1h")
              if a["action"] == "login" and a["outcome"] == "failed" and a["actor"] == "rotating"]
    assert len(failed) < 10, f"close to the failed-login rate limit: {len(failed)}"


# ---------------------------------------------------------------------------
# 4. the admin user
# ---------------------------------------------------------------------------

def test_admin_user(registry, cli, layout):
    push(registry, layout, "adm/app", registry.creds)
    assert cli.json("show")["adminUserEnabled"] is False
    gen = cli.json("credential", "generate", "--password1")
    assert gen["username"] == "berth" and gen["name"] == "password1"
    admin = ("berth", gen["password"])

    p = inspect(registry, "adm/app", admin, check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "disabled admin user accepted"

    settings = cli.json("update", "--admin-enabled", "true")
    assert settings["adminUserEnabled"] is True
    inspect(registry, "adm/app", admin)
    push(registry, layout, "adm/other", admin)

    kv = cli("show").stdout.decode()
    assert re.search(r"^admin-enabled\s+true$", kv, re.M), kv
    cli("update", "--admin-enabled", "false")
    p = inspect(registry, "adm/app", admin, check=False)
    assert p.returncode != 0, "admin user still works after being disabled"


# ---------------------------------------------------------------------------
# 5. anonymous pull
# ---------------------------------------------------------------------------

def test_anonymous_pull(registry, cli, layout):
    push(registry, layout, "pub/app", registry.creds)
    p = inspect(registry, "pub/app", None, check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "anonymous pull allowed by default"

    assert cli.json("update", "--anonymous-pull-enabled", "true")["anonymousPullEnabled"] is True
    raw = inspect(registry, "pub/app", None).stdout
    assert json.loads(raw)["schemaVersion"] == 2

    p = push(registry, layout, "pub/anon", None, check=False)
    assert p.returncode != 0, "anonymous push succeeded"
    assert AUTH_FAILED.search(stderr(p)), stderr(p)
    assert get_manifest(registry, "pub/anon", registry.creds).status_code == 404

    cli("update", "--anonymous-pull-enabled", "false")
    assert inspect(registry, "pub/app", None, check=False).returncode != 0


# ---------------------------------------------------------------------------
# 6. network lock-down, proxies, rules and trusted services
# ---------------------------------------------------------------------------

def test_network_lockdown(registry, cli, layout):
    owner = registry.creds
    push(registry, layout, "net/app", owner)
    # identities for the trusted-service part, created while the network is open
    svc = cli.json("identity", "create", "--name", "scanner", "--kind", "service-principal", "--trusted-service")
    assert svc["identity"]["trustedService"] is True and svc["password"]
    plain = cli.json("identity", "create", "--name", "plain")
    for name in ("scanner", "plain"):
        cli("role", "assignment", "create", "--assignee", name, "--role", "Pull", "--scope", "net/*")
    svc_creds, plain_creds = ("scanner", svc["password"]), ("plain", plain["password"])

    s = cli.json("update", "--public-network-enabled", "false", "--trusted-proxies", "127.0.0.1/32")
    assert s["publicNetworkEnabled"] is False and s["trustedProxies"] == ["127.0.0.1/32"]

    # outside address through the trusted proxy: refused, naming the address
    r = get_manifest(registry, "net/app", owner, forwarded_for="203.0.113.7")
    assert r.status_code == 403, (r.status_code, r.text)
    errs = oci_errors(r)
    assert errs and errs[0]["code"] == "DENIED" and "203.0.113.7" in errs[0]["message"], r.text
    # a private address passes
    r = get_manifest(registry, "net/app", owner, forwarded_for="10.1.2.3")
    assert r.status_code == 200, (r.status_code, r.text)
    # the CLI itself (loopback) still manages the registry
    cli("network-rule", "add", "--ip-address", "203.0.113.0/24")
    assert cli.json("network-rule", "list") == ["203.0.113.0/24"]
    assert "203.0.113.0/24" in cli("network-rule", "list", "-o", "tsv").stdout.decode().split()
    r = get_manifest(registry, "net/app", owner, forwarded_for="203.0.113.7")
    assert r.status_code == 200, (r.status_code, r.text)
    # trusted service vs normal identity from an address no rule allows
    r = get_manifest(registry, "net/app", svc_creds, forwarded_for="198.51.100.9")
    assert r.status_code == 200, (r.status_code, r.text)
    r = get_manifest(registry, "net/app", plain_creds, forwarded_for="198.51.100.9")
    assert r.status_code == 403, (r.status_code, r.text)
    assert oci_errors(r)[0]["code"] == "DENIED" and "198.51.100.9" in oci_errors(r)[0]["message"], r.text
    # the same through the token service (as docker/skopeo do)
    t = requests.get(f"{registry.base}/oauth2/token",
                     params={"service": registry.host, "scope": "repository:net/app:pull"},
                     headers={"Authorization": basic(*svc_creds), "X-Forwarded-For": "198.51.100.9"}, timeout=30)
    assert t.status_code == 200, (t.status_code, t.text)
    r = requests.get(f"{registry.base}/v2/net/app/manifests/v1",
                     headers={"Authorization": "Bearer " + t.json()["token"], "Accept": ALL_MANIFEST_TYPES,
                              "X-Forwarded-For": "198.51.100.9"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    # turning trusted services off refuses the service principal too
    cli("update", "--allow-trusted-services", "false")
    r = get_manifest(registry, "net/app", svc_creds, forwarded_for="198.51.100.9")
    assert r.status_code == 403, (r.status_code, r.text)
    # removing the rule closes the range again
    cli("network-rule", "remove", "--ip-address", "203.0.113.0/24")
    r = get_manifest(registry, "net/app", owner, forwarded_for="203.0.113.7")
    assert r.status_code == 403, (r.status_code, r.text)


# ---------------------------------------------------------------------------
# 7. identity roles: Pull, then Push; disabling refuses at once
# ---------------------------------------------------------------------------

def test_identity_roles_and_disable(registry, cli, layout):
    push(registry, layout, "team/x", registry.creds)
    created = cli.json("identity", "create", "--name", "dev")
    dev = ("dev", created["password"])
    a = cli.json("role", "assignment", "create", "--assignee", "dev", "--role", "Pull", "--scope", "team/*")
    assert a == {"assignee": "dev", "role": "Pull", "scope": "team/*"}

    inspect(registry, "team/x", dev)
    p = push(registry, layout, "team/x", dev, tag="v2", check=False)
    assert p.returncode != 0 and DENIED.search(stderr(p)), stderr(p)
    p = inspect(registry, "other/x", dev, check=False)
    assert p.returncode != 0

    cli("role", "assignment", "create", "--assignee", "dev", "--role", "Push", "--scope", "team/*")
    listed = cli.json("role", "assignment", "list")
    assert {"assignee": "dev", "role": "Push", "scope": "team/*"} in listed
    push(registry, layout, "team/x", dev, tag="v2")
    assert get_manifest(registry, "team/x", registry.creds, tag="v2").status_code == 200

    # a token issued before disabling stops working at once too
    t = requests.get(f"{registry.base}/oauth2/token",
                     params={"service": registry.host, "scope": "repository:team/x:pull"}, auth=dev, timeout=30)
    assert t.status_code == 200, t.text
    bearer = {"Authorization": "Bearer " + t.json()["token"], "Accept": ALL_MANIFEST_TYPES}
    assert requests.get(f"{registry.base}/v2/team/x/manifests/v1", headers=bearer, timeout=30).status_code == 200

    shown = cli.json("identity", "update", "--name", "dev", "--enabled", "false")
    assert shown["enabled"] is False
    p = inspect(registry, "team/x", dev, check=False)
    assert p.returncode != 0 and AUTH_FAILED.search(stderr(p)), "disabled identity can still pull"
    r = requests.get(f"{registry.base}/v2/team/x/manifests/v1", headers=bearer, timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)

    # enabled again with a reset password: the old one is gone, the new one works
    cli("identity", "update", "--name", "dev", "--enabled", "true")
    new = cli.json("identity", "reset-password", "--name", "dev")["password"]
    assert new != dev[1]
    inspect(registry, "team/x", ("dev", new))
    cli("role", "assignment", "delete", "--assignee", "dev", "--role", "Pull", "--scope", "team/*")
    cli("role", "assignment", "delete", "--assignee", "dev", "--role", "Push", "--scope", "team/*")
    p = inspect(registry, "team/x", ("dev", new), check=False)
    assert p.returncode != 0 and DENIED.search(stderr(p)), stderr(p)
    cli("identity", "delete", "--name", "dev")
    assert "not found" in cli.fails("identity", "show", "--name", "dev")


def test_tokens_of_a_deleted_identity_or_token_die_with_it(registry, cli):
    """Delete `victim` (and token `ci`), create them again with more rights: the tokens issued
    before (refresh tokens as `berth login` and docker keep them, access tokens) stay dead."""
    victim = ("victim", cli.json("identity", "create", "--name", "victim")["password"])
    cli("role", "assignment", "create", "--assignee", "victim", "--role", "Pull", "--scope", "team/*")
    cli("scope-map", "create", "--name", "team-pull", "--repository", "team/*", "content/read")
    ci = ("ci", make_token(cli, "ci", "team-pull")[0])
    old = {}
    for who in (victim, ci):
        r = requests.post(f"{registry.base}/oauth2/token", timeout=30, data={
            "grant_type": "password", "username": who[0], "password": who[1], "access_type": "offline",
            "service": registry.host, "scope": "repository:team/x:pull"})
        assert r.status_code == 200, r.text
        old[who[0]] = r.json()
    cli("identity", "delete", "--name", "victim")
    cli("identity", "create", "--name", "victim")
    cli("role", "assignment", "create", "--assignee", "victim", "--role", "Owner", "--scope", "*")
    cli("token", "delete", "--name", "ci")
    make_token(cli, "ci", "_repositories_admin")
    for name, tokens in old.items():
        r = requests.post(f"{registry.base}/oauth2/token", timeout=30, data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
            "service": registry.host, "scope": "registry:management:*"})
        assert r.status_code == 401, (name, r.status_code, r.text)
        r = requests.get(f"{registry.base}/v2/", headers={"Authorization": "Bearer " + tokens["access_token"]}, timeout=30)
        assert r.status_code == 401, (name, r.status_code, r.text)
        r = requests.get(f"{registry.base}/api/v1/identities", timeout=30,
                         auth=("00000000-0000-0000-0000-000000000000", tokens["refresh_token"]))
        assert r.status_code == 401, (name, r.status_code, r.text)


# ---------------------------------------------------------------------------
# 8. output formats and the audit log
# ---------------------------------------------------------------------------

def test_output_formats_and_audit(registry, cli, layout):
    cli("scope-map", "create", "--name", "ro", "--description", "read only",
        "--repository", "aud/*", "content/read", "metadata/read")
    p1, _ = make_token(cli, "auditor", "ro")
    # a denied request: the pull-only token tries to start an upload (Basic credentials)
    r = requests.post(f"{registry.base}/v2/aud/app/blobs/uploads/", auth=("auditor", p1), timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    assert oci_errors(r)[0]["code"] == "DENIED"

    # every data command's -o json parses
    for args in (("identity", "list"), ("identity", "show", "--name", "owner"), ("role", "assignment", "list"),
                 ("scope-map", "list"), ("scope-map", "show", "--name", "ro"), ("token", "list"),
                 ("token", "show", "--name", "auditor"), ("show",), ("network-rule", "list"),
                 ("audit", "list", "--since", "1h")):
        cli.json(*args)
    assert [i["name"] for i in cli.json("identity", "list")] == ["owner"]
    tokens = cli.json("token", "list")
    assert [t["name"] for t in tokens] == ["auditor"]
    assert p1 not in json.dumps(tokens)  # secrets only in the create answer

    # table and tsv
    table = cli("token", "list").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["NAME", "SCOPE-MAP", "STATUS"], table
    assert table[2].split()[:3] == ["auditor", "ro", "enabled"], table
    tsv = cli("token", "list", "-o", "tsv").stdout.decode().splitlines()
    assert tsv[0].split("\t")[:3] == ["auditor", "ro", "enabled"], tsv
    roles = cli("role", "assignment", "list", "-o", "tsv").stdout.decode().splitlines()
    assert "owner\tOwner\t*" in roles, roles

    audit = cli.json("audit", "list", "--since", "1h")
    assert any(a["action"] == "token.create" and a["target"] == "auditor" and a["actor"] == "identity:owner"
               for a in audit), audit
    assert any(a["outcome"] == "denied" and a["actor"] == "token:auditor" and a["target"] == "aud/app"
               for a in audit), audit
    assert "token.create" in cli("audit", "list", "--since", "1h").stdout.decode()

    # errors: one line on stderr, non-zero exit
    assert "not found" in cli.fails("token", "show", "--name", "nope")
    assert "CONFLICT" in cli.fails("token", "create", "--name", "auditor", "--scope-map", "ro")
    assert "unknown role" in cli.fails("role", "assignment", "create", "--assignee", "owner", "--role", "Nope",
                                       "--scope", "*")
    msg = cli.fails("scope-map", "create", "--name", "bad", "--repository", "x/*")
    assert "needs at least one action" in msg, msg


# ---------------------------------------------------------------------------
# the last Owner, and offline recovery of an Owner
# ---------------------------------------------------------------------------

def test_last_owner_is_kept_and_recover_owner_works_offline(registry, cli):
    import fcntl
    for args in (("role", "assignment", "delete", "--assignee", "owner", "--role", "Owner"),
                 ("identity", "update", "--name", "owner", "--enabled", "false"),
                 ("identity", "delete", "--name", "owner")):
        msg = cli.fails(*args)
        assert "CONFLICT" in msg and "HTTP 409" in msg and "Owner on *" in msg, (args, msg)
    assert requests.get(f"{registry.base}/api/v1/identities", auth=registry.creds, timeout=30).status_code == 200

    # recovery works on a stopped server's data only: while berth.lock is held it refuses
    data = registry.data
    registry.stop()
    with open(data / "berth.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        msg = cli.fails("recover", "owner", "--data", str(data), "--name", "rescue")
        assert "server is running" in msg, msg
    out = cli("recover", "owner", "--data", str(data), "--name", "rescue")
    password = out.stdout.decode().strip()
    assert len(password) >= 32 and "\n" not in password, out.stdout
    assert password not in out.stderr.decode()
    assert "not-a-dir" in cli.fails("recover", "owner", "--data", str(data / "not-a-dir"))
    assert "--data" in cli.fails("recover", "owner")   # the embedded store: which data directory

    registry.start(port=registry.port)
    rescue = ("rescue", password)
    assert requests.get(f"{registry.base}/v2/", auth=rescue, timeout=30).status_code == 200
    r = requests.get(f"{registry.base}/api/v1/identities", auth=rescue, timeout=30)
    assert r.status_code == 200 and {i["name"] for i in r.json()} == {"owner", "rescue"}, r.text
    audit = requests.get(f"{registry.base}/api/v1/audit", params={"since": "1h"}, auth=rescue, timeout=30).json()
    assert any(a["action"] == "identity.recover-owner" and a["target"] == "rescue" for a in audit), audit
    # with a second Owner, the first may now give up the role
    r = requests.delete(f"{registry.base}/api/v1/role-assignments",
                        params={"assignee": "owner", "role": "Owner", "scope": "*"}, auth=registry.creds, timeout=30)
    assert r.status_code == 204, (r.status_code, r.text)
