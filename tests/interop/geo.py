"""Regions in network namespaces, joined through delay proxies (issue 13, item 6).

Each region is a ``berth serve`` in its own network namespace (``ip netns``), on its own data
directory, listening on its namespace's address. Each namespace has one veth pair to the root
namespace (``10.<n>.<i>.2`` inside, ``10.<n>.<i>.1`` outside, a /24 per link) and no other route, so
a region cannot reach another directly: its replica endpoints name a delay proxy (tests/interop/
delay_proxy.py) listening on the root side of its own link and forwarding to the peer's address,
80 ms each way by default. The test process (root namespace) reaches every region directly.
Names (namespaces, veths) and the /16 are chosen per run, so a leftover never breaks a rerun;
``close()`` removes everything it made, also after a failure.

Used by tests/interop/test_replication_partitions.py and scripts/bench-geo.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import requests

from delay_proxy import DelayProxy

PORT = 5000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _free_slash16() -> int:
    """A second octet n with 10.n.0.0/16 unused by any route or address here."""
    taken = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
    for _ in range(200):
        n = random.randint(100, 250)
        if f"10.{n}." not in taken:
            return n
    raise RuntimeError("no free 10.n.0.0/16 for the geo namespaces")


class NsServer:
    """``berth serve`` in a network namespace; quacks like conftest.RegistryServer for Cli/Region."""

    def __init__(self, berth: Path, ns: str, address: str, workdir: Path, env: Dict[str, str]):
        self.berth, self.ns, self.address = berth, ns, address
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self.extra_env = dict(env)
        self.username = "owner"
        self.password = "geo-" + secrets.token_urlsafe(18)
        self.port = PORT
        self.proc: Optional[subprocess.Popen] = None

    @property
    def creds(self) -> Tuple[str, str]:
        return (self.username, self.password)

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 120) -> None:
        assert self.proc is None
        env = dict(os.environ)
        env["BERTH_BOOTSTRAP_OWNER_PASSWORD"] = self.password
        env.setdefault("BERTH_SCAN_ON_PUSH", "false")
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, str(self.berth), "serve", "--data", str(self.data),
                 "--listen", self.host], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.workdir), env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"berth serve in {self.ns} exited rc={self.proc.returncode}\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"berth serve in {self.ns} not ready after {timeout}s\n{self.log_tail()}")

    def kill(self) -> None:
        """An outage: the process is killed at once (SIGKILL), no clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class GeoTopology:
    """``names`` regions, each in its own namespace, and a proxy for every ordered pair of them."""

    def __init__(self, berth: Path, names: List[str], delay: float = 0.080, env: Optional[Dict[str, str]] = None,
                 tick: Optional[str] = "0.2"):
        self.berth = berth
        self.names = list(names)
        self.delay = delay
        self.tag = secrets.token_hex(3)
        self.octet = _free_slash16()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"berth-geo-{self.tag}-"))
        self.namespaces: List[str] = []
        self.servers: Dict[str, NsServer] = {}
        self.proxies: Dict[Tuple[str, str], DelayProxy] = {}   # (from, to) -> proxy
        self.env = env or {}
        self.tick = tick   # BERTH_LIFECYCLE_TICK_SECONDS (the applier polls at min(1 s, tick)); None: the default

    def subnet(self) -> str:
        return f"10.{self.octet}.0.0/16"

    def inside(self, i: int) -> str:
        return f"10.{self.octet}.{i + 1}.2"

    def outside(self, i: int) -> str:
        return f"10.{self.octet}.{i + 1}.1"

    def up(self) -> "GeoTopology":
        try:
            for i, name in enumerate(self.names):
                ns = f"berth-{self.tag}-{i}"
                _ip("netns", "add", ns)
                self.namespaces.append(ns)
                host_side, ns_side = f"bg{self.tag}{i}h", f"bg{self.tag}{i}n"
                _ip("link", "add", host_side, "type", "veth", "peer", "name", ns_side)
                _ip("link", "set", ns_side, "netns", ns)
                _ip("addr", "add", f"{self.outside(i)}/24", "dev", host_side)
                _ip("link", "set", host_side, "up")
                _ip("netns", "exec", ns, "ip", "addr", "add", f"{self.inside(i)}/24", "dev", ns_side)
                _ip("netns", "exec", ns, "ip", "link", "set", ns_side, "up")
                _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            # every ordered pair: a proxy on the root side of the reader's link, to the peer
            for i, a in enumerate(self.names):
                for j, b in enumerate(self.names):
                    if a != b:
                        self.proxies[(a, b)] = DelayProxy(self.outside(i), self.inside(j), PORT, delay=self.delay,
                                                          name=f"{a}->{b}").start()
            for i, name in enumerate(self.names):
                env = {"BERTH_REGION": name, "BERTH_OUTBOUND_ALLOW": self.subnet()}
                if self.tick is not None:
                    env["BERTH_LIFECYCLE_TICK_SECONDS"] = self.tick
                env.update(self.env)
                server = NsServer(self.berth, self.namespaces[i], self.inside(i), self.workdir / name, env)
                self.servers[name] = server
                server.start()
            return self
        except BaseException:
            self.close()
            raise

    def peer_endpoint(self, reader: str, peer: str) -> str:
        """The URL region ``reader`` knows ``peer`` by: the proxy between them."""
        return f"http://{self.proxies[(reader, peer)].address}"

    def partition(self, a: str, b: str) -> None:
        self.proxies[(a, b)].partition()
        self.proxies[(b, a)].partition()

    def heal(self, a: str, b: str) -> None:
        self.proxies[(a, b)].heal()
        self.proxies[(b, a)].heal()

    def heal_all(self) -> None:
        for p in self.proxies.values():
            if p.partitioned:
                p.heal()

    def isolate(self, name: str) -> None:
        for other in self.names:
            if other != name:
                self.partition(name, other)

    def wire(self, clis: Dict[str, object], credential_dir: Path, pairs=None) -> None:
        """Replicas both ways for ``pairs`` (every pair by default): each region gets a Replicator
        identity of its own name (identities replicate: one shared name would be one record, and
        one region's password would win everywhere), and each reader presents the peer's to the
        peer through the proxy."""
        secrets_of = {}
        for name in self.names:
            cli = clis[name]
            secrets_of[name] = cli.json("identity", "create", "--name", f"peer-replicator-{name}")["password"]
            cli("role", "assignment", "create", "--assignee", f"peer-replicator-{name}", "--role", "Replicator", "--scope", "*")
        pairs = pairs or [(a, b) for a in self.names for b in self.names if a != b]
        for here, there in pairs:
            f = credential_dir / f"credential-{here}-{there}"
            f.write_text(f"peer-replicator-{there}:{secrets_of[there]}\n")
            os.chmod(f, stat.S_IRUSR | stat.S_IWUSR)
            clis[here]("replication", "create", "--location", there, "--endpoint", self.peer_endpoint(here, there),
                       "--credential-file", str(f))

    def close(self) -> None:
        for server in self.servers.values():
            try:
                server.stop()
            except Exception:
                pass
        for proxy in self.proxies.values():
            try:
                proxy.stop()
            except Exception:
                pass
        for i, ns in enumerate(self.namespaces):
            # deleting the namespace deletes its end of the veth, and with it the pair
            for args in (("netns", "del", ns), ("link", "del", f"bg{self.tag}{i}h")):
                try:
                    _ip(*args, check=False)
                except Exception:   # a hung `ip` must not leave the other namespaces behind
                    pass
        self.namespaces.clear()
        if not os.environ.get("BERTH_GEO_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
