"""Operating Berth: the configuration schema (file, environment, flags), JSON logs with the
access line's fields, and the metrics an operator alerts on."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, berth_bin

pytestmark = pytest.mark.berth_only


def _serve(args, env=None, timeout=30):
    return subprocess.run([str(berth_bin()), "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _readme_schema():
    """(key, environment variable) rows of the README's settings table."""
    text = (REPO_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| [^|]+ \| `(BERTH_[A-Z0-9_]+)` \|", text, re.M)
    assert len(rows) >= 10, rows
    return rows


def test_help_lists_every_setting_of_the_readme_schema():
    out = _serve(["--help"]).stdout
    flat = " ".join(out.split())
    for key, env in _readme_schema():
        assert f"{key}" in flat and env in flat, (key, env, out)
    assert "BERTH_CONFIG" in flat and "BERTH_BOOTSTRAP_OWNER_PASSWORD" in flat
    # and nothing in the help that the README lacks
    secrets = {"BERTH_S3_ACCESS_KEY", "BERTH_S3_SECRET_KEY"}  # read from the environment only
    assert all(name in flat and name in (REPO_ROOT / "README.md").read_text() for name in secrets)
    helped = set(re.findall(r"BERTH_[A-Z0-9_]+", flat)) - {"BERTH_CONFIG", "BERTH_BOOTSTRAP_OWNER_PASSWORD"} - secrets
    assert helped == {env for _, env in _readme_schema()}


def test_unknown_and_bad_settings_are_refused_with_their_source(tmp_path):
    cfg = tmp_path / "berth.yaml"
    cfg.write_text("listen: 127.0.0.1:5999\nlisen: 0.0.0.0:80\n")
    r = _serve(["--config", str(cfg), "--data", str(tmp_path / "d")])
    assert r.returncode != 0
    assert f"config file {cfg}: unknown key 'lisen' (did you mean 'listen'?)" in r.stderr, r.stderr

    cfg.write_text('{"log-format": "xml"}')
    r = _serve(["--config", str(cfg), "--data", str(tmp_path / "d")])
    assert r.returncode != 0 and "key 'log-format'" in r.stderr and "text or json" in r.stderr, r.stderr

    cfg.write_text("- a\n- b\n")
    r = _serve(["--config", str(cfg), "--data", str(tmp_path / "d")])
    assert r.returncode != 0 and "YAML mapping" in r.stderr, r.stderr

    import os
    env = dict(os.environ, BERTH_LIFECYCLE_TICK_SECONDS="soon")
    r = _serve(["--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "BERTH_LIFECYCLE_TICK_SECONDS" in r.stderr, r.stderr

    r = _serve(["--listen", "nohost", "--data", str(tmp_path / "d")])
    assert r.returncode != 0 and "--listen" in r.stderr, r.stderr

    # the backends are chosen by configuration; one this build lacks is named, with what it has
    cfg.write_text("metadata-store: mysql\n")
    r = _serve(["--config", str(cfg), "--data", str(tmp_path / "d")])
    assert r.returncode != 0 and "unknown metadata store 'mysql'" in r.stderr and "sqlite, postgres" in r.stderr, r.stderr
    # postgres needs its URL; a bad URL is refused without being quoted back (it may hold a password)
    r = _serve(["--metadata-store", "postgres", "--data", str(tmp_path / "d")])
    assert r.returncode != 0 and "needs postgres-url" in r.stderr, r.stderr
    env = dict(os.environ, BERTH_POSTGRES_URL="postgres://u:hunter2@/db")
    r = _serve(["--metadata-store", "postgres", "--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "BERTH_POSTGRES_URL" in r.stderr and "hunter2" not in r.stderr, r.stderr
    # postgres needs the key-file every node shares (a per-node default would split the cluster)
    env = {k: v for k, v in os.environ.items() if k != "BERTH_KEY_FILE"}
    env["BERTH_POSTGRES_URL"] = "postgres://u@127.0.0.1:1/db"
    r = _serve(["--metadata-store", "postgres", "--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "needs key-file" in r.stderr, r.stderr
    env = dict(os.environ, BERTH_BLOB_STORE="gcs")
    r = _serve(["--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "BERTH_BLOB_STORE" in r.stderr and "filesystem, s3" in r.stderr, r.stderr
    # blob-store s3 names what it lacks, and keeps its secret out of every message
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_S3_")}
    env["BERTH_BLOB_STORE"] = "s3"
    r = _serve(["--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "needs s3-endpoint" in r.stderr, r.stderr
    env.update(BERTH_S3_ENDPOINT="http://127.0.0.1:1", BERTH_S3_BUCKET="b")
    r = _serve(["--data", str(tmp_path / "d")], env=env)
    assert r.returncode != 0 and "needs credentials" in r.stderr, r.stderr
    keys = tmp_path / "s3-keys"
    keys.write_text("access-key: AK\nsecret-key: not-to-be-seen\n")
    keys.chmod(0o644)
    r = _serve(["--data", str(tmp_path / "d")], env=dict(env, BERTH_S3_CREDENTIALS_FILE=str(keys)))
    assert r.returncode != 0 and "may be read by others" in r.stderr and "chmod 600" in r.stderr, r.stderr
    r = _serve(["--data", str(tmp_path / "d")], env=dict(env, BERTH_S3_ACCESS_KEY="AK", BERTH_S3_SECRET_KEY="not-to-be-seen"))
    assert r.returncode != 0 and "is not a valid S3 bucket name" in r.stderr, r.stderr
    assert "not-to-be-seen" not in r.stderr + r.stdout



def test_backend_urls_are_refused_clearly_and_keep_secrets_out(tmp_path):
    """`metadata` and `storage` name each backend as one URL; a password never goes on the
    command line, access keys never in the URL, and no refusal quotes a secret back."""
    import os
    d = ["--data", str(tmp_path / "d")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_S3_", "BERTH_POSTGRES_", "BERTH_METADATA", "BERTH_STORAGE", "BERTH_BLOB"))}
    r = _serve(["--metadata", "postgres://berth:pw-on-argv-7f3@127.0.0.1:1/db", *d], env=env)
    assert r.returncode != 0 and "--metadata" in r.stderr and "postgres-password-file" in r.stderr, r.stderr
    assert "BERTH_METADATA" in r.stderr and "pw-on-argv-7f3" not in r.stderr + r.stdout
    r = _serve(["--metadata", "mysql://u@h/db", *d], env=env)
    assert r.returncode != 0 and "unknown metadata scheme 'mysql'" in r.stderr, r.stderr
    r = _serve(["--metadata", "postgres://u@127.0.0.1/db?sslmode=disable&pool=9", *d], env=env)
    assert r.returncode != 0 and "unknown query key 'pool'" in r.stderr, r.stderr
    r = _serve(["--metadata", "postgres://u@127.0.0.1/db", "--metadata-store", "sqlite", *d], env=env)
    assert r.returncode != 0 and "metadata and metadata-store disagree" in r.stderr, r.stderr
    r = _serve(["--metadata", "postgres://u@127.0.0.1/db", *d], env=dict(env, BERTH_POSTGRES_URL="postgres://u@127.0.0.1/other"))
    assert r.returncode != 0 and "metadata and postgres-url disagree" in r.stderr, r.stderr
    # from the environment a password is allowed; a bad URL still is not quoted back
    r = _serve(d, env=dict(env, BERTH_METADATA="postgres://u:env-secret-9c1@/db"))
    assert r.returncode != 0 and "BERTH_METADATA" in r.stderr and "no host" in r.stderr, r.stderr
    assert "env-secret-9c1" not in r.stderr + r.stdout

    r = _serve(["--storage", "s3://AKIDX:sk-in-url-55e@bucket?endpoint=http://127.0.0.1:1", *d], env=env)
    assert r.returncode != 0 and "must not hold access keys" in r.stderr and "BERTH_S3_ACCESS_KEY" in r.stderr, r.stderr
    assert "sk-in-url-55e" not in r.stderr + r.stdout
    r = _serve(["--storage", "s3://?endpoint=http://127.0.0.1:1", *d], env=env)
    assert r.returncode != 0 and "no bucket" in r.stderr, r.stderr
    r = _serve(["--storage", "s3://bucket?endpoint=ftp://h", *d], env=env)
    assert r.returncode != 0 and "endpoint must be http(s)://HOST[:PORT]" in r.stderr, r.stderr
    r = _serve(["--storage", "s3://bucket?endpoint=http://h&endpoint=http://g", *d], env=env)
    assert r.returncode != 0 and "'endpoint' twice" in r.stderr, r.stderr
    cfg = tmp_path / "berth.yaml"
    cfg.write_text("storage: s3://bucket?endpoint=http://127.0.0.1:1&secret=x\n")
    r = _serve(["--config", str(cfg), *d], env=env)
    assert r.returncode != 0 and f"config file {cfg}: key 'storage'" in r.stderr and "unknown query key 'secret'" in r.stderr, r.stderr
    r = _serve(["--storage", "s3://bucket?endpoint=http://127.0.0.1:1", *d], env=dict(env, BERTH_S3_BUCKET="other"))
    assert r.returncode != 0 and "storage and s3-bucket disagree" in r.stderr, r.stderr
    r = _serve(["--storage", "gs://bucket", *d], env=env)
    assert r.returncode != 0 and "unknown storage scheme 'gs'" in r.stderr, r.stderr


def test_serve_on_postgres_and_s3_named_by_urls(postgres_database, s3_service, tmp_path):
    """`--metadata postgres://USER@HOST:PORT/DB` (password from its file) and `--storage s3://…`
    (keys from the environment): a push and pull with skopeo, and no secret in the log."""
    import os
    import shutil
    import tempfile
    import urllib.parse
    from conftest import RegistryServer
    from helpers import layout_blob, skopeo, umoci_image

    parts = urllib.parse.urlsplit(postgres_database)
    password = urllib.parse.unquote(parts.password)
    metadata = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    bucket = s3_service.create_bucket()
    storage = f"s3://{bucket}/urls?" + urllib.parse.urlencode({"endpoint": s3_service.endpoint, "region": s3_service.region})

    class URLRegistry(RegistryServer):
        def _command(self, port: int):
            return super()._command(port) + ["--metadata", metadata, "--storage", storage]

    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-urls-"))
    password_file = workdir / "pg-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    server = URLRegistry(workdir)
    key_file = workdir / "key-encryption.key"   # postgres needs the key every node shares
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    server.extra_env.update({"BERTH_POSTGRES_PASSWORD_FILE": str(password_file), "BERTH_KEY_FILE": str(key_file),
                             "BERTH_S3_ACCESS_KEY": s3_service.access_key, "BERTH_S3_SECRET_KEY": s3_service.secret_key})
    server.start()
    try:
        layout = tmp_path / "src"
        # random bytes do not compress: a layer too big to be kept inline, so its bytes go to the bucket
        digest = umoci_image(layout, "v1", [{"opt/random.bin": os.urandom(300 << 10)}], workdir=tmp_path)
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{server.host}/urls/app:v1", creds=server.creds)
        out = tmp_path / "out"
        skopeo("copy", "--src-tls-verify=false", f"docker://{server.host}/urls/app:v1", f"oci:{out}:pulled", creds=server.creds)
        assert layout_blob(out, digest) == layout_blob(layout, digest)
        layer = json.loads(layout_blob(layout, digest))["layers"][0]["digest"].split(":")[1]
        assert f"urls/blobs/sha256/{layer[:2]}/{layer}" in s3_service.keys(bucket, "urls/blobs/")  # under the URL's prefix
        assert not (workdir / "data" / "metadata.sqlite").exists() and not (workdir / "data" / "storage").exists()
        log = server.log_path.read_text()
        assert password not in log and s3_service.secret_key not in log
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.server_env(BERTH_LEASE_TTL_SECONDS="600")
def test_lease_ttl_is_a_setting(registry, tmp_path):
    import os
    import sqlite3
    # the server's leases on background work last as configured (the default 15 s would end long before)
    live, deadline = [], time.time() + 30
    while not live and time.time() < deadline:
        db = sqlite3.connect(f"file:{registry.data / 'metadata.sqlite'}?mode=ro", uri=True)
        try:
            now = time.time()
            live = [expires - now for _, expires in db.execute("SELECT name, expires_at FROM leases") if expires > now]
        finally:
            db.close()
        if not live:
            time.sleep(0.2)
    assert live and all(left > 300 for left in live), live
    # outside 1 to 3600 seconds it is refused, naming where it came from
    for bad in ("0.5", "3601", "soon"):
        r = _serve(["--data", str(tmp_path / "d")], env=dict(os.environ, BERTH_LEASE_TTL_SECONDS=bad))
        assert r.returncode != 0 and "BERTH_LEASE_TTL_SECONDS" in r.stderr, r.stderr


@pytest.mark.server_env(BERTH_THREADS="1")
def test_threads_is_a_setting(registry, tmp_path):
    import os
    # one event loop and one blocking-pool thread (NIO names them), not one per core
    names = [open(f"/proc/{registry.proc.pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{registry.proc.pid}/task")]
    assert sum(n.startswith("NIO-SGLTN-") for n in names) == 1, names
    assert sum(n.startswith("SGLTN-TP-") for n in names) <= 1, names
    assert requests.get(f"{registry.base}/v2/", auth=registry.creds, timeout=10).status_code == 200
    for bad in ("0", "257", "many"):
        r = _serve(["--data", str(tmp_path / "d")], env=dict(os.environ, BERTH_THREADS=bad))
        assert r.returncode != 0 and "BERTH_THREADS" in r.stderr, r.stderr


@pytest.mark.server_env(BERTH_LOG_FORMAT="json")
def test_json_logs_carry_identity_request_id_and_user_agent(registry):
    r = requests.get(f"{registry.base}/v2/", auth=registry.creds, headers={"User-Agent": 'ops-"test"\\1.0'}, timeout=10)
    assert r.status_code == 200
    request_id = r.headers["X-Request-Id"]
    lines = [json.loads(l) for l in registry.log_path.read_text().splitlines() if l.startswith("{")]
    assert lines, registry.log_tail()
    access = [l for l in lines if l.get("msg") == "request" and l.get("request_id") == request_id]
    assert len(access) == 1, lines[-5:]
    line = access[0]
    assert line["identity"] == "identity:owner"
    assert line["user_agent"] == 'ops-"test"\\1.0'
    assert line["status"] == "200" and line["path"] == "/v2/"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line["ts"]
    # the token endpoint's line names who logged in too
    t = requests.get(f"{registry.base}/oauth2/token", params={"scope": "repository:a/b:pull"},
                     auth=registry.creds, timeout=10)
    assert t.status_code == 200, t.text
    lines = [json.loads(l) for l in registry.log_path.read_text().splitlines() if l.startswith("{")]
    token_lines = [l for l in lines if l.get("request_id") == t.headers["X-Request-Id"]]
    assert token_lines and token_lines[0]["identity"] == "identity:owner", token_lines


def test_metrics_for_operators(registry, api):
    base = registry.base
    assert requests.get(base + "/v2/", auth=("owner", "wrong"), timeout=10).status_code == 401
    assert requests.get(base + "/v2/", headers={"Authorization": "Bearer not.a.token"}, timeout=10).status_code == 401
    r = api.req("POST", "/api/v1/gc", json={})
    assert r.status_code == 200, r.text
    text = requests.get(base + "/metrics", timeout=10).text

    def value(name):
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        assert m, name + "\n" + text[-3000:]
        return float(m.group(1))

    assert value('berth_login_failures_total{kind="password"}') == 1
    assert value('berth_login_failures_total{kind="bearer"}') == 1
    assert value('berth_lifecycle_runs_total{kind="gc",mode="run"}') == 1
    assert value('berth_lifecycle_run_duration_seconds_count{kind="gc"}') == 1
    assert value('berth_manifests_by_quarantine_state{state="Pending"}') == 0
    assert value("berth_event_log_sequence") >= 1
    assert value("process_resident_memory_bytes") > 1_000_000
    assert value("process_open_fds") > 3
    assert value("process_cpu_seconds_total") > 0


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_LIFECYCLE_TICK_SECONDS="0.2")
def test_metrics_with_webhooks_and_event_consumers_scrape_repeatedly(registry, api):
    """Both kinds of consumer lag are exported, scrape after scrape (a metric family registered
    twice with different help texts stops the process in swift-prometheus)."""
    r = api.req("POST", "/api/v1/webhooks", json={"name": "ops", "uri": "http://127.0.0.1:9/hook", "actions": ["push"]})
    assert r.status_code == 201, r.text
    api.push_blob("ops/app", b"metrics-with-webhooks")
    for _ in range(3):
        m = requests.get(registry.base + "/metrics", timeout=10)
        assert m.status_code == 200
        time.sleep(0.3)
    assert 'berth_webhook_backlog_events{webhook="ops"}' in m.text
    assert 'berth_event_consumer_lag_events{consumer="retention"}' in m.text
    assert requests.get(registry.base + "/healthz", timeout=10).status_code == 200
