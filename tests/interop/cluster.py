"""Several `berth serve` nodes as one registry: a fresh PostgreSQL database, a fresh bucket on the
S3 test store (Ceph RGW), one key-file, the owner bootstrapped once, and nginx in front,
round-robin (config from nginx-cluster.conf.template next to this file).

Used by test_cluster.py and by scripts/bench; nothing here needs pytest::

    from cluster import Cluster
    with Cluster.from_environment(nodes=3) as c:
        c.balancer_base            # http://127.0.0.1:PORT (nginx)
        c.node(0).base             # http://127.0.0.1:PORT (one node, directly)
        c.creds                    # ("owner", password)
        c.kill(1); c.restart(1)    # SIGKILL, then start again on the same port

The services come from the environment as the interop suite has them: ``BERTH_TEST_POSTGRES_URL``
(an admin URL of the PostgreSQL test service) and ``BERTH_TEST_S3_ENDPOINT``/``_ACCESS_KEY``/
``_SECRET_KEY``/``_REGION``; missing ones are started with scripts/services/{postgres,ceph-rgw}
(which reuse a running service). The berth binary is ``BERTH_BIN`` or <repo>/.build/debug/berth.
"""

from __future__ import annotations

import base64
import datetime
import errno
import hashlib
import hmac
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
TEMPLATE = HERE / "nginx-cluster.conf.template"
NGINX = os.environ.get("BERTH_TEST_NGINX", "/usr/sbin/nginx")
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 10.0


def _berth_bin() -> Path:
    env = os.environ.get("BERTH_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    return REPO_ROOT / ".build" / "debug" / "berth"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _popen(cmd, **kw) -> subprocess.Popen:
    """Popen, retried for a while on ETXTBSY (the binary may be in the middle of a rebuild)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return subprocess.Popen(cmd, **kw)
        except OSError as e:
            if e.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen, url: str, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    err = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with rc={proc.returncode}\n{_tail(log)}")
        try:
            r = requests.get(url, timeout=2)
            if r.status_code == 200:
                return
            err = f"{url} -> {r.status_code}"
        except requests.RequestException as e:
            err = f"{url} -> {e!r}"
        time.sleep(0.1)
    _terminate(proc)
    raise RuntimeError(f"{what} not ready after {STARTUP_TIMEOUT}s: {err}\n{_tail(log)}")


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no {path})"


def signed_s3_request(endpoint: str, access_key: str, secret_key: str, region: str, method: str, path: str,
                      query: Optional[Dict[str, str]] = None) -> requests.Response:
    """An empty-bodied S3 request to ``path`` (``/bucket[/key]``), SigV4-signed here: a second,
    independent signer, so the tests do not check Berth's signer against itself."""
    query = query or {}
    endpoint = endpoint.rstrip("/")
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urllib.parse.urlsplit(endpoint).netloc
    empty = hashlib.sha256(b"").hexdigest()
    path = urllib.parse.quote(path, safe="/-_.~")
    q = lambda s: urllib.parse.quote(s, safe="-_.~")
    cq = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(query.items()))
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, cq, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, empty])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={signed},Signature={sig}"
    del headers["host"]
    return requests.request(method, endpoint + path + (f"?{cq}" if cq else ""), headers=headers, timeout=60)


class S3Bucket:
    """A bucket of the S3 test store, with just what the tests need of it (SigV4 signed here,
    independently of Berth's signer): create, list keys, delete everything."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str, name: str):
        self.endpoint, self.access_key, self.secret_key = endpoint.rstrip("/"), access_key, secret_key
        self.region, self.name = region, name

    def request(self, method: str, key: str = "", query: Optional[Dict[str, str]] = None) -> requests.Response:
        return signed_s3_request(self.endpoint, self.access_key, self.secret_key, self.region, method,
                                 "/" + self.name + ("/" + key if key else ""), query)

    def create(self) -> None:
        r = self.request("PUT")
        if r.status_code != 200:
            raise RuntimeError(f"cannot create bucket {self.name}: {r.status_code} {r.text[:300]}")

    def keys(self, prefix: str = "") -> List[str]:
        out: List[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            r = self.request("GET", query=query)
            if r.status_code != 200:
                raise RuntimeError(f"cannot list bucket {self.name}: {r.status_code} {r.text[:300]}")
            out += re.findall(r"<Key>([^<]+)</Key>", r.text)
            m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", r.text)
            if "<IsTruncated>true</IsTruncated>" not in r.text or not m:
                return [k.replace("&amp;", "&") for k in out]
            token = m.group(1).replace("&amp;", "&")

    def delete(self) -> None:
        """Every object (unfinished multipart uploads are aborted), then the bucket; best effort."""
        try:
            r = self.request("GET", query={"uploads": ""})
            for key, upload in re.findall(r"<Key>([^<]+)</Key>\s*<UploadId>([^<]+)</UploadId>", r.text):
                self.request("DELETE", key, {"uploadId": upload})
            for key in self.keys():
                self.request("DELETE", key)
            self.request("DELETE")
        except requests.RequestException:
            pass


class Node:
    """One `berth serve` process of the cluster, with its own data directory."""

    def __init__(self, cluster: "Cluster", index: int):
        self.cluster, self.index = cluster, index
        self.workdir = cluster.workdir / f"node{index}"
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        assert self.proc is None, f"node {self.index} is already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} on port {self.port} =====\n".encode())
            log.flush()
            self.proc = _popen([str(self.cluster.berth), "serve", "--data", str(self.data),
                                "--listen", self.host, "--metadata-store", "postgres"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=str(self.workdir), env=self.cluster.node_environment())

    def wait_ready(self) -> None:
        assert self.proc is not None
        try:
            _wait_ready(self.proc, self.base + "/healthz", f"node {self.index}", self.log_path)
        except RuntimeError:
            self.proc = None
            raise

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash or a power loss of this node."""
        assert self.proc is not None, f"node {self.index} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, n: int = 60) -> str:
        return _tail(self.log_path, n)


class Cluster:
    """N nodes over one fresh database and one fresh bucket, nginx in front (see the module doc).

    ``service_name``: the token service's name every node is configured with (``None``: not
    configured, each node takes Berth's default). ``node_env``: extra environment of every node.
    ``workdir``: where the nodes, nginx and the key-file live (a new temporary directory if not
    given; removed by ``stop`` only when it made it)."""

    def __init__(self, *, postgres_url: str, s3_endpoint: str, s3_access_key: str, s3_secret_key: str,
                 s3_region: str = "us-east-1", nodes: int = 3, workdir: Optional[Path] = None,
                 service_name: Optional[str] = "berth-cluster", node_env: Optional[Dict[str, str]] = None,
                 berth: Optional[Path] = None, access_log: bool = False):
        assert nodes >= 1
        self.admin_url = postgres_url
        self.own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="berth-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.berth = Path(berth) if berth else _berth_bin()
        self.database = "cluster_" + secrets.token_hex(6)
        parts = urllib.parse.urlsplit(postgres_url)
        self.database_url = urllib.parse.urlunsplit(parts._replace(path="/" + self.database))
        self.bucket = S3Bucket(s3_endpoint, s3_access_key, s3_secret_key, s3_region,
                               "berth-cluster-" + secrets.token_hex(6))
        self.s3_prefix = "reg"
        self.username, self.password = "owner", "cl-" + secrets.token_urlsafe(18)
        self.service_name = service_name
        self.node_env = dict(node_env or {})
        self.access_log = access_log
        self.key_file = self.workdir / "berth.key"
        self.nodes = [Node(self, i) for i in range(nodes)]
        self.balancer_port = free_port()
        self.nginx_prefix = self.workdir / "nginx"
        self.nginx: Optional[subprocess.Popen] = None
        self._database_created = False
        self._bucket_created = False

    @classmethod
    def from_environment(cls, **kw) -> "Cluster":
        """The services of the interop suite (``BERTH_TEST_POSTGRES_URL``, ``BERTH_TEST_S3_*``),
        started with scripts/services/* when not given."""
        env = dict(os.environ)
        if "BERTH_TEST_POSTGRES_URL" not in env:
            out = subprocess.run([str(REPO_ROOT / "scripts/services/postgres"), "start"], capture_output=True,
                                 text=True, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"cannot start the PostgreSQL test service: {out.stderr}")
            env["BERTH_TEST_POSTGRES_URL"] = out.stdout.strip()
        if "BERTH_TEST_S3_ENDPOINT" not in env:
            out = subprocess.run([str(REPO_ROOT / "scripts/services/ceph-rgw"), "start"], capture_output=True,
                                 text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"cannot start the S3 test service: {out.stderr}")
            for line in out.stdout.splitlines():
                if line.startswith("export ") and "=" in line:
                    k, v = line[len("export "):].split("=", 1)
                    env[k] = v
        return cls(postgres_url=env["BERTH_TEST_POSTGRES_URL"], s3_endpoint=env["BERTH_TEST_S3_ENDPOINT"],
                   s3_access_key=env["BERTH_TEST_S3_ACCESS_KEY"], s3_secret_key=env["BERTH_TEST_S3_SECRET_KEY"],
                   s3_region=env.get("BERTH_TEST_S3_REGION", "us-east-1"), **kw)

    # --- what the tests use ---------------------------------------------------------------------

    @property
    def creds(self) -> Tuple[str, str]:
        return (self.username, self.password)

    @property
    def balancer_host(self) -> str:
        return f"127.0.0.1:{self.balancer_port}"

    @property
    def balancer_base(self) -> str:
        return f"http://{self.balancer_host}"

    def node(self, i: int) -> Node:
        return self.nodes[i]

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def restart(self, i: int) -> None:
        """Start node ``i`` again (after ``kill`` or ``stop``; a running node is stopped first),
        on the same port, so the balancer's list stays right."""
        node = self.nodes[i]
        node.stop()
        node.launch()
        node.wait_ready()

    # --- lifecycle --------------------------------------------------------------------------------

    def node_environment(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update({
            "BERTH_POSTGRES_URL": self.database_url, "BERTH_BLOB_STORE": "s3",
            "BERTH_KEY_FILE": str(self.key_file),
            "BERTH_BOOTSTRAP_OWNER_PASSWORD": self.password,
            "BERTH_S3_ENDPOINT": self.bucket.endpoint, "BERTH_S3_BUCKET": self.bucket.name,
            "BERTH_S3_REGION": self.bucket.region, "BERTH_S3_PREFIX": self.s3_prefix,
            "BERTH_S3_ACCESS_KEY": self.bucket.access_key, "BERTH_S3_SECRET_KEY": self.bucket.secret_key,
            # Scan on push is on by default; these tests count events and referrers the scanner's
            # SBOM pushes would add to. A test that wants it sets node_env.
            "BERTH_SCAN_ON_PUSH": "false",
        })
        if self.service_name is not None:
            env["BERTH_SERVICE_NAME"] = self.service_name
        env.update(self.node_env)
        return env

    def _psql(self, sql: str) -> None:
        r = subprocess.run(["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")

    def start(self) -> "Cluster":
        try:
            self._psql(f"CREATE DATABASE {self.database}")
            self._database_created = True
            self.bucket.create()
            self._bucket_created = True
            self.key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
            self.key_file.chmod(0o600)
            # The first node migrates the schema, creates the keys and bootstraps the owner; the
            # others start together afterwards.
            self.nodes[0].launch()
            self.nodes[0].wait_ready()
            for node in self.nodes[1:]:
                node.launch()
            for node in self.nodes[1:]:
                node.wait_ready()
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def _render_nginx_config(self) -> Path:
        prefix = self.nginx_prefix
        for sub in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server {n.host} max_fails=1 fail_timeout=2s;" for n in self.nodes)
        # nginx started as root hands its worker to an unprivileged user unless told otherwise;
        # the worker must reach the temp directories made here
        user = "user root;" if os.geteuid() == 0 else ""
        text = TEMPLATE.read_text()
        for name, value in {"PREFIX": str(prefix), "LISTEN": self.balancer_host, "SERVERS": servers, "USER": user,
                            "ACCESS_LOG": str(prefix / "access.log") if self.access_log else "off"}.items():
            text = text.replace(f"@{name}@", value)
        if re.search(r"@[A-Z_]+@", text):
            raise RuntimeError(f"unrendered placeholder in {TEMPLATE}: {re.search(r'@[A-Z_]+@', text).group(0)}")
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        return conf

    def _start_nginx(self) -> None:
        conf = self._render_nginx_config()
        log = self.nginx_prefix / "stderr.log"
        with open(log, "ab") as out:
            self.nginx = _popen([NGINX, "-p", str(self.nginx_prefix), "-c", str(conf),
                                 "-e", str(self.nginx_prefix / "error.log"), "-g", "daemon off;"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_ready(self.nginx, self.balancer_base + "/healthz", "nginx", self.nginx_prefix / "error.log")
        except RuntimeError:
            self.nginx = None
            raise

    def stop(self) -> None:
        """Stop nginx and the nodes, drop the database and the bucket; remove the work directory
        if this object made it (``BERTH_CLUSTER_KEEP=1`` keeps it, for a look at the logs)."""
        if self.nginx is not None:
            _terminate(self.nginx, signal.SIGQUIT)
            self.nginx = None
        for node in self.nodes:
            node.stop()
        if self._database_created:
            try:
                self._psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            except (RuntimeError, subprocess.SubprocessError):
                pass
            self._database_created = False
        if self._bucket_created:
            self.bucket.delete()
            self._bucket_created = False
        if self.own_workdir and not os.environ.get("BERTH_CLUSTER_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self, n: int = 40) -> str:
        """The tail of every node's log and of nginx's error log, for a failure report."""
        parts = [f"----- node {node.index} ({node.log_path}) -----\n{node.log_tail(n)}" for node in self.nodes]
        parts.append(f"----- nginx -----\n{_tail(self.nginx_prefix / 'error.log', n)}")
        return "\n".join(parts)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
