"""Issue 15 item 4: the advisory database through the `berth` CLI against a real server.

Fixtures are written here in the real upstream formats (OSV records, an OSV ``all.zip``, the
Debian security tracker JSON, an Alpine secdb); nothing is fetched from the internet. A loopback
HTTP server serves the feeds for ``berth scan db update`` with ``ETag``/``Last-Modified`` and
answers conditional requests with 304. The reference registry has no advisory database, so the
module is ``berth_only``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import RegistryServer, berth_bin

pytestmark = [pytest.mark.berth_only]


def osv(id_, package, fixed, ecosystem="PyPI", withdrawn=None, summary="test advisory"):
    record = {
        "schema_version": "1.6.0", "id": id_, "modified": "2026-11-01T00:00:00Z", "published": "2026-10-01T00:00:00Z",
        "aliases": ["CVE-2026-" + id_[-4:]], "summary": summary,
        "affected": [{
            "package": {"ecosystem": ecosystem, "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            "versions": ["1.0.0"],
        }],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    }
    if withdrawn:
        record["withdrawn"] = withdrawn
    return record


DEBIAN = {
    "openssl": {
        "CVE-2026-1000": {
            "description": "openssl: a flaw", "scope": "remote",
            "releases": {
                "bookworm": {"status": "resolved", "repositories": {"bookworm": "3.0.15-1~deb12u1"},
                             "fixed_version": "3.0.14-1~deb12u2", "urgency": "medium"},
                "trixie": {"status": "open", "repositories": {"trixie": "3.3.2-1"}, "urgency": "unimportant",
                           "nodsa": "Minor issue"},
            },
        },
    },
    "glibc": {
        "CVE-2026-2000": {
            "description": "glibc: another flaw", "scope": "local",
            "releases": {"bookworm": {"status": "resolved", "repositories": {"bookworm": "2.36-9+deb12u7"},
                                      "fixed_version": "2.36-9+deb12u4", "urgency": "high"}},
        },
    },
}

ALPINE = {
    "apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk",
    "archs": ["x86_64"], "reponame": "main", "urlprefix": "https://dl-cdn.alpinelinux.org/alpine",
    "distroversion": "v3.20",
    "packages": [
        {"pkg": {"name": "openssl", "secfixes": {"3.3.2-r0": ["CVE-2024-6119"], "3.3.1-r1": ["CVE-2024-5535 CVE-2024-4741"]}}},
        {"pkg": {"name": "busybox", "secfixes": {"0": ["CVE-2021-42373"], "1.36.1-r29": ["CVE-2023-42366"]}}},
    ],
}

LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


def osv_zip(records) -> bytes:
    """An ecosystem's OSV all.zip export: one deflated JSON file per record."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r))
    return raw.getvalue()


NPM_RECORDS = [osv(f"GHSA-npm-000{i}", name, fixed, ecosystem="npm")
               for i, (name, fixed) in enumerate([("lodash", "4.17.21"), ("minimist", "1.2.6"), ("semver", "7.5.2")], 1)]


class Feeds:
    """Serves /debian.json and /npm/all.zip (ETag) and /alpine.json (Last-Modified) and records
    each request's conditional headers."""

    def __init__(self):
        self.requests = []
        self.bodies = {"/debian.json": json.dumps(DEBIAN).encode(), "/alpine.json": json.dumps(ALPINE).encode(),
                       "/npm/all.zip": osv_zip(NPM_RECORDS)}
        feeds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
                feeds.requests.append((self.path, inm, ims))
                body = feeds.bodies.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"%08x"' % (hash(body) & 0xFFFFFFFF)
                if self.path != "/alpine.json" and inm == etag or self.path == "/alpine.json" and ims == LAST_MODIFIED:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip" if self.path.endswith(".zip") else "application/json")
                self.send_header("Content-Length", str(len(body)))
                if self.path != "/alpine.json":
                    self.send_header("ETag", etag)
                else:
                    self.send_header("Last-Modified", LAST_MODIFIED)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feeds():
    f = Feeds()
    yield f
    f.close()


@pytest.fixture
def server(feeds):
    workdir = Path(tempfile.mkdtemp(prefix="berth-scandb-"))
    s = RegistryServer(workdir)
    base = f"http://127.0.0.1:{feeds.port}"
    # 127.0.0.2 is loopback too, but outside the allow list: its feed must be refused.
    s.extra_env.update({
        "BERTH_OUTBOUND_ALLOW": "127.0.0.1/32",
        "BERTH_ADVISORY_FEEDS": f"debian=debian:{base}/debian.json alpine=alpine:{base}/alpine.json npm=osv:{base}/npm/all.zip "
                                f"private=osv:http://127.0.0.2:{feeds.port}/debian.json",
    })
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def berth(server, *args, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update({"BERTH_REGISTRY": server.base, "BERTH_USERNAME": server.username, "BERTH_PASSWORD": server.password,
                "XDG_CONFIG_HOME": str(server.workdir / "xdg")})
    proc = subprocess.run([str(berth_bin()), *args], capture_output=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"berth {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout.decode()}\n{proc.stderr.decode()}"
                             f"\n--- server ---\n{server.log_tail()}")
    return proc


def berth_json(server, *args, check=True):
    proc = berth(server, *args, "-o", "json", check=check)
    return json.loads(proc.stdout)


def test_import_directory_zip_and_update_from_feeds(server, feeds, tmp_path):
    records = tmp_path / "osv"
    records.mkdir()
    (records / "GHSA-0001.json").write_text(json.dumps(osv("GHSA-test-0001", "requests", "2.31.0")))
    (records / "GHSA-0002.json").write_text(json.dumps(osv("GHSA-test-0002", "urllib3", "2.0.7")))
    (records / "GHSA-0003.json").write_text(json.dumps(osv("GHSA-test-0003", "flask", "3.0.1", withdrawn="2026-11-02T00:00:00Z")))

    first = berth_json(server, "scan", "db", "import", str(records), "--source", "osv-dir")
    assert (first["version"], first["created"], first["added"], first["problems"]) == (1, True, 2, 0), first
    again = berth_json(server, "scan", "db", "import", str(records), "--source", "osv-dir")
    assert (again["version"], again["created"], again["unchanged"], again["added"]) == (1, False, 2, 0), again

    # A changed record is rewritten, a withdrawn one removed: one new version.
    (records / "GHSA-0001.json").write_text(json.dumps(osv("GHSA-test-0001", "requests", "2.32.0")))
    (records / "GHSA-0002.json").write_text(json.dumps(osv("GHSA-test-0002", "urllib3", "2.0.7", withdrawn="2026-11-03T00:00:00Z")))
    changed = berth_json(server, "scan", "db", "import", str(records), "--source", "osv-dir")
    assert (changed["version"], changed["changed"], changed["removed"], changed["unchanged"]) == (2, 1, 1, 0), changed

    # An ecosystem's all.zip export (deflated entries), format detected.
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(30):
            z.writestr(f"GO-2026-{i:04d}.json", json.dumps(osv(f"GO-2026-{i:04d}", f"example.com/m{i}", "1.2.3", ecosystem="Go")))
    zipped = berth_json(server, "scan", "db", "import", str(archive), "--source", "go")
    assert (zipped["format"], zipped["version"], zipped["added"]) == ("osv", 3, 30), zipped

    # Garbage is refused with one clear error line and changes nothing.
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2, 3]")
    refused = berth(server, "scan", "db", "import", str(junk), check=False)
    assert refused.returncode != 0 and b"cannot be read" in refused.stderr, refused.stderr

    # Updates from the configured feeds: downloaded and imported, then 304 and nothing imported.
    update = berth_json(server, "scan", "db", "update", "--feed", "debian")
    assert update["feeds"][0]["status"] == "imported" and update["feeds"][0]["result"]["added"] == 2, update
    update = berth_json(server, "scan", "db", "update", "--feed", "alpine")
    assert update["feeds"][0]["status"] == "imported" and update["version"] == 5, update
    # 4 advisories: CVE-2024-6119, -5535, -4741 (openssl) and CVE-2023-42366 (busybox); "0" is never-affected.
    assert update["feeds"][0]["result"]["added"] == 4, update
    # An OSV all.zip export downloaded from a feed, then changed upstream: one record fixed
    # later, one withdrawn. Only the difference makes the next version.
    update = berth_json(server, "scan", "db", "update", "--feed", "npm")
    assert update["feeds"][0]["status"] == "imported" and update["version"] == 6, update
    assert (update["feeds"][0]["result"]["format"], update["feeds"][0]["result"]["added"]) == ("osv", 3), update
    for name in ("debian", "alpine", "npm"):
        again = berth_json(server, "scan", "db", "update", "--feed", name)
        assert again["feeds"][0]["status"] == "unchanged" and again["version"] == 6, again
    conditional = [(p, inm, ims) for p, inm, ims in feeds.requests if inm or ims]
    assert {p for p, _, _ in conditional} == {"/debian.json", "/alpine.json", "/npm/all.zip"}, feeds.requests
    lodash, minimist, semver = NPM_RECORDS
    feeds.bodies["/npm/all.zip"] = osv_zip([osv(lodash["id"], "lodash", "4.17.22", ecosystem="npm"), minimist,
                                            dict(semver, withdrawn="2026-11-04T00:00:00Z")])
    changed = berth_json(server, "scan", "db", "update", "--feed", "npm")
    result = changed["feeds"][0]["result"]
    assert changed["version"] == 7 and (result["changed"], result["removed"], result["unchanged"]) == (1, 1, 1), changed

    # A feed on a loopback address outside outbound-allow is refused, and the error kept.
    private = berth(server, "scan", "db", "update", "--feed", "private", "-o", "json", check=False)
    assert private.returncode != 0
    outcome = json.loads(private.stdout)["feeds"][0]
    assert outcome["status"] == "failed" and "refused" in outcome["error"] and "127.0.0.2" in outcome["error"], outcome

    show = berth_json(server, "scan", "db", "show")
    assert show["version"] == 7 and show["records"] == 1 + 30 + 2 + 4 + 2, show
    sources = {s["source"]: s for s in show["sources"]}
    assert {k: (v["records"], v["version"]) for k, v in sources.items()} == {
        "osv-dir": (1, 2), "go": (30, 3), "debian": (2, 4), "alpine": (4, 5), "npm": (2, 7), "private": (0, 0)}, sources
    assert "refused" in sources["private"]["lastError"] and "lastError" not in sources["debian"]
    assert {f["name"] for f in show["feeds"]} == {"debian", "alpine", "npm", "private"}
    table = berth(server, "scan", "db", "show").stdout.decode()
    assert "osv-dir" in table and "alpine" in table
