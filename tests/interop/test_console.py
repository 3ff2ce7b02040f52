"""The web console (issue 17 item 4, item 5's browser rules, item 6's console part) in a real
browser: Debian's headless Chromium driven by selenium (PyPI). One browser session walks every
page (a DOM assertion and a screenshot each), signs in and out, gives a quarantine verdict with
the page's button, sees a Helm chart, a WASM module and an oras artifact by their artifact type,
and is refused a repository its identity may not read. An XSS test pushes markup in annotations
(repository names and tags cannot hold markup: the pushes are refused by the grammar) and in the
search box, and checks that nothing executes and the markup shows as text. A pull by skopeo shows
in the tags page's "Last pull" column and on the image page. A form posted without
the session's CSRF token is refused. A small Debian-shaped image is scanned on push: its page shows
the package counts and its SPDX and CycloneDX SBOMs download with their media types. The session
survives a restart of ``berth serve`` (it is in the metadata store) and signing out deletes it.
Every page passes a small accessibility check (skip link to ``main``, banner and main landmarks, one
``h1`` and no skipped heading level, every visible input labelled, every image or SVG named, a
visible focus outline on the skip link).

Screenshots (22): 01-sign-in, 02-repositories, 03-search-markup, 04-tags, 05-image,
06-quarantine-verdict, 07-helm-chart, 08-wasm, 09-oras-artifact, 10-usage, 11-tokens, 12-webhooks,
13-audit, 14-scans (images with findings by severity), 14b-findings-chart (the vulnerable image's chart), 15-sbom (the
scanned image's packages and SBOM links), 16-replicas, 17-tasks (a FROM scratch build's run), 17b-task-log,
18-foreign-repository-refused, 19-signed-in-after-restart.

The pages are populated: a scope map and a token, a webhook with deliveries to a loopback receiver, a
replica, a task with a run and its log, an image with findings (the advisory fixture of
test_scan_findings). Accessibility: sign-in and a quarantine verdict with the keyboard only (Tab,
typing, Enter and Space), every form control labelled, and the WCAG 2.x contrast of every page's text
(computed colours, at least 4.5:1, 3:1 for large text).

Screenshots go to ``$BERTH_TEST_ARTIFACTS/console`` (default ``tests/interop/artifacts/console``,
ignored by git); the test prints the directory."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import free_port
from helpers import OCI_MANIFEST, sha256_digest, skopeo_raw_manifest
from test_cli import Cli
from test_artifacts import WASM_CONFIG, WASM_LAYER, WASM_MODULE, _blob, _put_manifest, build_chart, helm_push
from test_oras import oras_client
from test_scan_db import berth_json
from test_scan_findings import REPO as FINDINGS_REPO, TRACKER, push_image as push_findings_image, wait_for_findings
from test_webhooks import Receiver

pytestmark = pytest.mark.berth_only

MARKUP = "<script>alert('xss')</script><img src=x onerror=\"document.title='pwned'\">"


def artifacts_dir() -> Path:
    base = os.environ.get("BERTH_TEST_ARTIFACTS") or str(Path(__file__).parent / "artifacts")
    out = Path(base) / "console"
    out.mkdir(parents=True, exist_ok=True)
    # This run's screenshots only: an earlier run's stale pages would pass for this one's.
    for old in out.glob("*.png"):
        old.unlink()
    print(f"\nconsole screenshots: {out}")
    return out


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver


def replaced(page):
    """``staleness_of``, also when chromedriver reports the replaced document's node as an
    "unknown error" ("Node with given id does not belong to the document") instead of a stale
    element: seen in two CI runs, each failing the suite after the next page had loaded."""
    def check(_driver) -> bool:
        try:
            page.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
    return check


def submit(driver, element) -> None:
    """Clicks a link or a submit button (or submits a field's form) and waits for the next page."""
    page = driver.find_element(By.TAG_NAME, "html")
    if element.tag_name in ("a", "button"):
        element.click()
    else:
        element.submit()
    WebDriverWait(driver, 10).until(replaced(page))


def no_alert(driver) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"a script ran: alert({text!r})")


def push_image(api, repo: str, tag: str, annotations: dict) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"console layer " + repo.encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": api.push_blob(repo, config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": api.push_blob(repo, layer),
                            "size": len(layer)}],
                "annotations": annotations}
    body = json.dumps(manifest).encode()
    r = api.put_manifest(repo, tag, body)
    assert r.status_code == 201, r.text
    return sha256_digest(body)


def debian_layer() -> bytes:
    """A layer the scanner inventories: an os-release and a dpkg status with two packages."""
    files = {"etc/os-release": b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
             "var/lib/dpkg/status": b"Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n\n"
                                    b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: amd64\n"
                                    b"Source: zlib\n\n"}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_scannable(api, repo: str, tag: str) -> str:
    layer = debian_layer()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": api.push_blob(repo, config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": api.push_blob(repo, layer),
                            "size": len(layer)}]}
    body = json.dumps(manifest).encode()
    r = api.put_manifest(repo, tag, body)
    assert r.status_code == 201, r.text
    return sha256_digest(body)


SBOM_TYPES = {"application/spdx+json", "application/vnd.cyclonedx+json"}


def wait_for_sboms(api, repo: str, digest: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = api.req("GET", f"/v2/{repo}/referrers/{digest}")
        assert r.status_code == 200, r.text
        if SBOM_TYPES <= {m.get("artifactType") for m in r.json()["manifests"]}:
            return
        assert time.monotonic() < deadline, f"no SBOM referrers after {timeout}s: {r.json()}"
        time.sleep(0.5)


def check_accessibility(driver) -> None:
    """Landmarks, a skip link, headings in order, labelled inputs, named images: on every page."""
    skip = driver.find_elements(By.CSS_SELECTOR, "a.skip[href='#main']")
    assert len(skip) == 1, driver.current_url
    assert driver.find_elements(By.CSS_SELECTOR, "main#main") and driver.find_elements(By.CSS_SELECTOR, "header.banner")
    levels = [int(h.tag_name[1]) for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4, h5, h6")]
    assert levels and levels[0] == 1 and levels.count(1) == 1, (driver.current_url, levels)
    for before, after in zip(levels, levels[1:]):
        assert after <= before + 1, (driver.current_url, levels)
    for field in driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        if field.get_attribute("type") == "hidden":
            continue
        fid = field.get_attribute("id")
        labels = driver.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']") if fid else []
        labelled = any(label.text.strip() for label in labels) or (field.get_attribute("aria-label") or "").strip()
        assert labelled, (driver.current_url, field.get_attribute("name"))
    for button in driver.find_elements(By.TAG_NAME, "button"):
        assert button.text.strip() or button.get_attribute("aria-label"), driver.current_url
    for image in driver.find_elements(By.CSS_SELECTOR, "img, svg"):
        named = (image.get_attribute("alt") or image.get_attribute("aria-label") or image.get_attribute("aria-labelledby")
                 or image.find_elements(By.TAG_NAME, "title"))
        assert named, driver.current_url
    check_contrast(driver)


# WCAG 2.x relative luminance and contrast of each element's text against the first opaque
# background behind it (its own or an ancestor's; white at the root), from getComputedStyle.
# Asked through WebDriver's script call (the test's, not the page's: the pages carry no script).
CONTRAST_SCRIPT = r"""
const SELECTOR = 'main p, main td, main th, main dt, main dd, main li, main a, main caption, main h1, main h2, main label, '
  + 'main button, main pre, main figcaption, main span, main strong, main svg text, nav a, .banner a, .banner span, .banner button';
function rgba(s) { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(x => x).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
function background(el) { for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
  const b = rgba(getComputedStyle(e).backgroundColor); if (b && b[3] > 0.99) return b; } return [255, 255, 255, 1]; }
const out = [];
let checked = 0;
for (const el of Array.from(document.querySelectorAll(SELECTOR)).slice(0, 400)) {
  const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right + window.scrollX < 0 || r.bottom + window.scrollY < 0) continue;   // the skip link, off screen
  const st = getComputedStyle(el); if (st.visibility === 'hidden' || st.display === 'none') continue;
  const fg = rgba(el instanceof SVGElement ? st.fill : st.color); if (!fg) continue;
  const bg = background(el instanceof SVGElement ? el.ownerSVGElement : el);
  const a = fg[3]; const mixed = [0, 1, 2].map(i => fg[i] * a + bg[i] * (1 - a));
  const l1 = lum(mixed), l2 = lum(bg); const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
  const large = size >= 24 || (bold && size >= 18.66);
  checked++;
  out.push({tag: el.tagName.toLowerCase(), cls: el.getAttribute('class') || '', text: el.textContent.trim().slice(0, 40),
            ratio: Math.round(ratio * 100) / 100, need: large ? 3 : 4.5, fg: st.color, bg: 'rgb(' + bg.slice(0, 3).join(',') + ')'});
}
return out;
"""


def check_contrast(driver) -> None:
    """Every text element's contrast is at least 4.5:1 (3:1 for large text), as WCAG 2.x AA asks."""
    measured = driver.execute_script(CONTRAST_SCRIPT)
    assert measured, f"no text measured on {driver.current_url}"
    low = [m for m in measured if m["ratio"] < m["need"]]
    worst = min(measured, key=lambda m: m["ratio"])
    print(f"contrast {driver.current_url.split('/console/')[-1][:40]}: {len(measured)} texts, lowest {worst['ratio']}:1 "
          f"({worst['tag']}.{worst['cls']} {worst['text']!r})")
    assert not low, (driver.current_url, low[:10])
    # the main text of every page is among what was measured
    assert any(m["tag"] in ("h1",) for m in measured), driver.current_url


def tab_to(driver, element_id: str, limit: int = 120):
    """Presses Tab (keyboard only) until the element with this id has the focus; returns it."""
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.switch_to.active_element
        if focused.get_attribute("id") == element_id:
            assert focused.value_of_css_property("outline-style") != "none", element_id   # the focus is visible
            return focused
    raise AssertionError(f"Tab never reached #{element_id} on {driver.current_url}")


def keyboard_sign_in(driver, base: str, user: str, password: str) -> None:
    """Sign-in with the keyboard only: Tab to the fields, type, Enter submits the form."""
    driver.get(base + "/console/login")
    page = driver.find_element(By.TAG_NAME, "html")
    tab_to(driver, "username")
    ActionChains(driver).send_keys(user).perform()
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.switch_to.active_element.get_attribute("id") == "password"
    ActionChains(driver).send_keys(password).send_keys(Keys.ENTER).perform()
    WebDriverWait(driver, 10).until(replaced(page))
    assert driver.find_element(By.ID, "whoami").text == user


def press_on(driver, key) -> None:
    """Presses a key on the focused element and waits for the page it leads to."""
    page = driver.find_element(By.TAG_NAME, "html")
    ActionChains(driver).send_keys(key).perform()
    WebDriverWait(driver, 10).until(replaced(page))


TASK_FILE = """\
version: v1.1.0
steps:
  - id: build
    build: -t $Registry/built/scratch:$ID -f Dockerfile .
  - id: push
    push:
      - $Registry/built/scratch:$ID
"""


def sign_in(driver, base: str, user: str, password: str) -> None:
    driver.get(base + "/console/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, driver.find_element(By.ID, "signin"))
    assert driver.find_element(By.ID, "whoami").text == user
    assert "password" not in driver.current_url and password not in driver.current_url


def console_bytes(n: int) -> str:
    """A size as the console shows it: bytes below 1 KiB, else one decimal in the largest unit."""
    units, value, unit = ["B", "KiB", "MiB", "GiB", "TiB"], float(n), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{n} B" if unit == 0 else f"{value:.1f} {units[unit]}"


@pytest.mark.server_env(BERTH_SCAN_ON_PUSH="true", BERTH_OUTBOUND_ALLOW="127.0.0.1/32")
def test_console_in_a_browser(registry, api, tmp_path):
    base, host, creds = registry.base, registry.host, registry.creds
    out = artifacts_dir()
    cli = Cli(registry, tmp_path / "xdg")
    cli.login()

    # Management content for the pages: a scope map and a token, a webhook whose receiver runs
    # here on loopback (it gets the pushes below), a replica (its endpoint a closed port on
    # loopback: shown failing once replication tries it), a task that builds FROM scratch.
    cli.json("scope-map", "create", "--name", "console-pull", "--description", "pulls of web", "--repository", "web/*",
             "content/read", "metadata/read")
    cli.json("token", "create", "--name", "console-ci", "--scope-map", "console-pull")
    receiver = Receiver()
    receiver.start()
    cli.json("webhook", "create", "--name", "console-hook", "--uri", receiver.url, "--actions", "push", "--scope", "web/*:*")
    cli.json("replication", "create", "--location", "westeurope", "--endpoint", f"http://127.0.0.1:{free_port()}")
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    (tmp_path / "acb.yaml").write_text(TASK_FILE)
    cli("task", "create", "--name", "console-build", "--file", str(tmp_path / "acb.yaml"))
    run = json.loads(cli.run("task", "run", "--name", "console-build", "--context", str(context), "--wait", "-o", "json").stdout)
    assert run["status"] == "succeeded", run

    # An image with real findings: the advisory fixture of test_scan_findings imported, its
    # Debian image pushed and matched on push (glibc: one High, one Low).
    tracker = tmp_path / "debian.json"
    tracker.write_text(json.dumps(TRACKER))
    berth_json(registry, "scan", "db", "import", str(tracker))
    vulnerable = push_findings_image(api, "1.0")
    assert wait_for_findings(registry, f"{FINDINGS_REPO}:1.0")["manifest"] == vulnerable

    # Content: an image with markup in its annotations (and a signature-typed referrer), a Helm
    # chart, a WASM module, an oras artifact, and a repository the second identity may not read.
    digest = push_image(api, "web/app", "v1", {"org.example.note": MARKUP, MARKUP: "key"})
    oras = oras_client(host, creds)
    container = oras.get_container(f"{host}/web/app:sig")
    empty = _blob(oras, container, tmp_path, b"{}", "application/vnd.oci.empty.v1+json")
    sig = _blob(oras, container, tmp_path, b"not a real envelope", "application/jose+json")
    _put_manifest(oras, f"{host}/web/app:sig",
                  {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature",
                   "config": empty, "layers": [sig],
                   "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(api.get_manifest("web/app", "v1").content)}})
    meta, tgz, prov = build_chart(tmp_path)
    _, _, _, chart_digest = helm_push(oras, host, tmp_path, "charts", meta, tgz, prov)
    wasm_container = oras.get_container(f"{host}/wasm/answer:v1")
    layer = _blob(oras, wasm_container, tmp_path, WASM_MODULE, WASM_LAYER)
    wasm_config = _blob(oras, wasm_container, tmp_path, b'{"architecture":"wasm","os":"wasip1"}', WASM_CONFIG)
    wasm_digest = _put_manifest(oras, f"{host}/wasm/answer:v1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                                 "artifactType": WASM_CONFIG, "config": wasm_config,
                                                                 "layers": [layer]})
    gen_container = oras.get_container(f"{host}/misc/notes:v1")
    note = _blob(oras, gen_container, tmp_path, b"hello", "text/plain")
    empty = _blob(oras, gen_container, tmp_path, b"{}", "application/vnd.oci.empty.v1+json")
    gen_digest = _put_manifest(oras, f"{host}/misc/notes:v1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                               "artifactType": "application/vnd.example.notes.v1",
                                                               "config": empty, "layers": [note]})
    push_image(api, "secret/db", "v1", {})
    scanned = push_scannable(api, "lib/debian", "12")
    # Markup cannot be a repository name or a tag: refused by the grammar before anything is stored.
    assert api.put_manifest("web/<b>x</b>", "v1", b"{}").status_code in (400, 404)
    assert api.put_manifest("web/app", "<b>x</b>", b"{}").status_code in (400, 404)

    s = requests.Session()
    s.auth = creds
    r = s.post(base + "/api/v1/identities", json={"name": "alice"}, timeout=10)
    assert r.status_code == 201, r.text
    alice = r.json()["password"]
    assert s.post(base + "/api/v1/role-assignments", json={"assignee": "alice", "role": "Pull", "scope": "web/*"},
                  timeout=10).status_code == 201

    driver = chromium()
    try:
        def shot(name: str) -> None:
            no_alert(driver)
            assert driver.title != "pwned"
            check_accessibility(driver)
            driver.save_screenshot(str(out / f"{name}.png"))

        driver.get(base + "/console/repositories")
        assert driver.current_url.endswith("/console/login")          # not signed in: sign in first
        shot("01-sign-in")
        keyboard_sign_in(driver, base, *creds)
        names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#repositories tbody a")]
        assert {"web/app", "secret/db", "charts/berth-demo", "wasm/answer", "misc/notes"} <= set(names)
        shot("02-repositories")
        # The first Tab reaches the skip link, and its focus is visible.
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.switch_to.active_element
        assert focused.get_attribute("class") == "skip" and focused.value_of_css_property("outline-style") != "none"

        driver.find_element(By.ID, "q").send_keys(MARKUP)
        submit(driver, driver.find_element(By.ID, "q"))
        assert MARKUP in driver.find_element(By.ID, "no-repositories").text
        shot("03-search-markup")

        # A real client's pull (skopeo reads the manifest by tag) shows in the "Last pull" column
        # once the server writes its pulls (every few seconds): polled, with a generous bound.
        skopeo_raw_manifest(f"docker://{host}/web/app:v1", creds=creds)
        deadline = time.monotonic() + 60
        while True:
            driver.get(base + "/console/repository?name=web%2Fapp")
            rows = {r.find_element(By.CSS_SELECTOR, "td.tag").text: r.find_element(By.CSS_SELECTOR, "td.last-pull").text
                    for r in driver.find_elements(By.CSS_SELECTOR, "#tags tbody tr")}
            if rows.get("v1", "never") != "never" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", rows["v1"]), rows
        tags = driver.find_element(By.ID, "tags").text
        assert "v1" in tags and digest in tags and "Container image" in tags and "linux/amd64" in tags and "Last pull" in tags
        # The size column is what the manifest declares (config and layers), the pushed column when the tag moved.
        declared = json.loads(api.get_manifest("web/app", "v1").content)
        total = declared["config"]["size"] + sum(layer["size"] for layer in declared["layers"])
        cells = {r.find_element(By.CSS_SELECTOR, "td.tag").text: [td.text for td in r.find_elements(By.TAG_NAME, "td")]
                 for r in driver.find_elements(By.CSS_SELECTOR, "#tags tbody tr")}
        size, pushed = cells["v1"][2], cells["v1"][5]
        assert size == console_bytes(total), (size, total)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", pushed), pushed
        shot("04-tags")

        submit(driver, driver.find_element(By.LINK_TEXT, digest))
        assert driver.find_element(By.ID, "digest").text == digest
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", driver.find_element(By.ID, "image-last-pull").text)
        notes = driver.find_element(By.ID, "annotations").text
        assert MARKUP in notes                                          # shown as text
        assert not driver.find_elements(By.CSS_SELECTOR, "main script, main img")
        signatures = driver.find_element(By.ID, "signatures").text
        assert "application/vnd.cncf.notary.signature" in signatures
        assert "not verified: no trust policy is configured" in signatures      # a fake envelope, no policy
        assert driver.find_elements(By.CSS_SELECTOR, "#referrers li")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#layers tbody tr")) == 1
        assert driver.find_element(By.ID, "findings-status").text      # matched, or not yet: said either way
        shot("05-image")

        # The verdict form with the keyboard only: Tab to the reason, type it, Tab to "Fail", Enter.
        tab_to(driver, "reason")
        ActionChains(driver).send_keys("rejected <b>in review</b>").perform()
        tab_to(driver, "verdict-fail", limit=3)
        press_on(driver, Keys.ENTER)
        assert driver.find_element(By.ID, "quarantine-state").text == "Failed: rejected <b>in review</b>"
        shot("06-quarantine-verdict")
        # ... and Space activates a button too: "Pass" given back.
        tab_to(driver, "verdict-pass")
        press_on(driver, Keys.SPACE)
        assert driver.find_element(By.ID, "quarantine-state").text == "Passed"

        for repo, d, kind, artifact_type, name in (
                ("charts/berth-demo", chart_digest, "Helm chart", None, "07-helm-chart"),
                ("wasm/answer", wasm_digest, "WebAssembly module", WASM_CONFIG, "08-wasm"),
                ("misc/notes", gen_digest, "OCI artifact", "application/vnd.example.notes.v1", "09-oras-artifact")):
            driver.get(f"{base}/console/image?name={requests.utils.quote(repo, safe='')}&digest={d}")
            assert driver.find_element(By.ID, "artifact-kind").text == kind
            if artifact_type:   # the manifest's own artifactType, shown as given
                assert driver.find_element(By.ID, "artifact-type").text == artifact_type
            else:               # a Helm chart says so by its config's media type, and has none
                assert not driver.find_elements(By.ID, "artifact-type")
            shot(name)

        driver.get(base + "/console/usage")
        assert driver.find_elements(By.CSS_SELECTOR, "#usage-chart rect.bar")
        shot("10-usage")
        driver.get(base + "/console/tokens")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Tokens and scope maps"
        tokens = driver.find_element(By.ID, "tokens").text
        assert "console-ci" in tokens and "console-pull" in tokens
        assert "web/*: content/read, metadata/read" in driver.find_element(By.ID, "scope-maps").text
        shot("11-tokens")
        # The pushes to web/* reached the loopback receiver; the page lists those deliveries.
        receiver.wait_for(lambda got: any(r.status == 200 for r in got), "a delivery of a web/* push")
        deadline = time.monotonic() + 30
        while True:
            driver.get(base + "/console/webhooks")
            deliveries = driver.find_elements(By.CSS_SELECTOR, ".deliveries tbody tr")
            if deliveries or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "console-hook" in driver.find_element(By.TAG_NAME, "main").text and receiver.url in driver.find_element(By.TAG_NAME, "main").text
        assert deliveries and any(row.find_elements(By.TAG_NAME, "td")[3].text == "200" for row in deliveries), \
            [row.text for row in deliveries]
        shot("12-webhooks")
        driver.get(base + "/console/audit")
        assert "console.login" in driver.find_element(By.ID, "audit").text
        shot("13-audit")
        # Findings across images: the vulnerable image with its counts by severity, linking to its page.
        driver.get(base + "/console/scans")
        assert not driver.find_elements(By.ID, "not-built")
        rows = {r.find_element(By.CSS_SELECTOR, "td a.digest").text: r for r in driver.find_elements(By.CSS_SELECTOR, "#scans tbody tr")}
        assert vulnerable in rows, list(rows)
        row = rows[vulnerable]
        assert (row.find_element(By.CSS_SELECTOR, "td.high").text, row.find_element(By.CSS_SELECTOR, "td.low").text,
                row.find_element(By.CSS_SELECTOR, "td.total").text) == ("1", "1", "2")
        assert FINDINGS_REPO in row.text
        chart = driver.find_element(By.ID, "scans-chart")
        assert "High 1" in chart.get_attribute("aria-label")
        shot("14-scans")
        submit(driver, row.find_element(By.CSS_SELECTOR, "td a.digest"))
        assert driver.find_element(By.ID, "digest").text == vulnerable
        assert driver.find_element(By.ID, "findings-status").text.startswith("2 findings")
        bars = [b for b in driver.find_elements(By.CSS_SELECTOR, "#findings-chart rect") if float(b.get_attribute("width")) > 0]
        assert len(bars) == 2, [b.get_attribute("width") for b in driver.find_elements(By.CSS_SELECTOR, "#findings-chart rect")]
        assert "CVE-2099-1001" in driver.find_element(By.ID, "findings").text
        driver.get(f"{base}/console/image?name={requests.utils.quote(FINDINGS_REPO, safe='')}&digest={vulnerable}#findings-status")
        shot("14b-findings-chart")
        wait_for_sboms(api, "lib/debian", scanned)
        driver.get(f"{base}/console/image?name=lib%2Fdebian&digest={scanned}")
        assert "2 packages" in driver.find_element(By.ID, "inventory-status").text
        assert "Debian GNU/Linux 12" in driver.find_element(By.ID, "inventory-status").text
        assert "deb 2" in driver.find_element(By.ID, "inventory").text
        links = {a.text: a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#sbom-downloads a")}
        assert set(links) == {"Download the SPDX 2.3 (JSON) SBOM", "Download the CycloneDX 1.5 (JSON) SBOM"}, links
        driver.get(f"{base}/console/image?name=lib%2Fdebian&digest={scanned}#packages")   # scrolled to the packages
        shot("15-sbom")
        session = {"berth_session": driver.get_cookie("berth_session")["value"]}
        for href, media_type, marker in ((links["Download the SPDX 2.3 (JSON) SBOM"], "application/spdx+json", "spdxVersion"),
                                         (links["Download the CycloneDX 1.5 (JSON) SBOM"], "application/vnd.cyclonedx+json",
                                          "bomFormat")):
            r = requests.get(href, cookies=session, timeout=10, allow_redirects=False)
            assert r.status_code == 200 and r.headers["Content-Type"] == media_type, (r.status_code, r.headers)
            assert marker in r.json() and "zlib1g" in r.text
        driver.get(base + "/console/replicas")
        replica = driver.find_element(By.CSS_SELECTOR, "#replicas tbody tr").text
        assert "westeurope" in replica and "http://127.0.0.1:" in replica
        assert driver.find_element(By.CSS_SELECTOR, "#replicas td.health").text in ("not reached yet", "failing")   # never healthy
        shot("16-replicas")
        driver.get(base + "/console/tasks")
        runs = driver.find_element(By.CSS_SELECTOR, ".task .runs").text
        assert "console-build" in driver.find_element(By.CSS_SELECTOR, ".task h2").text
        assert run["id"] in runs and "succeeded" in runs and "built/scratch:" in runs
        shot("17-tasks")
        submit(driver, driver.find_element(By.LINK_TEXT, f"log of {run['id']}"))
        assert driver.find_element(By.ID, "run-status").text == "succeeded"
        assert "build" in driver.find_element(By.ID, "run-log").text
        shot("17b-task-log")

        # CSRF: the signed-in session's cookie without the form's token is refused.
        cookie = driver.get_cookie("berth_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        forged = requests.post(base + "/console/quarantine", cookies={"berth_session": cookie["value"]},
                               data={"name": "web/app", "digest": digest, "state": "Passed"}, timeout=10,
                               allow_redirects=False)
        assert forged.status_code == 403
        headers = requests.get(base + "/console/login", timeout=10).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"

        # A second identity, Pull on web/* only: secret/db is neither listed nor shown.
        submit(driver, driver.find_element(By.CSS_SELECTOR, ".signout button"))
        assert driver.current_url.endswith("/console/login")
        sign_in(driver, base, "alice", alice)
        names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#repositories tbody a")]
        assert names == ["web/app"]
        driver.get(base + "/console/scans")                          # not the vulnerable image of payments/api
        assert FINDINGS_REPO not in driver.find_element(By.TAG_NAME, "main").text and vulnerable not in driver.page_source
        driver.get(base + "/console/repository?name=secret%2Fdb")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Forbidden"
        shot("18-foreign-repository-refused")
        driver.get(f"{base}/console/image?name=web%2Fapp&digest={digest}")
        assert not driver.find_elements(By.ID, "verdict-fail")           # no QuarantineWriter: no buttons
        driver.get(base + "/console/audit")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Forbidden"
        # Alice may not pull lib/debian, nor download its SBOM.
        alice_session = {"berth_session": driver.get_cookie("berth_session")["value"]}
        assert requests.get(f"{base}/console/sbom?name=lib%2Fdebian&digest={scanned}&format=spdx", cookies=alice_session,
                            timeout=10, allow_redirects=False).status_code == 403

        # The session is in the metadata store: a restarted server still knows it; sign-out deletes it.
        registry.stop()
        registry.start(port=registry.port)
        driver.get(base + "/console/repositories")
        assert driver.find_element(By.ID, "whoami").text == "alice"
        shot("19-signed-in-after-restart")
        submit(driver, driver.find_element(By.CSS_SELECTOR, ".signout button"))
        assert driver.current_url.endswith("/console/login")
        gone = requests.get(base + "/console/repositories", cookies=alice_session, timeout=10, allow_redirects=False)
        assert gone.status_code == 303 and gone.headers["Location"] == "/console/login"
    except BaseException:
        # A failing run keeps the page it failed on beside the pages it had reached.
        try:
            driver.save_screenshot(str(out / "zz-failed-here.png"))
            print(f"\nconsole: the page of the failure is {out / 'zz-failed-here.png'}")
        except Exception:
            pass
        raise
    finally:
        driver.quit()
        receiver.stop()
