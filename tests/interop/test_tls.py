"""TLS: `berth certificate create` makes a certificate that `berth serve --tls-cert/--tls-key`
serves and that real clients verify (skopeo with --cert-dir and --tls-verify=true)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import berth_bin, free_port
from helpers import run, sha256_digest, skopeo, umoci_image

pytestmark = pytest.mark.berth_only


@pytest.fixture
def tls_registry(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "dev"), "--host", "localhost", "127.0.0.1"])
    assert (certs / "dev.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert oct((certs / "dev.key").stat().st_mode & 0o777) == "0o600"
    password = "tls-" + secrets.token_urlsafe(12)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    env = dict(os.environ, BERTH_BOOTSTRAP_OWNER_PASSWORD=password)
    proc = subprocess.Popen([str(berth_bin()), "serve", "--data", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}",
                             "--tls-cert", str(certs / "dev.crt"), "--tls-key", str(certs / "dev.key")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(certs / "dev.crt"), timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "TLS server did not become ready"
        time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}", certs / "dev.crt", ("owner", password)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_skopeo_verifies_the_generated_certificate(tls_registry, tmp_path):
    host, cert, creds = tls_registry
    # plain HTTP is not served on the TLS port
    with pytest.raises(requests.RequestException):
        requests.get(f"http://{host}/healthz", timeout=3)
    # unknown authority without the certificate
    r = skopeo("list-tags", "--tls-verify=true", f"docker://{host}/none", creds=creds, check=False)
    assert r.returncode != 0 and b"certificate" in (r.stderr + r.stdout).lower()

    cert_dir = tmp_path / "cert-dir"
    cert_dir.mkdir()
    shutil.copy(cert, cert_dir / "ca.crt")
    layout = tmp_path / "layout"
    digest = umoci_image(layout, "v1", [{"etc/tls.txt": b"over tls\n"}], workdir=tmp_path)
    skopeo("copy", "--dest-tls-verify=true", f"--dest-cert-dir={cert_dir}", f"oci:{layout}:v1",
           f"docker://{host}/secure/app:v1", creds=creds)
    out = skopeo("inspect", "--tls-verify=true", f"--cert-dir={cert_dir}", "--raw", f"docker://{host}/secure/app:v1",
                 creds=creds).stdout
    import hashlib
    assert "sha256:" + hashlib.sha256(out).hexdigest() == digest
    # the token realm advertised over TLS is https
    challenge = requests.get(f"https://{host}/v2/", verify=str(cert), timeout=10).headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="https://{host}/oauth2/token"')


def test_large_blob_download_over_tls(tls_registry):
    # Plain-HTTP downloads go out by sendfile; over TLS the file is streamed through memory.
    host, cert, creds = tls_registry
    data = os.urandom(6 * 1024 * 1024 + 7)
    digest = sha256_digest(data)
    r = requests.post(f"https://{host}/v2/tls/big/blobs/uploads/?digest={digest}", data=data, auth=creds,
                      verify=str(cert), headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 201, r.text
    with requests.Session() as s:
        for _ in range(2):
            r = s.get(f"https://{host}/v2/tls/big/blobs/{digest}", auth=creds, verify=str(cert), timeout=60)
            assert r.status_code == 200 and r.content == data
        r = s.get(f"https://{host}/v2/tls/big/blobs/{digest}", auth=creds, verify=str(cert), timeout=60,
                  headers={"Range": "bytes=5-1048580"})
        assert r.status_code == 206 and r.content == data[5:1048581]


def test_console_cookies_are_secure_on_the_tls_listener(tls_registry):
    """The web console over `--tls-cert` (issue 17): every cookie it sets is `Secure`, `HttpOnly`
    and `SameSite=Strict`, the sign-in one and the session's, and sign-in works with them."""
    import re
    host, cert, (user, password) = tls_registry
    with requests.Session() as s:
        # verify= on each request: a session's own is overridden by REQUESTS_CA_BUNDLE when set
        page = s.get(f"https://{host}/console/login", verify=str(cert), timeout=10)
        assert page.status_code == 200
        cookies = page.raw.headers.getlist("Set-Cookie")
        assert cookies and all("; Secure" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in cookies), cookies
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = s.post(f"https://{host}/console/login", data={"csrf": csrf, "username": user, "password": password},
                   allow_redirects=False, verify=str(cert), timeout=10)
        assert r.status_code in (302, 303), (r.status_code, r.text[:300])
        session = [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("berth_session=")]
        assert session and "; Secure" in session[0] and "HttpOnly" in session[0], session
        assert password not in r.headers.get("Location", "")
        home = s.get(f"https://{host}/console/", verify=str(cert), timeout=10)
        assert home.status_code == 200 and "/console/login" not in home.url, (home.url, home.text[:300])
