"""(berth only) A build task's ``berth`` steps (issue 16) run the server's own binary against the
server's own listener, never ``--public-url`` (which may name a proxy or, here, a host that does
not exist): a ``--cmd "berth purge ..."`` task purges on a server whose public URL is unreachable,
also over TLS with a certificate that names only a host name (the step verifies it, reaching
the listener on loopback); the binary is ``/proc/self/exe``, so a server whose file was replaced
by an upgrade still runs its own image; and a berth step's ``env`` may not set the run
identity's variables, refused with the line when the task is saved, as are ACR keys Berth does
not take. And a build's ``RUN`` has no network unless its step says ``network: host``."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from conftest import RegistryServer, berth_bin, start_tls_server
from helpers import run, sha256_digest
from test_cli import Cli

pytestmark = [pytest.mark.berth_only]

UNREACHABLE = "https://registry.unreachable.invalid"


def push_tiny_image(base: str, creds, repository: str, tag: str, verify=True) -> None:
    """A config-only image over the raw API with Basic credentials (no token realm, which names
    the public URL; upload Locations may name it too, so only their path is used)."""
    s = requests.Session()
    s.auth = creds
    s.verify = verify
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"tag": tag}}}).encode()
    digest = sha256_digest(config)
    r = s.post(f"{base}/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"}, timeout=30)
    assert r.status_code == 202, r.text
    location = urlparse(r.headers["Location"])
    path = location.path + ("?" + location.query if location.query else "")
    r = s.put(base + path, params={"digest": digest}, data=config, headers={"Content-Type": "application/octet-stream"},
              timeout=30)
    assert r.status_code == 201, r.text
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                                      "size": len(config)}, "layers": []}).encode()
    r = s.put(f"{base}/v2/{repository}/manifests/{tag}", data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
    assert r.status_code == 201, r.text


def tag_status(base: str, creds, repository: str, tag: str, verify=True) -> int:
    return requests.head(f"{base}/v2/{repository}/manifests/{tag}", auth=creds, verify=verify, timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code


def run_purge_task(cli: Cli) -> dict:
    cli("task", "create", "--name", "nightly", "--cmd", "berth purge --filter 'junk/app:.*' --ago 0d",
        "--repository", "junk/app")
    done = cli.run("task", "run", "--name", "nightly", "--wait", check=False)
    [latest] = cli.json("task", "list-runs", "--name", "nightly")
    log = cli.run("task", "logs", "--name", "nightly", "--run-id", latest["id"]).stdout.decode()
    assert done.returncode == 0 and latest["status"] == "succeeded", (done.stderr.decode()[-2000:], latest, log)
    return {"run": latest, "log": log}


@pytest.mark.server_env(BERTH_PUBLIC_URL=UNREACHABLE)
def test_a_berth_step_reaches_the_servers_own_listener_not_its_unreachable_public_url(registry, tmp_path):
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    for tag in ("old1", "old2"):
        push_tiny_image(registry.base, registry.creds, "junk/app", tag)
    push_tiny_image(registry.base, registry.creds, "keep/app", "v1")
    result = run_purge_task(cli)
    assert "old1" in result["log"] and registry.password not in result["log"], result["log"]
    assert tag_status(registry.base, registry.creds, "junk/app", "old1") == 404
    assert tag_status(registry.base, registry.creds, "junk/app", "old2") == 404
    assert tag_status(registry.base, registry.creds, "keep/app", "v1") == 200

    # A berth step's env may not replace the run identity or the registry it talks to: refused
    # when saved, with the line; other variables are its own.
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: v1.1.0\nsteps:\n  - cmd: berth repository list\n    env: [NOTE=x, BERTH_REGISTRY=https://evil.example]\n")
    said = cli.fails("task", "create", "--name", "bad", "--file", str(bad), "--repository", "junk/app")
    assert "line 4" in said and "env BERTH_REGISTRY is not passed to a berth step" in said, said
    # ACR keys Berth does not take are refused by name, with why.
    bad.write_text("version: v1.1.0\nsteps:\n  - cmd: berth repository list\n    privileged: true\n")
    said = cli.fails("task", "create", "--name", "bad", "--file", str(bad), "--repository", "junk/app")
    assert "line 4" in said and "not supported: privileged (" in said, said
    good = tmp_path / "good.yaml"
    good.write_text("version: v1.1.0\nsteps:\n  - cmd: berth repository show-tags --name keep/app\n    env: [NOTE=x]\n")
    cli("task", "create", "--name", "good", "--file", str(good), "--repository", "keep/app")
    cli("task", "run", "--name", "good", "--wait")
    [run] = cli.json("task", "list-runs", "--name", "good")
    log = cli.run("task", "logs", "--name", "good", "--run-id", run["id"]).stdout.decode()
    assert run["status"] == "succeeded" and "acb_step_0 stdout| v1" in log, (run, log)


def test_a_berth_step_verifies_the_servers_tls_certificate_by_the_name_it_holds(tmp_path):
    """The certificate names only ``registry.test`` (not 127.0.0.1): the step's URL names it and
    its connection goes to the listener, with the certificate verified (never turned off)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "dev"), "--host", "registry.test"])
    password = "tls-" + secrets.token_urlsafe(12)
    proc, port = start_tls_server(tmp_path, certs / "dev.crt", certs / "dev.key",
                                  dict(BERTH_BOOTSTRAP_OWNER_PASSWORD=password, BERTH_SCAN_ON_PUSH="false", BERTH_PUBLIC_URL=UNREACHABLE))
    try:
        # The CLI outside reaches it the same way a step does (BERTH_CONNECT_ADDRESS / BERTH_CA_FILE).
        cli = Cli(None, tmp_path / "xdg")
        cli.extra_env = {"BERTH_REGISTRY": f"https://registry.test:{port}", "BERTH_CONNECT_ADDRESS": "127.0.0.1",
                         "BERTH_CA_FILE": str(certs / "dev.crt"), "BERTH_USERNAME": "owner", "BERTH_PASSWORD": password}
        # Without trusting the certificate the CLI refuses the connection: verification is on.
        untrusted = cli.run("repository", "list", check=False, env={"BERTH_CA_FILE": ""})
        assert untrusted.returncode != 0, untrusted.stdout
        result = run_purge_task(cli)
        assert password not in result["log"], result["log"]
        assert "berth: error" not in result["log"], result["log"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_after_sighup_reloads_the_certificate_berth_steps_use_the_names_it_holds_now(tmp_path):
    """The server starts with a certificate for ``old.test`` only; it is replaced by one for
    ``new.test`` only and SIGHUP reloads it: the next run's berth step names ``new.test`` (the
    names read at start would fail verification against the new certificate) and succeeds."""
    certs = tmp_path / "certs"
    certs.mkdir()
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "old"), "--host", "old.test"])
    run([str(berth_bin()), "certificate", "create", "--out", str(certs / "new"), "--host", "new.test"])
    shutil.copy(certs / "old.crt", certs / "dev.crt")
    shutil.copy(certs / "old.key", certs / "dev.key")
    password = "tls-" + secrets.token_urlsafe(12)
    server_log = tmp_path / "server.log"
    proc, port = start_tls_server(tmp_path, certs / "dev.crt", certs / "dev.key",
                                  dict(BERTH_BOOTSTRAP_OWNER_PASSWORD=password, BERTH_SCAN_ON_PUSH="false", BERTH_PUBLIC_URL=UNREACHABLE))
    try:
        cli = Cli(None, tmp_path / "xdg")
        cli.extra_env = {"BERTH_REGISTRY": f"https://old.test:{port}", "BERTH_CONNECT_ADDRESS": "127.0.0.1",
                         "BERTH_CA_FILE": str(certs / "old.crt"), "BERTH_USERNAME": "owner", "BERTH_PASSWORD": password}
        first = run_purge_task(cli)
        assert "berth: error" not in first["log"], first["log"]

        shutil.copy(certs / "new.crt", certs / "dev.crt")
        shutil.copy(certs / "new.key", certs / "dev.key")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "berth steps use the reloaded certificate's names" not in server_log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, server_log.read_text()[-3000:]
            time.sleep(0.2)
        cli.extra_env.update({"BERTH_REGISTRY": f"https://new.test:{port}", "BERTH_CA_FILE": str(certs / "new.crt")})
        done = cli.run("task", "run", "--name", "nightly", "--wait", check=False)
        latest = cli.json("task", "list-runs", "--name", "nightly")[0]
        log = cli.run("task", "logs", "--name", "nightly", "--run-id", latest["id"]).stdout.decode()
        assert done.returncode == 0 and latest["status"] == "succeeded", (done.stderr.decode()[-2000:], latest, log)
        assert "berth: error" not in log and password not in log, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class CopiedServer(RegistryServer):
    """A registry run from a copy of the berth binary, which the test replaces as an upgrade would."""

    def __init__(self, workdir: Path, binary: Path):
        super().__init__(workdir)
        self.binary = binary

    def _command(self, port: int):
        return [str(self.binary), "serve", "--data", str(self.data), "--listen", f"127.0.0.1:{port}"]


def test_a_berth_step_runs_the_servers_own_image_after_its_file_was_replaced(tmp_path):
    binary = tmp_path / "bin" / "berth"
    binary.parent.mkdir()
    shutil.copy(berth_bin(), binary)
    server = CopiedServer(tmp_path / "server", binary)
    server.start()
    try:
        cli = Cli(server, tmp_path / "xdg")
        cli.login()
        push_tiny_image(server.base, server.creds, "junk/app", "old1")
        # The upgrade: the running file is unlinked and another put in its place.
        binary.unlink()
        binary.write_text("#!/bin/sh\necho 'the replaced file ran' >&2\nexit 3\n")
        binary.chmod(0o755)
        result = run_purge_task(cli)
        assert "the replaced file ran" not in result["log"], result["log"]
        assert tag_status(server.base, server.creds, "junk/app", "old1") == 404
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "server", ignore_errors=True)


NETWORK_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/net:$ID -f Dockerfile .
    network: {{.Values.net}}
"""


def test_a_builds_run_has_no_network_unless_the_step_asks_for_the_hosts(registry, tmp_path):
    """Issue 16 item 6 (untrusted code): a build's RUN cannot reach a port the test opens on
    loopback unless its step says ``network: host`` (then it does: the check can fail)."""
    import socket
    import threading
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted_count = [0]

    def accept_and_close():
        # Closes every connection at once, so a RUN that got one does not wait on it.
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted_count[0] += 1
            conn.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        f'RUN ["/bin/busybox", "sh", "-c", "if /bin/busybox nc -w 5 127.0.0.1 {port} </dev/null; '
        'then echo RUN-REACHED-THE-HOST; else echo RUN-HAD-NO-NETWORK; fi"]\n')
    (tmp_path / "net.yaml").write_text(NETWORK_FILE)
    try:
        for net, says, accepted in (("none", "RUN-HAD-NO-NETWORK", False), ("host", "RUN-REACHED-THE-HOST", True)):
            cli("task", "create", "--name", f"net-{net}", "--file", str(tmp_path / "net.yaml"), "--set", f"net={net}")
            done = cli.run("task", "run", "--name", f"net-{net}", "--context", str(context), "--wait", "-o", "json", check=False)
            run = json.loads(done.stdout)
            log = cli.run("task", "logs", "--name", f"net-{net}", "--run-id", run["id"]).stdout.decode()
            assert run["status"] == "succeeded" and f"build stdout| {says}" in log, (net, run, log[-3000:])
            assert (accepted_count[0] > 0) == accepted, (net, accepted_count)
    finally:
        listener.close()


ESCAPE_GO = """\
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Tries to leave the build's root the ways chroot isolation as root allows unless capabilities
// are dropped: a second chroot and a walk up (CAP_SYS_CHROOT), /proc/1/root of buildah in the
// build's PID namespace, a device node (CAP_MKNOD) and the host's System V shared memory.
// Exits 0 whatever happens.
func main() {
	target := os.Args[1]
	_ = os.MkdirAll("/jail", 0o755)
	if err := syscall.Chroot("/jail"); err != nil {
		fmt.Println("CHROOT-REFUSED:", err)
	} else {
		for i := 0; i < 64; i++ {
			_ = syscall.Chdir("..")
		}
		if err := syscall.Chroot("."); err != nil {
			fmt.Println("CHROOT-WALK-REFUSED:", err)
		}
	}
	for _, p := range []string{target, "/proc/1/root" + target} {
		if b, err := os.ReadFile(p); err == nil {
			fmt.Printf("READ %s: %s\\n", p, b)
		} else {
			fmt.Println("NOREAD", p, err)
		}
	}
	// The host's /dev would hold its disks: a RUN as root could read the whole of one.
	if entries, err := os.ReadDir("/dev"); err == nil {
		for _, e := range entries {
			if info, err := os.Stat("/dev/" + e.Name()); err == nil && info.Mode()&os.ModeDevice != 0 && info.Mode()&os.ModeCharDevice == 0 {
				fmt.Println("BLOCKDEV", e.Name())
				if f, err := os.Open("/dev/" + e.Name()); err == nil {
					fmt.Println("BLOCKDEV-OPENED", e.Name())
					f.Close()
				}
			}
		}
		fmt.Println("DEV-LISTED", len(entries))
	}
	// A System V shared memory segment of the host's root (its id is the second argument):
	// chroot isolation shares the host's IPC namespace.
	if len(os.Args) > 2 {
		var id int
		fmt.Sscan(os.Args[2], &id)
		addr, _, errno := syscall.Syscall(syscall.SYS_SHMAT, uintptr(id), 0, uintptr(0o10000)) // SHM_RDONLY
		if errno != 0 {
			fmt.Println("SHM-REFUSED:", errno)
		} else {
			b := make([]byte, 32)
			for i := range b {
				b[i] = *(*byte)(unsafe.Pointer(addr + uintptr(i)))
			}
			fmt.Printf("SHM-READ %s\\n", b)
		}
	}
	if err := syscall.Mknod("/devnode", syscall.S_IFCHR|0o600, 1<<8|3); err != nil {
		fmt.Println("MKNOD-REFUSED:", err)
	} else {
		fmt.Println("MKNOD-ALLOWED")
	}
}
"""


@pytest.fixture
def host_shm():
    """A System V shared memory segment of this (root) process holding a marker: (id, marker)."""
    marker = ("shmmark-" + secrets.token_hex(12)).encode()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmdt.argtypes = [ctypes.c_void_p]
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    shm_id = libc.shmget(0, 4096, 0o1000 | 0o600)   # IPC_PRIVATE, IPC_CREAT, owner only
    assert shm_id >= 0, os.strerror(ctypes.get_errno())
    try:
        addr = libc.shmat(shm_id, None, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        ctypes.memmove(addr, marker, len(marker))
        libc.shmdt(ctypes.c_void_p(addr))
        yield shm_id, marker.decode()
    finally:
        libc.shmctl(shm_id, 0, None)   # IPC_RMID


def test_a_builds_run_cannot_leave_its_root(registry, tmp_path, host_shm):
    """Issue 16 item 6: a Dockerfile is someone else's code, and chroot isolation as root is only
    a chroot. A ``RUN`` that tries a second chroot and a walk up, ``/proc/1/root``, or a device
    node reads nothing of the server's data directory (a marker file placed there); nor a System
    V shared memory segment of the host's root (chroot isolation shares the host's IPC namespace)."""
    marker = "marker-" + secrets.token_hex(12)
    (registry.data / "escape-marker").write_text(marker)
    shm_id, shm_marker = host_shm
    context = tmp_path / "context"
    (context / "src").mkdir(parents=True)
    (context / "src" / "go.mod").write_text("module example.org/escape\n\ngo 1.19\n")
    (context / "src" / "main.go").write_text(ESCAPE_GO)
    env = dict(os.environ, CGO_ENABLED="0", GOPROXY="off", GOTOOLCHAIN="local", GOFLAGS="-mod=mod",
               GOCACHE=str(tmp_path / "gocache"), GOPATH=str(tmp_path / "gopath"))
    run(["go", "build", "-trimpath", "-o", str(context / "escape"), "."], cwd=context / "src", env=env, timeout=600)
    target = str((registry.data / "escape-marker").resolve())
    (context / "Dockerfile").write_text(f'FROM scratch\nCOPY escape /escape\nRUN ["/escape", "{target}", "{shm_id}"]\n')
    (tmp_path / "esc.yaml").write_text("version: v1.1.0\nsteps:\n  - id: build\n    build: -t $Registry/esc:$ID -f Dockerfile .\n")
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    cli("task", "create", "--name", "escape", "--file", str(tmp_path / "esc.yaml"))
    done = cli.run("task", "run", "--name", "escape", "--context", str(context), "--wait", "-o", "json", check=False)
    result = json.loads(done.stdout)
    log = cli.run("task", "logs", "--name", "escape", "--run-id", result["id"]).stdout.decode()
    assert result["status"] == "succeeded", (result, log[-3000:])
    # The program ran (its refusals are in the log) and read nothing of the host's.
    assert "CHROOT-REFUSED" in log and "MKNOD-REFUSED" in log and "DEV-LISTED" in log, log[-3000:]
    assert marker not in log and "stdout| READ " not in log, log[-3000:]
    # Its /dev is the build's own: no block device of the host at all.
    assert "BLOCKDEV" not in log, log[-3000:]
    # Its IPC namespace is the build's own: the host's segment is not there.
    assert "SHM-REFUSED" in log and "SHM-READ" not in log and shm_marker not in log, log[-3000:]

    # RUN --mount is refused before buildah sees it: this buildah lets a cache mount with an id
    # of ../.. (CVE-2024-9675) mount the host's root.
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY escape /escape\n"
        f'RUN --mount=type=cache,id=../../../../../../../../../..,target=/h ["/escape", "/h{target}"]\n')
    done = cli.run("task", "run", "--name", "escape", "--context", str(context), "--wait", "-o", "json", check=False)
    assert done.returncode != 0
    [mounted, _] = cli.json("task", "list-runs", "--name", "escape")
    log = cli.run("task", "logs", "--name", "escape", "--run-id", mounted["id"]).stdout.decode()
    assert mounted["status"] == "failed", mounted
    said = json.dumps(mounted) + log
    assert "CVE-2024-9675" in said and "line 3" in said, said[-3000:]
    assert marker not in said and "stdout| READ " not in log, said[-3000:]


def test_a_base_with_onbuild_triggers_is_refused_before_the_build(registry, tmp_path):
    """Review: buildah runs a base image's ONBUILD triggers as part of a build, and no reader of
    the task's Dockerfile sees them; a base pushed with ``ONBUILD RUN --mount=…`` (the CVE-2024-9675
    form) would run it. Every image a build names is pulled and checked first: the run fails
    saying so, and nothing is built. The same Dockerfile on a base without triggers builds."""
    import gzip
    import hashlib
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()

    def put(tag: str, onbuild: list) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                             "config": {"OnBuild": onbuild} if onbuild else {}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "digest": sha256_digest(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                "digest": sha256_digest(layer), "size": len(layer)}]}
        for blob in (layer, config):
            r = requests.post(f"{registry.base}/v2/trap/blobs/uploads/?digest={sha256_digest(blob)}", data=blob,
                              auth=registry.creds, timeout=10, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        r = requests.put(f"{registry.base}/v2/trap/manifests/{tag}", data=json.dumps(manifest).encode(), auth=registry.creds,
                         timeout=10, headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 201, r.text

    put("onbuild", ["RUN --mount=type=cache,id=../../../../../../../../../..,target=/h cat /h/etc/hostname"])
    put("plain", [])
    context = tmp_path / "context"
    context.mkdir()
    (tmp_path / "t.yaml").write_text("version: v1.1.0\nsteps:\n  - id: build\n    build: -t $Registry/out:$ID -f Dockerfile .\n"
                                     "  - push: [$Registry/out:$ID]\n")
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()
    cli("task", "create", "--name", "trap", "--file", str(tmp_path / "t.yaml"), "--repository", "trap")
    for tag, succeeds in (("onbuild", False), ("plain", True)):
        (context / "Dockerfile").write_text(f"FROM {registry.host}/trap:{tag}\n")
        done = cli.run("task", "run", "--name", "trap", "--context", str(context), "--wait", "-o", "json", check=False)
        result = json.loads(done.stdout)
        log = cli.run("task", "logs", "--name", "trap", "--run-id", result["id"]).stdout.decode()
        if succeeds:
            assert result["status"] == "succeeded", (result, log[-3000:])
        else:
            assert result["status"] == "failed" and "has ONBUILD triggers" in log, (result, log[-3000:])
            assert "STEP 1" not in log, log[-3000:]
