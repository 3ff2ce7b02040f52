"""The arrows between targets that docs/ARCHITECTURE.md allows, checked on the source tree.

Not an interop test in the strict sense: it reads `import` lines of Sources/<target>/*.swift, so a
change that makes a forbidden import fails the suite instead of waiting for a reviewer.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "Sources"

BACKENDS = {"SQLiteStore", "PostgresStore", "FileSystemStorage", "S3Storage"}
# Features contribute routes and services; HTTPAPI and RegistryCore never import them.
FEATURES = {"Webhooks", "Signing", "Tasks", "TaskRunner", "Scanning"}


def imports(target):
    found = set()
    for path in (SOURCES / target).rglob("*.swift"):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:@\w+(?:\([^)]*\))?\s+)*import\s+(?:(?:struct|class|enum|func|protocol)\s+)?([A-Za-z_][\w]*)", line)
            if m:
                found.add(m.group(1))
    return found


def targets():
    return sorted(p.name for p in SOURCES.iterdir() if p.is_dir())


def test_the_target_list_is_known():
    # A new target must be placed in this file's rules (and in docs/ARCHITECTURE.md).
    known = {"OCIModel", "BlobStorage", "FileSystemStorage", "S3Storage", "RegistryStore", "SQLiteStore", "PostgresStore", "Backends",
             "RegistryCore", "Access", "Admission", "HTTPAPI", "BerthAPIContract", "BerthCLI"} | FEATURES | CREDENTIAL_TOOLS
    assert set(targets()) <= known | extra_targets(), set(targets()) - known - extra_targets()


def extra_targets():
    # Feature targets added with the router (each named in FEATURE_TARGETS below when it exists).
    return set(FEATURE_TARGETS) | {"UpstreamClient"}


FEATURE_TARGETS: list[str] = ["WebhooksAPI", "ContentTrustFeature", "AdmissionFeature", "ReplicationFeature", "TasksFeature", "ScanningFeature",
                              "ConsoleFeature", "ImportFeature", "CacheFeature"]

# The client side of credentials (issue 17): the stored login and token client shared with the
# CLI, and the two executables built on it (kubelet credential provider, docker credential helper).
CREDENTIAL_TOOLS = {"BerthCredentials", "BerthCredentialProvider", "DockerCredentialBerth"}


@pytest.mark.parametrize("target", targets())
def test_only_the_sqlite_backend_imports_grdb(target):
    if target == "SQLiteStore":
        assert "GRDB" in imports(target)
    else:
        assert "GRDB" not in imports(target)


@pytest.mark.parametrize("target", targets())
def test_only_the_postgres_backend_imports_postgres_nio(target):
    if target == "PostgresStore":
        assert "PostgresNIO" in imports(target)
        # A backend knows the store protocols, never the core, HTTP or another backend.
        assert not (imports(target) & ({"RegistryCore", "HTTPAPI", "Access", "GRDB"} | BACKENDS)), imports(target)
    else:
        assert "PostgresNIO" not in imports(target)


def test_registry_core_imports_no_backend_feature_or_http():
    got = imports("RegistryCore")
    forbidden = BACKENDS | FEATURES | set(FEATURE_TARGETS) | {"Access", "HTTPAPI", "Hummingbird", "HummingbirdCore", "NIOHTTP1", "GRDB"}
    assert not (got & forbidden), got & forbidden


def test_store_protocols_import_no_database():
    assert imports("RegistryStore") <= {"Foundation", "OCIModel"}
    assert imports("BlobStorage") <= {"Foundation", "OCIModel", "NIOCore"}


def test_backends_are_named_only_by_the_composition_root():
    allowed = {"SQLiteStore": {"Backends", "BerthCLI", "SQLiteStore"},
               "PostgresStore": {"Backends", "PostgresStore"},
               "FileSystemStorage": {"Backends", "FileSystemStorage"},
               "S3Storage": {"Backends", "S3Storage"}}
    for backend, who in allowed.items():
        users = {t for t in targets() if backend in imports(t)} | ({backend} if (SOURCES / backend).is_dir() else set())
        assert users <= who, (backend, users - who)


def test_http_imports_no_feature():
    got = imports("HTTPAPI")
    assert not (got & (FEATURES | set(FEATURE_TARGETS))), got & (FEATURES | set(FEATURE_TARGETS))


def test_the_contract_imports_only_foundation():
    # The CLI and the server share it; it must not drag either's dependencies into the other.
    assert imports("BerthAPIContract") <= {"Foundation"}, imports("BerthAPIContract")


@pytest.mark.parametrize("target", targets())
def test_only_the_http_edge_and_the_cli_use_the_contract(target):
    # The domain keeps its records; HTTPAPI and the feature targets map them into the contract.
    if target not in {"HTTPAPI", "BerthCLI", "BerthAPIContract", "BerthCredentials"} | set(FEATURE_TARGETS):
        assert "BerthAPIContract" not in imports(target)


def test_pull_admission_knows_no_http_and_no_feature():
    # Features add their checks to the chain at composition; the chain names none of them.
    got = imports("Admission")
    forbidden = BACKENDS | FEATURES | set(FEATURE_TARGETS) | {"HTTPAPI", "Hummingbird", "HummingbirdCore", "NIOHTTP1", "GRDB"}
    assert not (got & forbidden), got & forbidden


def test_credential_tools_link_no_server_code():
    # They run on nodes and laptops: a client of the token endpoints, never the registry itself.
    system = {"Foundation", "Glibc", "Darwin"}
    assert imports("BerthCredentials") <= system | {"OCIModel", "BerthAPIContract", "AsyncHTTPClient", "NIOCore",
                                                    "NIOHTTP1", "NIOSSL"}, imports("BerthCredentials")
    for tool in ("BerthCredentialProvider", "DockerCredentialBerth"):
        assert imports(tool) <= system | {"BerthCredentials", "ArgumentParser"}, (tool, imports(tool))


def test_tasks_stay_pure_and_only_the_task_runner_starts_processes():
    # Tasks parses and plans (no I/O); TaskRunner is the one target that runs child processes.
    assert imports("Tasks") <= {"Foundation", "OCIModel", "Yams", "CYaml"}, imports("Tasks")
    assert imports("TaskRunner") <= {"Foundation", "Glibc", "OCIModel", "Tasks", "Subprocess", "SystemPackage"}, imports("TaskRunner")
    for target in targets():
        if target != "TaskRunner":
            assert not (imports(target) & {"Subprocess"}), target
        # The tasks feature (the server's seam: queue, run identity) is the one user of the runner.
        if target not in {"TaskRunner", "TasksFeature"}:
            assert "TaskRunner" not in imports(target), target


def test_the_tasks_feature_depends_only_on_what_it_is_allowed():
    # UpstreamClient: base images outside this registry are polled for a new digest (issue 16's
    # external base triggers) through the same outbound-checked client import and the cache use.
    allowed = {"Foundation", "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "Tasks", "TaskRunner", "UpstreamClient", "BerthAPIContract",
               "OCIModel", "Hummingbird", "HTTPTypes", "Logging", "NIOCore", "NIOPosix", "NIOConcurrencyHelpers",
               "ServiceLifecycle", "Crypto"}
    assert imports("TasksFeature") <= allowed, imports("TasksFeature") - allowed


def test_the_console_reads_through_the_core_and_access_only():
    # Server-rendered pages over the same core, store protocols and Access decision as /api/v1:
    # no backend, no other feature target, no second authorization path.
    allowed = {"Foundation", "HTTPAPI", "HTTPTypes", "Hummingbird", "Logging", "Mustache", "Crypto", "Access", "Admission",
               "BerthAPIContract", "OCIModel", "RegistryCore", "RegistryStore"}
    assert imports("ConsoleFeature") <= allowed, imports("ConsoleFeature") - allowed


def test_scanning_feature_reaches_the_stores_only_through_their_protocols():
    # Issue 15 on the server: the advisory database keeps its records through RegistryStore's
    # AdvisoryStore, downloads through Access's outbound policy; no backend, no other feature.
    # Its scan policy is a check of the pull-admission chain (Admission), like content trust's.
    allowed = {"Foundation", "HTTPAPI", "RegistryCore", "RegistryStore", "Scanning", "Access", "Admission", "BerthAPIContract",
               "OCIModel", "BlobStorage", "Hummingbird", "HTTPTypes", "AsyncHTTPClient", "Logging", "NIOCore", "NIOHTTP1",
               "ServiceLifecycle", "CompressNIO", "NIOConcurrencyHelpers"}
    assert imports("ScanningFeature") <= allowed, imports("ScanningFeature") - allowed


def test_the_upstream_client_is_a_client_only():
    # Issue 17: the client of untrusted upstream registries (import; next the pull-through cache
    # and replication). It knows no store, core or HTTP server; only features import it.
    assert imports("UpstreamClient") <= {"Foundation", "OCIModel", "Access", "AsyncHTTPClient", "NIOCore", "NIOHTTP1",
                                          "NIOConcurrencyHelpers"}, imports("UpstreamClient")
    for target in ("OCIModel", "RegistryStore", "RegistryCore", "Access", "Admission", "HTTPAPI") + tuple(BACKENDS):
        assert "UpstreamClient" not in imports(target), target


def test_the_cache_feature_reaches_upstreams_only_through_the_upstream_client():
    # Issue 17 item 2: the pull-through cache stores through the core (a push: quotas, locks,
    # events) and fetches only through UpstreamClient; no backend, no other feature, no HTTP client.
    allowed = {"Foundation", "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "OCIModel", "UpstreamClient", "BerthAPIContract",
               "Hummingbird", "Crypto", "Logging", "NIOCore", "NIOConcurrencyHelpers"}
    assert imports("CacheFeature") <= allowed, imports("CacheFeature") - allowed


def test_sqlite_store_never_waits_for_a_connection_on_a_cooperative_thread():
    # A synchronous GRDB `pool.read`/`pool.write` inside an async requirement blocks one of the few
    # cooperative threads until a connection is free; with every connection held by async work that
    # needs a cooperative thread to finish, the server deadlocks (seen at start on 2 cores). Every
    # access to the pool is awaited. `DatabaseMigrator.migrate` at open time is the exception.
    blocking = []
    for path in (SOURCES / "SQLiteStore").rglob("*.swift"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]
            for m in re.finditer(r"\bpool\.(\w+)\s*[({]", code):
                if m.group(1) in {"read", "write", "writeWithoutTransaction", "barrierWriteWithoutTransaction",
                                  "unsafeRead", "unsafeReentrantRead", "unsafeReentrantWrite", "uncheckedWrite"} \
                        and not re.search(r"\bawait\s+(?:self\.)?$", code[:m.start()]):
                    blocking.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert blocking == [], "\n".join(blocking)
