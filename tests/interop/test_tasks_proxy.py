"""(berth only) A build task behind a TLS-terminating proxy (issue 16): the server listens on plain
HTTP, nginx terminates TLS in front of it, and ``--public-url`` names nginx. A run's tools push to
``$Registry`` (the public URL's host) and fetch their token from the realm the challenge names
(the public URL too), so that connection carries the run identity's credentials: it is verified.
Without a CA that trusts the proxy's certificate the push fails on verification and the proxy
never sees a token request; with ``task-registry-ca`` naming it, the push goes through the proxy.
The listener's plain HTTP is never carried over to the proxy (it used to be: ``--tls-verify=false``
for every registry the run reached)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import RegistryServer, berth_bin, free_port, start_tls_server
from helpers import run
from test_cli import Cli

pytestmark = [pytest.mark.berth_only]

NGINX = os.environ.get("BERTH_TEST_NGINX", "/usr/sbin/nginx")

TASK_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/app:$ID -f Dockerfile .
  - id: push
    push:
      - $Registry/app:$ID
"""

NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client-body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        large_client_header_buffers 4 64k;
        proxy_buffer_size 64k;
        proxy_buffers 4 64k;
        proxy_busy_buffers_size 128k;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


class TLSProxy:
    """nginx in the foreground with its own prefix, terminating TLS for one upstream."""

    def __init__(self, prefix: Path, port: int, upstream: int, cert: Path, key: Path):
        self.prefix, self.port = prefix, port
        for sub in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, upstream=upstream, cert=cert, key=key,
                                          user="user root;" if os.geteuid() == 0 else ""))
        self.proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                                      "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=open(prefix / "stderr.log", "wb"), stderr=subprocess.STDOUT)
        import time
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(cert), timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, (prefix / "error.log").read_text()[-2000:]
            time.sleep(0.1)

    def access_log(self) -> str:
        return (self.prefix / "access.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def context(tmp_path) -> Path:
    src = tmp_path / "context"
    src.mkdir()
    shutil.copy("/bin/busybox", src / "busybox")
    (src / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    return src


def test_a_runs_push_through_a_tls_terminating_proxy_is_verified(tmp_path, context):
    certs = tmp_path / "certs"
    certs.mkdir()
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "proxy"), "--host", "127.0.0.1"])
    # A CA file that holds no certificate is refused when the server starts (it would fail every run).
    (certs / "junk.pem").write_text("not a certificate\n")
    refused_start = subprocess.run([str(berth_bin()), "serve", "--data", str(tmp_path / "junk-data"), "--listen",
                                    f"127.0.0.1:{free_port()}"], env=dict(os.environ, BERTH_TASK_REGISTRY_CA=str(certs / "junk.pem")),
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert refused_start.returncode != 0 and b"task-registry-ca" in refused_start.stderr, refused_start.stderr[-2000:]
    proxy_port = free_port()
    public = f"127.0.0.1:{proxy_port}"
    server = RegistryServer(tmp_path / "server")
    server.extra_env.update(BERTH_PUBLIC_URL=f"https://{public}", BERTH_OUTBOUND_ALLOW="127.0.0.1/32")
    server.start()
    proxy = None
    try:
        proxy = TLSProxy(tmp_path / "nginx", proxy_port, server.port, certs / "proxy.crt", certs / "proxy.key")
        cli = Cli(server, tmp_path / "xdg")
        cli.login()
        (tmp_path / "acb.yaml").write_text(TASK_FILE)
        cli("task", "create", "--name", "ci", "--file", str(tmp_path / "acb.yaml"))

        # The proxy's certificate is not trusted: the push fails verifying it, and no credential
        # (no token request, no request at all) reaches the proxy.
        refused = cli.run("task", "run", "--name", "ci", "--context", str(context), "--wait", check=False)
        assert refused.returncode != 0, refused.stdout.decode()[-2000:]
        [first] = cli.json("task", "list-runs", "--name", "ci")
        assert first["status"] == "failed" and [s["status"] for s in first["steps"]] == ["succeeded", "failed"], first
        log = cli.run("task", "logs", "--name", "ci", "--run-id", first["id"]).stdout.decode()
        assert "x509" in log or "certificate" in log, log[-3000:]
        assert "/oauth2/token" not in proxy.access_log() and "/v2/" not in proxy.access_log(), proxy.access_log()
        assert requests.head(f"{server.base}/v2/app/manifests/{first['id']}", auth=server.creds, timeout=10,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 404

        # The operator names the proxy's CA: the run verifies the proxy and pushes through it.
        server.stop()
        server.extra_env["BERTH_TASK_REGISTRY_CA"] = str(certs / "proxy.crt")
        server.start(port=server.port)
        done = cli.run("task", "run", "--name", "ci", "--context", str(context), "--wait", "-o", "json", check=False)
        second = json.loads(done.stdout) if done.returncode == 0 else None
        assert second and second["status"] == "succeeded", (done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
        [pushed] = second["pushed"]
        assert pushed["reference"] == f"{public}/app:{second['id']}"
        head = requests.head(f"{server.base}/v2/app/manifests/{second['id']}", auth=server.creds, timeout=10,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == pushed["digest"]
        access = proxy.access_log()
        assert "/oauth2/token" in access and f"PUT /v2/app/manifests/{second['id']}" in access, access
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


def test_a_runs_push_to_a_tls_listener_trusts_its_own_certificate(tmp_path, context):
    """Without a public URL a run pushes to the listener's address over TLS, verified against the
    listener's own certificate (``tls-cert``, self-signed here, naming 127.0.0.1): no setting
    needed, and no plain HTTP or unverified TLS."""
    certs = tmp_path / "certs"
    certs.mkdir()
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "dev"), "--host", "127.0.0.1"])
    proc, port = start_tls_server(tmp_path, certs / "dev.crt", certs / "dev.key",
                                  dict(BERTH_BOOTSTRAP_OWNER_PASSWORD="tls-owner-pw-1", BERTH_SCAN_ON_PUSH="false",
                                       BERTH_OUTBOUND_ALLOW="127.0.0.1/32"))
    try:
        cli = Cli(None, tmp_path / "xdg")
        cli.extra_env = {"BERTH_REGISTRY": f"https://127.0.0.1:{port}", "BERTH_CA_FILE": str(certs / "dev.crt"),
                         "BERTH_USERNAME": "owner", "BERTH_PASSWORD": "tls-owner-pw-1"}
        (tmp_path / "acb.yaml").write_text(TASK_FILE)
        cli("task", "create", "--name", "ci", "--file", str(tmp_path / "acb.yaml"))
        done = cli.run("task", "run", "--name", "ci", "--context", str(context), "--wait", "-o", "json", check=False)
        assert done.returncode == 0, (done.stdout.decode()[-2000:], done.stderr.decode()[-2000:])
        result = json.loads(done.stdout)
        [pushed] = result["pushed"]
        assert pushed["reference"] == f"127.0.0.1:{port}/app:{result['id']}"
        head = requests.head(f"https://127.0.0.1:{port}/v2/app/manifests/{result['id']}", auth=("owner", "tls-owner-pw-1"),
                             verify=str(certs / "dev.crt"), timeout=10,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == pushed["digest"]
        registries = (tmp_path / "data" / "tasks" / "runs" / result["id"] / "registries.conf").read_text()
        assert f'location = "127.0.0.1:{port}"\ninsecure = false' in registries, registries
    finally:
        proc.terminate()
        proc.wait(timeout=30)
