"""`berth serve --metadata-store postgres` on the PostgreSQL test service: a real client's round
trip (push, pull, tag list, delete), then a restart that still sees what was written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import RegistryServer
from helpers import layout_blob, skopeo, umoci_image

pytestmark = pytest.mark.berth_only   # Berth's own metadata backend


class PostgresRegistry(RegistryServer):
    def _command(self, port: int):
        return super()._command(port) + ["--metadata-store", "postgres"]


def _key_file(directory: Path) -> Path:
    """A key-encryption key as an operator makes one: 32 random bytes, base64, owner-only."""
    import base64
    import os
    path = directory / "berth.key"
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    path.chmod(0o600)
    return path


def test_skopeo_round_trip_and_restart_on_postgres(postgres_database, tmp_path):
    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-pg-"))
    server = PostgresRegistry(workdir)
    # the password from a file, as an operator keeps it; the URL carries none
    import urllib.parse
    parts = urllib.parse.urlsplit(postgres_database)
    password_file = workdir / "pg-password"
    password_file.write_text(urllib.parse.unquote(parts.password) + "\n")
    password_file.chmod(0o600)
    server.extra_env["BERTH_POSTGRES_URL"] = urllib.parse.urlunsplit(
        parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    server.extra_env["BERTH_POSTGRES_PASSWORD_FILE"] = str(password_file)
    server.extra_env["BERTH_KEY_FILE"] = str(_key_file(workdir))
    server.start()
    try:
        host, creds, api = server.host, server.creds, server.api()
        layout = tmp_path / "src"
        digest = umoci_image(layout, "v1", [{"etc/hello.txt": b"hello from postgres\n"}], workdir=tmp_path)
        for tag in ("v1", "v2"):
            skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{host}/pg/app:{tag}", creds=creds)
        out = tmp_path / "out"
        skopeo("copy", "--src-tls-verify=false", f"docker://{host}/pg/app:v2", f"oci:{out}:pulled", creds=creds)
        assert layout_blob(out, digest) == layout_blob(layout, digest)
        assert api.req("GET", "/v2/pg/app/tags/list").json()["tags"] == ["v1", "v2"]
        r = api.req("DELETE", "/v2/pg/app/manifests/v2")
        assert r.status_code == 202, r.text
        assert api.req("GET", "/v2/pg/app/tags/list").json()["tags"] == ["v1"]

        # The metadata lives in PostgreSQL: the log names the store without its password.
        assert urllib.parse.unquote(parts.password) not in server.log_path.read_text()

        server.stop()
        server.start()
        api = server.api()
        assert api.req("GET", "/v2/pg/app/tags/list").json()["tags"] == ["v1"]
        r = api.get_manifest("pg/app", "v1")
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        skopeo("copy", "--src-tls-verify=false", f"docker://{host.split(':')[0]}:{server.port}/pg/app:v1",
               f"oci:{out}:again", creds=creds)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_token_from_one_node_is_accepted_by_another(postgres_database, tmp_path):
    """Two servers (own data directories) over one database with the same key-file: a token issued
    by node A's /oauth2/token is accepted by node B's /v2/."""
    import requests
    key_file = _key_file(tmp_path)
    nodes = []
    try:
        for name in ("a", "b"):
            node = PostgresRegistry(tmp_path / name)
            node.password = "it-shared-owner-password"   # the owner is bootstrapped once, by the first node
            node.extra_env.update(BERTH_POSTGRES_URL=postgres_database, BERTH_KEY_FILE=str(key_file),
                                  BERTH_SERVICE_NAME="registry.test")
            node.start()
            nodes.append(node)
        a, b = nodes
        r = requests.get(f"{a.base}/oauth2/token", params={"service": "registry.test"}, auth=a.creds, timeout=30)
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        r = requests.get(f"{b.base}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
        # a server with another key-file refuses to start instead of splitting the cluster
        other = PostgresRegistry(tmp_path / "c")
        other.extra_env.update(BERTH_POSTGRES_URL=postgres_database, BERTH_KEY_FILE=str(_key_file(tmp_path / "c")))
        with pytest.raises(AssertionError):
            other.start()
        assert "does not open with this key-file" in other.log_path.read_text()
    finally:
        for node in nodes:
            node.stop()


def test_failed_logins_spread_over_two_nodes_lock_the_name_on_both(postgres_database, tmp_path):
    """Five bad passwords on node A and five on node B lock the name (at that address) on both: the
    failures are counted in the database, and each node reads them at least once a second."""
    import time
    import requests
    key_file = _key_file(tmp_path)
    nodes = []
    try:
        for name in ("a", "b"):
            node = PostgresRegistry(tmp_path / name)
            node.password = "it-shared-owner-password"
            node.extra_env.update(BERTH_POSTGRES_URL=postgres_database, BERTH_KEY_FILE=str(key_file),
                                  BERTH_SERVICE_NAME="registry.test")
            node.start()
            nodes.append(node)

        def login(node, password):
            return requests.get(f"{node.base}/oauth2/token", params={"service": "registry.test"},
                                auth=(node.username, password), timeout=30).status_code

        for node in nodes:
            assert [login(node, "wrong") for _ in range(5)] == [401] * 5
        for node in nodes:
            deadline, status = time.time() + 10, None
            while time.time() < deadline:
                status = login(node, node.password)
                if status == 429:
                    break
                time.sleep(0.2)
            assert status == 429, (node.base, status)
    finally:
        for node in nodes:
            node.stop()
