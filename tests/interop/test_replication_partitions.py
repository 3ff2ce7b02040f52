"""Issue 13, item 6: three regions with real network separation, partitions that come and go, and
a randomized workload; then heal, quiesce and check that the regions converged.

Each region is a ``berth serve`` in its own network namespace (tests/interop/geo.py); every
region-to-region path goes through a userspace delay proxy (80 ms each way) that can drop traffic.
With a seed that is logged (``BERTH_GEO_SEED`` replays one), three writers (one per region) run a
bounded number of operations at once: pushes of small images (HTTP, and a few with skopeo), tag
moves, tag deletes, manifest deletes, referrers and lock changes, while a partitioner cuts and heals
links between pairs of regions. Every acknowledged write is recorded. After healing and quiescing:
(a) every region's state (tags and their digests and locks, manifests per repository, referrers)
is the same; (b) every acknowledged write is present, or in some region's conflict log as lost, or
superseded by a write acknowledged after it; (c) every blob a manifest references is in every region.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import berth_bin
from geo import GeoTopology
from helpers import skopeo, umoci_image
from test_cli import Cli
from test_replication import OCI_MANIFEST, Region, _applied_all

pytestmark = [pytest.mark.berth_only, pytest.mark.slow]

NAMES = ["westeurope", "southeastasia", "eastus"]
REPOS = ["rnd/app", "rnd/web"]
TAGS = ["t0", "t1", "t2", "t3"]
LOCK_REPO, LOCK_TAGS = "rnd/locked", ["l0", "l1", "l2"]
INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{OCI_MANIFEST}, {INDEX}"
OPS_PER_REGION = int(os.environ.get("BERTH_GEO_OPS", "40"))
# Manifest deletes target any manifest, racing tag moves to it and referrers pushed onto it in
# other regions. A deletion applied from a peer takes no referrer or index child by cascade (the
# deleting region's cascade arrives as deletions of their own, each manifest's presence register
# decides), so a referrer pushed in one region while its subject is deleted in another converges
# (it diverged before: CI seed 4164634293). BERTH_GEO_FULL=0 deletes referrers only (the former
# default, for bisecting).
FULL = os.environ.get("BERTH_GEO_FULL", "1") != "0"


@pytest.fixture
def geo(tmp_path):
    topo = GeoTopology(berth_bin(), NAMES)
    topo.up()
    try:
        regions = {}
        for name in NAMES:
            server = topo.servers[name]
            cli = Cli(server, tmp_path / f"xdg-{name}")
            cli.login()
            regions[name] = Region(name, server, cli)
        topo.wire({n: r.cli for n, r in regions.items()}, tmp_path)
        yield topo, regions
    finally:
        topo.close()


class Journal:
    """Every acknowledged write: (region, op, repo, key, value, started, acked)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writes = []
        self.refused = []
        self.referrers = set()

    def ack(self, region, op, repo, key, value, started, subject=None):
        with self.lock:
            if subject:
                self.referrers.add(key)
            self.writes.append(dict(region=region, op=op, repo=repo, key=key, value=value, started=started,
                                    acked=time.monotonic(), subject=subject))

    def refuse(self, region, op, repo, key, status):
        with self.lock:
            self.refused.append((region, op, repo, key, status))


def _session(server):
    s = requests.Session()
    s.auth = server.creds
    return s


class Writer:
    """One region's share of the workload."""

    def __init__(self, region: Region, rng: random.Random, journal: Journal, layout: Path, errors: list):
        self.region, self.rng, self.journal, self.layout, self.errors = region, rng, journal, layout, errors
        self.base = region.server.base
        self.http = _session(region.server)
        self.count = 0

    def local_manifests(self, repo):
        r = self.http.get(f"{self.base}/api/v1/repository/manifests", params={"name": repo}, timeout=30)
        return [m["digest"] for m in r.json()] if r.status_code == 200 else []

    def put_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = self.http.post(f"{self.base}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data, timeout=30)
        assert r.status_code == 201, r.text
        return digest

    def image_body(self, repo, text, subject=None):
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"t": text}}}).encode()
        layer = ("layer of " + text).encode() + os.urandom(64)
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.put_blob(repo, config),
                        "size": len(config)},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.put_blob(repo, layer),
                         "size": len(layer)}]}
        if subject:
            m["artifactType"] = "application/vnd.berth.test.note"
            m["subject"] = subject
        return json.dumps(m).encode()

    def put_manifest(self, repo, ref, body):
        return self.http.put(f"{self.base}/v2/{repo}/manifests/{ref}", data=body, timeout=30,
                             headers={"Content-Type": OCI_MANIFEST})

    def op(self):
        rng, name = self.rng, self.region.name
        repo, tag = rng.choice(REPOS), rng.choice(TAGS)
        kind = rng.choices(["push", "move", "untag", "delete", "referrer", "lock", "skopeo"],
                           weights=[30, 20, 10, 10, 10, 12, 3])[0]
        started = time.monotonic()
        self.count += 1
        text = f"{name}-{self.count}-{rng.random()}"
        if kind == "push":
            r = self.put_manifest(repo, tag, self.image_body(repo, text))
            if r.status_code == 201:
                digest = r.headers["Docker-Content-Digest"]
                self.journal.ack(name, "manifest", repo, digest, digest, started)
                self.journal.ack(name, "tag", repo, tag, digest, started)
            else:
                self.journal.refuse(name, kind, repo, tag, r.status_code)
        elif kind == "skopeo":
            p = skopeo("copy", "--dest-tls-verify=false", f"oci:{self.layout}:v1",
                       f"docker://{self.region.server.host}/{repo}:{tag}", creds=self.region.server.creds, check=False)
            if p.returncode == 0:
                digest = json.loads((self.layout / "index.json").read_text())["manifests"][0]["digest"]
                self.journal.ack(name, "manifest", repo, digest, digest, started)
                self.journal.ack(name, "tag", repo, tag, digest, started)
            else:
                self.journal.refuse(name, kind, repo, tag, p.stderr[-200:])
        elif kind == "move":
            have = self.local_manifests(repo)
            if not have:
                return
            digest = rng.choice(sorted(have))
            got = self.http.get(f"{self.base}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT}, timeout=30)
            if got.status_code != 200:
                return
            r = self.put_manifest(repo, tag, got.content)
            if r.status_code == 201:
                self.journal.ack(name, "tag", repo, tag, digest, started)
            else:
                self.journal.refuse(name, kind, repo, tag, r.status_code)
        elif kind == "untag":
            r = self.http.delete(f"{self.base}/api/v1/repository/tags", params={"name": repo, "tag": tag}, timeout=30)
            if r.status_code == 204:
                self.journal.ack(name, "tag", repo, tag, None, started)
        elif kind == "delete":
            have = [d for d in self.local_manifests(repo) if FULL or d in self.journal.referrers]
            if not have:
                return
            digest = rng.choice(sorted(have))
            r = self.http.delete(f"{self.base}/v2/{repo}/manifests/{digest}", timeout=30)
            if r.status_code == 202:
                self.journal.ack(name, "manifest-delete", repo, digest, None, started)
        elif kind == "referrer":
            have = self.local_manifests(repo)
            if not have:
                return
            digest = rng.choice(sorted(have))
            head = self.http.get(f"{self.base}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT}, timeout=30)
            if head.status_code != 200:
                return
            subject = {"mediaType": head.headers.get("Content-Type", OCI_MANIFEST), "digest": digest,
                       "size": len(head.content)}
            body = self.image_body(repo, text, subject=subject)
            ref = "sha256:" + hashlib.sha256(body).hexdigest()
            r = self.put_manifest(repo, ref, body)
            if r.status_code == 201:
                self.journal.ack(name, "manifest", repo, ref, ref, started, subject=digest)
        elif kind == "lock":
            ltag = rng.choice(LOCK_TAGS)
            value = {"writeEnabled": rng.random() < 0.5, "deleteEnabled": rng.random() < 0.5}
            r = self.http.patch(f"{self.base}/api/v1/repository", params={"name": LOCK_REPO, "tag": ltag},
                                json=value, timeout=30)
            if r.status_code == 200:
                self.journal.ack(name, "lock", LOCK_REPO, ltag, (value["writeEnabled"], value["deleteEnabled"]), started)
            else:
                self.journal.refuse(name, kind, LOCK_REPO, ltag, r.status_code)

    def run(self, ops):
        try:
            for _ in range(ops):
                self.op()
                time.sleep(self.rng.uniform(0.0, 0.5))
        except BaseException as e:   # reported by the test
            self.errors.append(f"{self.region.name}: {e!r}")


def state_of(region: Region):
    """What must be equal everywhere: per repository its tags (digest and lock), its manifests
    and each manifest's referrers."""
    http = _session(region.server)
    base = region.server.base
    catalog = http.get(f"{base}/v2/_catalog", params={"n": 1000}, timeout=30).json().get("repositories", [])
    state = {}
    for repo in sorted(set(catalog) | set(REPOS) | {LOCK_REPO}):
        tags_r = http.get(f"{base}/api/v1/repository/tags", params={"name": repo}, timeout=30)
        man_r = http.get(f"{base}/api/v1/repository/manifests", params={"name": repo}, timeout=30)
        tags = {}
        if tags_r.status_code == 200:
            for t in tags_r.json():
                a = t["attributes"]
                tags[t["name"]] = (t["digest"], a["writeEnabled"], a["deleteEnabled"], a["readEnabled"], a["listEnabled"])
        manifests = sorted(m["digest"] for m in man_r.json()) if man_r.status_code == 200 else []
        # tags/list of the OCI API agrees with the management view
        listed = http.get(f"{base}/v2/{repo}/tags/list", timeout=30)
        if listed.status_code == 200:
            assert sorted(listed.json().get("tags") or []) == sorted(
                n for n, v in tags.items() if v[4]), (region.name, repo)
        referrers = {}
        for d in manifests:
            rr = http.get(f"{base}/v2/{repo}/referrers/{d}", timeout=30)
            refs = sorted(m["digest"] for m in rr.json().get("manifests", [])) if rr.status_code == 200 else []
            if refs:
                referrers[d] = refs
        if tags or manifests:
            state[repo] = {"tags": tags, "manifests": manifests, "referrers": referrers}
    return state


def all_conflicts(regions):
    """Every region's whole conflict log (the API's default page is 100)."""
    out = []
    for r in regions.values():
        page = r.get("/api/v1/replication/conflicts", params={"limit": 1000})
        assert page.status_code == 200, page.text
        assert len(page.json()) < 1000, "more conflicts than one page"
        out += page.json()
    return out


def _logs_of(regions, tags, digests):
    """Each region's replication feed, the events of the given (repository, tag)s and digests."""
    out = []
    for name, r in regions.items():
        after, rows = 0, []
        for _ in range(200):
            page = r.get("/api/v1/replication/events", params={"after": after, "limit": 1000})
            if page.status_code != 200:
                rows.append(f"    (feed: {page.status_code})")
                break
            events = page.json().get("events", [])
            for e in events:
                if (e["repository"], e.get("tag")) in tags or e.get("digest") in digests:
                    rows.append(f"    {e['sequence']} {e['action']} {e.get('tag')} {(e.get('digest') or '')[:19]} "
                                f"{e.get('detail') or ''} @{e['hlc']}@{e['region']} replaces={e.get('replaces')}")
            if not events:
                break
            after = events[-1]["sequence"]
        out.append(f"  {name}:\n" + "\n".join(rows[:80]))
    return "\n".join(out)


def _flatten(state):
    out = {}
    for repo, s in state.items():
        for t, v in s["tags"].items():
            out[f"tag {repo}:{t}"] = v
        for d in s["manifests"]:
            out[f"manifest {repo}@{d}"] = True
        for d, refs in s["referrers"].items():
            out[f"referrers {repo}@{d}"] = refs
    return out


def _digest_of(state):
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def test_three_partitioned_regions_converge(geo, tmp_path):
    topo, regions = geo
    seed = int(os.environ.get("BERTH_GEO_SEED") or random.randrange(1 << 32))
    print(f"\nBERTH_GEO_SEED={seed}")
    rng = random.Random(seed)

    # the locked tags exist everywhere before the run
    first = regions[NAMES[0]]
    for t in LOCK_TAGS:
        first.image(LOCK_REPO, t, f"lock target {t}")
    layout = tmp_path / "layout"
    umoci_image(layout, "v1", [{"etc/geo.conf": b"pushed with skopeo"}, {"bin/tool": b"\x7fELF" + b"g" * 4096}])

    deadline = time.monotonic() + 90
    while not all(r.manifest_digest(LOCK_REPO, t) for r in regions.values() for t in LOCK_TAGS):
        assert time.monotonic() < deadline, "the lock targets did not replicate"
        time.sleep(0.5)

    journal, errors = Journal(), []
    writers = [Writer(r, random.Random(rng.random()), journal, layout, errors) for r in regions.values()]
    threads = [threading.Thread(target=w.run, args=(OPS_PER_REGION,)) for w in writers]
    stop = threading.Event()
    cuts = []

    def partitioner(prng):
        pairs = [(a, b) for i, a in enumerate(NAMES) for b in NAMES[i + 1:]]
        while not stop.is_set():
            a, b = prng.choice(pairs)
            topo.partition(a, b)
            cuts.append((a, b))
            stop.wait(prng.uniform(1.0, 3.0))
            topo.heal(a, b)
            stop.wait(prng.uniform(0.2, 1.0))

    chaos = threading.Thread(target=partitioner, args=(random.Random(rng.random()),))
    chaos.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    stop.set()
    chaos.join(timeout=30)
    topo.heal_all()
    assert not errors, (seed, errors)
    assert all(not t.is_alive() for t in threads), seed
    print(f"acknowledged writes: {len(journal.writes)}, refused: {len(journal.refused)}, partitions: {len(cuts)}")
    assert len(journal.writes) >= OPS_PER_REGION, (seed, "too few acknowledged writes to prove anything")

    # quiesce: bounded
    deadline = time.monotonic() + 150
    latest = None
    quiesced = _applied_all(list(regions.values()))
    while time.monotonic() < deadline:
        latest = quiesced()
        if latest and quiesced() == latest:
            break
        time.sleep(1.0)
    else:
        statuses = {n: r.cli.json("replication", "status") for n, r in regions.items()}
        pytest.fail(f"seed {seed}: not quiesced in 150 s after the heal: {json.dumps(statuses, default=str)[:4000]}")

    # (a) every region's state is the same
    states = {n: state_of(r) for n, r in regions.items()}
    hashes = {n: _digest_of(s) for n, s in states.items()}
    if len(set(hashes.values())) != 1:
        flat = {n: _flatten(s) for n, s in states.items()}
        keys = sorted(set().union(*flat.values()))
        diverging = {k: {n: flat[n].get(k) for n in NAMES} for k in keys
                     if len({json.dumps(flat[n].get(k)) for n in NAMES}) > 1}
        digests = {k.rsplit("@", 1)[-1] for k in diverging if "@" in k} | {
            v for k in diverging if k.startswith("tag ") for row in diverging[k].values() if row for v in row[:1]}
        tags = {tuple(k[len("tag "):].rsplit(":", 1)) for k in diverging if k.startswith("tag ")}
        touching = [w for w in journal.writes if w["key"] in digests or w["value"] in digests
                    or (w["repo"], w["key"]) in tags]
        conflicts = all_conflicts(regions)
        named = [c for c in conflicts if (c["repository"], c["key"]) in tags or c["key"] in digests or c["loser"] in digests]
        pytest.fail(f"seed {seed}: regions diverge on {len(diverging)} keys:\n"
                    + "\n".join(f"  {k}: {v}" for k, v in list(diverging.items())[:40])
                    + "\nacknowledged writes of those digests and tags:\n"
                    + "\n".join(f"  {w}" for w in sorted(touching, key=lambda w: w["started"])[:60])
                    + "\nconflicts naming them:\n" + "\n".join(f"  {c}" for c in named[:60])
                    + "\neach region's log of those tags and digests:\n" + _logs_of(regions, tags, digests))
    final = states[NAMES[0]]

    # (b) every acknowledged write is present, logged as lost, or superseded by a later acknowledged one
    conflicts = all_conflicts(regions)
    lost = {(c["kind"], c["repository"], c["key"], c["loser"]) for c in conflicts}
    print(f"conflicts logged: {len(conflicts)}")
    # a conflict is between two different writes: never a write against itself (relayed by another path)
    selfish = [c for c in conflicts if c["loserStamp"] == c.get("winnerStamp")]
    assert not selfish, f"seed {seed}: writes logged as conflicting with themselves: {selfish[:5]}"

    def later(w, *, same=lambda x: True):
        return any(x is not w and x["started"] > w["acked"] and same(x) for x in journal.writes)

    subjects = {(w["repo"], w["key"]): w["subject"] for w in journal.writes if w["op"] == "manifest" and w["subject"]}

    def chain(repo, digest):
        """The manifest and its subjects, theirs and so on (a referrer may refer to a referrer)."""
        out = []
        while digest and digest not in out:
            out.append(digest)
            digest = subjects.get((repo, digest))
        return out

    unexplained = []
    for w in journal.writes:
        repo_state = final.get(w["repo"], {"tags": {}, "manifests": [], "referrers": {}})
        if w["op"] == "tag":
            now = repo_state["tags"].get(w["key"])
            present = (now is None) if w["value"] is None else (now is not None and now[0] == w["value"])
            logged = any(k in ("tag",) and r == w["repo"] and key == w["key"] and (
                loser == (w["value"] or "") or (w["value"] is None and "tombstone" in loser.lower()) or
                (w["value"] is None and not loser.startswith("sha256:")))
                for k, r, key, loser in lost)
            # a later tag write, or a later deletion of its manifest: of the manifest itself, or of
            # a subject of it (the deleting region's cascade takes a referrer and its tags)
            targets = chain(w["repo"], w["value"]) if w["value"] else []
            superseded = later(w, same=lambda x: x["repo"] == w["repo"] and (
                (x["op"] == "tag" and x["key"] == w["key"]) or
                (x["op"] == "manifest-delete" and x["key"] in targets)))
        elif w["op"] == "manifest":
            present = w["value"] in repo_state["manifests"]
            logged = any(r == w["repo"] and (key == w["key"] or loser == w["value"]) for k, r, key, loser in lost)
            # deleted, or its subject deleted (the deleting region's cascade takes the referrers
            # it holds, and theirs: a referrer may refer to a referrer; its deletions of them
            # reach every region as deletions of their own)
            targets = chain(w["repo"], w["key"])
            superseded = any(x["op"] == "manifest-delete" and x["repo"] == w["repo"] and x["key"] in targets
                             for x in journal.writes)
        elif w["op"] == "manifest-delete":
            present = w["key"] not in repo_state["manifests"]
            logged = any(k == "manifest-delete" and r == w["repo"] and key == w["key"] for k, r, key, loser in lost)
            superseded = later(w, same=lambda x: x["repo"] == w["repo"] and x["op"] in ("tag", "manifest")
                               and x["value"] == w["key"])
        else:   # lock
            now = repo_state["tags"].get(w["key"])
            present = now is not None and (now[1], now[2]) == w["value"]
            logged = any(k == "lock" and r == w["repo"] and key == "tag:" + w["key"]
                         and f"write={str(w['value'][0]).lower()} delete={str(w['value'][1]).lower()}" in loser
                         for k, r, key, loser in lost)
            superseded = later(w, same=lambda x: x["op"] == "lock" and x["key"] == w["key"])
        if not (present or logged or superseded):
            unexplained.append(w)
    if unexplained:
        # what bears on each: the writes of its key or value, the key's final state, the conflicts naming either
        def bearing(w):
            names = ({w["key"], w["value"]} | set(chain(w["repo"], w["value"] or w["key"]))) - {None}
            writes = [x for x in journal.writes if x["repo"] == w["repo"] and ({x["key"], x["value"]} & names)]
            rows = [c for c in conflicts if c["repository"] == w["repo"] and ({c["key"], c["loser"], c.get("winner")} & names)]
            now = final.get(w["repo"], {}).get("tags", {}).get(w["key"]) if w["op"] in ("tag", "lock") else None
            return (f"  {w}\n    final: {now}\n    writes:\n" + "\n".join(f"      {x}" for x in sorted(writes, key=lambda x: x["started"]))
                    + "\n    conflicts:\n" + "\n".join(f"      {c}" for c in rows))
        pytest.fail(f"seed {seed}: {len(unexplained)} acknowledged writes neither present, nor logged as lost, nor "
                    f"superseded:\n" + "\n".join(bearing(w) for w in unexplained[:10]))

    # (c) no blob a manifest references is missing in any region
    missing = []
    for name, r in regions.items():
        for repo, s in states[name].items():
            for d in s["manifests"]:
                got = r.get(f"/v2/{repo}/manifests/{d}", headers={"Accept": ACCEPT})
                assert got.status_code == 200, (seed, name, repo, d, got.status_code)
                m = got.json()
                refs = [m["config"]["digest"]] + [l["digest"] for l in m.get("layers", [])] if "config" in m else []
                for ref in refs:
                    if not r.has_blob(repo, ref):
                        missing.append((name, repo, d, ref))
                for child in m.get("manifests", []):
                    if r.manifest_digest(repo, child["digest"]) is None:
                        missing.append((name, repo, d, child["digest"]))
    assert not missing, f"seed {seed}: referenced content missing: {missing[:20]}"
