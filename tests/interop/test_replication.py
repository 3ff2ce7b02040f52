"""Replication between regions (issue 13), item 1: ``berth replication`` against a real ``berth serve``.

The replica is a second ``berth serve`` on loopback with its own data directory; loopback peers
are refused unless the operator allows them (``BERTH_OUTBOUND_ALLOW``), which this module does.
What is not built yet (the peer's event feed, applying a peer's changes, conflicts) is not tested
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
