"""Lifecycle without data loss (issue #4): purge, retention, soft delete and restore, locks,
online garbage collection, usage and quotas, purge schedules.

The supply-chain graphs (images, signatures, SBOMs, multi-arch indexes) are pushed with raw HTTP
(small blobs, fast); the lifecycle itself is driven through the ``berth`` CLI wherever the issue
names a command, so the CLI is tested end to end; /v2 effects are checked with raw HTTP and skopeo.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, List, Optional, Set, Tuple

import pytest
import requests

from helpers import (ALL_MANIFEST_TYPES, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, layout_blob,
                     layout_descriptor, sha256_digest, skopeo)
from test_cli import Cli, cli, layout, push  # noqa: F401  (cli and layout are fixtures)

pytestmark = pytest.mark.berth_only

SIGNATURE = "application/vnd.cncf.notary.signature"
SBOM = "application/spdx+json"
EMPTY_JSON = b"{}"


# ---------------------------------------------------------------------------
# raw-HTTP image graphs
# ---------------------------------------------------------------------------

class Pusher:
    """Pushes small images, referrers and indexes over /v2 as the owner and remembers the size of
    every digest it stored (for the usage arithmetic)."""

    def __init__(self, registry):
        self.api = registry.api()
        self.sizes: Dict[str, int] = {}
        self.n = 0

    def blob(self, repo: str, data: bytes) -> dict:
        digest = self.api.push_blob(repo, data)
        assert digest == sha256_digest(data)
        self.sizes[digest] = len(data)
        return {"digest": digest, "size": len(data)}

    def manifest(self, repo: str, ref: Optional[str], body: bytes, media_type: str) -> dict:
        digest = sha256_digest(body)
        r = self.api.put_manifest(repo, ref or digest, body, media_type)
        assert r.status_code == 201, (repo, ref, r.status_code, r.text)
        assert r.headers["Docker-Content-Digest"] == digest
        self.sizes[digest] = len(body)
        return {"mediaType": media_type, "digest": digest, "size": len(body), "body": body}

    def image(self, repo: str, tag: Optional[str] = None, *, arch: str = "amd64", layers: Optional[List[bytes]] = None,
              label: str = "") -> dict:
        """An image manifest (config + layers); by tag, or by digest (untagged) without one."""
        self.n += 1
        layers = layers if layers is not None else [f"layer {repo} {tag} {label} {self.n}\n".encode()]
        config = json.dumps({
            "architecture": arch, "os": "linux",
            "config": {"Labels": {"org.berth.test": f"{repo}:{tag}:{label}:{self.n}"}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(b) for b in layers]},
        }, sort_keys=True).encode()
        cfg = self.blob(repo, config)
        descs = [dict(self.blob(repo, b), mediaType=OCI_LAYER_TAR) for b in layers]
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg["digest"], "size": cfg["size"]},
            "layers": descs,
        }, sort_keys=True).encode()
        m = self.manifest(repo, tag, body, OCI_MANIFEST)
        m.update(arch=arch, blobs=[cfg["digest"]] + [d["digest"] for d in descs],
                 blob_bytes={cfg["digest"]: config, **{sha256_digest(b): b for b in layers}})
        return m

    def referrer(self, repo: str, subject: dict, artifact_type: str) -> dict:
        """A signature / SBOM whose ``subject`` is ``subject``, pushed by digest (as notation and
        oras do)."""
        self.n += 1
        empty = self.blob(repo, EMPTY_JSON)
        payload = self.blob(repo, f"{artifact_type} of {subject['digest']} #{self.n}\n".encode())
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": empty["digest"], "size": empty["size"]},
            "layers": [{"mediaType": artifact_type, "digest": payload["digest"], "size": payload["size"]}],
            "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": subject["size"]},
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        }, sort_keys=True).encode()
        m = self.manifest(repo, None, body, OCI_MANIFEST)
        m["blobs"] = [empty["digest"], payload["digest"]]
        return m

    def index(self, repo: str, tag: Optional[str], children: List[dict]) -> dict:
        """A multi-arch index over ``children`` (already pushed by digest)."""
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": c["mediaType"], "digest": c["digest"], "size": c["size"],
                           "platform": {"architecture": c.get("arch", "amd64"), "os": "linux"}} for c in children],
        }, sort_keys=True).encode()
        m = self.manifest(repo, tag, body, OCI_INDEX)
        m["blobs"] = []
        return m

    def exists(self, repo: str, digest: str) -> bool:
        r = self.api.get_manifest(repo, digest)
        assert r.status_code in (200, 404), (repo, digest, r.status_code, r.text)
        if r.status_code == 200:
            assert sha256_digest(r.content) == digest
        return r.status_code == 200

    def tag_target(self, repo: str, tag: str) -> Optional[str]:
        r = self.api.get_manifest(repo, tag)
        assert r.status_code in (200, 404), (repo, tag, r.status_code, r.text)
        return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None

    def tags(self, repo: str) -> List[str]:
        r = self.api.req("GET", f"/v2/{repo}/tags/list")
        if r.status_code == 404:
            return []
        assert r.status_code == 200, r.text
        return sorted(r.json().get("tags") or [])


def oci_error(r: requests.Response) -> Tuple[str, str]:
    try:
        e = r.json()["errors"][0]
        return e.get("code", ""), e.get("message", "")
    except (ValueError, KeyError, IndexError):
        return "", r.text


def assert_denied(r: requests.Response, *patterns: str) -> None:
    """403 with OCI code DENIED whose message matches every pattern (case-insensitive)."""
    assert r.status_code == 403, (r.request.method, r.request.url, r.status_code, r.text[:300])
    if r.request.method == "HEAD":
        return
    code, message = oci_error(r)
    assert code == "DENIED", (r.request.method, r.request.url, r.text[:300])
    for p in patterns:
        assert re.search(p, message, re.IGNORECASE), f"{message!r} does not match {p!r}"


LOCKED = r"lock"


def deleted_sets(report: dict) -> Tuple[Set[Tuple[str, str]], Set[Tuple[str, str, str]], Set[Tuple]]:
    manifests = {(m["repository"], m["digest"]) for m in report["deletedManifests"]}
    tags = {(t["repository"], t["tag"], t["digest"]) for t in report["deletedTags"]}
    skipped = {(s["repository"], s.get("tag"), s.get("digest")) for s in report["skipped"]}
    return manifests, tags, skipped


def audit_actions(cli: Cli) -> List[str]:
    return [e.get("action") for e in cli.json("audit", "list", "--since", "1h")]


def settle() -> None:
    """--ago 0 / --days 0 compare with "now": let the clock move past the pushes."""
    time.sleep(1.2)


# ---------------------------------------------------------------------------
# a repository with signed images, SBOMs and multi-arch indexes
# ---------------------------------------------------------------------------

def supply_chain(p: Pusher, repo: str) -> Dict[str, dict]:
    g: Dict[str, dict] = {}
    g["old"] = p.image(repo, "v1", label="old")
    g["old_sig"] = p.referrer(repo, g["old"], SIGNATURE)
    g["old_sbom"] = p.referrer(repo, g["old"], SBOM)
    g["old_sbom_sig"] = p.referrer(repo, g["old_sbom"], SIGNATURE)      # a signature of the SBOM
    g["new"] = p.image(repo, "v2", label="new")
    g["new_sig"] = p.referrer(repo, g["new"], SIGNATURE)
    g["new_sbom"] = p.referrer(repo, g["new"], SBOM)
    g["new_sbom_sig"] = p.referrer(repo, g["new_sbom"], SIGNATURE)
    # two multi-arch indexes sharing a child: children pushed by digest first, then the index by tag
    g["shared_child"] = p.image(repo, arch="amd64", label="shared")
    g["kept_arm"] = p.image(repo, arch="arm64", label="kept-arm")
    g["kept_index"] = p.index(repo, "multi", [g["shared_child"], g["kept_arm"]])
    g["kept_index_sig"] = p.referrer(repo, g["kept_index"], SIGNATURE)
    g["old_s390x"] = p.image(repo, arch="s390x", label="old-s390x")
    g["old_index"] = p.index(repo, "multi-old", [g["shared_child"], g["old_s390x"]])
    g["old_index_sig"] = p.referrer(repo, g["old_index"], SIGNATURE)
    # never tagged: not live, and neither is its signature
    g["orphan"] = p.image(repo, label="orphan")
    g["orphan_sig"] = p.referrer(repo, g["orphan"], SIGNATURE)
    return g


SUPPLY_CHAIN_FILTER_TAGS = "^(v1|multi-old)$"
SUPPLY_CHAIN_GONE = ["old", "old_sig", "old_sbom", "old_sbom_sig", "old_s390x", "old_index", "old_index_sig",
                     "orphan", "orphan_sig"]
SUPPLY_CHAIN_KEPT = ["new", "new_sig", "new_sbom", "new_sbom_sig", "shared_child", "kept_arm", "kept_index",
                     "kept_index_sig"]


def referrer_digests(p: Pusher, repo: str, digest: str) -> Set[str]:
    r = p.api.req("GET", f"/v2/{repo}/referrers/{digest}")
    assert r.status_code == 200, r.text
    return {m["digest"] for m in r.json()["manifests"]}


def test_purge_untagged_keeps_signatures_sboms_and_index_children(registry, cli):  # noqa: F811
    # Manifests younger than the GC grace period are never purged (an index may still be on its way).
    cli("config", "gc", "update", "--grace", "0")
    p = Pusher(registry)
    repo = "apps/web"
    g = supply_chain(p, repo)
    bystander = p.image("apps/api", label="untagged elsewhere")   # a repository no filter matches
    settle()

    report = cli.json("purge", "--filter", f"{repo}:{SUPPLY_CHAIN_FILTER_TAGS}", "--ago", "0", "--untagged")
    assert report["kind"] == "purge" and report["dryRun"] is False
    manifests, tags, skipped = deleted_sets(report)
    assert tags == {(repo, "v1", g["old"]["digest"]), (repo, "multi-old", g["old_index"]["digest"])}
    assert manifests == {(repo, g[k]["digest"]) for k in SUPPLY_CHAIN_GONE}, report
    assert not skipped

    for k in SUPPLY_CHAIN_GONE:
        assert not p.exists(repo, g[k]["digest"]), f"{k} survived the purge"
    for k in SUPPLY_CHAIN_KEPT:
        assert p.exists(repo, g[k]["digest"]), f"{k} was deleted although {k} belongs to a kept image"
    assert p.exists("apps/api", bystander["digest"])
    assert p.tags(repo) == ["multi", "v2"]
    # the referrers API still lists the kept image's signature and SBOM, the SBOM's signature
    assert referrer_digests(p, repo, g["new"]["digest"]) == {g["new_sig"]["digest"], g["new_sbom"]["digest"]}
    assert referrer_digests(p, repo, g["new_sbom"]["digest"]) == {g["new_sbom_sig"]["digest"]}
    # blobs of the kept images still pull and verify
    for k in ("new", "shared_child", "kept_arm"):
        for digest, data in g[k]["blob_bytes"].items():
            b = p.api.get_blob(repo, digest)
            assert b.status_code == 200 and b.content == data
    # the kept index pulls whole: every child resolves
    idx = json.loads(p.api.get_manifest(repo, "multi").content)
    for child in idx["manifests"]:
        assert p.exists(repo, child["digest"])

    actions = audit_actions(cli)
    assert "purge.run" in actions, actions
    assert "delete" in actions and "tag.delete" in actions, actions


def test_purge_dry_run_equals_real_run(registry, cli):  # noqa: F811
    # Manifests younger than the GC grace period are never purged (an index may still be on its way).
    cli("config", "gc", "update", "--grace", "0")
    p = Pusher(registry)
    repo = "apps/web"
    g = supply_chain(p, repo)
    locked = p.image(repo, "locked-1", label="locked")
    cli("repository", "update", "--name", repo, "--image", "locked-1", "--delete-enabled", "false")
    settle()
    filt = f"{repo}:^(v1|multi-old|locked-1)$"
    before = {k: p.exists(repo, v["digest"]) for k, v in g.items()}

    dry = cli.json("purge", "--filter", filt, "--ago", "0", "--untagged", "--dry-run")
    assert dry["dryRun"] is True
    # the dry run changed nothing
    assert {k: p.exists(repo, v["digest"]) for k, v in g.items()} == before
    assert p.tags(repo) == ["locked-1", "multi", "multi-old", "v1", "v2"]

    # table output: one would-delete row per tag and manifest, one skipped row, then the summary
    table = cli("purge", "--filter", filt, "--ago", "0", "--untagged", "--dry-run").stdout.decode().splitlines()
    assert table[0].split()[:5] == ["ACTION", "REPOSITORY", "TAG", "DIGEST", "REASON"], table
    rows = [line for line in table[2:] if line.startswith(("would-delete", "deleted", "skipped"))]
    assert sum(r.startswith("would-delete") for r in rows) == len(dry["deletedTags"]) + len(dry["deletedManifests"])
    assert sum(r.startswith("skipped") for r in rows) == len(dry["skipped"]) >= 1
    assert re.search(r"dry run", table[-1]) and re.search(r"would delete", table[-1]), table[-1]

    real = cli.json("purge", "--filter", filt, "--ago", "0", "--untagged")
    assert real["dryRun"] is False
    assert deleted_sets(real) == deleted_sets(dry)
    dry_manifests, dry_tags, dry_skipped = deleted_sets(dry)
    assert (repo, "locked-1", locked["digest"]) in dry_skipped or (repo, "locked-1", None) in dry_skipped, dry_skipped
    # and the real run deleted exactly that
    for k, v in g.items():
        assert p.exists(repo, v["digest"]) == ((repo, v["digest"]) not in dry_manifests), k
    assert p.exists(repo, locked["digest"])
    assert p.tags(repo) == sorted({"locked-1", "multi", "multi-old", "v1", "v2"} - {t for _, t, _ in dry_tags})
    # nothing is left to do
    again = cli.json("purge", "--filter", filt, "--ago", "0", "--untagged", "--dry-run")
    assert again["deletedTags"] == [] and again["deletedManifests"] == []


def test_purge_keep_keeps_exactly_the_newest(registry, cli):  # noqa: F811
    p = Pusher(registry)
    images: Dict[Tuple[str, str], dict] = {}
    for repo in ("keep/app", "keep/lib"):
        images[(repo, "release")] = p.image(repo, "release")           # matches no filter
    time.sleep(1.1)
    for i in range(1, 5):
        for repo in ("keep/app", "keep/lib"):
            images[(repo, f"build-{i}")] = p.image(repo, f"build-{i}")
        time.sleep(1.1)                                                # distinct update times
    # moving a tag makes it the newest
    images[("keep/app", "build-1")] = p.image("keep/app", "build-1", label="rebuilt")
    settle()

    ordered = cli.json("repository", "show-tags", "--name", "keep/app", "--orderby", "time_desc", "--detail")
    assert [t["name"] for t in ordered] == ["build-1", "build-4", "build-3", "build-2", "release"], ordered
    assert ordered[0]["digest"] == images[("keep/app", "build-1")]["digest"]

    report = cli.json("purge", "--filter", "keep/.*:^build-", "--ago", "0", "--keep", "2")
    _, tags, _ = deleted_sets(report)
    assert {(r, t) for r, t, _ in tags} == {("keep/app", "build-2"), ("keep/app", "build-3"),
                                            ("keep/lib", "build-1"), ("keep/lib", "build-2")}, report
    assert cli.json("repository", "show-tags", "--name", "keep/app") == ["build-1", "build-4", "release"]
    assert cli.json("repository", "show-tags", "--name", "keep/lib") == ["build-3", "build-4", "release"]
    asc = cli.json("repository", "show-tags", "--name", "keep/lib", "--orderby", "time_asc", "--detail")
    assert [t["name"] for t in asc] == ["release", "build-3", "build-4"]
    # without --untagged the untagged manifests stay
    for key in (("keep/app", "build-2"), ("keep/lib", "build-1")):
        assert p.exists(key[0], images[key]["digest"])
    manifests = cli.json("repository", "show-manifests", "--name", "keep/lib")
    live = {m["digest"]: m["live"] for m in manifests}
    assert live[images[("keep/lib", "build-1")]["digest"]] is False
    assert live[images[("keep/lib", "build-4")]["digest"]] is True


def test_soft_delete_restore_same_digest_pulls_with_skopeo(registry, cli, layout, tmp_path):  # noqa: F811
    owner = registry.creds
    repo = "soft/app"
    cli("config", "soft-delete", "update", "--status", "enabled", "--days", "1")
    shown = cli.json("config", "soft-delete", "show")
    assert shown["status"] == "enabled" and shown["days"] == 1
    push(registry, layout, repo, owner)
    digest = layout_descriptor(layout, "v1")["digest"]
    api = registry.api()

    r = api.req("DELETE", f"/v2/{repo}/manifests/{digest}")
    assert r.status_code == 202, r.text
    assert api.get_manifest(repo, "v1").status_code == 404
    assert api.get_manifest(repo, digest).status_code == 404
    deleted = cli.json("repository", "list-deleted", "--name", repo)
    entry = next(d for d in deleted if d["digest"] == digest)
    assert "v1" in entry["tags"] and entry["expiresAt"] > entry["deletedAt"]
    # the blobs of a soft-deleted manifest survive garbage collection
    cli("config", "gc", "update", "--grace", "0")
    cli.json("gc", "run")

    restored = cli.json("manifest", "restore", "--name", repo, "--digest", digest, "--tag", "v1")
    assert restored["restored"][0]["digest"] == digest and "v1" in restored["restored"][0]["tags"]
    assert all(d["digest"] != digest for d in cli.json("repository", "list-deleted", "--name", repo))

    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/{repo}:v1", creds=owner).stdout
    assert sha256_digest(raw) == digest
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/{repo}:v1", f"oci:{out}:v1", creds=owner)
    assert layout_descriptor(out, "v1")["digest"] == digest
    manifest = json.loads(layout_blob(out, digest))
    for d in [manifest["config"]] + manifest["layers"]:
        assert sha256_digest(layout_blob(out, d["digest"])) == d["digest"]
        assert layout_blob(out, d["digest"]) == layout_blob(layout, d["digest"])
    assert "restore" in audit_actions(cli)


def test_locks_are_enforced_on_every_route(registry, cli):  # noqa: F811
    # Manifests younger than the GC grace period are never purged (an index may still be on its way).
    cli("config", "gc", "update", "--grace", "0")
    p = Pusher(registry)
    api = p.api
    repo = "locked/app"
    x = p.image(repo, "v1", label="x")
    y = p.image(repo, "v2", label="y")
    z = p.image(repo, "v3", label="z")
    src = p.blob("other/src", b"a blob to mount\n")
    new = b'{"new": "config"}'

    def lock(*args: str) -> dict:
        return cli.json("repository", "update", *args)

    # --- repository write-disabled: no uploads, mounts or manifest pushes; pulls go on
    answer = lock("--name", repo, "--write-enabled", "false")
    assert answer["writeEnabled"] is False and answer["readEnabled"] is True
    assert cli.json("repository", "show", "--name", repo)["attributes"]["writeEnabled"] is False
    assert_denied(api.req("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}), LOCKED, r"write")
    assert_denied(api.req("POST", f"/v2/{repo}/blobs/uploads/?mount={src['digest']}&from=other/src",
                          headers={"Content-Length": "0"}), LOCKED, r"write")
    assert_denied(api.req("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256_digest(new)}", data=new,
                          headers={"Content-Type": "application/octet-stream"}), LOCKED, r"write")
    assert_denied(api.put_manifest(repo, "v9", y["body"]), LOCKED, r"write")
    assert_denied(api.put_manifest(repo, y["digest"], y["body"]), LOCKED, r"write")
    assert api.get_manifest(repo, "v1").status_code == 200
    lock("--name", repo, "--write-enabled")                          # a bare flag means true
    assert api.req("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}).status_code == 202

    # --- tag write-disabled: cannot move, but the same digest may be pushed again
    answer = lock("--name", repo, "--image", "v1", "--write-enabled", "false")
    assert answer["tag"] == "v1" and answer["writeEnabled"] is False
    tags = {t["name"]: t for t in cli.json("repository", "show-tags", "--name", repo, "--detail")}
    assert tags["v1"]["attributes"]["writeEnabled"] is False and tags["v2"]["attributes"]["writeEnabled"] is True
    assert_denied(api.put_manifest(repo, "v1", y["body"]), LOCKED, r"v1", r"write")
    assert api.put_manifest(repo, "v1", x["body"]).status_code == 201
    assert p.tag_target(repo, "v1") == x["digest"]
    lock("--image", f"{repo}:v1", "--write-enabled", "true")        # REPOSITORY:TAG form, no --name
    assert api.put_manifest(repo, "v1", y["body"]).status_code == 201
    assert api.put_manifest(repo, "v1", x["body"]).status_code == 201

    # --- tag delete-disabled: no DELETE by tag, nor of its manifest by digest; untag and purge skip it
    lock("--name", repo, "--image", "v2", "--delete-enabled", "false")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/v2"), LOCKED, r"v2", r"delete")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/{y['digest']}"), LOCKED, r"delete")
    err = cli.fails("repository", "untag", "--image", f"{repo}:v2")
    assert "DENIED" in err and re.search(r"delete", err, re.IGNORECASE), err
    settle()
    report = cli.json("purge", "--filter", f"{repo}:^v2$", "--ago", "0", "--untagged")
    assert report["deletedTags"] == [] and report["deletedManifests"] == []
    assert any(s.get("tag") == "v2" and re.search(r"delete", s["reason"], re.IGNORECASE) for s in report["skipped"]), report
    assert p.tag_target(repo, "v2") == y["digest"]
    lock("--name", repo, "--image", "v2", "--delete-enabled", "true")

    # --- manifest write-disabled: tags pointing at it can be neither moved nor deleted
    lock("--name", repo, "--digest", x["digest"], "--write-enabled", "false")
    assert_denied(api.put_manifest(repo, "v1", y["body"]), LOCKED, r"write")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/v1"), LOCKED, r"write")
    assert p.tag_target(repo, "v1") == x["digest"]
    lock("--name", repo, "--digest", x["digest"], "--write-enabled", "true")

    # --- manifest delete-disabled: survives every route, stays live for purge
    lock("--name", repo, "--digest", z["digest"], "--delete-enabled", "false")
    cli("repository", "untag", "--image", f"{repo}:v3")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/{z['digest']}"), LOCKED, r"delete")
    settle()
    report = cli.json("purge", "--filter", f"{repo}:^no-such-tag$", "--ago", "0", "--untagged")
    assert (repo, z["digest"]) not in deleted_sets(report)[0]
    assert p.exists(repo, z["digest"])
    live = {m["digest"]: m for m in cli.json("repository", "show-manifests", "--name", repo)}
    assert live[z["digest"]]["live"] is True and live[z["digest"]]["attributes"]["deleteEnabled"] is False
    lock("--name", repo, "--digest", z["digest"], "--delete-enabled", "true")

    # --- manifest read-disabled: no pull by digest nor by a tag pointing at it
    lock("--name", repo, "--digest", x["digest"], "--read-enabled", "false")
    assert_denied(api.get_manifest(repo, x["digest"]), LOCKED, r"read")
    assert_denied(api.get_manifest(repo, "v1"), LOCKED, r"read")
    assert api.req("HEAD", f"/v2/{repo}/manifests/v1", headers={"Accept": ALL_MANIFEST_TYPES}).status_code == 403
    assert api.get_manifest(repo, "v2").status_code == 200
    lock("--name", repo, "--digest", x["digest"], "--read-enabled", "true")
    assert api.get_manifest(repo, "v1").status_code == 200

    # --- tag read-disabled: no pull by that tag (by digest is a different route)
    lock("--name", repo, "--image", "v2", "--read-enabled", "false")
    assert_denied(api.get_manifest(repo, "v2"), LOCKED, r"read")
    lock("--name", repo, "--image", "v2", "--read-enabled", "true")
    assert api.get_manifest(repo, "v2").status_code == 200

    # --- repository read-disabled: no manifest or blob GET/HEAD
    lock("--name", repo, "--read-enabled", "false")
    layer = x["blobs"][1]
    assert_denied(api.get_blob(repo, layer), LOCKED, r"read")
    assert api.head_blob(repo, layer).status_code == 403
    assert_denied(api.get_manifest(repo, "v1"), LOCKED, r"read")
    lock("--name", repo, "--read-enabled", "true")
    b = api.get_blob(repo, layer)
    assert b.status_code == 200 and sha256_digest(b.content) == layer

    # --- list-disabled: the repository leaves _catalog, the tag leaves tags/list
    def catalog() -> List[str]:
        r = api.req("GET", "/v2/_catalog?n=1000")
        assert r.status_code == 200, r.text
        return r.json()["repositories"]

    assert repo in catalog()
    lock("--name", repo, "--list-enabled", "false")
    assert repo not in catalog() and "other/src" in catalog()
    lock("--name", repo, "--list-enabled", "true")
    assert repo in catalog()
    lock("--name", repo, "--image", "v2", "--list-enabled", "false")
    assert "v2" not in p.tags(repo) and "v1" in p.tags(repo)
    assert api.get_manifest(repo, "v2").status_code == 200               # hidden, not locked for pulls
    lock("--name", repo, "--image", "v2", "--list-enabled", "true")
    assert "v2" in p.tags(repo)

    # --- repository delete-disabled: no deletes by any route; purge skips it
    lock("--name", repo, "--delete-enabled", "false")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/{y['digest']}"), LOCKED, r"delete")
    assert_denied(api.req("DELETE", f"/v2/{repo}/manifests/v2"), LOCKED, r"delete")
    assert_denied(api.req("DELETE", f"/v2/{repo}/blobs/{layer}"), LOCKED, r"delete")
    report = cli.json("purge", "--filter", f"{repo}:.*", "--ago", "0", "--untagged")
    assert report["deletedTags"] == [] and report["deletedManifests"] == [] and report["skipped"], report
    assert p.tags(repo) == ["v1", "v2"]
    lock("--name", repo, "--delete-enabled", "true")
    assert api.req("DELETE", f"/v2/{repo}/manifests/v2").status_code == 202


def test_retention_deletes_only_not_live_manifests(registry, cli):  # noqa: F811
    p = Pusher(registry)
    repo = "ret/app"
    tagged = p.image(repo, "v1", label="tagged")
    tagged_sig = p.referrer(repo, tagged, SIGNATURE)
    tagged_sbom = p.referrer(repo, tagged, SBOM)
    c1 = p.image(repo, arch="amd64", label="c1")
    c2 = p.image(repo, arch="arm64", label="c2")
    index = p.index(repo, "multi", [c1, c2])
    untagged = p.image(repo, label="never tagged")
    untagged_sig = p.referrer(repo, untagged, SIGNATURE)
    was_tagged = p.image(repo, "old", label="was tagged")
    cli("repository", "untag", "--image", f"{repo}:old")

    cli("config", "gc", "update", "--grace", "0")
    shown = cli.json("config", "retention", "update", "--status", "enabled", "--days", "0", "--type", "UntaggedManifests")
    policy = {"status": "enabled", "days": 0, "type": "UntaggedManifests"}
    assert {k: shown.get(k) for k in policy} == policy, shown
    assert cli.json("config", "retention", "show") == shown
    settle()

    report = cli.json("config", "retention", "run")
    assert report["kind"] == "retention"
    manifests, _, _ = deleted_sets(report)
    gone = [untagged, untagged_sig, was_tagged]
    assert manifests == {(repo, m["digest"]) for m in gone}, report
    for m in gone:
        assert not p.exists(repo, m["digest"])
    for m in (tagged, tagged_sig, tagged_sbom, c1, c2, index):
        assert p.exists(repo, m["digest"])
    assert referrer_digests(p, repo, tagged["digest"]) == {tagged_sig["digest"], tagged_sbom["digest"]}
    assert "retention.run" in audit_actions(cli)
    runs = cli.json("purge", "runs")                                     # retention runs are not purge runs
    assert all(r["kind"] == "purge" for r in runs)


def test_gc_reclaims_unreferenced_blobs_and_usage_is_exact(registry, cli):  # noqa: F811
    p = Pusher(registry)
    api = p.api
    cli("config", "gc", "update", "--grace", "0")
    assert cli.json("config", "gc", "show")["graceSeconds"] == 0
    shared = os.urandom(3000)
    a = p.image("gc/a", "v1", layers=[shared, os.urandom(1000)])
    b = p.image("gc/b", "v1", layers=[shared, os.urandom(2000)])
    c = p.image("gc/b", "v2", layers=[os.urandom(1500)])
    orphan = p.blob("gc/a", os.urandom(700))                             # uploaded, never referenced
    r = api.req("DELETE", f"/v2/gc/b/manifests/{c['digest']}")
    assert r.status_code == 202, r.text
    # the deleted manifest's own bytes are reclaimed too
    garbage = set(c["blobs"]) | {orphan["digest"], c["digest"]}

    usage_before = cli.json("show-usage")
    dry = cli.json("gc", "run", "--dry-run")
    assert dry["dryRun"] is True and dry["kind"] == "gc"
    assert set(dry["digests"]) == garbage, dry
    assert dry["blobsDeleted"] == len(garbage) and dry["bytesReclaimed"] == sum(p.sizes[d] for d in garbage)
    assert cli.json("show-usage") == usage_before                        # the dry run deleted nothing
    assert api.head_blob("gc/a", orphan["digest"]).status_code == 200

    real = cli.json("gc", "run")
    assert real["dryRun"] is False
    assert set(real["digests"]) == garbage
    assert real["blobsDeleted"] == len(garbage) and real["bytesReclaimed"] == sum(p.sizes[d] for d in garbage)
    assert real["linksRemoved"] >= 1                                    # at least the orphan's
    assert api.head_blob("gc/a", orphan["digest"]).status_code == 404
    for d in c["blobs"]:
        assert api.head_blob("gc/b", d).status_code == 404
    table = cli("gc", "run", "--dry-run").stdout.decode()
    assert re.search(r"blobs-to-delete\s+0", table), table

    # usage: every distinct digest still referenced (blobs, configs, layers, manifests), once
    kept = set(a["blobs"]) | set(b["blobs"]) | {a["digest"], b["digest"]}
    usage = cli.json("show-usage")
    assert usage["bytes"] == sum(p.sizes[d] for d in kept), (usage, {d: p.sizes[d] for d in kept})
    assert usage["manifests"] == 2 and usage["tags"] == 2 and usage["repositories"] == 2
    per_repo = cli.json("show-usage", "--repository", "gc/b")
    assert per_repo["repository"] == "gc/b"
    assert per_repo["bytes"] == sum(p.sizes[d] for d in set(b["blobs"]) | {b["digest"]})
    assert per_repo["manifests"] == 1 and per_repo["tags"] == 1
    err = cli.fails("show-usage", "--repository", "gc/none")
    assert "NOT_FOUND" in err, err
    # the kept images pull whole
    for repo, img in (("gc/a", a), ("gc/b", b)):
        r = api.get_manifest(repo, "v1")
        assert r.status_code == 200 and sha256_digest(r.content) == img["digest"]
        for d, data in img["blob_bytes"].items():
            blob = api.get_blob(repo, d)
            assert blob.status_code == 200 and blob.content == data

    runs = cli.json("gc", "runs", "--limit", "10")
    assert [r["dryRun"] for r in runs[:3]] == [True, False, True], runs
    assert runs[1]["id"] == real["id"]
    assert len(cli.json("gc", "runs", "--limit", "1")) == 1
    assert "gc.run" in audit_actions(cli)


def test_quota_refuses_a_push_that_would_exceed_it(registry, cli):  # noqa: F811
    p = Pusher(registry)
    api = p.api
    created = cli.json("quota", "create", "--name", "payments-quota", "--prefix", "payments/", "--limit", "2KiB")
    assert created["limitBytes"] == 2048 and created["prefix"] == "payments/"
    small = p.image("payments/api", "v1", layers=[b"small layer\n"])
    used = sum(p.sizes[d] for d in set(small["blobs"]) | {small["digest"]})
    quotas = {q["name"]: q for q in cli.json("quota", "list")}
    assert quotas["payments-quota"]["usedBytes"] == used
    usage_before = cli.json("show-usage")

    big = os.urandom(4096)
    big_digest = sha256_digest(big)
    loc = api.start_upload("payments/worker/x")                           # nested under the prefix
    r = api.req("PUT", loc, params={"digest": big_digest}, data=big, headers={"Content-Type": "application/octet-stream"})
    assert_denied(r, r"payments-quota", r"quota")
    assert api.head_blob("payments/worker/x", big_digest).status_code == 404
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": small["blobs"][0], "size": p.sizes[small["blobs"][0]]},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": big_digest, "size": len(big)}],
    }).encode()
    assert api.put_manifest("payments/worker/x", "v1", manifest).status_code in (400, 403, 404)
    assert api.get_manifest("payments/worker/x", "v1").status_code == 404
    assert cli.json("show-usage") == usage_before
    assert {q["name"]: q for q in cli.json("quota", "list")}["payments-quota"]["usedBytes"] == used

    # outside the prefix the same push is fine; after the quota is deleted, inside too
    p.image("paymentsx/api", "v1", layers=[big])
    cli("quota", "delete", "--name", "payments-quota")
    assert cli.json("quota", "list") == []
    p.image("payments/worker/x", "v1", layers=[big])


@pytest.mark.slow
@pytest.mark.server_env(BERTH_LIFECYCLE_TICK_SECONDS="1")
def test_purge_schedule_runs_inside_the_server(registry, cli):  # noqa: F811
    p = Pusher(registry)
    old = p.image("sched/app", "old-1")
    p.image("sched/app", "stable")
    settle()

    # a manual run shows up in the run list too
    manual = cli.json("purge", "--filter", "sched/app:^nothing$", "--ago", "30d", "--dry-run")
    runs = cli.json("purge", "runs")
    assert runs[0]["id"] == manual["id"] and runs[0]["name"] is None

    created = cli.json("purge", "schedule", "create", "--name", "nightly", "--cron", "* * * * *",
                       "--filter", "sched/app:^old-", "--ago", "0", "--untagged")
    assert created["name"] == "nightly" and created["cron"] == "* * * * *"
    assert created["filters"] == ["sched/app:^old-"] and created["untagged"] is True
    listed = cli.json("purge", "schedule", "list")
    assert [s["name"] for s in listed] == ["nightly"] and listed[0]["nextRunAt"]
    err = cli.fails("purge", "schedule", "create", "--name", "nightly", "--cron", "0 2 * * *",
                    "--filter", "x:.*", "--ago", "1d")
    assert "CONFLICT" in err, err

    deadline = time.monotonic() + 90
    scheduled: List[dict] = []
    while time.monotonic() < deadline and not scheduled:
        scheduled = cli.json("purge", "runs", "--name", "nightly")
        if not scheduled:
            time.sleep(1)
    assert scheduled, "the schedule did not run within 90 s"
    run = scheduled[0]
    assert run["name"] == "nightly" and run["dryRun"] is False
    assert ("sched/app", "old-1", old["digest"]) in deleted_sets(run)[1], run
    assert p.tags("sched/app") == ["stable"]
    assert cli.json("purge", "schedule", "list")[0]["lastRunAt"]
    assert len(cli.json("purge", "runs", "--limit", "1")) == 1

    cli("purge", "schedule", "delete", "--name", "nightly")
    assert cli.json("purge", "schedule", "list") == []
    assert "NOT_FOUND" in cli.fails("purge", "schedule", "delete", "--name", "nightly")
    # the reports of a deleted schedule stay
    assert cli.json("purge", "runs", "--name", "nightly")


def test_only_owners_set_or_lift_locks(registry, cli, tmp_path):  # noqa: F811
    p = Pusher(registry)
    repo = "owned/app"
    p.image(repo, "v1", label="x")
    cli("repository", "update", "--name", repo, "--image", "v1", "--write-enabled", "false")
    # Reader everywhere lets the CLI in; Push on the repository is still below its Owner
    password = cli.json("identity", "create", "--name", "pusher")["password"]
    cli("role", "assignment", "create", "--assignee", "pusher", "--role", "Reader", "--scope", "*")
    cli("role", "assignment", "create", "--assignee", "pusher", "--role", "Push", "--scope", "owned/*")
    pusher = Cli(registry, tmp_path / "xdg-pusher")
    pusher.login("pusher", password)
    err = pusher.fails("repository", "update", "--name", repo, "--image", "v1", "--write-enabled", "true")
    assert "DENIED" in err and "Owner role" in err, err
    tags = {t["name"]: t for t in cli.json("repository", "show-tags", "--name", repo, "--detail")}
    assert tags["v1"]["attributes"]["writeEnabled"] is False
    cli("role", "assignment", "create", "--assignee", "pusher", "--role", "Owner", "--scope", repo)
    assert pusher.json("repository", "update", "--name", repo, "--image", "v1", "--write-enabled", "true")["writeEnabled"] is True


def test_repository_commands(registry, cli):  # noqa: F811
    p = Pusher(registry)
    a = p.image("repo/one", "v1")
    p.image("repo/one", "v2")
    p.image("repo/two", "latest")
    listed = {r["name"]: r for r in cli.json("repository", "list")}
    assert set(listed) >= {"repo/one", "repo/two"}
    assert listed["repo/one"]["tags"] == 2 and listed["repo/one"]["manifests"] == 2
    assert listed["repo/one"]["attributes"] == {"readEnabled": True, "writeEnabled": True, "deleteEnabled": True,
                                                "listEnabled": True}
    shown = cli.json("repository", "show", "--name", "repo/one")
    assert shown["name"] == "repo/one" and shown["tags"] == 2 and shown["createdAt"]
    table = cli("repository", "list").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["NAME", "MANIFESTS", "TAGS"]
    assert cli.json("repository", "show-tags", "--name", "repo/one") == ["v1", "v2"]
    manifests = cli.json("repository", "show-manifests", "--name", "repo/one")
    assert {m["digest"] for m in manifests} == {a["digest"], p.tag_target("repo/one", "v2")}
    assert all(m["live"] is True for m in manifests)

    cli("repository", "untag", "--image", f"{registry.host}/repo/one:v1")   # a registry host in front is fine
    assert p.tags("repo/one") == ["v2"] and p.exists("repo/one", a["digest"])
    untagged = {m["digest"]: m for m in cli.json("repository", "show-manifests", "--name", "repo/one")}
    assert untagged[a["digest"]]["live"] is False and untagged[a["digest"]]["tags"] == []
    assert "NOT_FOUND" in cli.fails("repository", "untag", "--image", "repo/one:v1")

    assert "--yes" in cli.fails("repository", "delete", "--name", "repo/one")   # stdin is not a terminal
    report = cli.json("repository", "delete", "--name", "repo/one", "--yes")
    manifests_deleted, tags_deleted, _ = deleted_sets(report)
    assert manifests_deleted == {("repo/one", d) for d in untagged}, report
    assert {t for _, t, _ in tags_deleted} == {"v2"}
    assert "repo/one" not in {r["name"] for r in cli.json("repository", "list")}
    assert p.exists("repo/two", p.tag_target("repo/two", "latest"))
    assert "NOT_FOUND" in cli.fails("repository", "show", "--name", "repo/one")


def test_malformed_management_bodies_are_refused_not_acted_on(registry):
    blob = os.urandom(100_000)
    digest = sha256_digest(blob)
    r = requests.post(f"{registry.base}/v2/bad/body/blobs/uploads/?digest={digest}", data=blob, auth=registry.creds,
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 201, r.text
    requests.delete(f"{registry.base}/v2/bad/body/blobs/{digest}", auth=registry.creds, timeout=30)
    assert requests.patch(f"{registry.base}/api/v1/config/gc", json={"graceSeconds": 0}, auth=registry.creds,
                          timeout=30).status_code == 200
    # A GC body that does not parse is a 400, never a real run.
    r = requests.post(f"{registry.base}/api/v1/gc", data='{"dryRun": "yes"}', auth=registry.creds,
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID", r.text
    assert requests.post(f"{registry.base}/api/v1/gc", json={"dryRun": True}, auth=registry.creds,
                         timeout=30).json()["blobsDeleted"] == 1
    # A repository update whose body does not parse is a 400 in the management envelope.
    r = requests.patch(f"{registry.base}/api/v1/repository?name=bad/body", data="nope", auth=registry.creds, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID", r.text


@pytest.mark.server_env(BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_retention_is_an_event_consumer_with_a_durable_cursor(registry, cli):  # noqa: F811
    """Retention follows the event log from a cursor kept in the database: off, it waits; on, it
    deletes what a push made not live without an operator's run; paused, it keeps its cursor across
    a restart; resumed, it catches up."""
    p = Pusher(registry)
    cli("config", "gc", "update", "--grace", "0")
    early = p.image("consumer/app", label="pushed while retention is off")
    time.sleep(0.5)
    consumers = {c["name"]: c for c in cli.json("event-consumer", "list")}
    assert consumers["retention"]["cursor"] == 0 and consumers["retention"]["lag"] > 0   # off: waiting

    cli.json("config", "retention", "update", "--status", "enabled", "--days", "0")
    first = p.image("consumer/app", label="untagged one")
    deadline = time.monotonic() + 20
    while p.exists("consumer/app", first["digest"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not p.exists("consumer/app", first["digest"]), "the retention consumer did not delete the untagged manifest"
    assert not p.exists("consumer/app", early["digest"]), "the events of the time it was off were not looked at"

    paused = cli.json("event-consumer", "pause", "--name", "retention")
    assert paused["paused"] is True
    port = registry.port
    registry.stop()
    registry.start(port)
    assert registry.port == port
    second = p.image("consumer/app", label="untagged two")
    time.sleep(1.5)                                       # several ticks: paused, nothing happens
    assert p.exists("consumer/app", second["digest"])
    state = {c["name"]: c for c in cli.json("event-consumer", "list")}["retention"]
    assert state["paused"] is True and state["lag"] > 0 and state["cursor"] == paused["cursor"]

    cli.json("event-consumer", "resume", "--name", "retention")
    deadline = time.monotonic() + 20
    while p.exists("consumer/app", second["digest"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not p.exists("consumer/app", second["digest"])
    assert "no event consumer named nobody" in cli.fails("event-consumer", "pause", "--name", "nobody")
