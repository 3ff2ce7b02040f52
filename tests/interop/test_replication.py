"""Replication between regions (issue 13), items 1-2: ``berth replication`` and the peer's event feed
against a real ``berth serve``.

The replica is a second ``berth serve`` on loopback with its own data directory; loopback peers
are refused unless the operator allows them (``BERTH_OUTBOUND_ALLOW``), which this module does.
Items 2-3 (the consumer that applies a peer's changes, and the conflict log) are proven with two
regions replicating both ways: each a ``berth serve`` with its own data directory and region
name, each presenting a Replicator identity of the other.
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


# ---------------------------------------------------------------------------
# Items 2-3: two regions replicating both ways
# ---------------------------------------------------------------------------

import hashlib
import re
import subprocess
import json
import time

from helpers import skopeo, umoci_image

WEST, SEA = "westeurope", "southeastasia"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _wait(what, check, tries=300, pause=0.2, regions=()):
    """Polls ``check`` until it returns a true value (bounded by count); fails naming ``what`` and
    the replication status of ``regions``."""
    last = None
    for _ in range(tries):
        last = check()
        if last:
            return last
        time.sleep(pause)
    statuses = [r.cli.json("replication", "status") for r in regions]
    raise AssertionError(f"timed out waiting for {what} (last: {last!r}; status: {statuses})")


class Region:
    def __init__(self, name, server, cli):
        self.name, self.server, self.cli = name, server, cli

    def get(self, path, **kw):
        return requests.get(self.server.base + path, auth=self.server.creds, timeout=30, **kw)

    def manifest_digest(self, repo, ref):
        r = requests.head(f"{self.server.base}/v2/{repo}/manifests/{ref}", auth=self.server.creds, timeout=30,
                          headers={"Accept": OCI_MANIFEST + ", application/vnd.oci.image.index.v1+json"})
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def has_blob(self, repo, digest):
        return requests.head(f"{self.server.base}/v2/{repo}/blobs/{digest}", auth=self.server.creds,
                             timeout=30).status_code == 200

    def put_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{self.server.base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                          auth=self.server.creds, timeout=30)
        assert r.status_code == 201, r.text
        return digest

    def put_manifest(self, repo, ref, body):
        r = requests.put(f"{self.server.base}/v2/{repo}/manifests/{ref}", data=body, auth=self.server.creds, timeout=30,
                         headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    def image(self, repo, tag, text):
        """A small image pushed over HTTP; returns its digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"t": text}}}).encode()
        return self.image_of(repo, tag, config, ("layer of " + text).encode())

    def image_of(self, repo, tag, config, layer):
        """An image of the given config and one layer, its blobs and manifest pushed over HTTP;
        returns its digest."""
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.put_blob(repo, config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.put_blob(repo, layer),
                        "size": len(layer)}],
        }).encode()
        return self.put_manifest(repo, tag, body)

    def status(self, other):
        return self.cli.json("replication", "status", "--location", other)

    def consumer(self, other, action):
        r = requests.post(f"{self.server.base}/api/v1/event-consumers/replication:{other}/{action}",
                          auth=self.server.creds, timeout=30)
        assert r.status_code == 200, r.text

    def conflicts(self, location=None):
        args = ["replication", "conflicts"] + (["--location", location] if location else [])
        return self.cli.json(*args)

    def feed_event(self, repo, tag, digest):
        page = self.get("/api/v1/replication/events", params={"after": 0, "limit": 1000}).json()
        hits = [e for e in page["events"] if e["action"] == "tag.move" and e["repository"] == repo and e["tag"] == tag
                and e["digest"] == digest]
        return hits[-1] if hits else None


def _applied_all(regions, of=None):
    """Each region in `regions` has applied every event of each peer in `of` (all the others when
    not given) as far as the peer's log reaches when read now, with no error. A status's lag is only
    as fresh as the region's last read of the peer's log, so it is not asked. True: the peers'
    latest sequences, by name."""
    def check():
        peers = of if of is not None else regions
        latest = {p.name: p.get("/api/v1/replication/events", params={"after": 0, "limit": 1}).json()["latestSequence"]
                  for p in peers}
        for r in regions:
            for p in peers:
                if p is r:
                    continue
                s = r.status(p.name)
                if s.get("lastError") or (s.get("appliedSequence") or 0) < latest[p.name]:
                    return None
        return latest
    return check


def _caught_up(a, b):
    """Both regions have applied everything the other has (no error)."""
    return _applied_all((a, b))


@pytest.fixture
def regions(registry, tmp_path):
    """Two regions, each with a Replicator identity the other presents, replicating both ways."""
    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-sea-"))
    other = RegistryServer(workdir)
    # one token service name in every region (issue 13 item 4: one login server), so a registry
    # token one region issued is meant for the other too
    other.extra_env.update({"BERTH_REGION": SEA, "BERTH_OUTBOUND_ALLOW": "127.0.0.1/32", "BERTH_LIFECYCLE_TICK_SECONDS": "0.2",
                            "BERTH_SERVICE_NAME": registry.host})
    other.start()
    try:
        west = Region(WEST, registry, Cli(registry, tmp_path / "xdg-west"))
        sea = Region(SEA, other, Cli(other, tmp_path / "xdg-sea"))
        for r in (west, sea):
            r.cli.login()
        secrets_of = {}
        # one Replicator identity per region, by name: identities replicate, so two of one name
        # made in two regions would be one register, and one region's password would win in both
        for r in (west, sea):
            password = r.cli.json("identity", "create", "--name", f"peer-replicator-{r.name}")["password"]
            r.cli("role", "assignment", "create", "--assignee", f"peer-replicator-{r.name}", "--role", "Replicator", "--scope", "*")
            secrets_of[r.name] = password
        for here, there in ((west, sea), (sea, west)):
            f = tmp_path / f"credential-{here.name}"
            f.write_text(f"peer-replicator-{there.name}:{secrets_of[there.name]}\n")
            os.chmod(f, stat.S_IRUSR | stat.S_IWUSR)
            here.cli("replication", "create", "--location", there.name, "--endpoint", there.server.base,
                     "--credential-file", str(f))
        yield west, sea
    finally:
        other.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_two_regions_replicate_both_ways(regions, tmp_path):
    west, sea = regions
    # a skopeo push in one region appears in the other with the same digest, tag and blobs
    layout = tmp_path / "layout"
    pushed = umoci_image(layout, "v1", [{"etc/app.conf": b"replicated"}, {"bin/tool": b"\x7fELF" + b"x" * 4096}])
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{west.server.host}/geo/app:v1",
           creds=west.server.creds)
    assert west.manifest_digest("geo/app", "v1") == pushed
    _wait("geo/app:v1 in southeastasia", lambda: sea.manifest_digest("geo/app", "v1") == pushed)
    manifest = json.loads(sea.get(f"/v2/geo/app/manifests/{pushed}", headers={"Accept": OCI_MANIFEST}).content)
    referenced = [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]
    assert len(referenced) == 3 and all(sea.has_blob("geo/app", d) for d in referenced)
    pulled = sea.get(f"/v2/geo/app/blobs/{manifest['layers'][1]['digest']}")
    assert pulled.status_code == 200 and hashlib.sha256(pulled.content).hexdigest() == manifest["layers"][1]["digest"][7:]

    # and the other way: a push in southeastasia appears in westeurope
    back = sea.image("geo/other", "latest", "from sea")
    _wait("geo/other:latest in westeurope", lambda: west.manifest_digest("geo/other", "latest") == back)

    # a referrer (an SBOM artifact with a subject) replicates with its subject
    empty = west.put_blob("geo/app", b"{}")
    sbom = west.put_blob("geo/app", b'{"spdxVersion":"SPDX-2.3"}')
    referrer_body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": 26}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": pushed, "size": len(west.get(
            f"/v2/geo/app/manifests/{pushed}", headers={"Accept": OCI_MANIFEST}).content)},
    }).encode()
    referrer = west.put_manifest("geo/app", "sha256:" + hashlib.sha256(referrer_body).hexdigest(), referrer_body)
    _wait("the SBOM referrer in southeastasia", lambda: [m["digest"] for m in sea.get(
        f"/v2/geo/app/referrers/{pushed}").json().get("manifests", [])] == [referrer])
    assert sea.has_blob("geo/app", sbom)

    # a tag move replicates: the tag points where the event says
    v2 = west.image("geo/app", "v1", "second")
    _wait("the tag move in southeastasia", lambda: sea.manifest_digest("geo/app", "v1") == v2)

    # a manifest delete replicates (with its tags)
    gone = west.image("geo/app", "old", "to delete")
    _wait("geo/app:old in southeastasia", lambda: sea.manifest_digest("geo/app", "old") == gone)
    assert requests.delete(f"{west.server.base}/v2/geo/app/manifests/{gone}", auth=west.server.creds, timeout=30).status_code == 202
    _wait("the manifest delete in southeastasia", lambda: sea.manifest_digest("geo/app", gone) is None, regions=(sea,))
    assert sea.manifest_digest("geo/app", "old") is None
    assert sea.manifest_digest("geo/app", "v1") == v2   # the rest stays

    # a repository delete replicates
    west.image("geo/doomed", "a", "doomed a")
    west.image("geo/doomed", "b", "doomed b")
    _wait("geo/doomed in southeastasia", lambda: sea.manifest_digest("geo/doomed", "b") is not None)
    west.cli("repository", "delete", "--name", "geo/doomed", "--yes")
    _wait("the repository delete in southeastasia",
          lambda: sea.manifest_digest("geo/doomed", "a") is None and sea.manifest_digest("geo/doomed", "b") is None)

    # both caught up, no error, and nothing echoes back and forth: the logs stop growing
    _wait("both regions caught up", _caught_up(west, sea))
    latest = [r.get("/api/v1/replication/events", params={"after": 0, "limit": 1}).json()["latestSequence"] for r in (west, sea)]
    time.sleep(1.5)   # several polls of each consumer
    again = [r.get("/api/v1/replication/events", params={"after": 0, "limit": 1}).json()["latestSequence"] for r in (west, sea)]
    assert again == latest
    assert west.conflicts() == [] and sea.conflicts() == []
    # every blob every manifest of the other region references is here
    for repo, tag in (("geo/app", "v1"), ("geo/other", "latest")):
        for r in (west, sea):
            m = json.loads(r.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}).content)
            assert all(r.has_blob(repo, d["digest"]) for d in [m["config"]] + m["layers"])


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_status_shows_the_bytes_a_replica_still_has_to_fetch(regions, tmp_path):
    """Item 1's bytes pending: sea reads west through a proxy that cuts a 3 MiB layer 1 MiB in and
    then drops every later GET of it. Sea's status names the error and the bytes it still has to
    fetch for that image (the layer, and at most the config with it); the image is not there. Once
    the proxy lets the layer through, sea catches up and nothing is pending."""
    from test_import import DroppingProxy

    west, sea = regions
    repo = "pending/app"
    big = os.urandom(3 * 1024 * 1024)
    layer = "sha256:" + hashlib.sha256(big).hexdigest()
    proxy = DroppingProxy(west.server.host, layer, cut=1024 * 1024, own_realm=True)
    proxy.dropping = True
    try:
        sea.cli("replication", "update", "--location", WEST, "--endpoint", f"http://{proxy.host}",
                "--credential-file", str(tmp_path / f"credential-{SEA}"))
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        digest = west.image_of(repo, "v1", config, big)

        def stuck():
            s = sea.status(WEST)
            return s if s.get("lastError") and s.get("bytesPending", 0) >= len(big) else None
        s = _wait("sea to report the layer it cannot fetch as pending", stuck, regions=(west, sea))
        assert s["bytesPending"] <= len(big) + len(config), s
        assert sea.manifest_digest(repo, "v1") is None
        assert proxy.sent and proxy.sent[0] < len(big), proxy.sent

        proxy.dropping = False
        _wait("sea to catch up once the layer comes through", _caught_up(west, sea), tries=600, regions=(west, sea))
        assert sea.status(WEST)["bytesPending"] == 0
        assert sea.manifest_digest(repo, "v1") == digest
        r = requests.get(f"{sea.server.base}/v2/{repo}/blobs/{layer}", auth=sea.server.creds, timeout=60)
        assert r.status_code == 200 and r.content == big
    finally:
        proxy.stop()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_concurrent_tag_writes_converge_and_the_loser_is_logged(regions):
    west, sea = regions
    base = west.image("race/app", "t", "base")
    _wait("race/app:t in southeastasia", lambda: sea.manifest_digest("race/app", "t") == base)
    _wait("both regions caught up", _caught_up(west, sea))
    # partition: neither region applies the other's changes while both write the tag
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    in_west = west.image("race/app", "t", "written in west")
    in_sea = sea.image("race/app", "t", "written in sea")
    stamps = {}
    for region, digest in ((west, in_west), (sea, in_sea)):
        e = region.feed_event("race/app", "t", digest)
        stamps[region.name] = (tuple(int(x) for x in e["hlc"].split(".")), region.name, digest)
    winner = max(stamps.values())
    loser = min(stamps.values())
    # heal
    west.consumer(SEA, "resume")
    sea.consumer(WEST, "resume")
    _wait("both regions on the winner", lambda: west.manifest_digest("race/app", "t") == winner[2]
          and sea.manifest_digest("race/app", "t") == winner[2])
    _wait("both regions caught up", _caught_up(west, sea))
    lost_in = west if loser[1] == WEST else sea
    logged = [c for c in lost_in.conflicts() if c["repository"] == "race/app" and c["key"] == "t"]
    assert logged and logged[0]["kind"] == "tag" and logged[0]["loser"] == loser[2] and logged[0]["winner"] == winner[2]
    assert logged[0]["loserStamp"] == f"{loser[0][0]}.{loser[0][1]}@{loser[1]}"
    table = lost_in.cli("replication", "conflicts").stdout.decode()
    assert "race/app" in table and loser[2] in table
    # the replicated base write was a predecessor of both writes, never a conflict
    assert all(c["loser"] != base for r in (west, sea) for c in r.conflicts())
    # the winner stays after more polls (no flip-flop)
    time.sleep(1.0)
    assert west.manifest_digest("race/app", "t") == winner[2] == sea.manifest_digest("race/app", "t")


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_locks_replicate_and_a_peer_outage_shows_in_status(regions):
    west, sea = regions
    first = west.image("lock/app", "v1", "locked")
    _wait("lock/app:v1 in southeastasia", lambda: sea.manifest_digest("lock/app", "v1") == first, regions=(sea,))
    west.cli("repository", "update", "--name", "lock/app", "--image", "v1", "--write-enabled", "false", "--delete-enabled", "false")

    def locked_in_sea():
        tags = sea.cli.json("repository", "show-tags", "--name", "lock/app", "--detail")
        return [t["attributes"]["writeEnabled"] for t in tags if t["name"] == "v1"] == [False]
    _wait("the tag lock in southeastasia", locked_in_sea, regions=(sea,))
    # the replicated lock holds there: the tag cannot be moved in southeastasia
    other = sea.image("lock/app", "other", "other")
    body = sea.get(f"/v2/lock/app/manifests/{other}", headers={"Accept": OCI_MANIFEST}).content
    r = requests.put(f"{sea.server.base}/v2/lock/app/manifests/v1", data=body, auth=sea.server.creds, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 403 and "DENIED" in r.text
    assert sea.manifest_digest("lock/app", "v1") == first

    # a peer that is down: the error shows in the status of the region reading it, and
    # replication resumes from the durable cursor when it is back
    port = sea.server.port
    sea.server.stop()
    during = west.image("lock/other", "v1", "pushed while sea is down")
    _wait("the outage in westeurope's status", lambda: west.status(SEA).get("lastError"), regions=(west,))
    sea.server.start(port)
    _wait("the push made during the outage in southeastasia",
          lambda: sea.manifest_digest("lock/other", "v1") == during, regions=(sea,))
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_a_write_refused_here_is_logged_and_replication_goes_on(regions):
    west, sea = regions
    west.image("guarded/app", "v1", "before the lock")
    _wait("guarded/app:v1 in southeastasia", lambda: sea.manifest_digest("guarded/app", "v1") is not None, regions=(sea,))
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    # southeastasia locks the repository while westeurope pushes into it
    sea.cli("repository", "update", "--name", "guarded/app", "--write-enabled", "false")
    refused = west.image("guarded/app", "v2", "pushed in west")
    after = west.image("guarded/next", "v1", "after the refused push")
    west.consumer(SEA, "resume")
    sea.consumer(WEST, "resume")
    # the refused push is in the conflict log, and what came after it still replicates
    _wait("the push after the refused one in southeastasia",
          lambda: sea.manifest_digest("guarded/next", "v1") == after, regions=(sea,))
    assert sea.manifest_digest("guarded/app", refused) is None
    logged = [c for c in sea.conflicts(WEST) if c["repository"] == "guarded/app" and c["key"] == refused]
    assert logged and logged[0]["kind"] == "manifest" and logged[0]["winner"].startswith("refused: ")
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_quarantine_verdicts_replicate(regions):
    west, sea = regions
    west.cli("config", "quarantine", "update", "--status", "enabled", "--grandfather", "false")
    held = west.image("gate/app", "v1", "quarantined in west")
    # a manifest held in quarantine in its region still replicates (the Replicator reads it) ...
    _wait("gate/app:v1 in southeastasia", lambda: sea.manifest_digest("gate/app", "v1") == held, regions=(sea,))
    # ... and the gate's verdict follows it
    west.cli("manifest", "quarantine", "--image", f"gate/app@{held}", "--state", "Failed", "--reason", "critical findings")

    def state_in_sea():
        for m in sea.cli.json("repository", "show-manifests", "--name", "gate/app"):
            if m["digest"] == held:
                return m.get("quarantineState")
        return None
    _wait("the Failed verdict in southeastasia", lambda: state_in_sea() == "Failed", regions=(sea,))
    # it holds there: a puller of that region is refused
    password = sea.cli.json("identity", "create", "--name", "puller")["password"]
    sea.cli("role", "assignment", "create", "--assignee", "puller", "--role", "Pull", "--scope", "gate/*")
    r = requests.get(f"{sea.server.base}/v2/gate/app/manifests/{held}", auth=("puller", password), timeout=30,
                     headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 403, r.status_code
    west.cli("manifest", "quarantine", "--image", f"gate/app@{held}", "--state", "Passed")
    _wait("the Passed verdict in southeastasia", lambda: state_in_sea() == "Passed", regions=(sea,))
    r = requests.get(f"{sea.server.base}/v2/gate/app/manifests/{held}", auth=("puller", password), timeout=30,
                     headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == held[7:]


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_settings_replicate_and_concurrent_writes_converge(regions):
    """A registry-wide setting is one value in every region (a register, as tags are): a policy
    changed in one region applies in the other, and writes made in both during a partition end on
    the later one everywhere, the other kept in the conflict log."""
    west, sea = regions

    def policy(region):
        return region.cli.json("config", "soft-delete", "show")
    west.cli("config", "soft-delete", "update", "--status", "enabled", "--days", "3")
    _wait("the soft-delete policy in southeastasia", lambda: policy(sea)["status"] == "enabled" and policy(sea)["days"] == 3,
          regions=(sea,))
    _wait("both regions caught up", _caught_up(west, sea))
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    west.cli("config", "soft-delete", "update", "--days", "5")
    sea.cli("config", "soft-delete", "update", "--days", "9")
    assert policy(west)["days"] == 5 and policy(sea)["days"] == 9
    west.consumer(SEA, "resume")
    sea.consumer(WEST, "resume")
    _wait("both regions caught up", _caught_up(west, sea))
    _wait("one policy in both regions", lambda: policy(west) == policy(sea))
    won = policy(west)["days"]
    assert won in (5, 9)
    logged = [c for r in (west, sea) for c in r.conflicts() if c["kind"] == "setting" and c["key"] == "soft-delete-policy"]
    assert logged, [c for r in (west, sea) for c in r.conflicts()]
    assert all(c["winner"] != c["loser"] for c in logged)
    # the setting's earlier, replicated write was the predecessor of both, never a conflict
    time.sleep(1.0)
    assert policy(west) == policy(sea) and policy(sea)["days"] == won


def _skopeo_login_and_push(region, user, password, layout, repo, tmp_path):
    """``skopeo login`` to the region with the credential, then ``skopeo copy`` of the layout to
    ``repo`` with the stored login; the two results (login, copy) as booleans, the copy only
    tried after a login that worked."""
    auth = tmp_path / f"auth-{region.name}-{user}-{secrets_token()}.json"
    auth.write_text("{}")
    login = subprocess.run(["skopeo", "login", "--authfile", str(auth), "--tls-verify=false", "-u", user, "--password-stdin",
                            region.server.host], input=password.encode(), capture_output=True, timeout=120)
    if login.returncode != 0:
        return False, False
    copy = subprocess.run(["skopeo", "copy", "--authfile", str(auth), "--dest-tls-verify=false", f"oci:{layout}:v1",
                           f"docker://{region.server.host}/{repo}:v1"], capture_output=True, timeout=300)
    assert copy.returncode == 0 or b"denied" in copy.stderr.lower() or b"unauthorized" in copy.stderr.lower(), copy.stderr
    return True, copy.returncode == 0


def secrets_token():
    import secrets
    return secrets.token_hex(4)


def _v2_status(region, user, password):
    return requests.get(f"{region.server.base}/v2/", auth=(user, password), timeout=30).status_code


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_access_state_replicates_so_one_login_works_in_every_region(regions, tmp_path):
    """Issue 13 item 2: identities, role assignments, scope maps and tokens are registers per
    record. An identity made in west and a token made in sea at the same time both end up in
    both regions, and each credential logs in and pushes with skopeo in both; an identity
    disabled in sea is refused in west once caught up, and a deleted token in both."""
    west, sea = regions
    _wait("both regions caught up", _caught_up(west, sea))
    # concurrent: neither region sees the other's change before making its own
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    dev_password = west.cli.json("identity", "create", "--name", "dev")["password"]
    west.cli("role", "assignment", "create", "--assignee", "dev", "--role", "Push", "--scope", "shared/*")
    sea.cli("scope-map", "create", "--name", "shared-push", "--repository", "shared/*",
            "content/read", "content/write", "metadata/read", "metadata/write")
    ci_password = sea.cli.json("token", "create", "--name", "ci", "--scope-map", "shared-push")["credentials"]["password1"]
    assert _v2_status(sea, "dev", dev_password) == 401 and _v2_status(west, "ci", ci_password) == 401
    west.consumer(SEA, "resume")
    sea.consumer(WEST, "resume")
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))
    _wait("dev known in southeastasia", lambda: _v2_status(sea, "dev", dev_password) == 200, regions=(sea,))
    _wait("token ci known in westeurope", lambda: _v2_status(west, "ci", ci_password) == 200, regions=(west,))
    # the role assignment came with the identity; neither write was a conflict (different records)
    assert any(a["role"] == "Push" and a["scope"] == "shared/*"
               for a in sea.cli.json("role", "assignment", "list", "--assignee", "dev")), "dev's role in southeastasia"
    assert not [c for r in (west, sea) for c in r.conflicts() if c["kind"] == "access"]

    layout = tmp_path / "layout"
    umoci_image(layout, "v1", [{"etc/who": b"access replicated"}])
    for user, password in (("dev", dev_password), ("ci", ci_password)):
        for region in (west, sea):
            assert _skopeo_login_and_push(region, user, password, layout, f"shared/{user}-{region.name}", tmp_path) == (True, True), \
                (user, region.name)

    # a registry token west issued is accepted by sea (a client whose DNS moves keeps its cached
    # token): sea verifies it with west's public key and judges dev by its replicated record
    repo = "shared/dev-westeurope"
    _wait(f"{repo} in southeastasia", lambda: sea.manifest_digest(repo, "v1") is not None, regions=(sea,))
    issued = requests.get(f"{west.server.base}/oauth2/token", params={"service": west.server.host, "scope": f"repository:{repo}:pull"},
                          auth=("dev", dev_password), timeout=30)
    assert issued.status_code == 200, issued.text
    bearer = {"Authorization": "Bearer " + issued.json()["token"], "Accept": OCI_MANIFEST}
    r = requests.get(f"{sea.server.base}/v2/{repo}/manifests/v1", headers=bearer, timeout=30)
    assert r.status_code == 200, r.text
    # its claims still bound it: another repository is refused
    assert requests.get(f"{sea.server.base}/v2/shared/ci-southeastasia/manifests/v1", headers=bearer, timeout=30).status_code in (401, 403)
    # docker's login keeps a refresh token (grant_type=password, access_type=offline): west's
    # refresh token gets a token from sea's token service too, and that token pulls there
    offline = requests.post(f"{west.server.base}/oauth2/token", timeout=30,
                            data={"grant_type": "password", "username": "dev", "password": dev_password, "access_type": "offline",
                                  "service": west.server.host, "client_id": "interop"})
    assert offline.status_code == 200 and offline.json().get("refresh_token"), offline.text

    def refreshed(region):
        return requests.post(f"{region.server.base}/oauth2/token", timeout=30,
                             data={"grant_type": "refresh_token", "refresh_token": offline.json()["refresh_token"],
                                   "service": west.server.host, "scope": f"repository:{repo}:pull", "client_id": "interop"})
    from_sea = refreshed(sea)
    assert from_sea.status_code == 200, from_sea.text
    # sea renews nothing of west's: no refresh token of its own (west's expires as issued)
    assert not from_sea.json().get("refresh_token"), from_sea.text
    r = requests.get(f"{sea.server.base}/v2/{repo}/manifests/v1", timeout=30,
                     headers={"Authorization": "Bearer " + from_sea.json()["token"], "Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text

    # disabled in sea: refused in west once caught up (its generation and enabled flag replicate)
    sea.cli("identity", "update", "--name", "dev", "--enabled", "false")
    assert requests.get(f"{sea.server.base}/v2/{repo}/manifests/v1", headers=bearer, timeout=30).status_code == 401
    assert _v2_status(sea, "dev", dev_password) == 401
    _wait("dev refused in westeurope", lambda: _v2_status(west, "dev", dev_password) == 401, regions=(west,))
    # and so is its refresh token, in either region
    assert refreshed(sea).status_code == 401 and refreshed(west).status_code == 401
    assert _skopeo_login_and_push(west, "dev", dev_password, layout, "shared/dev-after", tmp_path)[0] is False

    # a deleted token is refused in both regions
    west.cli("token", "delete", "--name", "ci")
    _wait("token ci refused in southeastasia", lambda: _v2_status(sea, "ci", ci_password) == 401, regions=(sea,))
    assert _v2_status(west, "ci", ci_password) == 401
    for region in (west, sea):
        assert _skopeo_login_and_push(region, "ci", ci_password, layout, "shared/ci-after", tmp_path)[0] is False
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))
    assert "ci" not in {t["name"] for t in sea.cli.json("token", "list")} | {t["name"] for t in west.cli.json("token", "list")}


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_a_manifest_deleted_during_a_partition_is_not_brought_back(regions):
    """Found by test_replication_partitions.py: a region that deleted a manifest fetched it back
    from a peer when it applied the peer's earlier (concurrent) tag move to it, or a referrer of
    it; the peer then deleted its own copy (its tag had moved on), and the regions differed for
    good. A manifest's deletion is ordered with the writes to it (pushes, tag moves) like any
    register: an earlier move does not bring it back, and the deletion takes its tags with it
    everywhere. A referrer the deleting region never saw (pushed concurrently) is a write the
    deletion did not take: it stays in both regions, its subject gone (a deletion applied from a
    peer takes no referrer by cascade; the referrers the deleting region held arrive as deletions
    of their own)."""
    west, sea = regions
    doomed = west.image("gone/app", "a", "deleted in west")
    other = west.image("gone/app", "b", "stays")
    _wait("gone/app in southeastasia", lambda: sea.manifest_digest("gone/app", "b") == other, regions=(sea,))
    _wait("both regions caught up", _caught_up(west, sea))
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    # southeastasia tags the manifest and hangs a referrer on it, then moves the tag on;
    # westeurope deletes the manifest in between
    body = sea.get(f"/v2/gone/app/manifests/{doomed}", headers={"Accept": OCI_MANIFEST}).content
    r = requests.put(f"{sea.server.base}/v2/gone/app/manifests/t", data=body, auth=sea.server.creds, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    empty = sea.put_blob("gone/app", b"{}")
    note = sea.put_blob("gone/app", b"a note on the doomed image")
    referrer_body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.berth.test.note",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": note, "size": 26}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": doomed, "size": len(body)},
    }).encode()
    referrer = sea.put_manifest("gone/app", "sha256:" + hashlib.sha256(referrer_body).hexdigest(), referrer_body)
    assert requests.delete(f"{west.server.base}/v2/gone/app/manifests/{doomed}", auth=west.server.creds,
                           timeout=30).status_code == 202
    other_body = sea.get(f"/v2/gone/app/manifests/{other}", headers={"Accept": OCI_MANIFEST}).content
    r = requests.put(f"{sea.server.base}/v2/gone/app/manifests/t", data=other_body, auth=sea.server.creds, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    # westeurope hears of southeastasia's writes first (while southeastasia still has the manifest)
    west.consumer(SEA, "resume")
    _wait("westeurope caught up", _applied_all((west,), of=(sea,)), regions=(west,))
    # paused, southeastasia still shows how far behind it is (its lag is read while paused)
    _wait("southeastasia's lag to show westeurope's deletion", lambda: (sea.status(WEST).get("lagEvents") or 0) > 0, regions=(sea,))
    sea.consumer(WEST, "resume")
    _wait("both regions caught up", _caught_up(west, sea))
    for region in (west, sea):
        assert region.manifest_digest("gone/app", doomed) is None, region.name
        assert region.manifest_digest("gone/app", referrer) == referrer, region.name
        assert region.manifest_digest("gone/app", "a") is None, region.name
        assert region.manifest_digest("gone/app", "t") == other, region.name
        assert region.manifest_digest("gone/app", "b") == other, region.name


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_a_manifest_pushed_again_after_a_peers_deletion_stays(regions):
    """A push of a manifest that is already stored moves nothing here, but it is a write of the
    manifest's presence: a peer's deletion made before it does not remove it (before, the push
    appended no event and the deletion removed the manifest in both regions, the push lost
    without a trace). The deletion is logged as lost; the tag it took stays gone in both."""
    west, sea = regions
    kept = west.image("again/app", "v1", "pushed again in west")
    _wait("again/app in southeastasia", lambda: sea.manifest_digest("again/app", "v1") == kept, regions=(sea,))
    _wait("both regions caught up", _caught_up(west, sea))
    west.consumer(SEA, "pause")
    sea.consumer(WEST, "pause")
    assert requests.delete(f"{sea.server.base}/v2/again/app/manifests/{kept}", auth=sea.server.creds, timeout=30).status_code == 202
    body = west.get(f"/v2/again/app/manifests/{kept}", headers={"Accept": OCI_MANIFEST}).content
    r = requests.put(f"{west.server.base}/v2/again/app/manifests/{kept}", data=body, auth=west.server.creds, timeout=30,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    west.consumer(SEA, "resume")
    sea.consumer(WEST, "resume")
    _wait("both regions caught up", _caught_up(west, sea), regions=(west, sea))
    _wait("the manifest back in southeastasia", lambda: sea.manifest_digest("again/app", kept) == kept, regions=(sea,))
    for region in (west, sea):
        assert region.manifest_digest("again/app", kept) == kept, region.name
        assert region.manifest_digest("again/app", "v1") is None, region.name
    assert any(c["kind"] == "manifest-delete" and c["key"] == kept for region in (west, sea) for c in region.conflicts())


EAST = "eastus"


@pytest.fixture
def three_regions(registry, tmp_path):
    """Three regions, each replicating from the two others (a full mesh)."""
    servers, workdirs = [], []
    try:
        for name in (SEA, EAST):
            workdir = Path(tempfile.mkdtemp(prefix=f"berth-interop-{name}-"))
            workdirs.append(workdir)
            server = RegistryServer(workdir)
            server.extra_env.update({"BERTH_REGION": name, "BERTH_OUTBOUND_ALLOW": "127.0.0.1/32",
                                     "BERTH_LIFECYCLE_TICK_SECONDS": "0.2"})
            server.start()
            servers.append(server)
        all_regions = [Region(WEST, registry, Cli(registry, tmp_path / "xdg-west"))] + [
            Region(name, server, Cli(server, tmp_path / f"xdg-{name}")) for name, server in zip((SEA, EAST), servers)]
        secrets_of = {}
        for r in all_regions:
            r.cli.login()
            secrets_of[r.name] = r.cli.json("identity", "create", "--name", f"peer-replicator-{r.name}")["password"]
            r.cli("role", "assignment", "create", "--assignee", f"peer-replicator-{r.name}", "--role", "Replicator", "--scope", "*")
        for here in all_regions:
            for there in all_regions:
                if here is there:
                    continue
                f = tmp_path / f"credential-{here.name}-{there.name}"
                f.write_text(f"peer-replicator-{there.name}:{secrets_of[there.name]}\n")
                os.chmod(f, stat.S_IRUSR | stat.S_IWUSR)
                here.cli("replication", "create", "--location", there.name, "--endpoint", there.server.base,
                         "--credential-file", str(f))
        yield all_regions
    finally:
        for server in servers:
            server.stop()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_three_regions_converge(three_regions):
    regions = three_regions

    caught_up = _applied_all(regions)

    base = regions[0].image("mesh/app", "t", "base")
    _wait("mesh/app:t everywhere", lambda: all(r.manifest_digest("mesh/app", "t") == base for r in regions), regions=regions)
    _wait("all caught up", caught_up, regions=regions)
    # a partition of everyone: each region writes the tag
    for r in regions:
        for other in regions:
            if other is not r:
                r.consumer(other.name, "pause")
    written = {r.name: r.image("mesh/app", "t", f"written in {r.name}") for r in regions}
    stamps = []
    for r in regions:
        e = r.feed_event("mesh/app", "t", written[r.name])
        stamps.append((tuple(int(x) for x in e["hlc"].split(".")), r.name, written[r.name]))
    winner = max(stamps)
    for r in regions:
        for other in regions:
            if other is not r:
                r.consumer(other.name, "resume")
    _wait("every region on the winner", lambda: all(r.manifest_digest("mesh/app", "t") == winner[2] for r in regions),
          regions=regions)
    _wait("all caught up", caught_up, regions=regions)
    # every losing write is in the conflict log of the region that made it, beaten by a newer write:
    # the winner's, or another loser's newer one when that reached the region first (then that one
    # lost to the winner in turn); which arrives first depends on the three feeds' timing
    stamp_of = {digest: stamp for stamp, _, digest in stamps}
    for stamp, name, digest in stamps:
        if digest != winner[2]:
            region = next(r for r in regions if r.name == name)
            logged = [c for c in region.conflicts() if c["loser"] == digest]
            assert logged, (name, region.conflicts())
            assert all(c["winner"] in stamp_of and stamp_of[c["winner"]] > stamp for c in logged), (name, logged)
    assert any(c["winner"] == winner[2] for r in regions for c in r.conflicts()), "the winner beat a write somewhere"
    # a deletion in one region reaches the two others, through either path
    regions[2].cli("repository", "delete", "--name", "mesh/app", "--yes")
    _wait("the repository delete everywhere", lambda: all(r.manifest_digest("mesh/app", "t") is None for r in regions),
          regions=regions)
    _wait("all caught up", caught_up, regions=regions)
    assert all(r.manifest_digest("mesh/app", "t") is None for r in regions)


# ---------------------------------------------------------------------------
# Items 4-5: regional data endpoints and health-aware routing
# ---------------------------------------------------------------------------

def _metric(server, name, labels=""):
    """The value of one sample of ``/metrics`` (0 when absent)."""
    text = requests.get(f"{server.base}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    return 0.0


def _pulled_digest(tmp_path, source, creds, name):
    """A skopeo copy of ``source`` into a fresh OCI layout; the manifest digest it recorded."""
    layout = tmp_path / name
    skopeo("copy", "--src-tls-verify=false", source, f"oci:{layout}:pulled", creds=creds)
    index = json.loads((layout / "index.json").read_text())
    return index["manifests"][0]["digest"]


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2",
                        BERTH_CLIENT_NETWORKS=f"127.0.0.1/32={SEA}")
def test_blob_pulls_are_routed_to_the_healthy_region_of_the_client(regions, tmp_path):
    west, sea = regions
    # West's own data endpoint names the address it listens on: restart it with it, on the same port.
    port = west.server.port
    west.server.stop()
    west.server.extra_env["BERTH_DATA_ENDPOINT"] = west.server.base
    west.server.start(port=port)
    assert west.server.port == port

    # A push to west stays on west: the upload session's Location names west's data endpoint.
    started = requests.post(f"{west.server.base}/v2/geo/routed/blobs/uploads/", auth=west.server.creds, timeout=30)
    assert started.status_code == 202 and started.headers["Location"].startswith(west.server.base + "/v2/geo/routed/blobs/uploads/")
    layout = tmp_path / "layout"
    pushed = umoci_image(layout, "v1", [{"etc/app.conf": b"routed"}, {"bin/tool": b"\x7fELF" + b"r" * 8192}])
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{west.server.host}/geo/routed:v1",
           creds=west.server.creds)
    _wait("geo/routed:v1 in southeastasia", lambda: sea.manifest_digest("geo/routed", "v1") == pushed, regions=(west, sea))
    _wait("southeastasia healthy as west sees it", lambda: west.status(SEA).get("health") == "healthy", regions=(west,))

    # This machine's clients map to southeastasia: west authorizes each blob GET and sends it there.
    served_before = _metric(sea.server, "berth_replication_signed_reads_served")
    assert _pulled_digest(tmp_path, f"docker://{west.server.host}/geo/routed:v1", west.server.creds, "pull1") == pushed
    manifest = json.loads(west.get(f"/v2/geo/routed/manifests/{pushed}", headers={"Accept": OCI_MANIFEST}).content)
    blobs = [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]
    assert _metric(sea.server, "berth_replication_signed_reads_served") - served_before >= len(blobs)
    assert _metric(west.server, "berth_replication_redirects", f'{{location="{SEA}"}}') >= len(blobs)
    assert _metric(west.server, "berth_replication_peer_healthy", f'{{location="{SEA}"}}') == 1

    # The redirect: a signed URL on sea's data endpoint, no token in it; the bytes there are the blob.
    layer = manifest["layers"][1]["digest"]
    redirect = west.get(f"/v2/geo/routed/blobs/{layer}", allow_redirects=False)
    assert redirect.status_code == 307
    url = redirect.headers["Location"]
    assert url.startswith(f"{sea.server.base}/v2/geo/routed/blobs/{layer}?") and "berth-signature=" in url
    assert west.server.password not in url
    direct = requests.get(url, timeout=30)
    assert direct.status_code == 200 and hashlib.sha256(direct.content).hexdigest() == layer[7:]
    # HEAD is answered by west itself.
    assert requests.head(f"{west.server.base}/v2/geo/routed/blobs/{layer}", auth=west.server.creds, timeout=30).status_code == 200
    # Tampered, swapped or expired: refused with an OCI error, never the blob.
    tampered = url.replace("berth-signature=", "berth-signature=A")
    other = manifest["layers"][0]["digest"]
    for bad in (tampered, url.replace(layer, other), url.replace("/geo/routed/", "/geo/app/"),
                re.sub(r"berth-expires=\d+", "berth-expires=1000", url)):
        r = requests.get(bad, timeout=30)
        assert r.status_code in (401, 403), (bad, r.status_code)
        assert r.json()["errors"][0]["code"] in ("DENIED", "UNAUTHORIZED")
        assert hashlib.sha256(r.content).hexdigest() != layer[7:]

    # Replication lag: sea has not applied an image yet, and serves its blobs all the same, fetched
    # from west by digest and verified.
    sea.consumer(WEST, "pause")
    lagging = umoci_image(layout, "v2", [{"etc/app.conf": b"not replicated yet"}])
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v2", f"docker://{west.server.host}/geo/routed:v2",
           creds=west.server.creds)
    fetched_before = _metric(sea.server, "berth_replication_signed_reads_fetched")
    assert _pulled_digest(tmp_path, f"docker://{west.server.host}/geo/routed:v2", west.server.creds, "pull2") == lagging
    assert _metric(sea.server, "berth_replication_signed_reads_fetched") - fetched_before >= 1
    assert sea.manifest_digest("geo/routed", "v2") is None   # the manifest still waits for replication
    sea.consumer(WEST, "resume")

    # Southeastasia goes down: west stops routing to it within a bounded wait, and every pull
    # through west succeeds with no change to the client.
    sea.server.stop()
    _wait("southeastasia unhealthy as west sees it", lambda: west.status(SEA).get("health") == "unhealthy", regions=(west,))
    assert west.status(SEA).get("healthError")
    assert _metric(west.server, "berth_replication_peer_healthy", f'{{location="{SEA}"}}') == 0
    failed = 0
    for i in range(3):
        try:
            assert _pulled_digest(tmp_path, f"docker://{west.server.host}/geo/routed:v1", west.server.creds, f"after{i}") == pushed
        except (AssertionError, subprocess.CalledProcessError):
            failed += 1
    assert failed == 0
    local = west.get(f"/v2/geo/routed/blobs/{layer}", allow_redirects=False)
    assert local.status_code == 200 and hashlib.sha256(local.content).hexdigest() == layer[7:]


def test_routing_settings_are_refused_clearly_when_malformed(tmp_path):
    from conftest import berth_bin

    def serve(*args, env=None):
        return subprocess.run([str(berth_bin()), "serve", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:1", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    for bad, says in ((["--client-network", "10.0.0.0/8"], "CIDR=REGION"),
                      (["--client-network", "10.0.0.0/33=sea"], "10.0.0.0/33=sea"),
                      (["--client-network", "10.0.0.0/8=Sea_Asia"], "10.0.0.0/8=Sea_Asia"),
                      (["--client-network", "10.0.0.0/8=a", "--client-network", "10.0.0.0/8=b"], "mapped twice"),
                      (["--data-endpoint", "ftp://west.example"], "data-endpoint must be an http(s) URL")):
        r = serve(*bad)
        assert r.returncode != 0, bad
        assert "--client-network" in r.stderr or "--data-endpoint" in r.stderr, r.stderr
        assert says in r.stderr, (bad, r.stderr)
    env = dict(os.environ, BERTH_CLIENT_NETWORKS="10.0.0.0/8=west,banana=sea")
    r = serve(env=env)
    assert r.returncode != 0 and "BERTH_CLIENT_NETWORKS" in r.stderr and "banana=sea" in r.stderr, r.stderr


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_REGION=WEST, BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_a_broken_blob_transfer_resumes_where_it_stopped(regions, tmp_path):
    """Issue 13's resumable blob fetches: sea reads west through a proxy that cuts a 3 MiB layer
    1 MiB in and then drops every later GET of it, so sea's attempts fail with the bytes received
    kept (a private upload session of the repository and the layer). Each later GET asks only for
    the rest (``Range: bytes=N-``, N the bytes kept), and once the proxy lets the layer through
    the proxy has forwarded, after the cut, only the rest of it; sea stores west's layer, verified."""
    from test_import import DroppingProxy

    west, sea = regions
    repo = "resume/app"
    big = os.urandom(3 * 1024 * 1024)
    layer = "sha256:" + hashlib.sha256(big).hexdigest()
    cut = 1024 * 1024
    proxy = DroppingProxy(west.server.host, layer, cut=cut, own_realm=True)
    proxy.dropping = True
    try:
        sea.cli("replication", "update", "--location", WEST, "--endpoint", f"http://{proxy.host}",
                "--credential-file", str(tmp_path / f"credential-{SEA}"))
        config = json.dumps({"architecture": "amd64", "os": "linux", "resume": True}).encode()
        digest = west.image_of(repo, "v1", config, big)

        def failed_and_retried():
            s = sea.status(WEST)
            return s if s.get("lastError") and len(proxy.ranges) >= 5 else None
        _wait("sea to fail an attempt at the layer and try again", failed_and_retried, regions=(west, sea))
        assert sea.manifest_digest(repo, "v1") is None

        proxy.dropping = False
        _wait("sea to catch up once the layer comes through", _caught_up(west, sea), tries=600, regions=(west, sea))
        assert sea.manifest_digest(repo, "v1") == digest
        r = requests.get(f"{sea.server.base}/v2/{repo}/blobs/{layer}", auth=sea.server.creds, timeout=60)
        assert r.status_code == 200 and r.content == big

        # The first GET was cut; every later one (in that attempt and the next ones) asked for the
        # rest from the bytes kept, never for the whole layer again.
        assert proxy.ranges[0] is None, proxy.ranges
        m = re.fullmatch(r"bytes=(\d+)-", proxy.ranges[1] or "")
        assert m and 0 < int(m.group(1)) <= cut, proxy.ranges
        assert set(proxy.ranges[1:]) == {proxy.ranges[1]}, proxy.ranges
        kept = int(m.group(1))
        assert sum(proxy.sent[1:]) == len(big) - kept, (kept, proxy.sent)
    finally:
        proxy.stop()
