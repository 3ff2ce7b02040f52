"""Replication between regions (issue 13), items 1-2: ``berth replication`` and the peer's event feed
against a real ``berth serve``.

The replica is a second ``berth serve`` on loopback with its own data directory; loopback peers
are refused unless the operator allows them (``BERTH_OUTBOUND_ALLOW``), which this module does.
What is not built yet (applying a peer's changes, conflicts) is not tested
here.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import RegistryServer
from test_cli import Cli

pytestmark = [pytest.mark.berth_only, pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")]


@pytest.fixture
def peer():
    """A second region: its own server and data directory."""
    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-peer-"))
    server = RegistryServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def cli(registry, tmp_path) -> Cli:
    c = Cli(registry, tmp_path / "xdg")
    c.login()
    return c


def test_replicas_are_managed_from_the_cli(registry, peer, cli, tmp_path):
    secret_file = tmp_path / "credential"
    secret_file.write_text("replicator:peer-secret-value\n")
    os.chmod(secret_file, stat.S_IRUSR | stat.S_IWUSR)
    created = cli.json("replication", "create", "--location", "southeastasia", "--endpoint", peer.base,
                       "--credential-file", str(secret_file))
    assert created["location"] == "southeastasia" and created["endpoint"] == peer.base
    assert created["credentialSet"] is True and created["regionEndpointEnabled"] is True

    listed = cli.json("replication", "list")
    assert [r["location"] for r in listed] == ["southeastasia"]
    # the credential is never shown, in any output, nor written to the log
    for out in (cli("replication", "list").stdout, cli("replication", "show", "--location", "southeastasia").stdout,
                cli("replication", "list", "-o", "json").stdout):
        assert b"peer-secret-value" not in out
    assert "peer-secret-value" not in registry.log_path.read_text(errors="replace")

    updated = cli.json("replication", "update", "--location", "southeastasia", "--region-endpoint-enabled", "false")
    assert updated["regionEndpointEnabled"] is False and updated["credentialSet"] is True
    assert cli.json("replication", "show", "--location", "southeastasia")["regionEndpointEnabled"] is False

    status = cli.json("replication", "status", "--location", "southeastasia")
    assert status["location"] == "southeastasia" and status["bytesPending"] == 0
    assert "lagEvents" not in status  # never replicated: unknown, not zero
    table = cli("replication", "status").stdout.decode()
    assert "southeastasia" in table and "LAG-EVENTS" in table

    metrics = requests.get(f"{registry.base}/metrics", timeout=10).text
    assert "berth_replicas 1" in metrics
    assert 'berth_replication_region_endpoint_enabled{location="southeastasia"} 0' in metrics

    # refused: a taken location, a bad location, an endpoint with credentials in it
    assert "exists" in cli.fails("replication", "create", "--location", "southeastasia", "--endpoint", peer.base)
    assert "location" in cli.fails("replication", "create", "--location", "South East", "--endpoint", peer.base)
    assert "endpoint" in cli.fails("replication", "create", "--location", "x", "--endpoint", "http://u:p@127.0.0.1:1")
    assert "nothing to change" in cli.fails("replication", "update", "--location", "southeastasia")

    cli("replication", "delete", "--location", "southeastasia")
    assert cli.json("replication", "list") == []
    assert "not found" in cli.fails("replication", "show", "--location", "southeastasia")


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="")
def test_a_loopback_peer_needs_the_operators_allowance(registry, peer, cli):
    message = cli.fails("replication", "create", "--location", "local", "--endpoint", peer.base)
    assert "refused" in message and "BERTH_OUTBOUND_ALLOW" in message
    assert cli.json("replication", "list") == []


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION="westeurope")
def test_a_peer_reads_the_event_feed_as_a_replicator(registry, cli):
    """Item 2: ``GET /api/v1/replication/events`` for the Replicator role only, with each change's
    digests, tag, origin region (``--region``) and HLC stamp."""
    import hashlib
    import json

    owner = registry.creds
    repo = "geo/app"
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"feed-layer"
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = requests.post(f"{registry.base}/v2/{repo}/blobs/uploads/?digest={digest}", data=blob, auth=owner, timeout=30)
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    }).encode()
    r = requests.put(f"{registry.base}/v2/{repo}/manifests/v1", data=manifest, auth=owner, timeout=30,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    feed = f"{registry.base}/api/v1/replication/events"
    assert requests.get(feed, timeout=30).status_code == 401
    name = "peer-region"
    password = json.loads(cli("identity", "create", "--name", name, "-o", "json").stdout)["password"]
    assert requests.get(feed, auth=(name, password), timeout=30).status_code == 403   # deny by default
    cli("role", "assignment", "create", "--assignee", name, "--role", "Replicator", "--scope", "*")
    page = requests.get(feed, params={"after": 0, "limit": 1000}, auth=(name, password), timeout=30)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["region"] == "westeurope"
    mine = [e for e in body["events"] if e["repository"] == repo]
    assert [e["action"] for e in mine] == ["blob.push", "blob.push", "push", "tag.move"]
    assert all(e["region"] == "westeurope" for e in mine)
    assert mine[2]["digest"] == manifest_digest and mine[2]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert mine[3]["tag"] == "v1" and mine[3]["digest"] == manifest_digest
    stamps = [tuple(int(x) for x in e["hlc"].split(".")) for e in mine]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    after = mine[2]["sequence"]
    rest = requests.get(feed, params={"after": after, "limit": 1}, auth=(name, password), timeout=30).json()
    assert [e["sequence"] for e in rest["events"]] == [mine[3]["sequence"]]
    assert requests.get(feed, params={"limit": 0}, auth=(name, password), timeout=30).status_code == 400
