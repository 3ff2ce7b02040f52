"""Packaging (issue 14, item 13): the systemd unit passes ``systemd-analyze verify`` and keeps
the hardening it promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, berth_bin

pytestmark = pytest.mark.berth_only

UNIT = REPO_ROOT / "packaging" / "berth.service"


def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is needed (Debian package systemd)"
    text = UNIT.read_text()
    # verify checks that ExecStart's binary exists: point it at the one under test
    unit = tmp_path / "berth.service"
    unit.write_text(text.replace("/usr/local/bin/berth", str(berth_bin())))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "berth.service" not in out.stderr, out.stderr
    directives = {line.strip() for line in text.splitlines()}
    for expected in ("DynamicUser=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/berth",
                     "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
                     "ExecReload=/bin/kill -HUP $MAINPID"):
        assert expected in directives, expected
    # systemd's own exposure score (0 = locked down, 10 = unprotected) stays at or below 2.0
    score = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
                           capture_output=True, text=True, timeout=60)
    assert score.returncode == 0, score.stdout[-3000:]
