"""(berth only) docs/openapi.yaml against the server: the document is valid
OpenAPI, it describes exactly the routes the server's source dispatches
(``/api/v1`` and ``/oauth2``), each of those answers on a running ``berth
serve``, and what the server answers conforms to the document (schemathesis
over every operation with an owner token, plus hand-written calls validated
with jsonschema)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import jsonschema
import pytest
import requests
import yaml

from helpers import OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST

pytestmark = pytest.mark.berth_only

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
Route = Tuple[str, str]     # (METHOD, path with every parameter spelled "{}")


def load_spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def documented_routes(spec: dict) -> Set[Route]:
    out = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in METHODS:
                out.add((method.upper(), re.sub(r"\{[^}]*\}", "{}", path)))
    return out


# ---------------------------------------------------------------- routes from the source
#
# Routes outside /v2/ are registered on Hummingbird's router, in Sources/HTTPAPI and in the
# feature targets (any target under Sources/ but the CLI). The reader below finds every
# registration call and resolves its receiver (the router, a group, a feature's
# `routes.root`/`routes.management`), its path and its method. A registration it cannot read
# fails the test, so a route cannot slip by undocumented.

SOURCES = REPO_ROOT / "Sources"
# `FeatureRoutes` (Sources/HTTPAPI/Features.swift): `root` is the router, `management` the
# `/api/v1` group behind the management check.
FEATURE_ROUTES = {"root": "", "management": "/api/v1"}
# a call that registers a route: RECEIVER.get("path") { … }, RECEIVER.on(RouterPath(path), method: m) …
REGISTRATION = re.compile(r"(?<![\w.])((?:\w+\.)*\w+)\.(get|put|post|patch|delete|head|on)\(")
# `AllowedMethods` (HTTPAPI/Router.swift) mirrors the registered paths on a private router of its
# own to answer 405 with `Allow`: those calls add no route.
MIRRORS = {("HTTPAPI/Router.swift", "shape")}
# a local helper that registers (method, path) on a receiver: func route(_ method: HTTPRequest.Method, _ path: String …
HELPER = re.compile(r"func (\w+)\(_ method: HTTPRequest\.Method, _ path: String[^{]*\{\s*"
                    r"((?:\w+\.)*\w+)\.on\(RouterPath\(path\), method: method\)")


def swift_sources() -> Dict[str, str]:
    return {str(p.relative_to(SOURCES)): p.read_text() for p in sorted(SOURCES.rglob("*.swift"))
            if p.relative_to(SOURCES).parts[0] != "BerthCLI"}


def _closing(text: str, open_at: int, pair: str = "()") -> int:
    """Index of the bracket closing the one at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == pair[0]:
            depth += 1
        elif text[i] == pair[1]:
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def _loop_values(text: str, at: int, name: str):
    """The literal values of `for NAME in [ … ] {` enclosing position `at`, or None."""
    for m in reversed(list(re.finditer(r"for " + name + r" in \[", text[:at]))):
        close = _closing(text, m.end() - 1, "[]")
        brace = text.find("{", close)
        if brace < 0 or _closing(text, brace, "{}") < at:
            continue
        items = text[m.end():close]
        strings = re.findall(r'"([^"\\]*)"', items)
        methods = re.findall(r"(?:HTTPRequest\.Method)?\.(\w+)", items)
        return strings or methods
    return None


def _prefixes(files: Dict[str, str]) -> Dict[str, Dict[str, str]]:
    """Per file, what each receiver name is: the path prefix its routes get."""
    scopes: Dict[str, Dict[str, str]] = {name: {} for name in files}
    conflicts = []

    def bind(file, name, prefix):
        known = scopes[file].get(name)
        if known is not None and known != prefix:
            conflicts.append((file, name, known, prefix))
        scopes[file][name] = prefix

    def resolve(file, receiver):
        first, _, rest = receiver.partition(".")
        if rest in FEATURE_ROUTES and scopes[file].get(first) == "<FeatureRoutes>":
            return FEATURE_ROUTES[rest]
        return scopes[file].get(receiver)

    for _ in range(4):          # groups of groups, parameters bound at call sites in other files
        for file, text in files.items():
            for name in re.findall(r"let (\w+) = Router\(", text):
                bind(file, name, "")
            for name in re.findall(r"\b(\w+): Router<\w+>", text):
                bind(file, name, "")
            for name in re.findall(r"\b(\w+): FeatureRoutes\b", text):
                bind(file, name, "<FeatureRoutes>")
            for name, base, path in re.findall(r'let (\w+) = ((?:\w+\.)*\w+)\.group\("([^"]*)"\)', text):
                if resolve(file, base) is not None:
                    bind(file, name, resolve(file, base).rstrip("/") + "/" + path.strip("/"))
            for name, base in re.findall(r"let (\w+) = ((?:\w+\.)*\w+)\s*$", text, re.M):
                if resolve(file, base) is not None:
                    bind(file, name, resolve(file, base))
            # func addThing(to managed: RouterGroup<Context> …): what its callers pass
            for func, param in re.findall(r"func (\w+)\(to (\w+): RouterGroup<\w+>", text):
                for caller, caller_text in files.items():
                    for argument in re.findall(r"(?<![\w.])" + func + r"\(to: ((?:\w+\.)*\w+)", caller_text):
                        if resolve(caller, argument) is not None:
                            bind(file, param, resolve(caller, argument))
    assert not conflicts, f"a router receiver name means two prefixes in one file: {conflicts}"
    for file in files:
        scopes[file] = {k: v for k, v in scopes[file].items() if v != "<FeatureRoutes>"} | {
            f"{k}.{field}": prefix for k, v in scopes[file].items() if v == "<FeatureRoutes>"
            for field, prefix in FEATURE_ROUTES.items()}
    return scopes


def source_routes(files: Dict[str, str] | None = None) -> Set[Route]:
    """Every (method, path) the server's router answers under /api/v1 and /oauth2, read from the
    registrations in Sources/ (HTTPAPI and the feature targets). A registration whose receiver,
    path or method this reader cannot tell fails, so a new route cannot slip by undocumented."""
    files = swift_sources() if files is None else files
    scopes = _prefixes(files)
    routes: Set[Route] = set()
    unknown: List[str] = []

    def add(file, prefix, path, method, where):
        if path is None or prefix is None or "\\(" in path:
            unknown.append(where)
            return
        full = (prefix.rstrip("/") + "/" + path.strip("/")).rstrip("/") or "/"
        if not (full.startswith("/api/v1/") or full.startswith("/oauth2/")):
            return                                            # probes, metrics, admission: not in the document
        if method is None:
            unknown.append(where)
            return
        routes.add((method.upper(), re.sub(r"/:[\w]+", "/{}", full)))

    for file, text in files.items():
        helpers = {m.group(1): (m.group(2), m.start(), m.end()) for m in HELPER.finditer(text)}
        for m in REGISTRATION.finditer(text):
            receiver, verb = m.groups()
            if (file, receiver) in MIRRORS:
                continue
            if any(start <= m.start() < end for _, start, end in helpers.values()):
                continue                                      # the helper's own call: its callers below
            args = text[m.end():_closing(text, m.end() - 1)]
            line = text[:m.start()].count("\n") + 1
            where = f"{file}:{line}: {text[m.start():m.end() + len(args) + 1][:120]}"
            prefix = scopes[file].get(receiver)
            if prefix is None:
                # `result.get()`, `blobs.delete(digest)`: not a route, unless it has a route's shape
                # (a path literal, `RouterPath`, `method:`/`use:`, or a (request, context) handler).
                handler = re.match(r"\s*\{\s*(?:\w+|_)\s*,\s*(?:\w+|_)\s+in\b", text[m.end() + len(args) + 1:])
                if re.match(r'\s*(?:"|RouterPath\()', args) or re.search(r"\b(?:method|use):", args) or handler:
                    unknown.append(where + "  (receiver not known to be the router or a group)")
                continue
            first = re.match(r'\s*(?:RouterPath\()?(?:"([^"]*)"|(\w+))', args)
            if first and first.group(1) is not None:
                paths: List[str | None] = [first.group(1)]
            elif first and first.group(2):
                paths = _loop_values(text, m.start(), first.group(2)) or [None]
            else:
                paths = [None]
            if verb != "on":
                methods: List[str | None] = [verb]
            elif named := re.search(r"method: (?:HTTPRequest\.Method)?\.(\w+)\s*$", args):
                methods = [named.group(1)]
            elif variable := re.search(r"method: (\w+)\s*$", args):
                methods = _loop_values(text, m.start(), variable.group(1)) or [None]
            else:
                methods = [None]
            for path in paths:
                for method in methods:
                    add(file, prefix, path, method, where)
        for helper, (receiver, _, _) in helpers.items():
            prefix = scopes[file].get(receiver)
            for call in re.finditer(r"(?<![\w.])" + helper + r"\(", text):
                if any(start <= call.start() < end for _, start, end in helpers.values()):
                    continue                                  # the helper's declaration
                args = text[call.end():_closing(text, call.end() - 1)]
                line = text[:call.start()].count("\n") + 1
                where = f"{file}:{line}: {helper}({args[:100]}"
                parsed = re.match(r'\.(\w+), "([^"]*)"', args)
                if prefix is None or not parsed:
                    unknown.append(where)
                    continue
                add(file, prefix, parsed.group(2), parsed.group(1), where)

    assert not unknown, ("route registrations test_openapi.py cannot read (teach source_routes, "
                         "and document the route in docs/openapi.yaml):\n" + "\n".join(unknown))
    return routes


def test_route_reader_reads_every_registration_form_and_refuses_the_rest():
    files = {
        "HTTPAPI/Router.swift": """
            let router = Router(context: Context.self)
            for method in [HTTPRequest.Method.get, .head] {
                router.on("healthz", method: method) { _, _ in ok }
            }
            router.post("oauth2/token") { r, c in x }
            let management = responder.addManagementRoutes(to: router, gate: gate)
        """,
        "HTTPAPI/Management.swift": """
            func addManagementRoutes(to router: Router<Context>, gate: AuthGate) -> RouterGroup<Context> {
                let api = router.group("api/v1")
                api.get("repository", use: repository)
                api.on(RouterPath("usage"), method: .get) { r, c in x }
                let managed = router.group("api/v1").add(middleware: ManagementCheck(gate: gate))
                addMore(to: managed)
            }
            func addMore(to managed: RouterGroup<Context>) {
                func route(_ method: HTTPRequest.Method, _ path: String, _ h: Handler) {
                    managed.on(RouterPath(path), method: method) { r, c in try await h(r, c) }
                }
                route(.delete, "quotas/:name") { _, _ in x }
                managed.put("scope-maps/:name") { _, _ in x }
            }
        """,
        "SomeFeature/Feature.swift": """
            public func addRoutes(to routes: FeatureRoutes) {
                let api = routes.management
                api.post("things/:name/ping") { _, _ in x }
                for path in ["admission/v1/validate"] {
                    for method in [HTTPRequest.Method.post, .get] {
                        routes.root.on(RouterPath(path), method: method) { r, c in x }
                    }
                }
                routes.root.get("api/v1/elsewhere") { _, _ in x }
            }
        """,
    }
    assert source_routes(files) == {
        ("POST", "/oauth2/token"), ("GET", "/api/v1/repository"), ("GET", "/api/v1/usage"),
        ("DELETE", "/api/v1/quotas/{}"), ("PUT", "/api/v1/scope-maps/{}"), ("POST", "/api/v1/things/{}/ping"),
        ("GET", "/api/v1/elsewhere")}
    for unreadable in ['somewhere.get("api/v1/x") { _, _ in x }',                       # unknown receiver
                       'routes.management.on(RouterPath(dynamic), method: .get) { _, _ in x }',
                       'routes.management.on("x", method: pick()) { _, _ in x }',
                       'routes.management.post("consumers/\\(verb)") { _, _ in x }']:
        broken = dict(files)
        broken["SomeFeature/Feature.swift"] = files["SomeFeature/Feature.swift"].replace(
            "let api = routes.management", "let api = routes.management\n" + unreadable)
        with pytest.raises(AssertionError, match="cannot read"):
            source_routes(broken)


def test_document_is_valid_openapi():
    from openapi_spec_validator import validate
    spec = load_spec()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    import schemathesis
    schema = schemathesis.openapi.from_dict(spec)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == len(documented_routes(spec))
    # every operation says what it answers and has a unique id
    ids = [op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))


def test_document_describes_exactly_the_source_routes():
    spec = load_spec()
    documented = documented_routes(spec)
    served = source_routes()
    assert len(served) > 60, sorted(served)      # the parser found the dispatch tables
    assert sorted(served - documented) == [], "routes the server answers that docs/openapi.yaml does not describe"
    assert sorted(documented - served) == [], "routes docs/openapi.yaml describes that the server does not dispatch"
    # nothing under /api/v1 is dispatched from anywhere else in the sources
    for swift in (REPO_ROOT / "Sources").rglob("*.swift"):
        if "BerthCLI" in swift.parts:
            continue
        for literal in re.findall(r'"(/api/v1/[^"\\]*)"', swift.read_text()):
            known = {p for _, p in documented} | {"/api/v1/", "/api/v1/repository/"}
            assert literal in known, f"{swift}: {literal} is not a documented path"


# ---------------------------------------------------------------- the document against the contract
#
# Sources/BerthAPIContract holds every /api/v1 body the server encodes and the CLI decodes.
# Each JSON body the document describes names its contract type below; the test compares the
# schema's properties (and which are required) with the type's stored properties, following
# nested objects. A new operation, a renamed or added field on either side, fails here.

CONTRACT = REPO_ROOT / "Sources" / "BerthAPIContract"
# (METHOD, path) -> (request body type, 2xx answer type); None: no JSON body.
CONTRACT_BODIES: Dict[Route, Tuple[object, object]] = {
    ("GET", "/api/v1/registry"): (None, "RegistrySettingsView"),
    ("PATCH", "/api/v1/registry"): ("RegistrySettingsRequest", "RegistrySettingsView"),
    ("POST", "/api/v1/registry/admin-credentials"): ("CredentialRequest", "SecretResponse"),
    ("POST", "/api/v1/keys/rotate"): (None, "KeyRotation"),
    ("GET", "/api/v1/identities"): (None, ["IdentityView"]),
    ("POST", "/api/v1/identities"): ("IdentityRequest", "IdentityCreated"),
    ("GET", "/api/v1/identities/{}"): (None, "IdentityView"),
    ("PATCH", "/api/v1/identities/{}"): ("IdentityRequest", "IdentityView"),
    ("POST", "/api/v1/identities/{}/password"): (None, "SecretResponse"),
    ("POST", "/api/v1/identities/{}/federated-credentials"): ("FederatedCredentialRequest", "IdentityView"),
    ("GET", "/api/v1/role-assignments"): (None, ["RoleAssignmentView"]),
    ("POST", "/api/v1/role-assignments"): ("RoleAssignmentView", "RoleAssignmentView"),
    ("GET", "/api/v1/scope-maps"): (None, ["ScopeMapView"]),
    ("POST", "/api/v1/scope-maps"): ("ScopeMapRequest", "ScopeMapView"),
    ("GET", "/api/v1/scope-maps/{}"): (None, "ScopeMapView"),
    ("PUT", "/api/v1/scope-maps/{}"): ("ScopeMapRequest", "ScopeMapView"),
    ("GET", "/api/v1/tokens"): (None, ["TokenView"]),
    ("POST", "/api/v1/tokens"): ("TokenRequest", "TokenCreated"),
    ("GET", "/api/v1/tokens/{}"): (None, "TokenView"),
    ("PATCH", "/api/v1/tokens/{}"): ("TokenRequest", "TokenView"),
    ("POST", "/api/v1/tokens/{}/credentials"): ("CredentialRequest", "SecretResponse"),
    ("GET", "/api/v1/network-rules"): (None, ["String"]),
    ("POST", "/api/v1/network-rules"): ("NetworkRuleRequest", ["String"]),
    ("DELETE", "/api/v1/network-rules"): (None, ["String"]),
    ("GET", "/api/v1/webhooks"): (None, ["WebhookView"]),
    ("POST", "/api/v1/webhooks"): ("WebhookRequest", "WebhookCreated"),
    ("GET", "/api/v1/webhooks/{}"): (None, "WebhookView"),
    ("PATCH", "/api/v1/webhooks/{}"): ("WebhookRequest", "WebhookView"),
    ("POST", "/api/v1/webhooks/{}/ping"): (None, "WebhookDeliveryView"),
    ("GET", "/api/v1/webhooks/{}/events"): (None, ["WebhookDeliveryView"]),
    ("GET", "/api/v1/replications"): (None, ["ReplicaView"]),
    ("POST", "/api/v1/replications"): ("ReplicationRequest", "ReplicaView"),
    ("GET", "/api/v1/replications/{}"): (None, "ReplicaView"),
    ("PATCH", "/api/v1/replications/{}"): ("ReplicationRequest", "ReplicaView"),
    ("GET", "/api/v1/replications/{}/status"): (None, "ReplicaStatusView"),
    ("GET", "/api/v1/cache-rules"): (None, ["CacheRuleView"]),
    ("POST", "/api/v1/cache-rules"): ("CacheRuleRequest", "CacheRuleView"),
    ("GET", "/api/v1/cache-rules/{}"): (None, "CacheRuleView"),
    ("PATCH", "/api/v1/cache-rules/{}"): ("CacheRuleRequest", "CacheRuleView"),
    ("GET", "/api/v1/credential-sets"): (None, ["CredentialSetView"]),
    ("POST", "/api/v1/credential-sets"): ("CredentialSetRequest", "CredentialSetView"),
    ("GET", "/api/v1/credential-sets/{}"): (None, "CredentialSetView"),
    ("PATCH", "/api/v1/credential-sets/{}"): ("CredentialSetRequest", "CredentialSetView"),
    ("GET", "/api/v1/replication/events"): (None, "ReplicationEventPage"),
    ("GET", "/api/v1/replication/conflicts"): (None, ["ReplicationConflictView"]),
    ("GET", "/api/v1/replication/settings/{}"): (None, "ReplicatedSettingView"),
    ("GET", "/api/v1/replication/health"): (None, "ReplicationHealthView"),
    ("GET", "/api/v1/replication/data-key"): (None, "DataEndpointKeyView"),
    ("GET", "/api/v1/replication/access/{}/{}"): (None, "ReplicatedAccessRecordView"),
    ("GET", "/api/v1/replication/token-keys"): (None, "ReplicationTokenKeysView"),
    ("GET", "/api/v1/tasks"): (None, ["TaskView"]),
    ("POST", "/api/v1/tasks"): ("TaskRequest", "TaskView"),
    ("GET", "/api/v1/tasks/{}"): (None, "TaskView"),
    ("PATCH", "/api/v1/tasks/{}"): ("TaskRequest", "TaskView"),
    ("GET", "/api/v1/tasks/{}/runs"): (None, ["TaskRunView"]),
    ("POST", "/api/v1/tasks/{}/runs"): (None, "TaskRunView"),
    ("GET", "/api/v1/tasks/{}/runs/{}"): (None, "TaskRunView"),
    ("POST", "/api/v1/tasks/{}/runs/{}/cancel"): (None, "TaskRunView"),
    ("POST", "/api/v1/tasks/{}/git-webhook"): ("GitPushPayload", "GitWebhookAnswer"),
    ("POST", "/api/v1/imports"): ("ImportRequest", "ImportView"),
    ("GET", "/api/v1/imports/{}"): (None, "ImportView"),
    ("GET", "/api/v1/quarantine"): (None, "QuarantinePolicyView"),
    ("PATCH", "/api/v1/quarantine"): ("QuarantinePolicyRequest", "QuarantineChangeView"),
    ("PATCH", "/api/v1/quarantine/manifests"): ("QuarantineStateRequest", "QuarantineVerdictView"),
    ("GET", "/api/v1/content-trust"): (None, "ContentTrustView"),
    ("PUT", "/api/v1/content-trust"): ("ContentTrustView", "ContentTrustView"),
    ("GET", "/api/v1/audit"): (None, ["AuditEntry"]),
    ("GET", "/api/v1/config/retention"): (None, "RetentionView"),
    ("PATCH", "/api/v1/config/retention"): ("StatusDaysRequest", "RetentionView"),
    ("POST", "/api/v1/config/retention/run"): (None, "LifecycleReportView"),
    ("GET", "/api/v1/config/soft-delete"): (None, "SoftDeleteView"),
    ("PATCH", "/api/v1/config/soft-delete"): ("StatusDaysRequest", "SoftDeleteView"),
    ("GET", "/api/v1/config/gc"): (None, "GCPolicyView"),
    ("PATCH", "/api/v1/config/gc"): ("GCPolicyRequest", "GCPolicyView"),
    ("GET", "/api/v1/quotas"): (None, ["QuotaView"]),
    ("POST", "/api/v1/quotas"): ("QuotaRequest", "QuotaView"),
    ("POST", "/api/v1/purge"): ("PurgeRequest", "LifecycleReportView"),
    ("GET", "/api/v1/purge/schedules"): (None, ["PurgeScheduleView"]),
    ("POST", "/api/v1/purge/schedules"): ("ScheduleRequest", "PurgeScheduleView"),
    ("GET", "/api/v1/lifecycle/runs"): (None, ["LifecycleRunView"]),
    ("POST", "/api/v1/gc"): ("DryRunRequest", "GarbageCollectionReportView"),
    ("GET", "/api/v1/event-consumers"): (None, ["EventConsumerView"]),
    ("GET", "/api/v1/leases"): (None, ["LeaseView"]),
    ("POST", "/api/v1/event-consumers/{}/pause"): (None, "EventConsumerView"),
    ("POST", "/api/v1/event-consumers/{}/resume"): (None, "EventConsumerView"),
    ("GET", "/api/v1/usage"): (None, "UsageView"),
    ("GET", "/api/v1/scans/inventory"): (None, "ScanInventoryView"),
    ("GET", "/api/v1/scans/findings"): (None, "ScanFindingsView"),
    ("GET", "/api/v1/scans"): (None, "ScanListView"),
    ("GET", "/api/v1/scan/policy"): (None, "ScanPolicyView"),
    ("PATCH", "/api/v1/scan/policy"): ("ScanPolicyUpdateRequest", "ScanPolicyView"),
    ("GET", "/api/v1/scans/sbom"): (None, "ScanSBOMDocumentView"),
    ("POST", "/api/v1/scans/vex"): (None, "ScanVEXImportView"),
    ("GET", "/api/v1/repositories"): (None, ["RepositoryDetailView"]),
    ("GET", "/api/v1/repository"): (None, "RepositoryDetailView"),
    ("PATCH", "/api/v1/repository"): ("LockRequest", "LockView"),
    ("DELETE", "/api/v1/repository"): (None, "LifecycleReportView"),
    ("GET", "/api/v1/repository/tags"): (None, ["TagDetailView"]),
    ("GET", "/api/v1/repository/manifests"): (None, ["ManifestDetailView"]),
    ("GET", "/api/v1/repository/deleted"): (None, ["DeletedManifestView"]),
    ("POST", "/api/v1/repository/restore"): ("RestoreRequest", "RestoreResponse"),
    ("GET", "/api/v1/scan/db"): (None, "AdvisoryDatabaseView"),
    ("POST", "/api/v1/scan/db/import"): (None, "AdvisoryImportView"),
    ("POST", "/api/v1/scan/db/update"): (None, "AdvisoryUpdateView"),
}
SCALARS = {"String", "Bool", "Int", "Int64", "Double", "Date"}


def contract_types() -> Dict[str, object]:
    """Every type of the contract: a struct as {property: (swift type, optional)}, an enum whose
    cases carry a type (a `oneOf`) as the list of those types."""
    out: Dict[str, object] = {}
    for source in sorted(CONTRACT.glob("*.swift")):
        lines = source.read_text().splitlines()
        stack: List[Tuple[int, str]] = []       # (indent, name) of the types we are inside
        for line in lines:
            indent = len(line) - len(line.lstrip(" "))
            while stack and indent <= stack[-1][0] and line.strip().startswith("}"):
                if indent == stack[-1][0]:
                    stack.pop()
                break
            m = re.match(r"\s*public (struct|enum) (\w+)", line)
            if m:
                name = ".".join([n for _, n in stack] + [m.group(2)])
                out[name] = {} if m.group(1) == "struct" else []
                stack.append((indent, name))
                continue
            if not stack:
                continue
            owner = stack[-1][1]
            prop = re.match(r"\s*public (?:var|let) (\w+): ([\w\[\]: ?.]+?)\s*(?:=.*)?$", line)
            if prop and indent == stack[-1][0] + 4 and isinstance(out[owner], dict):
                swift = prop.group(2).strip()
                out[owner][prop.group(1)] = (swift.rstrip("?"), swift.endswith("?"))
            case = re.match(r"\s*case \w+\((\w+)\)", line)
            if case and isinstance(out[owner], list):
                out[owner].append(case.group(1))
    return out


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target: object = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target       # type: ignore[assignment]
    return node


def _json_body(spec: dict, holder: dict):
    content = (_resolve(spec, holder).get("content") or {}).get("application/json")
    return None if content is None else _resolve(spec, content["schema"])


def _compare(spec: dict, types: Dict[str, object], schema: dict, swift, where: str, problems: List[str],
             request: bool = False, seen: Optional[Set[Tuple[int, str, bool]]] = None):
    """An answer's schema must have exactly the type's properties. A request type may serve
    several operations (a POST and its PATCH), so a request's schema may name fewer; but every
    property the type cannot do without must be required there. A type that holds itself (a
    key's previous keys) is compared once per schema."""
    seen = set() if seen is None else seen
    schema = _resolve(spec, schema)
    if isinstance(swift, list):                      # an array of the one type inside
        if schema.get("type") != "array":
            problems.append(f"{where}: the document has {schema.get('type')}, the contract an array")
            return
        return _compare(spec, types, schema["items"], swift[0], where + "[]", problems, request, seen)
    if swift.startswith("[") and swift.endswith("]") and ":" not in swift:
        return _compare(spec, types, schema, [swift[1:-1]], where, problems, request, seen)
    if swift.startswith("[String:"):                 # a map: values compared
        if schema.get("type") != "object":
            problems.append(f"{where}: the document has {schema.get('type')}, the contract a map")
        elif isinstance(schema.get("additionalProperties"), dict):
            _compare(spec, types, schema["additionalProperties"], swift[len("[String:"):-1].strip(), where + "{}", problems,
                     request, seen)
        return
    if swift in SCALARS:
        return
    shape = types.get(swift)
    if shape is None:
        problems.append(f"{where}: {swift} is not a type of BerthAPIContract")
        return
    if isinstance(shape, list):                      # oneOf: each alternative in order
        alternatives = schema.get("oneOf") or []
        if len(alternatives) != len(shape):
            problems.append(f"{where}: the document has {len(alternatives)} alternatives, {swift} {len(shape)}")
        for alternative, case in zip(alternatives, shape):
            _compare(spec, types, alternative, case, f"{where}|{case}", problems, request, seen)
        return
    if (id(schema), swift, request) in seen:
        return
    seen.add((id(schema), swift, request))
    properties = schema.get("properties") or {}
    if (not set(properties) <= set(shape)) if request else set(properties) != set(shape):
        problems.append(f"{where}: the document's {sorted(properties)} against {swift}'s {sorted(shape)}")
        return
    required = set(schema.get("required") or [])
    for name, (inner, optional) in shape.items():
        if name not in properties:
            if not optional and (swift, name) not in DEFAULTED:
                problems.append(f"{where}.{name}: {swift} needs it, the document does not name it")
            continue
        if name in required and optional and not request and swift not in ALWAYS_ENCODED:
            problems.append(f"{where}.{name}: required in the document, optional in {swift}")
        if name not in required and not optional and (request or "required" in schema):
            problems.append(f"{where}.{name}: always in {swift}, not required in the document")
        element = inner[1:-1] if inner.startswith("[") and ":" not in inner else None
        if element is not None:
            nested = f"[{swift}.{element}]" if f"{swift}.{element}" in types else inner
        else:
            nested = f"{swift}.{inner}" if f"{swift}.{inner}" in types else inner
        if nested in types or nested.startswith("["):
            _compare(spec, types, properties[name], nested, f"{where}.{name}", problems, request, seen)


# Request fields that decode to a default when absent (a PATCH names the identity in its path).
DEFAULTED = {("IdentityRequest", "name")}
# Contract types that write their optionals as null rather than leaving them out.
ALWAYS_ENCODED = {"LifecycleReportView", "GarbageCollectionReportView"}


def test_every_body_the_document_describes_is_a_contract_type_of_the_same_shape():
    spec = load_spec()
    types = contract_types()
    assert {"IdentityView", "LifecycleRunView", "ManagementErrorBody.Item"} <= set(types), sorted(types)
    problems: List[str] = []
    for path, item in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in item.items():
            if method not in METHODS:
                continue
            route = (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
            request = _json_body(spec, op["requestBody"]) if "requestBody" in op else None
            answers = [_json_body(spec, r) for code, r in op["responses"].items() if str(code).startswith("2")]
            answer = next((a for a in answers if a is not None), None)
            if request is None and answer is None:
                assert route not in CONTRACT_BODIES, f"{route} has no JSON body in the document"
                continue
            assert route in CONTRACT_BODIES, f"{route}: name its contract types in CONTRACT_BODIES"
            request_type, answer_type = CONTRACT_BODIES[route]
            assert (request is None) == (request_type is None), f"{route}: request body"
            assert (answer is None) == (answer_type is None), f"{route}: answer body"
            if request is not None:
                _compare(spec, types, request, request_type, f"{route} request", problems, request=True)
            if answer is not None:
                _compare(spec, types, answer, answer_type, f"{route} answer", problems)
    # the error envelopes
    _compare(spec, types, spec["components"]["schemas"]["ManagementError"], "ManagementErrorBody", "ManagementError", problems)
    _compare(spec, types, spec["components"]["schemas"]["RegistryErrors"], "OCIErrorBody", "RegistryErrors", problems)
    assert problems == [], "\n".join(problems)

# ---------------------------------------------------------------- against a running server

def owner_token(registry) -> str:
    r = requests.post(f"{registry.base}/oauth2/token", timeout=30, data={
        "grant_type": "password", "username": registry.username, "password": registry.password,
        "scope": "registry:management:*"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _probe_path(path: str) -> str:
    return path.replace("{}", "openapi-probe")


def _is_no_route(r: requests.Response) -> bool:
    """The server's answer for a path or method it does not dispatch (as opposed to a
    404 for a named thing that does not exist)."""
    if r.status_code == 405:
        return True
    if r.status_code != 404:
        return False
    body = r.json()
    message = body.get("error", {}).get("message") or (body.get("errors") or [{}])[0].get("message", "")
    return message.startswith("no such") or message == "not found"


def test_every_documented_operation_answers_and_no_other_method_does(registry):
    spec = load_spec()
    auth = {"Authorization": f"Bearer {owner_token(registry)}"}
    documented = documented_routes(spec)
    query = {"name": "openapi/probe", "tag": "latest", "ipAddress": "192.0.2.1", "assignee": "nobody",
             "role": "Pull", "scope": "*"}
    for path in sorted({p for _, p in documented}):
        for method in ("GET", "PUT", "POST", "PATCH", "DELETE"):
            r = requests.request(method, registry.base + _probe_path(path), headers=auth, params=query,
                                 data="{}" if method in ("PUT", "POST", "PATCH") else None, timeout=30)
            assert r.status_code < 500, (method, path, r.status_code, r.text)
            if (method, path) in documented:
                assert not _is_no_route(r), (method, path, r.status_code, r.text)
            else:
                assert _is_no_route(r), ("undocumented but answered", method, path, r.status_code, r.text)
            if r.status_code == 405:
                # a served path: the methods it takes are the documented ones
                allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
                assert allow == {m for m, p in documented if p == path}, (method, path, r.headers.get("Allow"))


def test_schemathesis_responses_conform(registry):
    """Every operation, with a bounded number of inputs (the document's examples, then valid
    and invalid generated ones; derandomized, so a run is reproducible): no 5xx, only
    documented status codes and content types, and bodies that match their schemas."""
    import schemathesis
    from schemathesis import GenerationMode
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    spec = load_spec()
    token = owner_token(registry)
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/oauth2/"):
            headers = {}            # the token service takes its credentials in the request
        else:
            headers = {"Authorization": f"Bearer {token}"}

        # the document's examples once each (they reach the success paths), then generated cases
        runs = [(s, 1) for s in operation.get_strategies_from_examples()]
        runs += [(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), 2), (operation.as_strategy(), 3)]
        for strategy, examples in runs:
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
            @given(case=strategy)
            def run(case):
                case.call_and_validate(base_url=registry.base, session=session, headers=headers, checks=checks,
                                       timeout=30)

            try:
                run()
            except (Exception, BaseExceptionGroup) as e:      # collect all, report once
                failures.append(f"{operation.method.upper()} {operation.path}: {e}")
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------- hand-written calls, validated

class Contract:
    """Validates one response against what docs/openapi.yaml says of that operation and status:
    the status is documented, the body is JSON without a repeated key, of the documented
    content type, matching the schema (jsonschema, draft 2020-12, formats checked), and the
    documented required headers are present."""

    BASE = "urn:berth:openapi"

    def __init__(self, spec: dict):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        self.spec = spec
        self.registry = Registry().with_resource(self.BASE, Resource.from_contents(spec, default_specification=DRAFT202012))

    @staticmethod
    def _escape(token: str) -> str:
        return token.replace("~", "~0").replace("/", "~1")

    def check(self, method: str, template: str, r: requests.Response):
        op = self.spec["paths"][template][method.lower()]
        status = str(r.status_code)
        assert status in op["responses"], f"{method} {template}: undocumented status {status}: {r.text[:300]}"
        declared = op["responses"][status]
        pointer = "/paths/" + self._escape(template) + f"/{method.lower()}/responses/{status}"
        if "$ref" in declared:
            pointer = declared["$ref"][1:]
            declared = self.spec["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        for name, header in (declared.get("headers") or {}).items():
            if header.get("required"):
                assert r.headers.get(name), f"{method} {template} {status}: no {name} header"
        if "content" not in declared:
            assert r.content == b"", f"{method} {template} {status}: a body where none is documented"
            return None
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
        body = json.loads(r.text, object_pairs_hook=_no_repeated_keys)
        schema = {"$ref": f"{self.BASE}#{pointer}/content/{self._escape('application/json')}/schema"}
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry,
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {template} {status}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
        return body


def _no_repeated_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a JSON object repeats a key: {keys}"
    return dict(pairs)


def _image(api, repo: str, tag: str, content: bytes) -> str:
    """Pushes a one-layer OCI image and returns its manifest digest."""
    config = api.push_blob(repo, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    layer = api.push_blob(repo, content)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 77},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer, "size": len(content)}],
    }).encode()
    r = api.put_manifest(repo, tag, manifest)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


@pytest.fixture
def hook_receiver():
    """A loopback endpoint that answers every POST 200, for webhook pings."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.server_env(BERTH_OUTBOUND_ALLOW="127.0.0.1/32")
def test_hand_written_calls_match_the_document(registry, hook_receiver):
    from helpers import Api
    contract = Contract(load_spec())
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {owner_token(registry)}"
    base = registry.base

    def call(method, template, path=None, expect=None, **kw):
        r = s.request(method, base + (path or template), timeout=30, **kw)
        body = contract.check(method, template, r)
        if expect is not None:
            assert r.status_code == expect, (method, path or template, r.status_code, r.text)
        return body

    api = Api(registry.host, auth=registry.creds)
    repo = "openapi/demo"
    first = _image(api, repo, "v1", b"layer one")
    second = _image(api, repo, "v2", b"layer two")
    q = {"name": repo}

    # token service: Basic → access + refresh token; the refresh grant
    r = requests.get(base + "/oauth2/token", auth=registry.creds, timeout=30,
                     params={"scope": "registry:management:*", "offline_token": "true"})
    issued = contract.check("GET", "/oauth2/token", r)
    assert r.status_code == 200 and issued["refresh_token"]
    r = requests.post(base + "/oauth2/token", timeout=30,
                      data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert r.status_code == 200 and contract.check("POST", "/oauth2/token", r)["access_token"]

    # settings, identities, roles, scope maps, tokens, network rules
    assert call("GET", "/api/v1/registry", expect=200)["anonymousPullEnabled"] is False
    assert call("POST", "/api/v1/registry/admin-credentials", json={"name": "password1", "expiresInDays": 7},
                expect=201)["name"] == "password1"
    assert call("GET", "/api/v1/registry", expect=200)["adminPasswords"][0]["expiry"]
    created = call("POST", "/api/v1/identities", json={"name": "ci-bot", "kind": "service-principal"}, expect=201)
    assert created["password"] and created["identity"]["hasPassword"]
    call("POST", "/api/v1/identities/{name}/federated-credentials", "/api/v1/identities/ci-bot/federated-credentials",
         json={"name": "main", "issuer": "https://issuer.example.com", "subject": "repo:acme/app", "audiences": ["berth"]},
         expect=201)
    call("POST", "/api/v1/role-assignments", json={"assignee": "ci-bot", "role": "Push", "scope": "openapi/*"}, expect=201)
    bot = call("GET", "/api/v1/identities/{name}", "/api/v1/identities/ci-bot", expect=200)
    assert bot["roles"] == [{"assignee": "ci-bot", "role": "Push", "scope": "openapi/*"}]
    assert bot["federatedCredentials"][0]["name"] == "main"
    call("PATCH", "/api/v1/identities/{name}", "/api/v1/identities/ci-bot", json={"trustedService": True}, expect=200)
    call("POST", "/api/v1/identities/{name}/password", "/api/v1/identities/ci-bot/password", expect=201)
    call("GET", "/api/v1/role-assignments", expect=200)
    call("POST", "/api/v1/scope-maps", json={"name": "demo-pull", "description": "pull the demo",
                                             "entries": [{"repository": repo, "actions": ["content/read"]}]}, expect=201)
    call("PUT", "/api/v1/scope-maps/{name}", "/api/v1/scope-maps/demo-pull",
         json={"entries": [{"repository": repo, "actions": ["content/read", "metadata/read"]}]}, expect=200)
    assert call("GET", "/api/v1/scope-maps/{name}", "/api/v1/scope-maps/_repositories_pull", expect=200)["builtIn"]
    token = call("POST", "/api/v1/tokens", json={"name": "puller", "scopeMap": "demo-pull"}, expect=201)
    assert set(token["credentials"]) == {"password1", "password2"}
    call("POST", "/api/v1/tokens/{name}/credentials", "/api/v1/tokens/puller/credentials",
         json={"name": "password2", "expiresInDays": 30}, expect=201)
    call("PATCH", "/api/v1/tokens/{name}", "/api/v1/tokens/puller", json={"status": "disabled"}, expect=200)
    assert call("GET", "/api/v1/tokens", expect=200)[0]["status"] == "disabled"
    assert call("POST", "/api/v1/network-rules", json={"ipAddress": "10.0.0.0/8"}, expect=201) == ["10.0.0.0/8"]
    call("DELETE", "/api/v1/network-rules", params={"ipAddress": "10.0.0.0/8"}, expect=200)

    # webhooks: create (the secret once), ping a live receiver, its deliveries
    hook = call("POST", "/api/v1/webhooks", json={"name": "ci", "uri": hook_receiver, "actions": ["push"],
                                                  "scope": "openapi/*:*", "headers": {"X-Token": "s3cret"}}, expect=201)
    assert hook["secret"] and hook["webhook"]["headers"] == {"X-Token": "***"}
    assert call("POST", "/api/v1/webhooks/{name}/ping", "/api/v1/webhooks/ci/ping", expect=200)["statusCode"] == 200
    call("GET", "/api/v1/webhooks/{name}/events", "/api/v1/webhooks/ci/events", params={"limit": 5}, expect=200)
    call("PATCH", "/api/v1/webhooks/{name}", "/api/v1/webhooks/ci", json={"status": "disabled"}, expect=200)

    # replicas (issue 13): the credential is never shown
    replica = call("POST", "/api/v1/replications", json={"location": "southeastasia", "endpoint": "https://203.0.113.10",
                                                         "credential": "replicator:s3cret"}, expect=201)
    assert replica["credentialSet"] is True and "s3cret" not in json.dumps(replica)
    call("GET", "/api/v1/replications", expect=200)
    call("PATCH", "/api/v1/replications/{location}", "/api/v1/replications/southeastasia",
         json={"regionEndpointEnabled": False}, expect=200)
    assert call("GET", "/api/v1/replications/{location}", "/api/v1/replications/southeastasia",
                expect=200)["regionEndpointEnabled"] is False
    call("PATCH", "/api/v1/replications/{location}", "/api/v1/replications/southeastasia",
         json={"dataEndpoint": "https://203.0.113.11"}, expect=200)
    assert call("GET", "/api/v1/replications/{location}", "/api/v1/replications/southeastasia",
                expect=200)["dataEndpoint"] == "https://203.0.113.11"
    call("GET", "/api/v1/replications/{location}/status", "/api/v1/replications/southeastasia/status", expect=200)
    # a peer's routes (the Replicator's registry-wide replication/read; the owner's password has it)
    for peer_route in ("/api/v1/replication/health", "/api/v1/replication/data-key"):
        r = requests.get(base + peer_route, auth=registry.creds, timeout=30)
        contract.check("GET", peer_route, r)
        assert r.status_code == 200, (peer_route, r.status_code, r.text)
    assert requests.get(base + "/api/v1/replication/health", timeout=30).status_code == 401
    call("DELETE", "/api/v1/replications/{location}", "/api/v1/replications/southeastasia", expect=204)

    # pull-through cache rules and credential sets (issue 17): the password is never shown
    cs = call("POST", "/api/v1/credential-sets", json={"name": "up-creds", "loginServer": "203.0.113.10", "username": "puller",
                                                       "password": "s3cret"}, expect=201)
    assert "s3cret" not in json.dumps(cs)
    call("GET", "/api/v1/credential-sets", expect=200)
    call("PATCH", "/api/v1/credential-sets/{name}", "/api/v1/credential-sets/up-creds", json={"username": "other"}, expect=200)
    call("GET", "/api/v1/credential-sets/{name}", "/api/v1/credential-sets/up-creds", expect=200)
    rule = call("POST", "/api/v1/cache-rules", json={"name": "up", "sourceRepository": "203.0.113.10/library/*",
                                                     "targetRepository": "mirror/*", "credentialSet": "up-creds"}, expect=201)
    assert rule["tagFreshnessSeconds"] == 300
    call("GET", "/api/v1/cache-rules", expect=200)
    call("PATCH", "/api/v1/cache-rules/{name}", "/api/v1/cache-rules/up", json={"tagFreshnessSeconds": 60}, expect=200)
    call("GET", "/api/v1/cache-rules/{name}", "/api/v1/cache-rules/up", expect=200)
    call("DELETE", "/api/v1/credential-sets/{name}", "/api/v1/credential-sets/up-creds", expect=409)
    call("DELETE", "/api/v1/cache-rules/{name}", "/api/v1/cache-rules/up", expect=204)
    call("DELETE", "/api/v1/credential-sets/{name}", "/api/v1/credential-sets/up-creds", expect=204)

    # quarantine and content trust
    change = call("PATCH", "/api/v1/quarantine", json={"enabled": True, "grandfatherExisting": False, "dryRun": True},
                  expect=200)
    assert change["affectedCount"] == 2 and change["dryRun"] is True
    verdict = call("PATCH", "/api/v1/quarantine/manifests",
                   json={"repository": repo, "digest": first, "state": "Failed", "reason": "scan found CVEs"}, expect=200)
    assert verdict["state"] == "Failed" and verdict["reason"] == "scan found CVEs"
    call("PUT", "/api/v1/content-trust", json={"enabled": False, "repositories": ["openapi/*"], "trustStores": {},
                                              "exempt": ["ci-bot"]}, expect=200)

    # repository views, locks, untag, soft delete and restore
    assert [d["name"] for d in call("GET", "/api/v1/repositories", expect=200)] == [repo]
    assert call("GET", "/api/v1/repository", params=q, expect=200)["tags"] == 2
    lock = call("PATCH", "/api/v1/repository", params={**q, "tag": "v1"}, json={"deleteEnabled": False}, expect=200)
    assert lock["tag"] == "v1" and lock["deleteEnabled"] is False
    tags = call("GET", "/api/v1/repository/tags", params={**q, "orderby": "time_desc"}, expect=200)
    assert {t["name"]: t["attributes"]["deleteEnabled"] for t in tags} == {"v1": False, "v2": True}
    manifests = call("GET", "/api/v1/repository/manifests", params=q, expect=200)
    assert {m["digest"]: m.get("quarantineState") for m in manifests}[first] == "Failed"
    call("PATCH", "/api/v1/config/soft-delete", json={"status": "enabled", "days": 1}, expect=200)
    call("PATCH", "/api/v1/config/gc", json={"graceSeconds": 0}, expect=200)     # purge may take new manifests
    call("DELETE", "/api/v1/repository/tags", params={**q, "tag": "v2"}, expect=204)
    purged = call("POST", "/api/v1/purge", json={"filters": [f"{repo}:.*"], "untagged": True}, expect=200)
    assert [m["digest"] for m in purged["deletedManifests"]] == [second]
    deleted = call("GET", "/api/v1/repository/deleted", params=q, expect=200)
    assert [d["digest"] for d in deleted] == [second]
    restored = call("POST", "/api/v1/repository/restore", params=q, json={"digest": second, "tag": "v2"}, expect=200)
    assert restored["restored"][0]["digest"] == second

    # lifecycle settings, runs, quotas, schedules, event consumers, usage, audit
    call("PATCH", "/api/v1/config/retention", json={"status": "disabled", "days": 3}, expect=200)
    call("PATCH", "/api/v1/config/gc", json={"graceSeconds": 3600, "intervalSeconds": 7200}, expect=200)
    call("POST", "/api/v1/config/retention/run", expect=200)
    call("POST", "/api/v1/gc", json={"dryRun": True}, expect=200)
    call("POST", "/api/v1/gc", headers={"Content-Length": "0"}, expect=200)
    runs = call("GET", "/api/v1/lifecycle/runs", params={"limit": 10}, expect=200)
    assert sorted(run["kind"] for run in runs) == ["gc", "gc", "purge", "retention"]
    assert len({run["id"] for run in runs}) == 4 and all(isinstance(run["id"], int) for run in runs)
    call("POST", "/api/v1/quotas", json={"name": "demo", "prefix": "openapi/", "limitBytes": 1 << 30}, expect=201)
    assert call("GET", "/api/v1/quotas", expect=200)[0]["usedBytes"] > 0
    call("POST", "/api/v1/purge/schedules", json={"name": "nightly", "cron": "0 3 * * *", "filters": [f"{repo}:.*"],
                                                  "ago": "30d", "untagged": True}, expect=201)
    assert call("GET", "/api/v1/purge/schedules", expect=200)[0]["nextRunAt"]
    consumers = call("GET", "/api/v1/event-consumers", expect=200)
    assert "retention" in [c["name"] for c in consumers]
    assert call("POST", "/api/v1/event-consumers/{name}/pause", "/api/v1/event-consumers/retention/pause",
                expect=200)["paused"] is True
    call("POST", "/api/v1/event-consumers/{name}/resume", "/api/v1/event-consumers/retention/resume", expect=200)
    assert call("GET", "/api/v1/usage", expect=200)["repositories"] == 1
    assert call("GET", "/api/v1/usage", params={"repository": repo}, expect=200)["repository"] == repo
    audit = call("GET", "/api/v1/audit", params={"since": "1h", "limit": 500}, expect=200)
    assert {"identity.create", "push"} <= {a["action"] for a in audit}

    # errors in both envelopes, each as documented
    call("GET", "/api/v1/identities/{name}", "/api/v1/identities/nobody", expect=404)
    call("GET", "/api/v1/repository", params={"name": "Not/Valid"}, expect=400)
    call("POST", "/api/v1/identities", data='{"name": "a", "name": "b"}', expect=400)
    call("POST", "/api/v1/tokens", json={"name": "puller", "scopeMap": "demo-pull"}, expect=409)
    call("DELETE", "/api/v1/identities/{name}", "/api/v1/identities/owner", expect=409)
    r = requests.get(base + "/api/v1/registry", timeout=30)
    contract.check("GET", "/api/v1/registry", r)
    assert r.status_code == 401
    viewer = call("POST", "/api/v1/identities", json={"name": "viewer"}, expect=201)["password"]
    call("POST", "/api/v1/role-assignments", json={"assignee": "viewer", "role": "Reader", "scope": "*"}, expect=201)
    r = requests.get(base + "/api/v1/registry", auth=("viewer", viewer), timeout=30)
    assert r.status_code == 200 and contract.check("GET", "/api/v1/registry", r)
    r = requests.patch(base + "/api/v1/registry", auth=("viewer", viewer), json={"anonymousPullEnabled": True}, timeout=30)
    contract.check("PATCH", "/api/v1/registry", r)
    assert r.status_code == 403

    # and the deletes
    kept = call("DELETE", "/api/v1/repository", params=q, expect=200)["skipped"]   # v1 is locked against deletes
    assert [k.get("tag") for k in kept] == ["v1"]
    call("PATCH", "/api/v1/repository", params={**q, "tag": "v1"}, json={"deleteEnabled": True}, expect=200)
    assert call("DELETE", "/api/v1/repository", params=q, expect=200)["kind"] == "repository-delete"
    for template, name in [("/api/v1/webhooks/{name}", "ci"), ("/api/v1/tokens/{name}", "puller"),
                           ("/api/v1/scope-maps/{name}", "demo-pull"), ("/api/v1/quotas/{name}", "demo"),
                           ("/api/v1/purge/schedules/{name}", "nightly"),
                           ("/api/v1/identities/{name}/federated-credentials/{credential}", None),
                           ("/api/v1/identities/{name}", "ci-bot")]:
        path = template.replace("{name}", name) if name else "/api/v1/identities/ci-bot/federated-credentials/main"
        call("DELETE", template, path, expect=204)
    call("DELETE", "/api/v1/role-assignments", params={"assignee": "owner", "role": "Owner", "scope": "*"}, expect=409)
    assert call("POST", "/api/v1/keys/rotate", expect=201)["kid"]
