"""Issue 15 items 5-8 against a real `berth serve`: findings per image.

A small synthetic Debian 12 image (os-release and a dpkg status naming source packages) is pushed
over /v2/, the Debian security tracker JSON written here is imported with `berth scan db import`,
and `berth scan show` prints the findings the scan consumer matched after the push: by source
package and release, with bookworm's backport versions; an updated database re-matches it. Nothing is fetched from the internet; the
reference registry has no scanner, so the module is ``berth_only``. An OpenVEX document pushed
with oras-py as a referrer of the image suppresses the finding it names.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import oras.oci
import pytest
import requests

from conftest import RegistryServer
from test_oras import _push_files, oras_client
from test_scan_db import berth, berth_json

pytestmark = [pytest.mark.berth_only]

REPO = "payments/api"

OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u3

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u2

"""

TRACKER = {
    "glibc": {
        "CVE-2099-1001": {"description": "fixed by a bookworm backport", "releases": {
            "bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u4", "urgency": "high"},
            "sid": {"status": "resolved", "fixed_version": "2.37-1", "urgency": "high"}}},
        "CVE-2099-1002": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u1", "urgency": "high"}}},
        "CVE-2099-1003": {"releases": {"bookworm": {"status": "open", "urgency": "low", "nodsa": "Minor issue"}}},
    },
    "openssl": {
        "CVE-2099-2001": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2", "urgency": "medium"}}},
    },
}


def layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, text in (("etc/os-release", OS_RELEASE), ("var/lib/dpkg/status", STATUS)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(api, tag: str, repo: str = REPO) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    blob = layer()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": api.push_blob(repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": api.push_blob(repo, blob), "size": len(blob)}],
    }).encode()
    r = api.put_manifest(repo, tag, manifest)
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


@pytest.fixture
def server():
    workdir = Path(tempfile.mkdtemp(prefix="berth-findings-"))
    s = RegistryServer(workdir)
    s.extra_env.update({"BERTH_SCAN_ON_PUSH": "true"})
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_for_findings(server, image, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        proc = berth(server, "scan", "show", image, "-o", "json", check=False)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        assert b"not been scanned yet" in proc.stderr, proc.stderr.decode() + server.log_tail()
        assert time.monotonic() < deadline, f"no findings after {timeout}s:\n{server.log_tail()}"
        time.sleep(0.3)


def test_scan_show_lists_findings_by_source_package_and_backport_and_follows_the_database(server, tmp_path):
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    imported = berth_json(server, "scan", "db", "import", str(tracker))
    digest = push_image(server.api(), "1.0")

    shown = wait_for_findings(server, f"{REPO}:1.0")
    assert shown["manifest"] == digest and shown["advisoryVersion"] == imported["version"]
    found = [(f["id"], f["package"], f.get("sourcePackage"), f["installedVersion"], f.get("fixedVersion"), f["severity"], f["fixState"])
             for f in shown["findings"]]
    # Most severe first. CVE-2099-1002 is fixed below the installed backport, CVE-2099-2001 at it.
    assert found == [
        ("CVE-2099-1001", "libc6", "glibc", "2.36-9+deb12u3", "2.36-9+deb12u4", "High", "fix-available"),
        ("CVE-2099-1003", "libc6", "glibc", "2.36-9+deb12u3", None, "Low", "no-dsa"),
    ]
    assert shown["unfixedHidden"] == 0

    fixed_only = berth_json(server, "scan", "show", f"{REPO}@{digest}", "--ignore-unfixed")
    assert [f["id"] for f in fixed_only["findings"]] == ["CVE-2099-1001"] and fixed_only["unfixedHidden"] == 1

    table = berth(server, "scan", "show", f"{REPO}:1.0").stdout.decode()
    assert "CVE-2099-1001" in table and "2.36-9+deb12u4" in table and "SEVERITY" in table

    # A new database version: the background re-match updates the findings from the stored
    # inventory (the inventory's creation time shows it was not made again).
    inventory = server.api().req("GET", "/api/v1/scans/inventory", params={"repository": REPO, "reference": "1.0"}).json()
    updated = copy.deepcopy(TRACKER)
    updated["glibc"]["CVE-2099-1001"]["releases"]["bookworm"]["fixed_version"] = "2.36-9+deb12u3"
    tracker.write_text(json.dumps(updated))
    second = berth_json(server, "scan", "db", "import", str(tracker))
    assert second["version"] > imported["version"]
    deadline = time.monotonic() + 60
    while True:
        shown = berth_json(server, "scan", "show", f"{REPO}:1.0")
        if shown["advisoryVersion"] == second["version"]:
            break
        assert time.monotonic() < deadline, f"not re-matched:\n{server.log_tail()}"
        time.sleep(0.5)
    assert [f["id"] for f in shown["findings"]] == ["CVE-2099-1003"] and shown["databaseVersion"] == second["version"]
    again = server.api().req("GET", "/api/v1/scans/inventory", params={"repository": REPO, "reference": "1.0"}).json()
    assert again["createdAt"] == inventory["createdAt"] and again["layers"] == inventory["layers"]

    # An image nobody may read is not shown: an anonymous caller is refused.
    r = requests.get(f"{server.base}/api/v1/scans/findings", params={"repository": REPO, "reference": "1.0"}, timeout=30)
    assert r.status_code in (401, 403), r.text


def test_scan_list_filters_by_severity_and_repository_as_table_and_json(server, tmp_path):
    """`berth scan list` itself (issue 15 item 7): `--repository 'payments/*'`, `--severity`,
    `-o json` and the table."""
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    berth_json(server, "scan", "db", "import", str(tracker))
    digest = push_image(server.api(), "1.0")
    other = push_image(server.api(), "1", repo="billing/worker")
    assert other == digest   # one image in two repositories: listed once per repository
    wait_for_findings(server, f"{REPO}:1.0")
    wait_for_findings(server, "billing/worker:1")

    listed = berth_json(server, "scan", "list", "--repository", "payments/*")
    rows = [(i["repository"], i["manifest"], i["tags"], i["counts"]) for i in listed["images"]]
    assert rows == [(REPO, digest, ["1.0"], {"High": 1, "Low": 1})], listed
    both = berth_json(server, "scan", "list", "--severity", "High,Critical")
    assert sorted(i["repository"] for i in both["images"]) == ["billing/worker", REPO], both
    assert berth_json(server, "scan", "list", "--severity", "Critical")["images"] == []
    assert berth_json(server, "scan", "list", "--repository", "nothing/*")["images"] == []

    table = berth(server, "scan", "list", "--severity", "High").stdout.decode().splitlines()
    assert table[0].split() == ["REPOSITORY", "MANIFEST", "TAGS", "CRITICAL", "HIGH", "MEDIUM", "LOW", "TOTAL"], table
    cells = sorted(line.split() for line in table[1:] if not line.startswith("-"))
    assert cells == [["billing/worker", digest, "1", "0", "1", "0", "1", "2"], [REPO, digest, "1.0", "0", "1", "0", "1", "2"]], table
    # A bad severity is refused with the reason, not an empty list.
    bad = berth(server, "scan", "list", "--severity", "Severe", check=False)
    assert bad.returncode != 0 and b"severity: a comma-separated list of" in bad.stderr and b"Critical" in bad.stderr, bad.stderr


def test_an_openvex_referrer_pushed_with_oras_suppresses_the_finding_it_names(server, tmp_path):
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    berth_json(server, "scan", "db", "import", str(tracker))
    digest = push_image(server.api(), "vex")
    shown = wait_for_findings(server, f"{REPO}:vex")
    assert [f["id"] for f in shown["findings"]] == ["CVE-2099-1001", "CVE-2099-1003"]
    assert all("vex" not in f for f in shown["findings"]) and shown.get("suppressed") == 0

    # OpenVEX v0.2.0: CVE-2099-1001 does not affect this image (named by its pkg:oci purl, with
    # glibc's libc6 as the subcomponent); a statement about another image changes nothing here.
    vex = {
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/payments-api-1",
        "author": "Payments security", "timestamp": "2026-11-30T12:00:00Z", "version": 1,
        "statements": [
            {"vulnerability": {"name": "CVE-2099-1001"},
             "products": [{"@id": f"pkg:oci/api@{digest.replace(':', '%3A')}",
                           "subcomponents": [{"@id": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64"}]}],
             "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path",
             "impact_statement": "the affected resolver is never called"},
            {"vulnerability": {"name": "CVE-2099-1003"}, "products": [{"@id": "sha256:" + "0" * 64}],
             "status": "not_affected", "justification": "component_not_present"},
        ],
    }
    work = tmp_path / "vex"
    work.mkdir()
    (work / "openvex.json").write_text(json.dumps(vex))
    (work / "config.json").write_text("{}")
    size = len(server.api().get_manifest(REPO, digest).content)
    reg = oras_client(server.host, server.creds)
    resp = _push_files(reg, f"{server.host}/{REPO}:vex-statement", work, ["openvex.json:application/openvex+json"],
                       manifest_config="config.json:application/openvex+json",
                       subject=oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=digest, size=size))
    assert resp.status_code == 201 and resp.headers.get("OCI-Subject") == digest, (resp.status_code, resp.text)
    referrer = resp.headers["Docker-Content-Digest"]

    shown = berth_json(server, "scan", "show", f"{REPO}:vex")
    by_id = {f["id"]: f for f in shown["findings"]}
    assert by_id["CVE-2099-1001"]["vex"] == {
        "status": "not_affected", "suppressed": True, "justification": "vulnerable_code_not_in_execute_path",
        "impactStatement": "the affected resolver is never called", "source": referrer}
    assert "vex" not in by_id["CVE-2099-1003"]
    assert shown["suppressed"] == 1 and "vexProblems" not in shown

    table = berth(server, "scan", "show", f"{REPO}:vex").stdout.decode()
    assert "1 suppressed by VEX" in table, table
    row = next(line for line in table.splitlines() if "CVE-2099-1001" in line)
    assert "suppressed: not_affected (vulnerable_code_not_in_execute_path)" in row, table
    assert "suppressed" not in next(line for line in table.splitlines() if "CVE-2099-1003" in line)
