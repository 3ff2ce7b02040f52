"""Fixtures for the Berth interop suite.

The ``registry`` fixture starts a real registry server process on a free
loopback port with a fresh data directory:

* default (``INTEROP_TARGET=berth``): ``$BERTH_BIN serve --data DIR --listen
  127.0.0.1:PORT`` (``BERTH_BIN`` defaults to ``<repo>/.build/debug/berth``),
  ready when ``GET /healthz`` answers 200.
* ``INTEROP_TARGET=reference``: Debian's CNCF reference registry
  (``/usr/bin/docker-registry serve CONFIG``), ready when ``GET /v2/`` answers
  200 (it has no ``/healthz``). Used to validate the tests themselves. Tests
  marked ``berth_only`` (features the reference registry lacks, e.g. the
  referrers API) are skipped in this mode only; in berth mode nothing is
  skipped.

Authentication: Berth denies anonymous access. On an empty data dir it
creates the identity ``owner`` (role Owner) whose password is taken from
``BERTH_BOOTSTRAP_OWNER_PASSWORD``; the fixture sets a random one per server
and exposes it as ``registry.username`` / ``registry.password``
(``registry.creds`` is ``(user, password)``, or ``None`` against the
reference registry, which runs without auth). The ``creds`` fixture returns
the same.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest
import requests

from helpers import REQUIRED_TOOLS, TARGET, require_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
if TARGET not in ("berth", "reference"):
    raise pytest.UsageError(f"INTEROP_TARGET must be 'berth' or 'reference', not {TARGET!r}")

STARTUP_TIMEOUT = 30.0
STOP_GRACE = 10.0


def berth_bin() -> Path:
    env = os.environ.get("BERTH_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else (REPO_ROOT / p)
    return REPO_ROOT / ".build" / "debug" / "berth"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "berth_only: needs a feature the reference registry lacks (skipped only "
        "with INTEROP_TARGET=reference; always runs against berth)",
    )
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers",
        "server_env(**env): extra environment variables for the registry server the "
        "``registry`` fixture starts (e.g. BERTH_LIFECYCLE_TICK_SECONDS='1')",
    )


def pytest_collection_modifyitems(config, items):
    if TARGET != "reference":
        return
    skip = pytest.mark.skip(reason="berth_only: not supported by the reference registry")
    for item in items:
        if "berth_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    if TARGET == "reference":
        return f"interop target: reference registry ({shutil.which('docker-registry')})"
    return f"interop target: berth ({berth_bin()})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(scope="session", autouse=True)
def _tools_present():
    """Missing tools are a failure, never a skip."""
    for tool in REQUIRED_TOOLS:
        require_tool(tool)
    if TARGET == "berth":
        b = berth_bin()
        assert b.is_file() and os.access(b, os.X_OK), (
            f"berth binary not found at {b}; build it or set BERTH_BIN")


def _popen_retrying(cmd, **kw) -> subprocess.Popen:
    """Popen, retried for a while on ETXTBSY ("text file busy"): the berth
    binary may be in the middle of being rebuilt."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return subprocess.Popen(cmd, **kw)
        except OSError as e:
            if e.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_tls_server(tmp_path: Path, cert: Path, key: Path, env: Dict[str, str]) -> Tuple[subprocess.Popen, int]:
    """``berth serve`` over TLS on a free loopback port with its data in ``tmp_path/data`` and its
    log in ``tmp_path/server.log``, once ``/healthz`` answers (verification off: the certificate
    may name only a host name). ``env`` is added to this process's environment. The caller stops it."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(berth_bin()), "serve", "--data", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}",
                                 "--tls-cert", str(cert), "--tls-key", str(key)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(os.environ, **env))
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).status_code == 200:
                return proc, port
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log_path.read_text()[-3000:])
        time.sleep(0.2)


class RegistryServer:
    """A registry subprocess bound to 127.0.0.1 on a fixed data dir."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.starts = 0
        # extra environment variables of the server process (set before start()). Scan on push
        # is on by default in `berth serve`; the suite's servers turn it off, since the scanner's
        # SBOM referrers and their push events arrive asynchronously and change what tests of
        # plain registry behaviour count (with it on, test_webhooks' restart tests fail on the extra
        # events). Tests of scanning set BERTH_SCAN_ON_PUSH=true; test_scan_on_push checks the default.
        self.extra_env: Dict[str, str] = {"BERTH_SCAN_ON_PUSH": "false"}
        if TARGET == "reference":
            self.username: Optional[str] = None
            self.password: Optional[str] = None
        else:
            # the bootstrap owner created on first start of an empty data dir
            self.username = "owner"
            self.password = "it-" + secrets.token_urlsafe(18)

    @property
    def creds(self) -> Optional[Tuple[str, str]]:
        """``(user, password)`` of the owner, ``None`` without auth."""
        if self.username is None:
            return None
        return (self.username, self.password)

    def api(self, timeout: float = 30):
        """A raw-HTTP client authenticated as the owner (Basic)."""
        from helpers import Api
        return Api(self.host, timeout=timeout, auth=self.creds)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def _command(self, port: int):
        if TARGET == "reference":
            cfg = self.workdir / "config.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log:\n  level: info\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {self.data}\n"
                "  delete:\n    enabled: true\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                "http:\n"
                f"  addr: 127.0.0.1:{port}\n"
                # fixed secret so upload state survives a restart
                "  secret: berth-interop-test-secret\n"
            )
            return ["/usr/bin/docker-registry", "serve", str(cfg)]
        return [str(berth_bin()), "serve", "--data", str(self.data),
                "--listen", f"127.0.0.1:{port}"]

    def _ready_path(self) -> str:
        return "/v2/" if TARGET == "reference" else "/healthz"

    def start(self, port: Optional[int] = None) -> None:
        assert self.proc is None, "already running"
        last_err = None
        # Reuse the requested port (restart on the same address) if possible;
        # fall back to a fresh port if it cannot be bound again.
        candidates = [port] if port else []
        candidates += [free_port(), free_port()]
        for p in candidates:
            ok, last_err = self._start_on(p)
            if ok:
                return
        raise AssertionError(f"registry did not become ready: {last_err}\n{self.log_tail()}")

    def _start_on(self, port: int):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} on port {port} =====\n".encode())
        log.flush()
        env = dict(os.environ)
        env.pop("BERTH_BOOTSTRAP_OWNER_PASSWORD", None)
        if self.password is not None:
            env["BERTH_BOOTSTRAP_OWNER_PASSWORD"] = self.password
        env.update(self.extra_env)
        # BERTH_INTEROP_SELF_DATA_ENDPOINT=1 runs every server with its own address as its data
        # endpoint (issue 13): upload sessions then answer absolute Locations, which every push of
        # the suite must follow.
        if os.environ.get("BERTH_INTEROP_SELF_DATA_ENDPOINT") and TARGET != "reference":
            env["BERTH_DATA_ENDPOINT"] = f"http://127.0.0.1:{port}"
        try:
            proc = _popen_retrying(self._command(port), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=str(self.workdir), env=env)
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        url = f"http://127.0.0.1:{port}{self._ready_path()}"
        err = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False, f"server exited with rc={proc.returncode}"
            try:
                r = requests.get(url, timeout=2)
                if r.status_code == 200:
                    self.proc, self.port = proc, port
                    return True, None
                err = f"{url} -> {r.status_code}"
            except requests.RequestException as e:
                err = f"{url} -> {e!r}"
            time.sleep(0.1)
        self._terminate(proc)
        return False, f"not ready after {STARTUP_TIMEOUT}s: {err}"

    @staticmethod
    def _terminate(proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self._terminate(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: simulate a crash / power loss of the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def restart_after_kill(self) -> None:
        self.kill()
        self.start(port=self.port)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no server log)"
        return "\n".join(lines[-n:])


@pytest.fixture
def registry(request):
    """A fresh registry (new data dir, free port). Yields the server object;
    ``registry.host`` is ``127.0.0.1:PORT``. ``@pytest.mark.server_env(NAME="value")``
    on a test adds environment variables to the server process."""
    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-"))
    server = RegistryServer(workdir)
    marker = request.node.get_closest_marker("server_env")
    if marker is not None:
        server.extra_env.update({k: str(v) for k, v in marker.kwargs.items()})
    server.start()
    try:
        yield server
    finally:
        alive = server.is_running()
        server.stop()
        rep = getattr(request.node, "rep_call", None)
        failed = rep is not None and rep.failed
        if failed:
            print(f"\n----- server log ({server.log_path}) -----\n{server.log_tail()}")
        if failed and os.environ.get("INTEROP_KEEP"):
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if rep is not None and rep.passed:
            assert alive or server.proc is None, "server died during the test"


@pytest.fixture
def host(registry) -> str:
    """``127.0.0.1:PORT`` of a fresh registry."""
    return registry.host


@pytest.fixture
def creds(registry):
    """``(user, password)`` of the registry's owner; ``None`` in reference
    mode (no auth)."""
    return registry.creds


@pytest.fixture
def api(registry):
    """Raw-HTTP client, authenticated (Basic) when the registry needs it."""
    return registry.api()


# --- S3: a real object store (Ceph RGW) for `blob-store s3` -------------------------------------

class S3Service:
    """The test object store: BERTH_TEST_S3_* when set (scripts/test started it), else started
    once per run with scripts/services/ceph-rgw (which reuses a running one)."""

    def __init__(self, env: Dict[str, str]):
        self.endpoint = env["BERTH_TEST_S3_ENDPOINT"]
        self.access_key = env["BERTH_TEST_S3_ACCESS_KEY"]
        self.secret_key = env["BERTH_TEST_S3_SECRET_KEY"]
        self.region = env.get("BERTH_TEST_S3_REGION", "us-east-1")

    def request(self, method: str, bucket: str, query: Optional[Dict[str, str]] = None) -> requests.Response:
        """An empty-bodied request, SigV4-signed by the tests' own signer (cluster.py)."""
        from cluster import signed_s3_request
        return signed_s3_request(self.endpoint, self.access_key, self.secret_key, self.region, method, "/" + bucket, query)

    def create_bucket(self) -> str:
        name = "berth-it-" + secrets.token_hex(6)
        r = self.request("PUT", name)
        assert r.status_code == 200, r.text
        return name

    def keys(self, bucket: str, prefix: str = "") -> list:
        import re
        r = self.request("GET", bucket, {"list-type": "2", "prefix": prefix})
        assert r.status_code == 200, r.text
        return re.findall(r"<Key>([^<]+)</Key>", r.text)


@pytest.fixture(scope="session")
def s3_service():
    env = dict(os.environ)
    if "BERTH_TEST_S3_ENDPOINT" not in env:
        out = subprocess.run([str(REPO_ROOT / "scripts/services/ceph-rgw"), "start"], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        for line in out.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].split("=", 1)
                env[k] = v
    return S3Service(env)


@pytest.fixture
def s3_registry(s3_service, request):
    """A fresh registry whose blobs live in a fresh bucket of the test object store. Yields
    (server, bucket)."""
    bucket = s3_service.create_bucket()
    workdir = Path(tempfile.mkdtemp(prefix="berth-interop-s3-"))
    server = RegistryServer(workdir)
    server.extra_env.update({
        "BERTH_BLOB_STORE": "s3", "BERTH_S3_ENDPOINT": s3_service.endpoint, "BERTH_S3_BUCKET": bucket,
        "BERTH_S3_REGION": s3_service.region, "BERTH_S3_PREFIX": "reg",
        "BERTH_S3_ACCESS_KEY": s3_service.access_key, "BERTH_S3_SECRET_KEY": s3_service.secret_key,
    })
    server.start()
    try:
        yield server, bucket
    finally:
        server.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"\n----- server log ({server.log_path}) -----\n{server.log_tail()}")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of the PostgreSQL test service: ``BERTH_TEST_POSTGRES_URL`` (``scripts/test`` starts the
    service and exports it), else the service is started here once per run, with the project's own
    ``scripts/services/postgres``, and stopped at the end if this run started it."""
    url = os.environ.get("BERTH_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "services" / "postgres")
    was_running = subprocess.run([script, "url"], capture_output=True).returncode == 0
    started = subprocess.run([script, "start"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip()
    finally:
        if not was_running:
            subprocess.run([script, "stop"], capture_output=True, timeout=120)


@pytest.fixture
def postgres_database(postgres_url):
    """A fresh, empty database on the test service (dropped afterwards); yields its URL."""
    import urllib.parse
    name = "interop_" + secrets.token_hex(6)
    admin = postgres_url
    def psql(sql):
        r = subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    psql(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(postgres_url)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
