"""Issue 15 item 8 against a real `berth serve`: the scan policy as a gate.

The synthetic Debian image of test_scan_findings (one High finding, CVE-2099-1001, and one Low) is
pushed over /v2/ and scanned; `berth config scan-policy update` sets the policy through the CLI;
skopeo, a real client, is refused the image (403) while the policy blocks pulls, and gets it once
an exception (who, why, until) covers the finding. With quarantine on, the scanner's verdict
(Failed, naming the advisory) holds the image. The reference registry has no scanner, so the
module is ``berth_only``.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from conftest import RegistryServer
from helpers import skopeo
from test_scan_db import berth, berth_json
from test_scan_findings import REPO, TRACKER, push_image, wait_for_findings

pytestmark = [pytest.mark.berth_only]


@pytest.fixture
def server():
    workdir = Path(tempfile.mkdtemp(prefix="berth-scan-gates-"))
    s = RegistryServer(workdir)
    s.extra_env.update({"BERTH_SCAN_ON_PUSH": "true"})
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def inspect(server, ref: str, check: bool = True):
    return skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{server.host}/{ref}",
                  creds=(server.username, server.password), check=check)


def test_scan_policy_blocks_pulls_with_skopeo_until_an_exception_and_round_trips_through_the_cli(server, tmp_path):
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    berth_json(server, "scan", "db", "import", str(tracker))
    push_image(server.api(), "1.0")
    wait_for_findings(server, f"{REPO}:1.0")

    shown = berth_json(server, "config", "scan-policy", "show")
    assert (shown["blockSeverity"], shown["blockPulls"], shown["allow"]) == ("None", False, [])
    inspect(server, f"{REPO}:1.0")

    # Invalid input is refused with the field named, and nothing changes.
    bad = berth(server, "config", "scan-policy", "update", "--block-severity", "Severe", check=False)
    assert bad.returncode != 0 and b"blockSeverity" in bad.stderr
    bad = berth(server, "config", "scan-policy", "update", "--allow", "CVE-2099-1001", "--reason", "x", "--until", "2001-01-01",
                check=False)
    assert bad.returncode != 0 and b"allow.until" in bad.stderr

    policy = berth_json(server, "config", "scan-policy", "update", "--block-severity", "High", "--ignore-unfixed",
                        "--block-pulls", "true")
    assert (policy["blockSeverity"], policy["ignoreUnfixed"], policy["blockPulls"]) == ("High", True, True)
    refused = inspect(server, f"{REPO}:1.0", check=False)
    err = refused.stderr.decode(errors="replace")
    assert refused.returncode != 0 and re.search(r"denied|403|forbidden", err, re.IGNORECASE), err
    assert "scan policy" in err and "CVE-2099-1001" in err, err

    until = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%d")
    policy = berth_json(server, "config", "scan-policy", "update", "--allow", "CVE-2099-1001", "--repository", "payments/*",
                        "--reason", "backport scheduled", "--until", until)
    [exception] = policy["allow"]
    assert (exception["id"], exception["repository"], exception["why"], exception["expired"]) == \
        ("CVE-2099-1001", "payments/*", "backport scheduled", False)
    assert server.username in exception["who"], exception
    inspect(server, f"{REPO}:1.0")                                            # let through by the exception

    table = berth(server, "config", "scan-policy", "show").stdout.decode()
    assert "CVE-2099-1001" in table and "backport scheduled" in table

    policy = berth_json(server, "config", "scan-policy", "update", "--remove-allow", "CVE-2099-1001")
    assert policy["allow"] == []
    assert inspect(server, f"{REPO}:1.0", check=False).returncode != 0
    berth_json(server, "config", "scan-policy", "update", "--block-pulls", "false")
    inspect(server, f"{REPO}:1.0")


def test_scanner_fails_a_quarantined_image_that_breaks_the_policy(server, tmp_path):
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    berth_json(server, "scan", "db", "import", str(tracker))
    berth(server, "config", "scan-policy", "update", "--block-severity", "High")
    berth(server, "config", "quarantine", "update", "--status", "enabled")
    digest = push_image(server.api(), "2.0")
    deadline = time.monotonic() + 60
    while True:
        listed = server.api().req("GET", "/api/v1/repository/manifests", params={"name": REPO})
        assert listed.status_code == 200, listed.text
        state = next((m.get("quarantineState") for m in listed.json() if m["digest"] == digest), None)
        if state == "Failed":
            break
        assert state == "Pending", state                                     # never Passed on the way
        assert time.monotonic() < deadline, f"no verdict (state {state}):\n{server.log_tail()}"
        time.sleep(0.5)
    # An identity with only the Pull role is refused the Failed image by skopeo.
    puller = berth_json(server, "identity", "create", "--name", "puller")
    berth(server, "role", "assignment", "create", "--assignee", "puller", "--role", "Pull", "--scope", "*")
    refused = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{server.host}/{REPO}@{digest}",
                     creds=("puller", puller["password"]), check=False)
    assert refused.returncode != 0 and re.search(r"quarantined|denied|403", refused.stderr.decode(), re.IGNORECASE)

    # A policy change re-judges the scanner's verdict in the background (from the stored
    # findings): only Critical blocks now, so the High finding no longer holds the image.
    berth(server, "config", "scan-policy", "update", "--block-severity", "Critical")
    deadline = time.monotonic() + 60
    while True:
        listed = server.api().req("GET", "/api/v1/repository/manifests", params={"name": REPO}).json()
        if next(m.get("quarantineState") for m in listed if m["digest"] == digest) == "Passed":
            break
        assert time.monotonic() < deadline, f"not re-judged:\n{server.log_tail()}"
        time.sleep(0.5)
    skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{server.host}/{REPO}@{digest}", creds=("puller", puller["password"]))


def test_an_uploaded_openvex_document_lets_an_image_blocked_by_a_critical_finding_through(server, tmp_path):
    critical = copy.deepcopy(TRACKER)
    critical["glibc"]["CVE-2099-1001"]["releases"]["bookworm"]["urgency"] = "critical"
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(critical))
    berth_json(server, "scan", "db", "import", str(tracker))
    digest = push_image(server.api(), "3.0")
    shown = wait_for_findings(server, f"{REPO}:3.0")
    assert ("CVE-2099-1001", "Critical") in [(f["id"], f["severity"]) for f in shown["findings"]]
    berth_json(server, "config", "scan-policy", "update", "--block-severity", "Critical", "--block-pulls", "true")
    refused = inspect(server, f"{REPO}:3.0", check=False)
    assert refused.returncode != 0 and "CVE-2099-1001" in refused.stderr.decode(errors="replace")

    vex = {
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/payments-api-3",
        "author": "Payments security", "timestamp": "2026-11-30T12:00:00Z", "version": 1,
        "statements": [{"vulnerability": {"name": "CVE-2099-1001"}, "products": [{"@id": digest}],
                        "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}],
    }
    document = tmp_path / "openvex.json"
    document.write_text(json.dumps(vex))

    # Only who may push to the repository attaches a document; a malformed one is refused.
    puller = berth_json(server, "identity", "create", "--name", "vex-puller")
    berth(server, "role", "assignment", "create", "--assignee", "vex-puller", "--role", "Pull", "--scope", "*")
    r = requests.post(f"{server.base}/api/v1/scans/vex", params={"repository": REPO, "reference": "3.0"},
                      data=document.read_bytes(), auth=("vex-puller", puller["password"]), timeout=30)
    assert r.status_code == 403, r.text
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"vulnerability": "X"}]}))
    proc = berth(server, "scan", "vex", "import", str(bad), "--image", f"{REPO}:3.0", check=False)
    assert proc.returncode != 0 and b"OpenVEX" in proc.stderr, proc.stderr
    assert inspect(server, f"{REPO}:3.0", check=False).returncode != 0

    attached = berth_json(server, "scan", "vex", "import", str(document), "--image", f"{REPO}:3.0")
    assert attached["subject"] == digest and attached["statements"] == 1
    inspect(server, f"{REPO}:3.0")                                               # skopeo gets it now
    # An ordinary referrer: the OCI referrers API lists it with its artifact type.
    listed = server.api().req("GET", f"/v2/{REPO}/referrers/{digest}").json()
    assert {"digest": attached["referrer"], "artifactType": "application/openvex+json"}.items() <= \
        next(m for m in listed["manifests"] if m["digest"] == attached["referrer"]).items()
    shown = berth_json(server, "scan", "show", f"{REPO}:3.0")
    assert next(f for f in shown["findings"] if f["id"] == "CVE-2099-1001")["vex"]["source"] == attached["referrer"]
