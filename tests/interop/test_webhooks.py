"""Webhooks: ``berth webhook`` commands against a real ``berth serve`` and a real HTTP
receiver on loopback (Python ``http.server`` in a thread), fed by pushes and deletes
made with skopeo.

The receiver records every request (headers, raw body, when it arrived and when it
was answered) and can be switched to answer 500, to answer slowly, or to go down
(listening socket closed) and come back on the same port.

The reference registry has no webhooks, so the module is ``berth_only``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from conftest import free_port
from helpers import skopeo
from test_cli import Cli, layout  # noqa: F401  (layout is a fixture)

# The receivers listen on loopback, which Berth refuses to contact unless the operator allows it.
pytestmark = [pytest.mark.berth_only, pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")]

DEADLINE = 30.0  # every wait in this module is bounded by this many seconds


# ---------------------------------------------------------------------------
# the receiver
# ---------------------------------------------------------------------------

class Received:
    """One request the receiver got."""

    def __init__(self, path: str, headers: Dict[str, str], body: bytes, arrived: float):
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body
        self.arrived = arrived
        self.answered: Optional[float] = None
        self.status: Optional[int] = None

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.headers.get("x-berth-event", "")

    def __repr__(self) -> str:
        target = {}
        try:
            target = self.json.get("target") or {}
        except ValueError:
            pass
        return (f"<{self.event} {target.get('repository')}:{target.get('tag')} "
                f"{(target.get('digest') or '')[:19]} -> {self.status}>")


class Receiver:
    """A webhook receiver on 127.0.0.1. ``mode``: ``ok`` (200), ``fail`` (500) or
    ``slow`` (sleep ``delay`` seconds, then 200). ``stop()`` closes the listening
    socket; ``start()`` binds the same port again."""

    def __init__(self):
        self.port = free_port()
        self.mode = "ok"
        self.delay = 2.0
        self.requests: List[Received] = []
        self.cond = threading.Condition()
        self.server: Optional[http.server.ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        assert self.server is None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so nothing stays connected across a stop()
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                mode, delay = receiver.mode, receiver.delay
                if mode == "slow":
                    time.sleep(delay)
                status = 500 if mode == "fail" else 200
                answer = b'{"ok":true}' if status == 200 else b'{"error":"failing on purpose"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                rec.status, rec.answered = status, time.monotonic()
                with receiver.cond:
                    receiver.requests.append(rec)
                    receiver.cond.notify_all()

            def log_message(self, *args):
                pass

        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        server.daemon_threads = True
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)
            self.server = self.thread = None

    def wait_for(self, predicate: Callable[[List[Received]], bool], what: str,
                 timeout: float = DEADLINE) -> List[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; received: {self.requests}")
                self.cond.wait(left)
            return list(self.requests)

    def delivered(self, event: Optional[str] = None) -> List[Received]:
        """Requests answered 2xx (optionally of one X-Berth-Event)."""
        with self.cond:
            return [r for r in self.requests if r.status == 200 and (event is None or r.event == event)]


@pytest.fixture
def receiver():
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def cli(registry, tmp_path) -> Cli:
    c = Cli(registry, tmp_path / "xdg")
    c.login()
    return c


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def push(registry, layout: Path, repo: str, tag: str, tmp_path: Path) -> str:  # noqa: F811
    """skopeo copy of the layout's v1 image to REPO:TAG; returns the digest skopeo reports."""
    digestfile = tmp_path / f"digest-{repo.replace('/', '_')}-{tag}"
    skopeo("copy", "--dest-tls-verify=false", f"--digestfile={digestfile}", f"oci:{layout}:v1",
           f"docker://{registry.host}/{repo}:{tag}", creds=registry.creds)
    digest = digestfile.read_text().strip()
    assert digest.startswith("sha256:"), digest
    return digest


def create_hook(cli: Cli, receiver: Receiver, name: str = "payments", scope: str = "payments/*:*",
                extra: tuple = ()) -> str:
    """Creates a webhook with the CLI; returns the secret it printed."""
    answer = cli.json("webhook", "create", "--name", name, "--uri", receiver.url, "--actions", "push", "delete",
                      "--scope", scope, *extra)
    assert answer["webhook"]["name"] == name
    secret = answer["secret"]
    assert isinstance(secret, str) and len(secret) >= 32, answer
    return secret


def events(cli: Cli, name: str = "payments", limit: int = 100) -> List[dict]:
    """Delivery records, oldest first."""
    return list(reversed(cli.json("webhook", "list-events", "--name", name, "--limit", str(limit))))


def wait_events(cli: Cli, predicate: Callable[[List[dict]], bool], what: str, name: str = "payments") -> List[dict]:
    deadline = time.monotonic() + DEADLINE
    while True:
        recs = events(cli, name)
        if predicate(recs):
            return recs
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; delivery records:\n{json.dumps(recs, indent=1)}")
        time.sleep(0.25)


def signature_ok(rec: Received, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), rec.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, rec.headers.get("x-berth-signature-256", ""))


def pushes(recs: List[Received]) -> List[Received]:
    return [r for r in recs if r.status == 200 and r.event == "push"]


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

def test_push_and_delete_are_delivered_signed_and_scoped(registry, cli, receiver, layout, tmp_path):  # noqa: F811
    secret = create_hook(cli, receiver, extra=("--headers", "X-Team=payments", "X-Env=test"))

    shown = cli.json("webhook", "show", "--name", "payments")
    assert shown["uri"] == receiver.url and shown["scope"] == "payments/*:*"
    assert sorted(shown["actions"]) == ["delete", "push"] and shown["status"] == "enabled"
    # header values are often credentials: shown redacted, stored sealed, sent as given
    assert shown["headers"] == {"X-Team": "***", "X-Env": "***"}
    assert "secret" not in json.dumps(shown).lower()
    table = cli("webhook", "list").stdout.decode()
    assert "payments" in table and receiver.url in table and "X-Env,X-Team" in table and "test" not in table

    digest = push(registry, layout, "payments/api", "v1", tmp_path)
    push(registry, layout, "billing/api", "v1", tmp_path)

    recs = receiver.wait_for(lambda rs: len(pushes(rs)) >= 1, "the push delivery")
    [rec] = pushes(recs)
    body = rec.json
    assert body["action"] == "push"
    assert body["target"]["repository"] == "payments/api"
    assert body["target"]["tag"] == "v1"
    assert body["target"]["digest"] == digest
    assert body["target"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert body["target"]["size"] == body["target"]["length"] > 0
    assert "skopeo" in (body["request"]["useragent"] or "").lower(), body["request"]
    assert body["request"]["method"] == "PUT"
    assert rec.headers["content-type"].startswith("application/json")
    assert rec.headers["x-berth-event"] == "push"
    assert rec.headers["x-berth-delivery"] == body["id"]
    assert rec.headers["x-team"] == "payments" and rec.headers["x-env"] == "test"
    assert signature_ok(rec, secret), (rec.headers, rec.body)
    assert not signature_ok(rec, secret[:-1] + ("0" if secret[-1] != "0" else "1"))

    # the delete comes after the billing push in the event log, so once it is here the
    # billing push has been looked at (and must not have been delivered)
    skopeo("delete", "--tls-verify=false", f"docker://{registry.host}/payments/api:v1", creds=registry.creds)
    recs = receiver.wait_for(lambda rs: any(r.event == "delete" and r.status == 200 for r in rs), "the delete delivery")
    time.sleep(1.0)  # let a second delete event (tag + manifest) arrive, if the registry sends one
    deletes = receiver.delivered("delete")
    assert 1 <= len(deletes) <= 2, deletes
    for d in deletes:
        assert d.json["action"] == "delete"
        assert d.json["target"]["repository"] == "payments/api"
        assert d.json["target"]["digest"] == digest
        assert signature_ok(d, secret)
    assert len(receiver.delivered("push")) == 1, receiver.requests
    assert all(r.json["target"]["repository"] == "payments/api" for r in receiver.delivered()), receiver.requests

    # the history: one 200 per delivery, newest first from the API
    recs = events(cli)
    assert [r["action"] for r in recs] == ["push"] + ["delete"] * len(deletes), recs
    assert all(r["statusCode"] == 200 and r["attempt"] == 1 and not r.get("error") for r in recs), recs
    table = cli("webhook", "list-events", "--name", "payments").stdout.decode().splitlines()
    assert table[0].split() == ["ID", "EVENT", "ACTION", "ATTEMPT", "STATUS", "LATENCY-MS", "ERROR", "TIME"], table
    assert len(table) == 2 + len(recs)
    tsv = cli("webhook", "list-events", "--name", "payments", "--limit", "1", "-o", "tsv").stdout.decode().splitlines()
    assert len(tsv) == 1 and tsv[0].split("\t")[2] in ("delete",) and tsv[0].split("\t")[4] == "200", tsv

    # update, then delete the webhook
    updated = cli.json("webhook", "update", "--name", "payments", "--status", "disabled", "--actions", "push",
                       "--clear-headers")
    assert updated["status"] == "disabled" and updated["actions"] == ["push"] and updated["headers"] == {}
    assert updated["uri"] == receiver.url and updated["scope"] == "payments/*:*"
    assert cli("webhook", "delete", "--name", "payments").returncode == 0
    assert cli.json("webhook", "list") == []
    err = cli.fails("webhook", "show", "--name", "payments")
    assert "not found" in err, err


def test_cli_rejects_bad_input_with_one_line(registry, cli, receiver):
    err = cli.fails("webhook", "create", "--name", "x", "--uri", receiver.url, "--actions", "push", "tag")
    assert "unknown action" in err, err
    err = cli.fails("webhook", "create", "--name", "x", "--uri", "ftp://example.com/", "--actions", "push")
    assert "uri" in err, err
    err = cli.fails("webhook", "create", "--name", "Bad Name", "--uri", receiver.url, "--actions", "push")
    assert "name" in err, err
    create_hook(cli, receiver, name="dup")
    err = cli.fails("webhook", "create", "--name", "dup", "--uri", receiver.url, "--actions", "push")
    assert "exists" in err, err
    err = cli.fails("webhook", "ping", "--name", "nope")
    assert "not found" in err, err


@pytest.mark.parametrize("uri", ["http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://10.0.0.1/",
                                 "http://[::1]/", "http://127.0.0.1:{port}/v2/"])
def test_non_public_and_own_targets_are_refused(registry, cli, receiver, uri):
    # 127.0.0.1 is allowed for the receiver, but never the registry's own port; 2852039166 is 169.254.169.254
    uri = uri.format(port=registry.host.rsplit(":", 1)[1])
    proc = cli.run("webhook", "create", "--name", "meta", "--uri", uri, "--actions", "push", check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "refused" in err and "400" in err, err
    assert cli.json("webhook", "list") == []
    create_hook(cli, receiver)
    err = cli.fails("webhook", "update", "--name", "payments", "--uri", uri)
    assert "refused" in err, err
    assert cli.json("webhook", "show", "--name", "payments")["uri"] == receiver.url


def test_secrets_and_data_are_the_owners_alone(registry, cli, receiver):
    create_hook(cli, receiver, extra=("--headers", "Authorization=Bearer do-not-leak-1234"))
    data = Path(registry.data)
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    keys = data / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    assert sorted(f.stat().st_mode & 0o777 for f in keys.iterdir()) == [0o600] * len(list(keys.iterdir()))
    for f in data.glob("metadata.sqlite*"):
        assert b"do-not-leak-1234" not in f.read_bytes(), f.name


def test_ping(registry, cli, receiver):
    secret = create_hook(cli, receiver)
    p = cli("webhook", "ping", "--name", "payments")
    assert p.returncode == 0
    out = p.stdout.decode()
    assert "200" in out and "latency-ms" in out, out
    [rec] = receiver.wait_for(lambda rs: len(rs) >= 1, "the ping")
    assert rec.headers["x-berth-event"] == "ping"
    assert rec.json["action"] == "ping"
    assert signature_ok(rec, secret)

    receiver.stop()
    started = time.monotonic()
    proc = cli.run("webhook", "ping", "--name", "payments", "-o", "json", check=False)
    took = time.monotonic() - started
    assert proc.returncode != 0, proc.stdout.decode()
    err = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert len(err) == 1 and "failed" in err[0], err
    record = json.loads(proc.stdout.decode())
    assert record["error"] and "statusCode" not in record, record
    assert took < 20, f"ping of a receiver that is down took {took:.1f}s"

    recs = events(cli)
    assert [(r["action"], r.get("statusCode")) for r in recs] == [("ping", 200), ("ping", None)], recs


def test_failing_receiver_gets_both_pushes_in_order_after_it_recovers(registry, cli, receiver, layout, tmp_path):  # noqa: F811
    create_hook(cli, receiver)
    receiver.mode = "fail"
    digest = push(registry, layout, "payments/api", "v1", tmp_path)
    push(registry, layout, "payments/api", "v2", tmp_path)
    receiver.wait_for(lambda rs: sum(r.status == 500 for r in rs) >= 3, "three failed attempts")
    # while the first event fails, the second is not attempted (delivery is in order)
    assert all(r.json["target"]["tag"] == "v1" for r in receiver.requests), receiver.requests
    receiver.mode = "ok"
    receiver.wait_for(lambda rs: len(pushes(rs)) >= 2, "both pushes after recovery")
    delivered = pushes(receiver.requests)
    assert [r.json["target"]["tag"] for r in delivered] == ["v1", "v2"], receiver.requests
    assert all(r.json["target"]["digest"] == digest for r in delivered)

    recs = wait_events(cli, lambda rs: sum(r.get("statusCode") == 200 for r in rs) >= 2, "two 200s")
    failed = [r for r in recs if r.get("statusCode") == 500]
    ok = [r for r in recs if r.get("statusCode") == 200]
    assert len(failed) >= 3 and all(r["error"] for r in failed), recs
    assert [r["attempt"] for r in failed] == list(range(1, len(failed) + 1)), recs
    assert len({r["eventSequence"] for r in failed}) == 1, recs
    assert ok[0]["eventSequence"] == failed[0]["eventSequence"] and ok[0]["attempt"] == len(failed) + 1, recs
    assert ok[1]["eventSequence"] > ok[0]["eventSequence"] and ok[1]["attempt"] == 1, recs
    assert recs.index(ok[0]) > recs.index(failed[-1])
    # the webhook is caught up: nothing pending
    assert cli.json("webhook", "show", "--name", "payments")["pendingAttempts"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_event_survives_restart_while_receiver_is_down(registry, cli, receiver, layout, tmp_path, how):  # noqa: F811
    secret = create_hook(cli, receiver)
    receiver.stop()
    digest = push(registry, layout, "payments/api", "v1", tmp_path)
    wait_events(cli, lambda rs: any(r["action"] == "push" and r.get("error") for r in rs), "a failed attempt")
    assert cli.json("webhook", "show", "--name", "payments")["pendingAttempts"] >= 1

    port = registry.port
    if how == "stop":
        registry.stop()
        registry.start(port=port)
    else:
        registry.restart_after_kill()
    assert registry.port == port
    receiver.start()

    recs = receiver.wait_for(lambda rs: len(pushes(rs)) >= 1, "the push after the restart")
    [rec] = pushes(recs)
    assert rec.json["target"]["repository"] == "payments/api" and rec.json["target"]["digest"] == digest
    assert rec.json["target"]["tag"] == "v1"
    assert signature_ok(rec, secret)
    recs = wait_events(cli, lambda rs: any(r.get("statusCode") == 200 for r in rs), "the 200 after the restart")
    ok = [r for r in recs if r.get("statusCode") == 200]
    assert len(ok) == 1 and ok[0]["attempt"] >= 2, recs
    time.sleep(1.0)
    assert len(pushes(receiver.requests)) == 1, receiver.requests


def test_slow_receiver_does_not_slow_the_push(registry, cli, receiver, layout, tmp_path):  # noqa: F811
    create_hook(cli, receiver)
    receiver.mode, receiver.delay = "slow", 2.0
    push(registry, layout, "payments/api", "v1", tmp_path)
    pushed = time.monotonic()
    [rec] = pushes(receiver.wait_for(lambda rs: len(pushes(rs)) >= 1, "the slow delivery"))
    assert rec.answered - rec.arrived >= 2.0
    assert pushed < rec.answered - 1.0, "skopeo copy did not finish well before the delivery was answered"
    recs = wait_events(cli, lambda rs: any(r.get("statusCode") == 200 for r in rs), "the delivery record")
    [ok] = [r for r in recs if r.get("statusCode") == 200]
    assert ok["latencyMilliseconds"] >= 2000, ok
    assert ok["latencyMilliseconds"] < 10_000, ok
    cols = cli("webhook", "list-events", "--name", "payments", "-o", "tsv").stdout.decode().split("\t")
    assert int(cols[5]) >= 2000, cols
