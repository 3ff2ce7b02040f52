"""The README's "A short tour", run as written: the ``sh`` block of that section is taken from
README.md and run with bash in a fresh directory, with only the registry's address substituted
for ``127.0.0.1:5000``, so the tour cannot drift from what works. Afterwards the
registry is asked whether each step did what the tour says."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import berth_bin
from helpers import empty_auth_file, layout_descriptor

pytestmark = pytest.mark.berth_only

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script() -> str:
    section = README.read_text().split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the tour is one sh block"
    return blocks[0]


def test_readme_tour_runs_as_written(registry, tmp_path):
    script = tour_script()
    assert "127.0.0.1:5000" in script
    script = script.replace("127.0.0.1:5000", registry.host)
    work = tmp_path / "work"
    # the fixture's server gets its owner password from the environment; the tour reads the file a
    # first start writes
    (work / "berth-data").mkdir(parents=True)
    assert registry.username == "owner"
    (work / "berth-data" / "bootstrap-owner-password").write_text(registry.password + "\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "berth").symlink_to(berth_bin())
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", HOME=str(tmp_path / "home"),
               XDG_CONFIG_HOME=str(tmp_path / "xdg"), REGISTRY_AUTH_FILE=empty_auth_file())
    env.pop("NOTATION_CONFIG", None)
    env.pop("BERTH_USERNAME", None)
    env.pop("BERTH_PASSWORD", None)
    env.pop("BERTH_REGISTRY", None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"the tour failed (rc={proc.returncode})\n--- stdout ---\n{out}\n--- stderr ---\n{err}"

    # the image pushed is the one built, and it came back unchanged
    manifest = (work / "manifest.json").read_bytes()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert layout_descriptor(work / "layout", "latest")["digest"] == digest
    assert layout_descriptor(work / "copy", "latest")["digest"] == digest
    # the pull-only token pulled it
    assert layout_descriptor(work / "pulled", "1.0")["digest"] == digest

    # the SBOM (its layer typed as CycloneDX) and the signature refer to it
    r = requests.get(f"{registry.base}/v2/demo/app/referrers/{digest}", auth=registry.creds, timeout=30)
    referrers = r.json()["manifests"]
    assert len(referrers) == 2, referrers
    [signature] = [m for m in referrers if m.get("artifactType") == "application/vnd.cncf.notary.signature"]
    [sbom] = [m for m in referrers if m is not signature]
    r = requests.get(f"{registry.base}/v2/demo/app/manifests/{sbom['digest']}", auth=registry.creds, timeout=30,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert [layer["mediaType"] for layer in r.json()["layers"]] == ["application/vnd.cyclonedx+json"], r.text
    assert sbom["digest"] in out and signature["digest"] in out, out   # what jq printed
    assert f"verified {registry.host}/demo/app@{digest}" in out, out
    assert '"repositories"' in out and "demo/app" in out, out
