"""Keyless CI: an identity with a federated credential, a real OIDC issuer on loopback (RS256 and
ES256), and real clients pushing with nothing but the CI job's ID token."""

from __future__ import annotations

import pytest
import requests

from oidc_issuer import OIDCIssuer
from test_cli import Cli, inspect, layout, push  # noqa: F401  (layout is a fixture)

# The issuers listen on loopback, which Berth refuses to contact unless the operator allows it.
pytestmark = [pytest.mark.berth_only, pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")]

SUBJECT = "repo:org/payments:ref:refs/heads/main"
REFRESH_USER = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def issuers():
    good, other = OIDCIssuer(), OIDCIssuer()
    try:
        yield good, other
    finally:
        good.close()
        other.close()


@pytest.fixture
def federated(registry, tmp_path, issuers):
    good, _ = issuers
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    cli("identity", "create", "--name", "payments-ci", "--kind", "service-principal", "--no-password")
    cli("role", "assignment", "create", "--assignee", "payments-ci", "--role", "Push", "--scope", "payments/*")
    cli("identity", "federated-credential", "create", "--identity", "payments-ci", "--name", "main",
        "--issuer", good.url, "--subject", SUBJECT, "--audiences", "berth")
    return cli


def exchange(registry, id_token: str) -> requests.Response:
    return requests.post(f"{registry.base}/oauth2/exchange", timeout=30,
                         data={"grant_type": "access_token", "service": registry.host, "access_token": id_token})


def test_exact_subject_pushes_with_rs256_via_exchange(registry, federated, issuers, layout):  # noqa: F811
    good, _ = issuers
    r = exchange(registry, good.token(SUBJECT, "berth", alg="RS256"))
    assert r.status_code == 200, r.text
    refresh = r.json()["refresh_token"]
    # docker-style: the refresh token is the password of the well-known user
    push(registry, layout, "payments/api", (REFRESH_USER, refresh))
    inspect(registry, "payments/api", (REFRESH_USER, refresh))
    # the role's scope still applies
    denied = push(registry, layout, "billing/api", (REFRESH_USER, refresh), check=False)
    out = (denied.stderr + denied.stdout).lower()
    assert denied.returncode != 0 and (b"denied" in out or b"403 (forbidden)" in out), out


def test_id_token_as_password_with_es256(registry, federated, issuers, layout):  # noqa: F811
    good, _ = issuers
    push(registry, layout, "payments/worker", ("oidc-token", good.token(SUBJECT, "berth", alg="ES256")))
    inspect(registry, "payments/worker", (registry.username, registry.password))


@pytest.mark.parametrize("case", ["other-subject", "other-audience", "expired", "not-yet-valid", "forged-issuer-claim"])
def test_anything_else_gets_nothing(registry, federated, issuers, case):
    good, other = issuers
    token = {
        "other-subject": lambda: good.token("repo:org/payments:ref:refs/heads/feature", "berth"),
        "other-audience": lambda: good.token(SUBJECT, "someone-else"),
        "expired": lambda: good.token(SUBJECT, "berth", lifetime=-300),
        "not-yet-valid": lambda: good.token(SUBJECT, "berth", not_before=600),
        # signed by the good issuer's key but claiming the other issuer: the other is not trusted
        "forged-issuer-claim": lambda: good.token(SUBJECT, "berth", iss=other.url),
    }[case]()
    r = exchange(registry, token)
    assert r.status_code == 401, r.text
    assert requests.get(f"{registry.base}/v2/", auth=("oidc-token", token), timeout=30).status_code == 401


def test_untrusted_issuer_is_never_contacted(registry, federated, issuers):
    _, other = issuers
    r = exchange(registry, other.token(SUBJECT, "berth"))
    assert r.status_code == 401
    assert other.requests == 0


def test_removing_the_credential_revokes_keyless_access(registry, federated, issuers, layout):  # noqa: F811
    good, _ = issuers
    token = good.token(SUBJECT, "berth")
    assert exchange(registry, token).status_code == 200
    federated("identity", "federated-credential", "delete", "--identity", "payments-ci", "--name", "main")
    assert exchange(registry, token).status_code == 401


def test_issuer_on_a_non_public_address_is_refused(registry, tmp_path):
    # 127.0.0.1 is allowed for the test issuers; the cloud metadata address never is
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    cli("identity", "create", "--name", "payments-ci", "--kind", "service-principal", "--no-password")
    for issuer in ("http://169.254.169.254/", "http://2852039166/"):
        err = cli.fails("identity", "federated-credential", "create", "--identity", "payments-ci", "--name", "meta",
                        "--issuer", issuer, "--subject", SUBJECT, "--audiences", "berth")
        assert "issuer refused" in err and "169.254.169.254" in err, err
