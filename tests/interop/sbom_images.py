"""Test images for the inventory and SBOM tests (test_sbom.py), built here and cached.

``debian_image()`` is an OCI image layout (tag ``scan``) of five layers, built with umoci:

1. a Debian bookworm root filesystem from ``debootstrap --variant=minbase``, with Debian's Node
   and Java library packages (``DEBIAN_PACKAGES``: ``/usr/share/nodejs/*/package.json``; jars in
   ``/usr/share/java`` named by pom.properties, by file name or by manifest, with symlinks);
2. pip-installed packages (dist-info), an npm-style ``node_modules`` tree (with a nested named
   package.json, a module-kind stub and an application without a version), jars named each way
   Syft names them (pom.properties, another jar nested, file name only, a foreign pom beside a
   manifest version, a Maven Bundle Plugin manifest, a per-entry manifest version, and one
   without a manifest), Jenkins plugins (``.hpi`` with the plugin's jar and a library inside,
   ``.jpi``, jars of a plugin group by pom and by manifest), Go binaries built with Debian's Go:
   from a main module with one vendored dependency, the same with its version set by
   ``-ldflags``, and one built outside module mode (a package path, no module lines, as Debian
   builds its Go packages); and a Go 1.16 binary's build information (the pointer format, written
   here: ``go_pointer_elf``);
3. ``var/lib/dpkg/status`` replaced by one without ``REMOVED_DEB`` (as after ``dpkg --purge``),
   with ``UNPACKED_DEB`` unpacked but not configured and a removed package's configuration files;
4. a whiteout of one dist-info directory (``REMOVED_PYTHON``);
5. a whiteout of one npm package directory (``REMOVED_NPM``).

``rpm_database()`` is an ``rpmdb.sqlite`` written by Debian's rpm tools
(``scripts/make-test-rpmdb``: tiny packages built with rpmbuild, installed with ``rpm --justdb``),
cached the same way, by a hash of that script.

The layout is cached under ``$BERTH_TEST_IMAGE_CACHE`` (default ``~/.cache/berth-test-images``)
in a directory named by a hash of this file, so a changed recipe builds a new image; a missing
one is built from scratch (debootstrap needs Debian's mirror and pip needs PyPI, about two
minutes). A lock file keeps two test runs from building it at once.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("BERTH_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PIP_PACKAGES = ["six==1.16.0", "idna==3.7", "toml==0.10.2"]
SITE = "usr/local/lib/python3.11/dist-packages"
REMOVED_PYTHON = f"{SITE}/toml-0.10.2.dist-info"
NODE_APP = "srv/app/node_modules"
REMOVED_NPM = f"{NODE_APP}/left-pad"
REMOVED_DEB = "sed"
# Node and Java libraries as Debian packages them (small, and no JRE needed).
DEBIAN_PACKAGES = ["node-ms", "node-debug", "libcommons-lang3-java", "libaopalliance-java", "libjsr305-java",
                   "libatinject-jsr330-api-java", "libguice-java", "python3-yaml"]
# dpkg states: one package left unpacked (its files on disk, never configured), and the
# configuration files of a removed one (nothing else on disk).
UNPACKED_DEB = "hostname"
CONFIG_FILES_DEB = "Package: removed-tool\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0-1\n"
TAG = "scan"


def cache_root() -> Path:
    return Path(os.environ.get("BERTH_TEST_IMAGE_CACHE", Path.home() / ".cache" / "berth-test-images"))


def recipe_key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def debian_image() -> Path:
    """The cached layout (built first when absent)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"debian-sbom-{recipe_key()}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "index.json").is_file():
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
            try:
                _build(work)
                os.rename(work / "layout", final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return final


def _build(work: Path, extra_packages: tuple[str, ...] = ()):
    rootfs = work / "rootfs"
    run(["debootstrap", "--variant=minbase", "--include=" + ",".join([*DEBIAN_PACKAGES, *extra_packages]),
         SUITE, str(rootfs), MIRROR])
    # Runtime mount points and caches are not image content.
    for d in ("dev", "proc", "sys", "run"):
        shutil.rmtree(rootfs / d, ignore_errors=True)
        (rootfs / d).mkdir()
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)

    extras = work / "extras"
    _python(extras)
    _npm(extras)
    _java(extras)
    _go(work, extras)
    _legacy_go(extras)

    status = (rootfs / "var/lib/dpkg/status").read_text()
    stanzas = [s for s in status.split("\n\n") if s.strip()]
    kept = [s for s in stanzas if f"Package: {REMOVED_DEB}\n" not in s + "\n"]
    assert len(kept) == len(stanzas) - 1, f"{REMOVED_DEB} not in the status file"
    unpacked = [i for i, s in enumerate(kept) if s.startswith(f"Package: {UNPACKED_DEB}\n")]
    assert len(unpacked) == 1 and "Status: install ok installed\n" in kept[unpacked[0]], f"{UNPACKED_DEB} not installed"
    kept[unpacked[0]] = kept[unpacked[0]].replace("Status: install ok installed\n", "Status: install ok unpacked\n")
    replaced = work / "status"
    replaced.write_text("\n\n".join(kept + [CONFIG_FILES_DEB.rstrip("\n")]) + "\n")

    layout = f"{work / 'layout'}:{TAG}"
    run(["umoci", "init", "--layout", str(work / "layout")])
    run(["umoci", "new", "--image", layout])
    run(["umoci", "insert", "--image", layout, str(rootfs), "/"])
    run(["umoci", "insert", "--image", layout, str(extras), "/"])
    run(["umoci", "insert", "--image", layout, str(replaced), "/var/lib/dpkg/status"])
    run(["umoci", "insert", "--image", layout, "--whiteout", "/" + REMOVED_PYTHON])
    run(["umoci", "insert", "--image", layout, "--whiteout", "/" + REMOVED_NPM])
    run(["umoci", "gc", "--layout", str(work / "layout")])


def _python(extras: Path):
    run(["python3", "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--disable-pip-version-check",
         "--target", str(extras / SITE), *PIP_PACKAGES])


def _npm(extras: Path):
    def package(path: str, name: str, version: str):
        d = extras / NODE_APP / path
        d.mkdir(parents=True, exist_ok=True)
        (d / "package.json").write_text(json.dumps({"name": name, "version": version, "main": "index.js"}))
        (d / "index.js").write_text("module.exports = {};\n")

    package("left-pad", "left-pad", "1.3.0")
    package("ms", "ms", "2.1.3")
    package("@scope/util", "@scope/util", "0.4.1")
    package("debug", "debug", "4.3.4")
    package("debug/node_modules/ms", "ms", "2.1.2")
    # Any package.json with a name is a package (a nested one too); one that only marks a
    # directory's module kind is not; an application's own without a version is UNKNOWN.
    package("debug/dist", "debug-dist", "0.0.1")
    (extras / NODE_APP / "ms/esm").mkdir(parents=True)
    (extras / NODE_APP / "ms/esm/package.json").write_text(json.dumps({"type": "module"}))
    (extras / NODE_APP).parent.joinpath("package.json").write_text(json.dumps({"name": "demo-app", "private": True}))


MANIFEST = "Manifest-Version: 1.0\r\nCreated-By: berth tests\r\n"


def _jar(path: Path, group: str | None, artifact: str, version: str, extra: dict[str, bytes] | None = None,
         manifest: str | None = MANIFEST):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        if manifest is not None:
            z.writestr("META-INF/MANIFEST.MF", manifest + "\r\n")
        if group is not None:
            z.writestr(f"META-INF/maven/{group}/{artifact}/pom.properties",
                       f"#Generated by Maven\ngroupId={group}\nartifactId={artifact}\nversion={version}\n")
        z.writestr(f"{artifact.replace('-', '/')}/Main.class", b"\xca\xfe\xba\xbe")
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def _java(extras: Path):
    inner = extras.parent / "inner.jar"
    _jar(inner, "org.example", "inner-lib", "2.0.1")
    _jar(extras / "opt/app/app-1.4.2.jar", "org.example", "app", "1.4.2",
         extra={"BOOT-INF/lib/inner-lib-2.0.1.jar": inner.read_bytes()})
    _jar(extras / "usr/share/java/demo-util-0.9.jar", "com.example.demo", "demo-util", "0.9")
    # Named by its file name alone.
    _jar(extras / "opt/tools/plain-tool-2.5.jar", None, "plain-tool", "")
    # A foreign pom (a shaded library) beside the archive's own manifest version.
    _jar(extras / "opt/app/lib/renamed.jar", "org.example", "original", "3.1",
         manifest=MANIFEST + "Implementation-Title: Renamed\r\nImplementation-Version: 7.7\r\n")
    # An OSGi bundle built with the Maven Bundle Plugin: named by its symbolic name.
    _jar(extras / "opt/osgi/bundle.jar", None, "widget", "",
         manifest="Manifest-Version: 1.0\r\nCreated-By: Apache Maven Bundle Plugin 5.1.8\r\n"
                  "Bundle-SymbolicName: org.example.osgi.widget\r\nBundle-Version: 1.2.0\r\n")
    # The version only in a per-entry section.
    _jar(extras / "opt/tools/sectioned.jar", None, "sectioned", "",
         manifest=MANIFEST + "\r\nName: org/example/sectioned/\r\nImplementation-Version: 4.0\r\n")
    # No manifest: Syft reads nothing from it; Berth still lists its pom (test_sbom's KNOWN_DIFFERENCES).
    _jar(extras / "opt/app/lib/stripped-0.3.jar", "org.example", "stripped", "0.3", manifest=None)
    # Jenkins plugins: an .hpi (its own package by file name and manifest, the plugin's jar and a
    # bundled library inside), a .jpi named with its version, and jars of a plugin group by pom and
    # by manifest.
    plugin_jar, library = extras.parent / "plugin.jar", extras.parent / "library.jar"
    _jar(plugin_jar, "org.jenkins-ci.plugins", "git-client", "4.7.0")
    _jar(library, "org.eclipse.jgit", "org.eclipse.jgit", "6.5.0")
    _jar(extras / "var/jenkins_home/plugins/git-client.hpi", None, "git-client", "",
         manifest="Manifest-Version: 1.0\r\nGroup-Id: org.jenkins-ci.plugins\r\nShort-Name: git-client\r\n"
                  "Plugin-Version: 4.7.0\r\n",
         extra={"WEB-INF/lib/git-client.jar": plugin_jar.read_bytes(),
                "WEB-INF/lib/org.eclipse.jgit-6.5.0.jar": library.read_bytes()})
    _jar(extras / "var/jenkins_home/plugins/credentials-2.6.1.jpi", None, "credentials", "")
    _jar(extras / "usr/share/jenkins/lib/ionicons-api-56.jar", "io.jenkins.plugins", "ionicons-api", "56")
    _jar(extras / "usr/share/jenkins/lib/pipeline-tool-1.2.jar", None, "pipeline-tool", "",
         manifest=MANIFEST + "Bundle-SymbolicName: org.jenkins-ci.plugins.pipeline-tool;singleton:=true\r\n")


GO_MAIN = """package main

import (
	"fmt"

	"example.org/greet"
)

var version = "dev"

func main() { fmt.Println(greet.Hello(), version) }
"""


def _go(work: Path, extras: Path):
    src = work / "gosrc"
    (src / "vendor/example.org/greet").mkdir(parents=True)
    (src / "go.mod").write_text("module example.org/hello\n\ngo 1.19\n\nrequire example.org/greet v1.2.3\n")
    (src / "main.go").write_text(GO_MAIN)
    (src / "vendor/modules.txt").write_text("# example.org/greet v1.2.3\n## explicit\nexample.org/greet\n")
    (src / "vendor/example.org/greet/greet.go").write_text('package greet\n\nfunc Hello() string { return "hello" }\n')
    out = extras / "usr/local/bin/hello"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=vendor", GOPROXY="off", GOTOOLCHAIN="local",
               GOCACHE=str(work / "gocache"), GOPATH=str(work / "gopath"))
    run(["go", "build", "-trimpath", "-o", str(out), "."], cwd=src, env=env)
    # Its version set at link time, as release tooling does: the (devel) main module is named by it.
    run(["go", "build", "-trimpath", "-ldflags", "-X main.version=3.4.5", "-o", str(out.parent / "hello-ldflags"), "."],
        cwd=src, env=env)
    # Built outside module mode, as Debian builds its Go packages: a package path, no module lines.
    gopath = work / "gopath-src"
    pkg = gopath / "src/example.org/gopath/cmd/hello"
    pkg.mkdir(parents=True)
    (pkg / "main.go").write_text('package main\n\nimport "fmt"\n\nvar version string\n\nfunc main() { fmt.Println("hi", version) }\n')
    run(["go", "build", "-trimpath", "-o", str(out.parent / "hello-gopath"), "."], cwd=pkg,
        env=dict(env, GO111MODULE="off", GOPATH=str(gopath), GOFLAGS=""))


GO_MOD_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
GO_MOD_END = bytes.fromhex("f932433186182072008242104116d8f2")


def go_pointer_elf(go_version: str, mod_info: str, rodata_prefix: bytes = b"") -> bytes:
    """An x86-64 ELF executable with Go 1.13-1.17 build information (the pointer format) as the Go
    linker lays it out: the strings in a read-only segment, the data segment starting with the
    32-byte header whose two pointers name the Go string headers (address, length) after it. No
    Go older than 1.19 is packaged here; Go's own debug/buildinfo (in Syft) reads this file."""
    base = 0x400000
    version = go_version.encode()
    framed = GO_MOD_START + mod_info.encode() + GO_MOD_END
    rodata = rodata_prefix + b"\0\0"
    version_at = 0x1000 + len(rodata)
    rodata += version + b"\0\0\0"
    mod_at = 0x1000 + len(rodata)
    rodata += framed + b"\0\0"
    data_off = (0x1000 + len(rodata) + 0xFFF) // 0x1000 * 0x1000
    q = lambda v: v.to_bytes(8, "little")
    data = b"\xff Go buildinf:" + bytes([8, 0]) + q(base + data_off + 32) + q(base + data_off + 48)
    data += q(base + version_at) + q(len(version)) + q(base + mod_at) + q(len(framed)) + bytes(256)
    segments = [(1, 5, 0, 0x1000), (1, 4, 0x1000, len(rodata)), (1, 6, data_off, len(data)), (0x6474E551, 6, 0, 0)]
    h = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    h += (2).to_bytes(2, "little") + (62).to_bytes(2, "little") + (1).to_bytes(4, "little") + q(base + 0x800) + q(64) + q(0)
    h += bytes(4) + (64).to_bytes(2, "little") + (56).to_bytes(2, "little") + len(segments).to_bytes(2, "little")
    h += (64).to_bytes(2, "little") + bytes(4)
    for kind, flags, offset, size in segments:
        vaddr = base + offset if size else 0
        h += kind.to_bytes(4, "little") + flags.to_bytes(4, "little") + q(offset) + q(vaddr) + q(vaddr) + q(size) + q(size)
        h += q(0x1000)
    out = h + b"\xc3" * (0x1000 - len(h)) + rodata
    return out + bytes(data_off - len(out)) + data


def _legacy_go(extras: Path):
    # A Go 1.16 binary: a (devel) main module, named by the version string in its read-only data.
    mod = ("path\texample.org/legacy/cmd/tool\nmod\texample.org/legacy\t(devel)\t\n"
           "dep\tgolang.org/x/text\tv0.3.6\th1:aaa=\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:bbb=\n")
    out = extras / "usr/local/bin/legacy-tool"
    out.write_bytes(go_pointer_elf("go1.16.15", mod, rodata_prefix=b"\0" + b"2.8.1" + b"\0"))
    out.chmod(0o755)


RPM_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make-test-rpmdb"


def rpm_database() -> bytes:
    """The cached rpm database's bytes (made first when absent: a few seconds)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"rpmdb-{hashlib.sha256(RPM_SCRIPT.read_bytes()).hexdigest()[:16]}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "rpmdb.sqlite").is_file():
            work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
            try:
                run(["bash", str(RPM_SCRIPT), str(work)])
                os.rename(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return (final / "rpmdb.sqlite").read_bytes()
