"""Quarantine-on-push with real clients: skopeo pushes, a Pull identity is refused until a
QuarantineWriter records its verdict through the CLI."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import requests

from test_cli import Cli, inspect, layout, push  # noqa: F401  (layout is a fixture)

pytestmark = pytest.mark.berth_only


def make_identity(cli: Cli, name: str, role: str) -> tuple:
    out = json.loads(cli("identity", "create", "--name", name, "-o", "json").stdout)
    cli("role", "assignment", "create", "--assignee", name, "--role", role, "--scope", "*")
    return (name, out["password"])


def test_quarantine_gate_with_skopeo(registry, tmp_path, layout):  # noqa: F811
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    owner = (registry.username, registry.password)
    push(registry, layout, "legacy/app", owner)
    puller = make_identity(cli, "puller", "Pull")
    gate = make_identity(cli, "scanner", "QuarantineWriter")

    dry = cli("config", "quarantine", "update", "--status", "enabled", "--grandfather", "false", "--dry-run", "-o", "json").stdout
    assert "legacy/app" in dry.decode()
    inspect(registry, "legacy/app", puller)                                  # the dry run changed nothing
    cli("config", "quarantine", "update", "--status", "enabled", "--grandfather", "true")

    pushed = push(registry, layout, "payments/api", owner)                  # pushing is never blocked
    assert pushed.returncode == 0
    refused = inspect(registry, "payments/api", puller, check=False)
    assert refused.returncode != 0 and re.search(rb"quarantined|denied|forbidden", refused.stderr.lower())
    inspect(registry, "legacy/app", puller)                                  # grandfathered
    raw = inspect(registry, "payments/api", gate).stdout                     # the gate may read it
    import hashlib
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()

    cli("manifest", "quarantine", "--image", f"{registry.host}/payments/api@{digest}", "--state", "Failed",
        "--reason", "critical CVE")
    assert inspect(registry, "payments/api", puller, check=False).returncode != 0
    denied_cli = Cli(registry, tmp_path / "xdg-puller")
    denied_cli.login(*puller)
    err = denied_cli.fails("manifest", "quarantine", "--image", f"payments/api@{digest}", "--state", "Passed")
    assert re.search(r"denied|403", err, re.IGNORECASE)
    shown = json.loads(cli("manifest", "quarantine", "--image", f"payments/api@{digest}", "--state", "Passed",
                           "--reason", "rescanned clean", "-o", "json").stdout)
    assert shown["state"] == "Passed" and shown["reason"] == "rescanned clean"
    inspect(registry, "payments/api", puller)


def test_switching_quarantine_off_releases_what_waits(registry, tmp_path, layout):  # noqa: F811
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    owner = (registry.username, registry.password)
    puller = make_identity(cli, "puller", "Pull")
    cli("config", "quarantine", "update", "--status", "enabled")
    push(registry, layout, "waiting/app", owner)
    raw = inspect(registry, "waiting/app", owner).stdout
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = json.loads(raw)["layers"][0]["digest"]
    blob = requests.get(f"{registry.base}/v2/waiting/app/blobs/{layer}", auth=puller, timeout=30)
    assert blob.status_code == 403 and "quarantined" in blob.text            # not by digest either

    dry = cli("config", "quarantine", "update", "--status", "disabled", "--dry-run").stdout.decode()
    assert "become pullable" in dry and "waiting/app" in dry and digest in dry, dry
    assert inspect(registry, "waiting/app", puller, check=False).returncode != 0   # the dry run changed nothing
    dry_json = cli.json("config", "quarantine", "update", "--status", "disabled", "--dry-run")
    real = cli.json("config", "quarantine", "update", "--status", "disabled")
    assert real["affected"] == dry_json["affected"] == [{"repository": "waiting/app", "digest": digest}]
    assert real["affectedCount"] == dry_json["affectedCount"] == 1 and real["effect"] == dry_json["effect"]
    inspect(registry, "waiting/app", puller)                                 # off means off
    assert requests.get(f"{registry.base}/v2/waiting/app/blobs/{layer}", auth=puller, timeout=30).status_code == 200
