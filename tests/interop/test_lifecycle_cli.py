"""The lifecycle commands of the ``berth`` CLI against a recording stand-in for the management
API: each command must send exactly the request of the /api/v1 lifecycle contract (method, path,
percent-encoded query, JSON body), check its arguments before sending anything, and print the
answers. The end-to-end behaviour against a real server is in test_lifecycle.py."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import berth_bin

pytestmark = pytest.mark.berth_only

DIGEST = "sha256:" + "ab" * 32
T0 = "2026-01-01T00:00:00Z"
LOCK = {"readEnabled": True, "writeEnabled": True, "deleteEnabled": True, "listEnabled": True}
# What the stand-in answers when a test sets nothing: a body of the contract's type for the
# route (the CLI refuses answers that are not), else {}.
DEFAULT_ANSWERS: Dict[Tuple[str, str], object] = {
    ("GET", "/api/v1/config/retention"): {"status": "enabled", "days": 7, "type": "UntaggedManifests"},
    ("PATCH", "/api/v1/config/retention"): {"status": "enabled", "days": 7, "type": "UntaggedManifests"},
    ("GET", "/api/v1/config/soft-delete"): {"status": "enabled", "days": 7},
    ("PATCH", "/api/v1/config/soft-delete"): {"status": "enabled", "days": 7},
    ("GET", "/api/v1/config/gc"): {"status": "enabled", "intervalSeconds": 3600, "graceSeconds": 3600},
    ("PATCH", "/api/v1/config/gc"): {"status": "enabled", "intervalSeconds": 3600, "graceSeconds": 3600},
    ("GET", "/api/v1/quotas"): [],
    ("POST", "/api/v1/quotas"): {"name": "payments", "prefix": "payments/", "limitBytes": 1, "usedBytes": 0},
    ("GET", "/api/v1/purge/schedules"): [],
    ("POST", "/api/v1/purge/schedules"): {"name": "nightly", "cron": "0 2 * * *", "filters": ["payments/.*:.*"], "ago": "30d",
                                          "untagged": True, "keep": 0, "createdAt": T0},
    ("GET", "/api/v1/lifecycle/runs"): [],
    ("GET", "/api/v1/usage"): {"bytes": 0, "blobs": 0, "manifests": 0, "tags": 0, "repositories": 0, "deletedManifests": 0},
    ("GET", "/api/v1/repositories"): [],
    ("GET", "/api/v1/repository"): {"name": "payments/api", "manifests": 0, "tags": 0, "createdAt": T0, "attributes": LOCK},
    ("PATCH", "/api/v1/repository"): dict(LOCK, repository="payments/api"),
    ("GET", "/api/v1/repository/tags"): [],
    ("GET", "/api/v1/repository/manifests"): [],
    ("GET", "/api/v1/repository/deleted"): [],
    ("POST", "/api/v1/repository/restore"): {"restored": []},
}


class Recorder:
    """A tiny HTTP server: answers /oauth2/token with a token and /api/v1/* with canned JSON
    (``answers[(method, path)]``, default ``DEFAULT_ANSWERS``), recording every API request."""

    def __init__(self):
        self.requests: List[dict] = []
        self.answers: Dict[Tuple[str, str], Tuple[int, object]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                if split.path == "/oauth2/token":
                    self.reply(200, {"access_token": "test-token", "token": "test-token"})
                    return
                body = json.loads(raw) if raw else None
                recorder.requests.append({"method": self.command, "path": split.path, "rawQuery": split.query,
                                          "query": dict(parse_qsl(split.query)), "body": body,
                                          "auth": self.headers.get("Authorization")})
                status, answer = recorder.answers.get((self.command, split.path),
                                                      (200, DEFAULT_ANSWERS.get((self.command, split.path), {})))
                self.reply(status, answer)

            def reply(self, status: int, answer) -> None:
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.config_home = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(tmp_path):
    r = Recorder()
    r.config_home = tmp_path / "xdg"
    yield r
    r.close()


def berth(api: Recorder, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(BERTH_REGISTRY=api.url, BERTH_USERNAME="owner", BERTH_PASSWORD="secret",
               XDG_CONFIG_HOME=str(api.config_home))
    proc = subprocess.run([str(berth_bin()), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, (args, proc.stdout.decode(), proc.stderr.decode())
    return proc


def sent(api: Recorder, *args: str) -> dict:
    """Runs a command that must send exactly one API request; returns it."""
    before = len(api.requests)
    berth(api, *args)
    new = api.requests[before:]
    assert len(new) == 1, new
    assert new[0]["auth"] == "Bearer test-token"
    return new[0]


def refused(api: Recorder, *args: str) -> str:
    """Runs a command that must fail before sending anything; returns its stderr."""
    before = len(api.requests)
    proc = berth(api, *args, check=False)
    assert proc.returncode != 0, (args, proc.stdout.decode())
    assert len(api.requests) == before, api.requests[before:]
    return proc.stderr.decode()


def test_config_commands(api):
    r = sent(api, "config", "retention", "update", "--status", "enabled", "--days", "0.5", "--type", "UntaggedManifests")
    assert (r["method"], r["path"], r["body"]) == ("PATCH", "/api/v1/config/retention",
                                                   {"status": "enabled", "days": 0.5, "type": "UntaggedManifests"})
    assert sent(api, "config", "retention", "update", "--days", "14")["body"] == {"days": 14}
    assert "between 0 and 365" in refused(api, "config", "retention", "update", "--days", "400")
    refused(api, "config", "retention", "update")
    refused(api, "config", "retention", "update", "--type", "Everything")
    r = sent(api, "config", "retention", "show")
    assert (r["method"], r["path"]) == ("GET", "/api/v1/config/retention")
    api.answers[("POST", "/api/v1/config/retention/run")] = (200, {
        "id": 3, "kind": "retention", "name": None, "dryRun": False, "startedAt": T0, "finishedAt": T0, "deletedTags": [], "skipped": [],
        "deletedManifests": [{"repository": "a/b", "digest": DIGEST, "mediaType": "x", "reason": "untagged"}]})
    r = sent(api, "config", "retention", "run")
    assert (r["method"], r["path"]) == ("POST", "/api/v1/config/retention/run")

    r = sent(api, "config", "soft-delete", "update", "--status", "enabled", "--days", "7")
    assert (r["method"], r["path"], r["body"]) == ("PATCH", "/api/v1/config/soft-delete", {"status": "enabled", "days": 7})
    assert "between 0 and 90" in refused(api, "config", "soft-delete", "update", "--days", "91")
    assert sent(api, "config", "soft-delete", "show")["path"] == "/api/v1/config/soft-delete"

    r = sent(api, "config", "gc", "update", "--status", "enabled", "--interval", "1d3h", "--grace", "90m")
    assert (r["method"], r["path"], r["body"]) == ("PATCH", "/api/v1/config/gc",
                                                   {"status": "enabled", "intervalSeconds": 97200, "graceSeconds": 5400})
    assert sent(api, "config", "gc", "update", "--grace", "0")["body"] == {"graceSeconds": 0}
    assert sent(api, "config", "gc", "update", "--grace", "45s")["body"] == {"graceSeconds": 45}
    # a number without a unit is refused (it was read as seconds), naming the accepted forms
    assert "30d" in refused(api, "config", "gc", "update", "--grace", "45")
    assert sent(api, "config", "gc", "update", "--interval", "1h30m5s")["body"] == {"intervalSeconds": 5405}
    for bad in ("5x", "1h1d", "h", "1.5h", "1d1d"):
        assert "duration" in refused(api, "config", "gc", "update", "--grace", bad), bad
    refused(api, "config", "gc", "update", "--interval", "0")
    refused(api, "config", "gc", "update")
    api.answers[("GET", "/api/v1/config/gc")] = (200, {"status": "enabled", "intervalSeconds": 97200, "graceSeconds": 3600})
    out = berth(api, "config", "gc", "show").stdout.decode()
    assert "1d3h" in out and "1h" in out


def test_quota_commands(api):
    for text, value in (("10GiB", 10 * 2**30), ("500MB", 500_000_000), ("1024", 1024), ("1.5KiB", 1536),
                        ("2 TB", 2 * 10**12), ("3kib", 3072), ("7B", 7)):
        r = sent(api, "quota", "create", "--name", "payments", "--prefix", "payments/", "--limit", text)
        assert (r["method"], r["path"]) == ("POST", "/api/v1/quotas")
        assert r["body"] == {"name": "payments", "prefix": "payments/", "limitBytes": value}, text
    for bad in ("10XB", "GiB", "", "1e3"):
        assert "size" in refused(api, "quota", "create", "--name", "q", "--prefix", "p/", "--limit", bad), bad
    r = sent(api, "quota", "delete", "--name", "pay ments")
    assert (r["method"], r["path"]) == ("DELETE", "/api/v1/quotas/pay%20ments")
    api.answers[("GET", "/api/v1/quotas")] = (200, [{"name": "payments", "prefix": "payments/", "limitBytes": 10 * 2**30,
                                                      "usedBytes": 1536}])
    table = berth(api, "quota", "list").stdout.decode().splitlines()
    assert table[0].split()[:4] == ["NAME", "PREFIX", "LIMIT-BYTES", "USED-BYTES"]
    assert "10.0 GiB" in table[2] and "1.5 KiB" in table[2]


REPORT = {
    "id": 7, "kind": "purge", "name": None, "dryRun": True, "startedAt": "2026-01-01T00:00:00Z",
    "finishedAt": "2026-01-01T00:00:01Z",
    "deletedTags": [{"repository": "payments/api", "tag": "build-1", "digest": DIGEST}],
    "deletedManifests": [{"repository": "payments/api", "digest": DIGEST, "mediaType": "m", "reason": "tag purged"},
                         {"repository": "payments/api", "digest": "sha256:" + "cd" * 32, "mediaType": "m",
                          "reason": "referrer of deleted"}],
    "skipped": [{"repository": "payments/api", "tag": "v1", "digest": None, "reason": "tag locked (delete-enabled false)"}],
}


def test_purge_commands(api):
    api.answers[("POST", "/api/v1/purge")] = (200, REPORT)
    r = sent(api, "purge", "--filter", "payments/api:.*", "--filter", "payments/worker:^build-.*", "--ago", "30d",
             "--untagged", "--keep", "5", "--dry-run", "-o", "json")
    assert (r["method"], r["path"]) == ("POST", "/api/v1/purge")
    assert r["body"] == {"filters": ["payments/api:.*", "payments/worker:^build-.*"], "ago": "30d", "untagged": True,
                         "keep": 5, "dryRun": True}
    r = sent(api, "purge", "--filter", "a:b", "--ago", "0")
    assert r["body"] == {"filters": ["a:b"], "ago": "0", "untagged": False, "keep": 0, "dryRun": False}
    assert "without a unit" in refused(api, "purge", "--filter", "a:b", "--ago", "30")
    assert sent(api, "purge", "--filter", "a:b", "--ago", "1d3h")["body"]["ago"] == "1d3h"
    assert "--filter" in refused(api, "purge", "--ago", "1d")
    assert "--ago" in refused(api, "purge", "--filter", "a:b")
    refused(api, "purge", "--filter", "no-colon", "--ago", "1d")
    refused(api, "purge", "--filter", ":tag", "--ago", "1d")
    refused(api, "purge", "--filter", "a:b", "--ago", "30 days")
    refused(api, "purge", "--filter", "a:b", "--ago", "1d", "--keep", "-1")

    out = berth(api, "purge", "--filter", "payments/api:.*", "--ago", "30d", "--dry-run").stdout.decode().splitlines()
    assert out[0].split() == ["ACTION", "REPOSITORY", "TAG", "DIGEST", "REASON"]
    assert out[2].split()[:4] == ["would-delete", "payments/api", "build-1", DIGEST]
    assert out[3].split()[:3] == ["would-delete", "payments/api", DIGEST] and out[3].endswith("tag purged")
    assert out[5].split()[:3] == ["skipped", "payments/api", "v1"] and out[5].endswith("tag locked (delete-enabled false)")
    assert out[6] == "Purge (dry run): would delete 1 tag and 2 manifests, 1 skipped (run 7)"
    tsv = berth(api, "purge", "--filter", "payments/api:.*", "--ago", "30d", "--dry-run", "-o", "tsv")
    assert tsv.stdout.decode().splitlines()[0].split("\t") == ["would-delete", "payments/api", "build-1", DIGEST,
                                                               "matched filter"]
    assert "would delete 1 tag" in tsv.stderr.decode()

    r = sent(api, "purge", "schedule", "create", "--name", "nightly", "--cron", "0 2 * * *",
             "--filter", "payments/.*:.*", "--ago", "30d", "--untagged")
    assert (r["method"], r["path"]) == ("POST", "/api/v1/purge/schedules")
    assert r["body"] == {"name": "nightly", "cron": "0 2 * * *", "filters": ["payments/.*:.*"], "ago": "30d",
                         "untagged": True, "keep": 0}
    assert "--cron" in refused(api, "purge", "schedule", "create", "--name", "n", "--cron", "0 2 *",
                               "--filter", "a:b", "--ago", "1d")
    refused(api, "purge", "schedule", "create", "--name", "n", "--cron", "0 2 * * *", "--ago", "1d")
    assert sent(api, "purge", "schedule", "list")["path"] == "/api/v1/purge/schedules"
    r = sent(api, "purge", "schedule", "delete", "--name", "nightly")
    assert (r["method"], r["path"]) == ("DELETE", "/api/v1/purge/schedules/nightly")
    r = sent(api, "purge", "runs", "--name", "nightly", "--limit", "5")
    assert (r["method"], r["path"], r["query"]) == ("GET", "/api/v1/lifecycle/runs",
                                                    {"kind": "purge", "name": "nightly", "limit": "5"})
    assert sent(api, "purge", "runs")["query"] == {"kind": "purge"}
    refused(api, "purge", "runs", "--limit", "0")


def test_gc_and_usage_commands(api):
    api.answers[("POST", "/api/v1/gc")] = (200, {"id": 3, "kind": "gc", "dryRun": True, "startedAt": T0, "finishedAt": T0,
                                                  "blobsDeleted": 1, "bytesReclaimed": 2048, "linksRemoved": 2,
                                                  "uploadsRemoved": 0, "orphanFilesRemoved": 0, "digests": [DIGEST]})
    r = sent(api, "gc", "run", "--dry-run")
    assert (r["method"], r["path"], r["body"]) == ("POST", "/api/v1/gc", {"dryRun": True})
    out = berth(api, "gc", "run", "--dry-run").stdout.decode()
    assert "blobs-to-delete" in out and "2048" in out and "2.0 KiB" in out and DIGEST in out
    assert sent(api, "gc", "run")["body"] == {"dryRun": False}
    assert sent(api, "gc", "runs", "--limit", "3")["query"] == {"kind": "gc", "limit": "3"}

    r = sent(api, "show-usage")
    assert (r["method"], r["path"], r["rawQuery"]) == ("GET", "/api/v1/usage", "")
    r = sent(api, "show-usage", "--repository", "payments/api")
    assert r["rawQuery"] == "repository=payments%2Fapi"


def test_repository_commands(api):
    assert sent(api, "repository", "list")["path"] == "/api/v1/repositories"
    # an answer that is not the contract's type is refused, not half printed
    api.answers[("GET", "/api/v1/repositories")] = (200, {"repositories": ["a/b"]})
    proc = berth(api, "repository", "list", check=False)
    assert proc.returncode == 1 and "does not understand" in proc.stderr.decode() and proc.stdout == b""
    del api.answers[("GET", "/api/v1/repositories")]
    r = sent(api, "repository", "show", "--name", "payments/api")
    assert (r["path"], r["rawQuery"]) == ("/api/v1/repository", "name=payments%2Fapi")
    api.answers[("GET", "/api/v1/repository/tags")] = (200, [{"name": "v2", "digest": DIGEST, "lastUpdatedAt": T0,
                                                              "attributes": LOCK}])
    r = sent(api, "repository", "show-tags", "--name", "payments/api", "--orderby", "time_desc", "--detail")
    assert r["rawQuery"] == "name=payments%2Fapi&orderby=time_desc"
    assert json.loads(berth(api, "repository", "show-tags", "--name", "a/b", "-o", "json").stdout) == ["v2"]
    assert json.loads(berth(api, "repository", "show-tags", "--name", "a/b", "--detail", "-o", "json").stdout)[0]["digest"] == DIGEST
    refused(api, "repository", "show-tags", "--name", "a/b", "--orderby", "size")
    assert sent(api, "repository", "show-manifests", "--name", "a/b")["path"] == "/api/v1/repository/manifests"

    r = sent(api, "repository", "untag", "--image", "registry.example.com:5000/payments/api:v1")
    assert (r["method"], r["path"], r["rawQuery"]) == ("DELETE", "/api/v1/repository/tags", "name=payments%2Fapi&tag=v1")
    assert sent(api, "repository", "untag", "--image", "a/b:v1.2")["query"] == {"name": "a/b", "tag": "v1.2"}
    refused(api, "repository", "untag", "--image", "payments/api")
    refused(api, "repository", "untag", "--image", "localhost:5000/payments/api")

    # locks: bare flags mean true
    r = sent(api, "repository", "update", "--name", "payments/api", "--image", "v1", "--write-enabled", "false",
             "--delete-enabled", "false", "--read-enabled", "--list-enabled")
    assert (r["method"], r["path"], r["rawQuery"]) == ("PATCH", "/api/v1/repository", "name=payments%2Fapi&tag=v1")
    assert r["body"] == {"writeEnabled": False, "deleteEnabled": False, "readEnabled": True, "listEnabled": True}
    r = sent(api, "repository", "update", "--image", "payments/api:v1", "--write-enabled", "--delete-enabled", "true")
    assert r["query"] == {"name": "payments/api", "tag": "v1"}
    assert r["body"] == {"writeEnabled": True, "deleteEnabled": True}
    r = sent(api, "repository", "update", "--name", "payments/api", "--digest", DIGEST, "--read-enabled", "false")
    assert r["rawQuery"] == f"name=payments%2Fapi&digest=sha256%3A{'ab' * 32}" and r["body"] == {"readEnabled": False}
    r = sent(api, "repository", "update", "--image", f"payments/api@{DIGEST}", "--write-enabled", "false")
    assert r["query"] == {"name": "payments/api", "digest": DIGEST}
    r = sent(api, "repository", "update", "--name", "payments/api", "--image", DIGEST, "--write-enabled", "false")
    assert r["query"] == {"name": "payments/api", "digest": DIGEST}
    r = sent(api, "repository", "update", "--repository", "payments/api", "--list-enabled=false")
    assert r["rawQuery"] == "name=payments%2Fapi" and r["body"] == {"listEnabled": False}
    refused(api, "repository", "update", "--name", "payments/api")
    refused(api, "repository", "update", "--name", "a/b", "--image", "v1", "--digest", DIGEST, "--read-enabled")
    refused(api, "repository", "update", "--name", "a/b", "--digest", "sha256:short", "--read-enabled")
    refused(api, "repository", "update", "--name", "a/b", "--image", "c/d:v1", "--read-enabled")
    refused(api, "repository", "update", "--read-enabled", "false")

    api.answers[("DELETE", "/api/v1/repository")] = (200, {
        "id": None, "kind": "repository-delete", "name": None, "dryRun": False, "startedAt": T0, "finishedAt": T0,
        "deletedTags": [], "skipped": [], "deletedManifests": [
        {"repository": "a/b", "digest": DIGEST, "mediaType": "m", "reason": "repository delete"}]})
    assert "--yes" in refused(api, "repository", "delete", "--name", "a/b")
    r = sent(api, "repository", "delete", "--name", "a/b", "--yes")
    assert (r["method"], r["path"], r["rawQuery"]) == ("DELETE", "/api/v1/repository", "name=a%2Fb")
    out = berth(api, "repository", "delete", "--name", "a/b", "--yes").stdout.decode()
    assert "deleted" in out and DIGEST in out

    assert sent(api, "repository", "list-deleted", "--name", "a/b")["path"] == "/api/v1/repository/deleted"
    r = sent(api, "manifest", "restore", "--name", "a/b", "--digest", DIGEST, "--tag", "v1")
    assert (r["method"], r["path"], r["rawQuery"]) == ("POST", "/api/v1/repository/restore", "name=a%2Fb")
    assert r["body"] == {"digest": DIGEST, "tag": "v1"}
    # no tag: the contract's request leaves it out, as every request does its absent optionals
    assert sent(api, "manifest", "restore", "--name", "a/b", "--digest", DIGEST)["body"] == {"digest": DIGEST}
    refused(api, "manifest", "restore", "--name", "a/b", "--digest", "nope")


def test_api_errors_are_one_line(api):
    api.answers[("DELETE", "/api/v1/repository/tags")] = (403, {"error": {
        "code": "DENIED", "message": "tag 'v1' in 'apps/web' is locked (delete-enabled false)"}})
    proc = berth(api, "repository", "untag", "--image", "apps/web:v1", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert lines == ["berth: error: tag 'v1' in 'apps/web' is locked (delete-enabled false) (DENIED, HTTP 403)"], lines


def test_help_names_the_commands(api):
    for args, words in ((("purge", "--help"), ["--filter", "--ago", "--untagged", "--keep", "--dry-run", "schedule", "runs"]),
                        (("repository", "--help"), ["list", "show", "show-tags", "show-manifests", "untag", "delete",
                                                    "update", "list-deleted"]),
                        (("config", "--help"), ["retention", "soft-delete", "gc", "quarantine"]),
                        (("gc", "--help"), ["run", "runs"]),
                        (("quota", "--help"), ["list", "create", "delete"]),
                        (("manifest", "--help"), ["restore", "quarantine"]),
                        (("show-usage", "--help"), ["--repository"])):
        out = berth(api, *args).stdout.decode()
        for w in words:
            assert w in out, (args, w, out)
