"""(berth only) Build tasks (issue 16) through the ``berth`` CLI on a real ``berth serve``, with the
real buildah and podman: a three-step task (build, a test inside the built image, push) pushes
when its test passes and never when it fails, its log shows the step's output, ``berth build``
pushes a FROM-scratch image of busybox-static, a git context is cloned from a repository served
on loopback, and a bad task file is refused with its line. Runs push with their own run identity.
Base-image triggers: a new ``base:1.0`` rebuilds ``mid`` and then ``app`` once each, five rapid
pushes of the base rebuild each at most once per window and from the newest base, and a task that
pushes its own base is refused. A base in another registry (Debian's reference registry on
loopback) is polled: its first digest is recorded, a new one rebuilds the task once.

Bounded: each run takes a few seconds (images FROM scratch, vfs storage). The timer trigger is
covered by the Swift tests (its granularity is a minute)."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import berth_bin
from test_cli import Cli, inspect, layout, push  # noqa: F401 (layout is a fixture)
from test_import import ReferenceSource

pytestmark = [pytest.mark.berth_only, pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")]

TASK_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/app:$ID -f Dockerfile .
  - id: test
    cmd: $Registry/app:$ID sh -c 'echo "the test says {{.Values.code}}"; exit {{.Values.code}}'
  - id: push
    push:
      - $Registry/app:$ID
"""


@pytest.fixture
def cli(registry, tmp_path) -> Cli:
    c = Cli(registry, tmp_path / "xdg")
    c.login()
    return c


@pytest.fixture
def context(tmp_path) -> Path:
    """Debian's static busybox and a Dockerfile that makes an image of it FROM scratch."""
    src = tmp_path / "context"
    src.mkdir()
    shutil.copy("/bin/busybox", src / "busybox")
    (src / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\n'
                                    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n')
    return src


def manifest_status(registry, repository: str, tag: str) -> int:
    return requests.head(f"{registry.base}/v2/{repository}/manifests/{tag}", auth=registry.creds, timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code


def test_a_three_step_task_pushes_when_its_test_passes_and_never_when_it_fails(cli, registry, context, tmp_path):
    (tmp_path / "acb.yaml").write_text(TASK_FILE)
    cli("task", "create", "--name", "ci", "--file", str(tmp_path / "acb.yaml"), "--set", "code=0")

    passed = cli.run("task", "run", "--name", "ci", "--context", str(context), "--wait", "-o", "json")
    run = json.loads(passed.stdout)
    assert run["id"] == "cb1" and run["status"] == "succeeded", run
    assert [(s["id"], s["status"], s.get("exitCode")) for s in run["steps"]] == [
        ("build", "succeeded", 0), ("test", "succeeded", 0), ("push", "succeeded", 0)]
    [pushed] = run["pushed"]
    assert pushed["reference"] == f"{registry.host}/app:cb1"
    head = requests.head(f"{registry.base}/v2/app/manifests/cb1", auth=registry.creds, timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == pushed["digest"]

    # The step's output is in the run's log, and the run's credentials are not.
    log = cli.run("task", "logs", "--name", "ci", "--run-id", "cb1").stdout.decode()
    assert " test stdout| the test says 0" in log, log
    assert "berth~run" not in log and "eyJ" not in log
    # The log is kept in the metadata store: served as it was without the running node's own
    # copy (as another node of a cluster serves it).
    local = registry.data / "tasks" / "runs" / "cb1" / "logs" / "run.log"
    assert local.read_text() == log
    local.unlink()
    assert cli.run("task", "logs", "--name", "ci", "--run-id", "cb1").stdout.decode() == log

    # The test fails: nothing is pushed, the command says so.
    cli("task", "update", "--name", "ci", "--set", "code=3")
    failed = cli.run("task", "run", "--name", "ci", "--context", str(context), "--wait", check=False)
    assert failed.returncode != 0 and "exit code 3" in failed.stderr.decode(), failed.stderr.decode()[-2000:]
    runs = cli.json("task", "list-runs", "--name", "ci")
    assert [(r["id"], r["status"]) for r in runs] == [("cb2", "failed"), ("cb1", "succeeded")]
    assert runs[0]["pushed"] == [] and [s["status"] for s in runs[0]["steps"]] == ["succeeded", "failed", "skipped"]
    assert manifest_status(registry, "app", "cb2") == 404

    # Each change of a run's status is in the event log (audit), as the webhook actions name them.
    audit = requests.get(f"{registry.base}/api/v1/audit", auth=registry.creds, timeout=10).json()
    actions = [(e["action"], e.get("detail")) for e in audit if e["action"].startswith("task.run.")]
    assert actions == [("task.run.queued", "ci/cb1"), ("task.run.started", "ci/cb1"), ("task.run.succeeded", "ci/cb1"),
                       ("task.run.queued", "ci/cb2"), ("task.run.started", "ci/cb2"), ("task.run.failed", "ci/cb2")], actions


def test_berth_build_and_a_bad_task_file(cli, registry, context, tmp_path):
    built = cli.run("build", "-t", "hello:{{.Run.ID}}", str(context), "-o", "json")
    run = json.loads(built.stdout)
    assert run["status"] == "succeeded" and run["pushed"][0]["reference"] == f"{registry.host}/hello:cb1", run
    assert manifest_status(registry, "hello", "cb1") == 200
    # Another caller's settings on the shared task never carry over into a quick build: each
    # `berth build` sets its timeout, scope and state (a disabled task would refuse the run).
    cli("task", "update", "--name", "quick-build", "--timeout", "7", "--repository", "hello", "--enabled", "false")
    shown = cli.json("task", "show", "--name", "quick-build")
    assert shown["scope"] == ["hello"] and shown["enabled"] is False, shown
    run = json.loads(cli.run("build", "-t", "hello:{{.Run.ID}}", str(context), "-o", "json").stdout)
    assert run["status"] == "succeeded", run
    task = cli.json("task", "show", "--name", "quick-build")
    assert task["timeoutSeconds"] == 3600 and task.get("scope") in (None, []) and task["enabled"] is True, task
    # A task of one's own naming keeps what it was given; only what the command names changes.
    run = json.loads(cli.run("build", "-t", "hello:{{.Run.ID}}", "--name", "mine", "--timeout", "900", str(context),
                             "-o", "json").stdout)
    assert run["status"] == "succeeded", run
    cli("task", "update", "--name", "mine", "--repository", "hello")
    cli.run("build", "-t", "hello:{{.Run.ID}}", "--name", "mine", str(context), "-o", "json")
    mine = cli.json("task", "show", "--name", "mine")
    assert mine["timeoutSeconds"] == 900 and mine["scope"] == ["hello"], mine

    (tmp_path / "bad.yaml").write_text("version: v1.1.0\nsteps:\n  - id: build\n    build: -t x .\n    colour: blue\n")
    message = cli.fails("task", "create", "--name", "bad", "--file", str(tmp_path / "bad.yaml"))
    assert "line 5" in message and "colour" in message, message
    # Pushing anywhere but this registry is refused too.
    (tmp_path / "away.yaml").write_text("version: v1.1.0\nsteps:\n  - push: [docker.io/library/app:1]\n")
    assert "only to this registry" in cli.fails("task", "create", "--name", "away", "--file", str(tmp_path / "away.yaml"))

    # A values file is read by the task file's YAML grammar (quotes, comments, numbers), `--set` wins;
    # a value that is not a single value, or a name that is not one, is refused with its line.
    (tmp_path / "acb.yaml").write_text(TASK_FILE)
    (tmp_path / "values.yaml").write_text('# test values\ncode: "0"\ngreeting: \'hello: world\'\nreplicas: 3\n')
    task = json.loads(cli.run("task", "create", "--name", "valued", "--file", str(tmp_path / "acb.yaml"), "--values",
                              str(tmp_path / "values.yaml"), "--set", "replicas=4", "-o", "json").stdout)
    assert task["values"] == {"code": "0", "greeting": "hello: world", "replicas": "4"}, task
    (tmp_path / "list.yaml").write_text("code: 0\nlist:\n  - a\n  - b\n")
    message = cli.fails("task", "create", "--name", "listed", "--file", str(tmp_path / "acb.yaml"), "--values", str(tmp_path / "list.yaml"))
    assert "line 3" in message and "single value" in message, message
    message = cli.fails("task", "create", "--name", "named", "--file", str(tmp_path / "acb.yaml"), "--set", "9lives=1")
    assert "name=value" in message, message


class _GitSmartHTTP(http.server.BaseHTTPRequestHandler):
    """git's smart HTTP protocol (shallow clones need it) through ``git http-backend`` as a CGI."""
    root = ""

    def log_message(self, *args):
        pass

    def _cgi(self):
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"GIT_PROJECT_ROOT": self.root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
               "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1", "PATH": "/usr/bin:/bin"}
        if self.headers.get("Git-Protocol"):
            # As git-http-backend(1) asks of a web server: protocol v2, which serves any commit by name.
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["/usr/lib/git-core/git-http-backend"], input=body, env=env, stdout=subprocess.PIPE,
                             check=True, timeout=30).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi
    do_POST = _cgi


def _serve_committed(work, tmp_path, name):
    """Commits the work tree and serves a bare clone of it as NAME.git over git's smart HTTP on
    loopback; returns (the server, the context URL of its main branch)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", str(work)], check=True)
    subprocess.run(git + ["-C", str(work), "add", "."], check=True)
    subprocess.run(git + ["-C", str(work), "commit", "-q", "-m", name], check=True)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / f"{name}.git")], check=True)
    handler = type("Handler", (_GitSmartHTTP,), {"root": str(served)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/{name}.git#main"


def test_a_git_context_is_cloned_from_its_branch(cli, registry, context, tmp_path):
    # A bare repository served over git's smart HTTP protocol on loopback (allowed for this server).
    work = tmp_path / "work"
    shutil.copytree(context, work)
    (work / "acb.yaml").write_text(TASK_FILE.replace("{{.Values.code}}", "0"))
    (work / "escape").symlink_to("/etc")
    server, url = _serve_committed(work, tmp_path, "app")
    try:
        cli("task", "create", "--name", "from-git", "--file", str(work / "acb.yaml"), "--context", url)
        run = json.loads(cli.run("task", "run", "--name", "from-git", "--wait", "-o", "json").stdout)
        assert run["status"] == "succeeded" and run["trigger"] == "manual", run
        assert manifest_status(registry, "app", "cb1") == 200
        # A branch that does not exist fails the run with git's reason, not the server.
        cli("task", "update", "--name", "from-git", "--context", url.replace("#main", "#nope"))
        failed = cli.run("task", "run", "--name", "from-git", "--wait", check=False)
        assert failed.returncode != 0 and "git clone failed" in failed.stderr.decode() and "nope" in failed.stderr.decode(), failed.stderr.decode()[-2000:]
        # A context directory that is a link out of the repository is refused.
        cli("task", "update", "--name", "from-git", "--context", url + ":escape")
        escaped = cli.run("task", "run", "--name", "from-git", "--wait", check=False)
        assert escaped.returncode != 0 and "leads out of the repository" in escaped.stderr.decode(), escaped.stderr.decode()[-2000:]
    finally:
        server.shutdown()


SLOW_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/slow:$ID -f Dockerfile .
  - id: wait
    cmd: $Registry/slow:$ID sh -c 'echo waiting; sleep 120'
  - push: [$Registry/slow:$ID]
"""


def wait_for(what, check, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"gave up waiting for {what}")


def test_a_run_past_its_timeout_fails_and_a_cancelled_run_stops(cli, registry, context, tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW_FILE)
    cli("task", "create", "--name", "slow", "--file", str(tmp_path / "slow.yaml"), "--timeout", "5")
    timed_out = cli.run("task", "run", "--name", "slow", "--context", str(context), "--wait", check=False)
    assert timed_out.returncode != 0 and "exceeded its timeout" in timed_out.stderr.decode(), timed_out.stderr.decode()[-2000:]
    [run] = cli.json("task", "list-runs", "--name", "slow")
    assert run["status"] == "failed" and run["pushed"] == [], run

    cli("task", "update", "--name", "slow", "--timeout", "600")
    queued = json.loads(cli.run("task", "run", "--name", "slow", "--context", str(context), "-o", "json").stdout)
    assert queued["id"] == "cb2" and queued["status"] == "queued"
    wait_for("the wait step to start", lambda: "wait stdout| waiting" in
             cli.run("task", "logs", "--name", "slow", "--run-id", "cb2").stdout.decode())
    cli("task", "cancel-run", "--name", "slow", "--run-id", "cb2")
    stopped = wait_for("the run to stop", lambda: next(
        (r for r in cli.json("task", "list-runs", "--name", "slow") if r["id"] == "cb2" and r["status"] != "running"), None))
    assert stopped["status"] == "cancelled" and stopped["pushed"] == [], stopped
    assert [s["status"] for s in stopped["steps"]] == ["succeeded", "cancelled", "skipped"], stopped
    # A finished run cannot be cancelled.
    assert "finished" in cli.fails("task", "cancel-run", "--name", "slow", "--run-id", "cb2")


COMMIT_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/gitapp:$ID -f Dockerfile .
  - id: show
    cmd: $Registry/gitapp:$ID sh -c 'echo "built $Commit on $Branch with $(cat /version)"'
  - push: [$Registry/gitapp:$ID]
"""


def _git_served(context, tmp_path):
    """A work tree of the busybox context with a task file and a version file, its bare clone
    served over smart HTTP on loopback; returns (commit(version) -> sha, url, server)."""
    work = tmp_path / "work"
    shutil.copytree(context, work)
    (work / "acb.yaml").write_text(COMMIT_FILE)
    with open(work / "Dockerfile", "a") as dockerfile:
        dockerfile.write("COPY version /version\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", str(work)], check=True)
    served = tmp_path / "served"
    served.mkdir()

    def commit(version: str) -> str:
        (work / "version").write_text(version + "\n")
        subprocess.run(git + ["add", "."], check=True)
        subprocess.run(git + ["commit", "-q", "-m", version], check=True)
        subprocess.run(git + ["push", "-q", str(served / "app.git"), "main"], check=True)
        return subprocess.run(git + ["rev-parse", "HEAD"], check=True, stdout=subprocess.PIPE).stdout.decode().strip()

    subprocess.run(["git", "init", "-q", "--bare", str(served / "app.git")], check=True)
    handler = type("Handler", (_GitSmartHTTP,), {"root": str(served)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return commit, f"http://127.0.0.1:{server.server_address[1]}/app.git#main", server


def _finished_run(cli, task, sha):
    return next((r for r in cli.json("task", "list-runs", "--name", task)
                 if r.get("commit") == sha and r["status"] not in ("queued", "running")), None)


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_COMMIT_POLL_SECONDS="1")
def test_a_new_commit_on_the_branch_starts_a_run_by_polling(cli, registry, context, tmp_path):
    commit, url, server = _git_served(context, tmp_path)
    try:
        first = commit("one")
        task = json.loads(cli.run("task", "create", "--name", "polled", "--file", str(tmp_path / "work" / "acb.yaml"),
                                  "--context", url, "--commit-trigger-enabled", "true", "-o", "json").stdout)
        assert task["commitTriggerEnabled"] is True and len(task["gitWebhookSecret"]) >= 40, task
        # The first look records the branch's head without a run.
        wait_for("the first look at the branch", lambda: cli.json("task", "show", "--name", "polled").get("lastCommit") == first)
        assert cli.json("task", "list-runs", "--name", "polled") == []
        second = commit("two")
        run = wait_for("the commit's run", lambda: _finished_run(cli, "polled", second), timeout=90)
        assert run["status"] == "succeeded" and run["trigger"] == "commit", run
        log = cli.run("task", "logs", "--name", "polled", "--run-id", run["id"]).stdout.decode()
        assert f"built {second} on main with two" in log, log[-2000:]
        assert manifest_status(registry, "gitapp", run["id"]) == 200
        # One run per commit: later looks at the same head queue nothing.
        import time
        time.sleep(2.5)
        assert [r["commit"] for r in cli.json("task", "list-runs", "--name", "polled")] == [second]
    finally:
        server.shutdown()


def _signed(secret: str, body: bytes) -> dict:
    import hashlib
    import hmac
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "push", "Content-Type": "application/json"}


# Polling is slowed to an hour (its first pass runs before any task exists), so only the webhook triggers here.
@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_COMMIT_POLL_SECONDS="3600")
def test_a_signed_push_webhook_starts_a_run_of_its_commit_and_a_forged_one_does_not(cli, registry, context, tmp_path):
    commit, url, server = _git_served(context, tmp_path)
    try:
        older = commit("one")
        newer = commit("two")
        task = json.loads(cli.run("task", "create", "--name", "hooked", "--file", str(tmp_path / "work" / "acb.yaml"),
                                  "--context", url, "--commit-trigger-enabled", "true", "-o", "json").stdout)
        secret = task["gitWebhookSecret"]
        hook = f"{registry.base}/api/v1/tasks/hooked/git-webhook"
        body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": older}).encode()
        forged = requests.post(hook, data=body, headers=_signed("not-the-secret", body), timeout=10)
        assert forged.status_code == 403, forged.text
        unsigned = requests.post(hook, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        assert unsigned.status_code == 401, unsigned.text
        gitlab_forged = requests.post(hook, data=body, headers={"X-Gitlab-Token": secret[:-1] + "x"}, timeout=10)
        assert gitlab_forged.status_code == 403, gitlab_forged.text
        assert cli.json("task", "list-runs", "--name", "hooked") == []

        # A stale (or replayed) delivery: its commit is no longer the branch's head, so nothing runs.
        stale = requests.post(hook, data=body, headers=_signed(secret, body), timeout=10)
        assert stale.status_code == 200 and stale.json()["queued"] is False and "not the head" in stale.json()["reason"], stale.text
        body = json.dumps({"ref": "refs/heads/main", "before": older, "after": newer}).encode()
        accepted = requests.post(hook, data=body, headers=_signed(secret, body), timeout=10)
        assert accepted.status_code == 202 and accepted.json()["run"]["commit"] == newer, accepted.text
        # Delivered again (GitLab style this time): the commit was seen, nothing more is queued.
        again = requests.post(hook, data=body, headers={"X-Gitlab-Token": secret, "X-Gitlab-Event": "Push Hook"}, timeout=10)
        assert again.status_code == 200 and again.json()["queued"] is False, again.text
        run = wait_for("the pushed commit's run", lambda: _finished_run(cli, "hooked", newer), timeout=90)
        assert run["status"] == "succeeded" and run["trigger"] == "commit", run.get("reason")
        log = cli.run("task", "logs", "--name", "hooked", "--run-id", run["id"]).stdout.decode()
        assert f"built {newer} on main with two" in log, log[-2000:]
        assert len(cli.json("task", "list-runs", "--name", "hooked")) == 1
    finally:
        server.shutdown()


def _put_base(registry, config: bytes, layer: bytes, diff_id: str, tag: str = "1.0") -> str:
    """Pushes ``base:TAG`` as an OCI image of one tiny layer and ``config``; returns its digest.
    Blobs already there are not sent again, so a push of a new config is one small upload and a
    manifest PUT."""
    import hashlib
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}]}
    for blob in (layer, config):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        if requests.head(f"{registry.base}/v2/base/blobs/{digest}", auth=registry.creds, timeout=10).status_code != 200:
            r = requests.post(f"{registry.base}/v2/base/blobs/uploads/?digest={digest}", data=blob, auth=registry.creds,
                              timeout=10, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
    body = json.dumps(manifest).encode()
    r = requests.put(f"{registry.base}/v2/base/manifests/{tag}", data=body, auth=registry.creds, timeout=10,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def _base_layer(n: int = 0) -> tuple[bytes, str]:
    """A layer with one file, ``hello``, whose content says which generation of the base it is."""
    import gzip
    import hashlib
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"from the base, generation {n}\n".encode()
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()


def _base_config(diff_id: str, n: int) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                       "config": {"Labels": {"generation": str(n)}},
                       "history": [{"created_by": "the test's base layer"}]}).encode()


LEVEL_FILE = """\
version: v1.1.0
steps:
  - build: -t $Registry/{name}:1 --build-arg REG=$Registry .
  - push: [$Registry/{name}:1]
"""

WINDOW = 3


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_BASE_TRIGGER_WINDOW_SECONDS=str(WINDOW))
def test_a_new_base_rebuilds_mid_then_app_once_each_and_rapid_pushes_are_coalesced(cli, registry, tmp_path):
    import time
    generations = [_base_layer(n) for n in range(7)]  # each base generation changes its layer
    layer, diff_id = generations[0]
    first = _put_base(registry, _base_config(diff_id, 0), layer, diff_id)
    # mid builds on base; app on mid, and copies from base too (a build-time base, trigger type All).
    work = tmp_path / "work"
    for name, dockerfile in {
        "mid": "ARG REG\nFROM ${REG}/base:1.0\nCOPY marker /mid\n",
        "app": "ARG REG\nFROM ${REG}/base:1.0 AS b\nFROM ${REG}/mid:1\nCOPY --from=b /hello /from-base\n",
        "loop": "ARG REG\nFROM ${REG}/base:1.0\nCOPY marker /loop\n",
    }.items():
        (work / name).mkdir(parents=True)
        (work / name / "Dockerfile").write_text(dockerfile)
        (work / name / "marker").write_text(name + "\n")
        (work / name / "acb.yaml").write_text(LEVEL_FILE.replace("{name}:1", "base:1.0") if name == "loop"
                                              else LEVEL_FILE.format(name=name))
    server, url = _serve_committed(work, tmp_path, "levels")
    try:
        cli("task", "create", "--name", "mid", "--file", str(work / "mid" / "acb.yaml"), "--context", url + ":mid",
            "--base-image-trigger-enabled", "true")
        cli("task", "create", "--name", "app", "--file", str(work / "app" / "acb.yaml"), "--context", url + ":app",
            "--base-image-trigger-enabled", "true", "--base-image-trigger-type", "All")
        app = cli.json("task", "show", "--name", "app")
        assert app["baseImageTriggerType"] == "All" and app["baseImages"] == [
            {"reference": "mid:1", "runtime": True}, {"reference": "base:1.0", "runtime": False}], app
        # A task that pushes its own base is refused with the reason.
        message = cli.fails("task", "create", "--name", "loop", "--file", str(work / "loop" / "acb.yaml"),
                            "--context", url + ":loop", "--base-image-trigger-enabled", "true")
        assert "pushes base:1.0, which is its own base image" in message, message

        def runs(task):
            return [r for r in cli.json("task", "list-runs", "--name", task) if r["trigger"] == "base-image"]

        def settled(task, count):
            found = runs(task)
            return found if len(found) >= count and all(r["status"] in ("succeeded", "failed") for r in found) else None

        # A new base:1.0 rebuilds mid, whose push rebuilds app: once each.
        second = _put_base(registry, _base_config(generations[1][1], 1), *generations[1])
        assert second != first
        [mid] = wait_for("mid's run", lambda: settled("mid", 1), timeout=120)
        [app] = wait_for("app's run", lambda: settled("app", 1), timeout=120)
        assert mid["status"] == "succeeded" and app["status"] == "succeeded", (mid, app)
        assert {"reference": f"{registry.host}/base:1.0", "digest": second, "runtime": True} in mid["baseImages"], mid
        [mid_pushed] = mid["pushed"]
        assert {"reference": f"{registry.host}/mid:1", "digest": mid_pushed["digest"], "runtime": True} in app["baseImages"], app
        assert app["startedAt"] >= mid["finishedAt"]  # (seconds)
        time.sleep(WINDOW + 1)
        assert len(runs("mid")) == 1 and len(runs("app")) == 1

        # Five rapid pushes of the base: each level rebuilds at most once per window, and the last
        # run of each is built from the newest base.
        images = [(_base_config(generations[n][1], n), *generations[n]) for n in range(2, 7)]
        for config, layer, _ in images:  # the blobs first, so the five pushes are five manifest PUTs
            for blob in (config, layer):
                digest = "sha256:" + __import__("hashlib").sha256(blob).hexdigest()
                requests.post(f"{registry.base}/v2/base/blobs/uploads/?digest={digest}", data=blob, auth=registry.creds,
                              timeout=10).raise_for_status()
        newest = [_put_base(registry, *image) for image in images][-1]

        def burst_settled():
            for task in ("mid", "app"):
                found = runs(task)
                if len(found) < 2 or any(r["status"] not in ("succeeded", "failed") for r in found):
                    return None
            return True
        wait_for("the burst's runs", burst_settled, timeout=180)
        time.sleep(WINDOW + 1)  # a run coalesced to the window's end would be queued by now
        wait_for("the burst's runs", burst_settled, timeout=180)
        mids, apps = runs("mid")[:-1], runs("app")[:-1]  # newest first; the first change's run is last
        assert 1 <= len(mids) <= 2 and 1 <= len(apps) <= 2, (mids, apps)
        for found in (mids, apps):
            queued = sorted(r["queuedAt"] for r in found)
            if len(queued) == 2:
                from datetime import datetime
                spacing = datetime.fromisoformat(queued[1].replace("Z", "+00:00")) - datetime.fromisoformat(
                    queued[0].replace("Z", "+00:00"))
                assert spacing.total_seconds() >= WINDOW - 0.5, found
        assert all(r["status"] == "succeeded" for r in mids + apps), mids + apps
        assert {"reference": f"{registry.host}/base:1.0", "digest": newest, "runtime": True} in mids[0]["baseImages"], mids[0]
        assert {"reference": f"{registry.host}/base:1.0", "digest": newest, "runtime": False} in apps[0]["baseImages"], apps[0]
    finally:
        server.shutdown()


def test_a_hostile_uploaded_context_fails_its_run_before_it_is_unpacked(cli, registry, tmp_path):
    """Tars made here (a few blocks): a link out of the context, a `..` name and a gzip stream each
    fail their run with the reason (the Swift ContextArchiveTests cover the other refusals)."""
    import io
    import tarfile

    def tar(members, mode="w"):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode=mode, format=tarfile.USTAR_FORMAT) as t:
            for info, data in members:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()

    def file(name, data=b"x"):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    def link(name, target):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info, None

    (tmp_path / "t.yaml").write_text(TASK_FILE)
    cli("task", "create", "--name", "hostile", "--file", str(tmp_path / "t.yaml"), "--set", "code=0")
    cases = [
        (tar([file("Dockerfile"), link("etc", "/etc"), file("etc/evil")]), "symbolic link leading out"),
        (tar([file("../evil")]), "a name with '..'"),
        (tar([file("Dockerfile")], mode="w:gz"), "compressed"),
    ]
    for body, reason in cases:
        queued = requests.post(f"{registry.base}/api/v1/tasks/hostile/runs", data=body, auth=registry.creds, timeout=30,
                               headers={"Content-Type": "application/x-tar"})
        assert queued.status_code == 202, queued.text
        run_id = queued.json()["id"]
        done = wait_for("the run to end", lambda: next(
            (r for r in cli.json("task", "list-runs", "--name", "hostile")
             if r["id"] == run_id and r["status"] not in ("queued", "running")), None))
        assert done["status"] == "failed" and reason in done.get("reason", ""), done


class _ExternalRegistry(ReferenceSource):
    """Debian's reference registry (``docker-registry``), no auth: a public base elsewhere."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, None)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put_base(self, n: int) -> str:
        """Pushes generation ``n`` of ``base:1`` (one tiny layer); returns its digest."""
        import hashlib
        layer, diff_id = _base_layer(n)
        config = _base_config(diff_id, n)
        for blob in (layer, config):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            r = requests.post(f"{self.base}/v2/base/blobs/uploads/", timeout=10)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            location = location if location.startswith("http") else self.base + location
            r = requests.put(location, params={"digest": digest}, data=blob, timeout=10,
                             headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}]}
        r = requests.put(f"{self.base}/v2/base/manifests/1", data=json.dumps(manifest).encode(), timeout=10,
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]



@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_BASE_POLL_SECONDS="1",
                        BERTH_TASK_INSECURE_BASE_REGISTRIES="127.0.0.1")
def test_a_base_in_another_registry_is_polled_and_a_new_digest_rebuilds_the_task_once(cli, registry, tmp_path):
    import time
    external = _ExternalRegistry(tmp_path / "external")
    try:
        first = external.put_base(0)
        work = tmp_path / "work"
        (work / "ext").mkdir(parents=True)
        (work / "ext" / "Dockerfile").write_text(f"FROM {external.host}/base:1\nCOPY marker /ext\n")
        (work / "ext" / "marker").write_text("ext\n")
        (work / "ext" / "acb.yaml").write_text(LEVEL_FILE.format(name="ext"))
        server, url = _serve_committed(work, tmp_path, "external")
        try:
            cli("task", "create", "--name", "ext", "--file", str(work / "ext" / "acb.yaml"), "--context", url + ":ext",
                "--base-image-trigger-enabled", "true")
            reference = f"{external.host}/base:1"

            def polled(digest):
                def check():
                    bases = cli.json("task", "show", "--name", "ext")["baseImages"]
                    return bases if {"reference": reference, "digest": digest, "runtime": True} in bases else None
                return check
            # The first look records the digest and queues nothing.
            wait_for("the first poll", polled(first), timeout=30)
            time.sleep(2)
            assert [r for r in cli.json("task", "list-runs", "--name", "ext") if r["trigger"] == "base-image"] == []

            # A new base:1 there: one run, built from it, which records the base it built from.
            second = external.put_base(1)
            assert second != first

            def rebuilt():
                runs = [r for r in cli.json("task", "list-runs", "--name", "ext") if r["trigger"] == "base-image"]
                return runs if runs and all(r["status"] in ("succeeded", "failed") for r in runs) else None
            [run] = wait_for("the base-image run", rebuilt, timeout=120)
            assert run["status"] == "succeeded", run
            assert {"reference": reference, "digest": second, "runtime": True} in run["baseImages"], run
            wait_for("the new digest recorded", polled(second), timeout=30)
            time.sleep(3)  # three more polls of an unchanged base queue nothing
            assert len([r for r in cli.json("task", "list-runs", "--name", "ext") if r["trigger"] == "base-image"]) == 1
        finally:
            server.shutdown()
    finally:
        external.stop()


FILL_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/fill:$ID -f Dockerfile .
  - id: fill
    cmd: $Registry/fill:$ID sh -c 'echo filling; dd if=/dev/zero of=/big bs=1048576 count=96 && echo filled && sleep 300'
"""


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_RUN_DISK_QUOTA_BYTES=str(48 << 20))
def test_a_run_that_fills_the_disk_past_its_quota_is_stopped_and_fails(cli, registry, context, tmp_path):
    """Issue 16 item 6: a run cannot fill the disk beyond a per-run quota. The step writes 96 MiB
    inside its container (the task's storage) against a 48 MiB quota and would then sleep for
    five minutes: the run is stopped long before its 600 s timeout, failed with the reason."""
    (tmp_path / "fill.yaml").write_text(FILL_FILE)
    cli("task", "create", "--name", "fill", "--file", str(tmp_path / "fill.yaml"))
    result = cli.run("task", "run", "--name", "fill", "--context", str(context), "--wait", check=False)
    assert result.returncode != 0, result.stdout.decode()
    [run] = cli.json("task", "list-runs", "--name", "fill")
    assert run["status"] == "failed" and "more than its quota of 50331648 bytes" in run["reason"], run
    assert [s["status"] for s in run["steps"]] == ["succeeded", "cancelled"], run
    log = cli.run("task", "logs", "--name", "fill", "--run-id", run["id"]).stdout.decode()
    assert "fill stdout| filling" in log, log


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_BUILD_MEMORY_BYTES=str(192 << 20))
def test_a_build_over_its_memory_limit_fails_the_run(cli, registry, context, tmp_path):
    """Issue 16 item 2: memory limits. A build step runs in a memory cgroup of its own
    (task-build-memory-bytes): the plain build passes under 192 MiB, one whose RUN holds 400 MiB is
    killed by the kernel, its run fails, and the log says why."""
    (context / "Dockerfile.big").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\n'
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox head -c 400m /dev/zero | /bin/busybox tail > /dev/null"]\n')
    for name, dockerfile in (("mem", "Dockerfile"), ("membig", "Dockerfile.big")):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: v1.1.0\nsteps:\n  - id: build\n    build: -t $Registry/{name}:$ID -f {dockerfile} .\n")
        cli("task", "create", "--name", name, "--file", str(tmp_path / f"{name}.yaml"))
    cli("task", "run", "--name", "mem", "--context", str(context), "--wait")
    [passed] = cli.json("task", "list-runs", "--name", "mem")
    assert passed["status"] == "succeeded", passed
    log = cli.run("task", "logs", "--name", "mem", "--run-id", passed["id"]).stdout.decode()
    assert f"build runner| memory limit {192 << 20} bytes" in log, log
    result = cli.run("task", "run", "--name", "membig", "--context", str(context), "--wait", check=False)
    assert result.returncode != 0, result.stdout.decode()
    [failed] = cli.json("task", "list-runs", "--name", "membig")
    assert failed["status"] == "failed" and [s["status"] for s in failed["steps"]] == ["failed"], failed
    log = cli.run("task", "logs", "--name", "membig", "--run-id", failed["id"]).stdout.decode()
    assert f"the build went over its memory limit of {192 << 20} bytes" in log, log
    # The reason is in the run's record too, not only in the log.
    assert failed["steps"][0]["reason"] == f"killed by its memory cgroup: over its limit of {192 << 20} bytes", failed
    assert failed["reason"] == f"step build failed: killed by its memory cgroup: over its limit of {192 << 20} bytes", failed


def test_a_cmd_task_runs_berth_purge_with_its_run_identity_inside_its_scope_only(cli, registry, layout, tmp_path):
    """Issue 16 item 3: ``--cmd`` tasks. ``berth task create --cmd "berth purge ..."`` makes a
    one-step task without a task file or context; its run executes the server's own ``berth``
    with the run's short-lived identity (never the creator's credentials), limited to the
    repositories named with ``--repository``: it purges there, and a purge whose filters reach
    past them deletes nothing outside them."""
    for repository, tag in (("junk/app", "old1"), ("junk/app", "old2"), ("keep/app", "v1")):
        push(registry, layout, repository, registry.creds, tag=tag)
    command = "berth purge --filter 'junk/app:.*' --ago 0d"
    cli("task", "create", "--name", "nightly", "--cmd", command, "--repository", "junk/app", "--schedule", "0 3 * * *")
    shown = cli.json("task", "show", "--name", "nightly")
    assert shown["cmd"] == command and shown["scope"] == ["junk/app"] and shown.get("context") is None, shown
    assert [t["name"] for t in cli.json("task", "list")] == ["nightly"]

    done = cli.run("task", "run", "--name", "nightly", "--wait", check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    [run] = cli.json("task", "list-runs", "--name", "nightly")
    assert run["status"] == "succeeded" and run["trigger"] == "manual", run
    assert inspect(registry, "junk/app", registry.creds, tag="old1", check=False).returncode != 0
    assert inspect(registry, "junk/app", registry.creds, tag="old2", check=False).returncode != 0
    assert inspect(registry, "keep/app", registry.creds, tag="v1").returncode == 0
    log = cli.run("task", "logs", "--name", "nightly", "--run-id", run["id"]).stdout.decode()
    assert "cmd stdout|" in log and "old1" in log, log
    assert registry.password not in log and "eyJ" not in log, log
    # The purge's events name the run, not the task's creator.
    audit = requests.get(f"{registry.base}/api/v1/audit", auth=registry.creds, timeout=10).json()
    purges = [e for e in audit if e["action"] == "purge.run"]
    assert purges and purges[-1]["actor"].startswith("token:run:nightly/"), purges

    # Past its scope: a repository it cannot see is no part of its purge (it is not told that it
    # exists); nothing there is deleted.
    cli("task", "update", "--name", "nightly", "--cmd", "berth purge --filter '.*/app:.*' --ago 0d")
    cli("task", "run", "--name", "nightly", "--wait")
    latest = cli.json("task", "list-runs", "--name", "nightly")[0]
    assert latest["status"] == "succeeded", latest
    log = cli.run("task", "logs", "--name", "nightly", "--run-id", latest["id"]).stdout.decode()
    assert "keep/app" not in log, log
    assert inspect(registry, "keep/app", registry.creds, tag="v1").returncode == 0
    # A berth command the task language does not allow is refused when saved, with its line.
    assert "not 'serve'" in cli.fails("task", "update", "--name", "nightly", "--cmd", "berth serve")

    cli("task", "delete", "--name", "nightly")
    assert cli.json("task", "list") == []
    assert "not found" in cli.fails("task", "show", "--name", "nightly")


LINES_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/lines:$ID -f Dockerfile .
  - id: lines
    cmd: $Registry/lines:$ID sh -c 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 1; done'
"""


def test_berth_run_a_file_then_follow_a_runs_log_list_and_delete(cli, registry, context, tmp_path):
    """Issue 16 item 3's CLI: ``berth run -f FILE CONTEXT`` saves the file as a task, uploads the
    context and prints the log as it runs; ``berth task logs --follow`` of a run started without
    waiting ends when the run ends and prints every line exactly once; ``task list`` and
    ``task delete``."""
    (tmp_path / "lines.yaml").write_text(LINES_FILE)
    ran = cli.run("run", "-f", str(tmp_path / "lines.yaml"), str(context), "-o", "json", check=False)
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    result = json.loads(ran.stdout)
    assert result["task"] == "quick-run" and result["status"] == "succeeded", result
    printed = ran.stderr.decode()
    assert all(printed.count(f"lines stdout| line {i}\n") == 1 for i in range(1, 7)), printed
    assert [t["name"] for t in cli.json("task", "list")] == ["quick-run"]

    queued = json.loads(cli.run("task", "run", "--name", "quick-run", "--context", str(context), "-o", "json").stdout)
    followed = subprocess.run([str(berth_bin()), "task", "logs", "--name", "quick-run", "--run-id", queued["id"], "--follow"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env(), timeout=300)
    assert followed.returncode == 0, followed.stderr.decode()
    [run] = [r for r in cli.json("task", "list-runs", "--name", "quick-run") if r["id"] == queued["id"]]
    assert run["status"] == "succeeded", run            # --follow returned only once the run had ended
    whole = cli.run("task", "logs", "--name", "quick-run", "--run-id", queued["id"]).stdout.decode()
    assert followed.stdout.decode() == whole, (followed.stdout.decode(), whole)
    assert all(whole.count(f"lines stdout| line {i}\n") == 1 for i in range(1, 7)), whole
    assert whole.rstrip().endswith("run succeeded"), whole

    cli("task", "delete", "--name", "quick-run")
    assert cli.json("task", "list") == []


def _put_child(registry, arch: str, n: int, tag: str) -> tuple[str, int]:
    """Pushes ``base:TAG``, a one-layer image for ``linux/ARCH`` of generation ``n``; returns
    (digest, size) for an index entry."""
    layer, diff_id = _base_layer(n)
    config = json.loads(_base_config(diff_id, n))
    config["architecture"] = arch
    digest = _put_base(registry, json.dumps(config).encode(), layer, diff_id, tag=tag)
    head = requests.head(f"{registry.base}/v2/base/manifests/{digest}", auth=registry.creds, timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return digest, int(head.headers["Content-Length"])


def _put_index(registry, children: list[tuple[str, int, str]]) -> str:
    """Pushes ``base:1.0`` as an OCI index of (digest, size, architecture) children; returns its digest."""
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s,
                            "platform": {"architecture": a, "os": "linux"}} for d, s, a in children]}
    r = requests.put(f"{registry.base}/v2/base/manifests/1.0", data=json.dumps(index).encode(), auth=registry.creds,
                     timeout=10, headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32", BERTH_TASK_BASE_TRIGGER_WINDOW_SECONDS="1")
def test_an_index_base_is_recorded_per_platform_and_only_its_platforms_change_rebuilds(cli, registry, tmp_path):
    """Issue 16 item 4 (bases recorded per platform) and its Why's multi-arch rebuild storm: a run
    records a base that is an index with the index digest and the digest of the linux/amd64
    manifest its build used; the index pushed again with only an arm64 child added rebuilds
    nothing, and a new amd64 child rebuilds the task once."""
    import time
    amd0 = _put_child(registry, "amd64", 0, "amd64-0")
    first = _put_index(registry, [(*amd0, "amd64")])
    work = tmp_path / "work"
    (work / "plat").mkdir(parents=True)
    (work / "plat" / "Dockerfile").write_text("ARG REG\nFROM ${REG}/base:1.0\nCOPY marker /plat\n")
    (work / "plat" / "marker").write_text("plat\n")
    (work / "plat" / "acb.yaml").write_text(LEVEL_FILE.format(name="plat"))
    server, url = _serve_committed(work, tmp_path, "plat")
    try:
        cli("task", "create", "--name", "plat", "--file", str(work / "plat" / "acb.yaml"), "--context", url + ":plat",
            "--base-image-trigger-enabled", "true")
        built = json.loads(cli.run("task", "run", "--name", "plat", "--wait", "-o", "json").stdout)
        assert built["status"] == "succeeded", built
        assert built["baseImages"] == [{"reference": f"{registry.host}/base:1.0", "digest": first, "runtime": True,
                                        "platform": "linux/amd64", "platformDigest": amd0[0]}], built

        def base_runs():
            return [r for r in cli.json("task", "list-runs", "--name", "plat") if r["trigger"] == "base-image"]

        # The index again, with an arm64 child added: amd64's image did not change, nothing is rebuilt.
        arm = _put_child(registry, "arm64", 0, "arm64-0")
        second = _put_index(registry, [(*amd0, "amd64"), (*arm, "arm64")])
        assert second != first
        time.sleep(5)  # the trigger consumer reads the event log every 200 ms; its window is 1 s
        assert base_runs() == []
        # A new amd64 image in the index: rebuilt once, from it.
        amd1 = _put_child(registry, "amd64", 1, "amd64-1")
        third = _put_index(registry, [(*amd1, "amd64"), (*arm, "arm64")])
        [run] = wait_for("the rebuild", lambda: [r for r in base_runs() if r["status"] in ("succeeded", "failed")], timeout=180)
        assert run["status"] == "succeeded", run
        assert run["baseImages"] == [{"reference": f"{registry.host}/base:1.0", "digest": third, "runtime": True,
                                      "platform": "linux/amd64", "platformDigest": amd1[0]}], run
        time.sleep(3)
        assert len(base_runs()) == 1
    finally:
        server.shutdown()


ENTRYPOINT_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/probe:$ID -f Dockerfile .
  - id: echo
    cmd: $Registry/probe:$ID hello from the entry point
    entryPoint: /bin/echo
  - id: who
    cmd: $Registry/probe:$ID -c 'echo "uid=$(id -u) gid=$(id -g) entry=$0"'
    entryPoint: /bin/sh
    user: "1000:1000"
"""


def test_a_cmd_steps_entry_point_and_user_are_what_its_container_runs_with(cli, registry, context, tmp_path):
    """ACR's ``entryPoint`` and ``user`` step keys on a real podman run: the image (busybox FROM
    scratch, no ENTRYPOINT) runs ``/bin/echo`` with the step's words as its arguments (without
    the override ``hello`` would be the command, and fail), and ``/bin/sh`` as uid/gid 1000 (the
    root default otherwise), each said in ``berth task logs``."""
    (tmp_path / "probe.yaml").write_text(ENTRYPOINT_FILE)
    cli("task", "create", "--name", "probe", "--file", str(tmp_path / "probe.yaml"))
    ran = cli.run("task", "run", "--name", "probe", "--context", str(context), "--wait", "-o", "json", check=False)
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    run = json.loads(ran.stdout)
    assert [(s["id"], s["status"], s.get("exitCode")) for s in run["steps"]] == [
        ("build", "succeeded", 0), ("echo", "succeeded", 0), ("who", "succeeded", 0)], run
    log = cli.run("task", "logs", "--name", "probe", "--run-id", run["id"]).stdout.decode()
    assert " echo stdout| hello from the entry point\n" in log, log
    assert " who stdout| uid=1000 gid=1000 entry=/bin/sh\n" in log, log


def test_only_an_owner_creates_changes_or_runs_tasks(cli, registry, context, tmp_path):
    """Issue 16 item 3 (the trust model): a run executes its task's code as the server's user, so
    creating, changing and running tasks is the Owner's (management/write). An identity that may
    push everywhere is refused each, and nothing runs."""
    (tmp_path / "acb.yaml").write_text(TASK_FILE)
    cli("task", "create", "--name", "ci", "--file", str(tmp_path / "acb.yaml"), "--set", "code=0")
    password = cli.json("identity", "create", "--name", "dev")["password"]
    cli("role", "assignment", "create", "--assignee", "dev", "--role", "Push", "--scope", "*")
    dev = Cli(registry, tmp_path / "xdg-dev")
    dev.login("dev", password)
    for args in (("task", "create", "--name", "mine", "--file", str(tmp_path / "acb.yaml")),
                 ("task", "update", "--name", "ci", "--set", "code=3"),
                 ("task", "run", "--name", "ci", "--context", str(context)),
                 ("run", "-f", str(tmp_path / "acb.yaml"), str(context)),
                 ("task", "delete", "--name", "ci")):
        refused = dev.run(*args, check=False)
        said = (refused.stderr + refused.stdout).decode(errors="replace")
        assert refused.returncode != 0 and ("403" in said or "denied" in said.lower()), (args, said[-800:])
    assert cli.json("task", "list-runs", "--name", "ci") == []
    assert [t["name"] for t in cli.json("task", "list")] == ["ci"]


def test_a_timer_fires_a_run_of_its_task(cli, registry, tmp_path):
    """Issue 16 "a timer fires": a ``--cmd`` task with ``--schedule "* * * * *"`` is queued by
    the server's timer at the next minute (no manual run), once for that minute, and its run
    succeeds. Waits at most 100 s (the next minute plus the queue's tick on a loaded machine)."""
    cli("task", "create", "--name", "every-minute", "--cmd", "berth purge --filter 'junk/app:.*' --ago 3650d", "--repository", "junk/app",
        "--schedule", "* * * * *")
    runs = []
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        runs = cli.json("task", "list-runs", "--name", "every-minute")
        if runs and runs[-1]["status"] in ("succeeded", "failed"):
            break
        time.sleep(1)
    assert runs, "the timer queued no run within 100 s"
    first = runs[-1]
    assert first["trigger"] == "schedule" and first["status"] == "succeeded", first
    # One run for its minute (the next minute's may have started meanwhile, never two for one).
    assert len(runs) <= 2, runs
