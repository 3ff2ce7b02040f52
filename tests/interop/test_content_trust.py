"""Registry-side content trust with real clients: `berth sign` signs one image, `berth config
content-trust update` switches enforcement on, and skopeo can pull only what is signed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from helpers import ALL_MANIFEST_TYPES, sha256_digest
from test_cli import Cli, inspect, layout, push  # noqa: F401  (layout is a fixture)
from test_signing import SUBJECT, get, signer, write_policy  # noqa: F401  (signer is a fixture)

pytestmark = pytest.mark.berth_only


def test_only_signed_images_are_served(registry, signer, layout, tmp_path):  # noqa: F811
    push(registry, layout, "payments/api", registry.creds, tag="signed")
    push(registry, layout, "payments/worker", registry.creds, tag="v1")
    digest = sha256_digest(get(registry, "/v2/payments/api/manifests/signed", ALL_MANIFEST_TYPES).content)
    prefix = tmp_path / "payments"
    # the spelling: `certificate create --signing` (same as `certificate create-signing`)
    signer("certificate", "create", "--signing", "--subject", SUBJECT, "--ca", "--out", str(prefix))
    signer("sign", f"{registry.host}/payments/api@{digest}", "--key", f"{prefix}.key", "--cert", f"{prefix}.crt", "--insecure")

    cli = Cli(registry, tmp_path / "xdg-admin")
    cli.login()
    created = json.loads(cli("identity", "create", "--name", "puller", "-o", "json").stdout)
    cli("role", "assignment", "create", "--assignee", "puller", "--role", "Pull", "--scope", "*")
    puller = ("puller", created["password"])
    policy = write_policy(tmp_path / "trustpolicy.json", "*", "x509.subject: CN=payments.org, O=Platform")
    shown = json.loads(cli("config", "content-trust", "update", "--status", "enabled", "--repository", "payments/*",
                           "--trust-policy", str(policy), "--trust-store", f"ca:payments-ca={prefix}-ca.crt",
                           "--exempt", "owner", "-o", "json").stdout)
    assert shown["enabled"] is True and shown["repositories"] == ["payments/*"]

    inspect(registry, "payments/api", puller, tag="signed")                      # signed: served
    refused = inspect(registry, "payments/worker", puller, check=False)          # unsigned: refused
    assert refused.returncode != 0
    assert re.search(rb"content trust|denied|forbidden", refused.stderr.lower()), refused.stderr
    inspect(registry, "payments/worker", registry.creds)                         # exempt identity

    # The web console shows the signature verified under the same policy, and by whom.
    console = requests.Session()
    form = console.get(registry.base + "/console/login", timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    signed_in = console.post(registry.base + "/console/login", timeout=10, allow_redirects=False,
                             data={"csrf": csrf, "username": registry.creds[0], "password": registry.creds[1]})
    assert signed_in.status_code == 303, signed_in.text
    page = console.get(f"{registry.base}/console/image?name=payments%2Fapi&digest={digest}", timeout=10).text
    signatures = re.search(r'<ul id="signatures">(.*?)</ul>', page, re.S).group(1)
    assert '<strong class="verified">verified</strong>' in signatures, signatures
    assert "CN=payments.org" in signatures and "not verified" not in signatures, signatures
    cli("config", "content-trust", "update", "--status", "disabled")
    inspect(registry, "payments/worker", puller)
