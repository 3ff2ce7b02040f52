#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*), every file written
here from scratch (no input copied from another project) and under 16 KiB. Run again to
regenerate the seeds; inputs the fuzzer adds (other names) are left alone."""
import gzip, io, json, os, shutil, sqlite3, struct, subprocess, sys, tarfile, tempfile, zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ScanningTests", "Fixtures")

def put(target, name, data):
    d = os.path.join(ROOT, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    assert len(data) < 16 << 10, (target, name, len(data))
    with open(os.path.join(d, "seed-" + name), "wb") as f: f.write(data)

OS_DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\nVERSION_CODENAME=bookworm\n'
OS_ALPINE = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME='Alpine Linux v3.19'\n"
DPKG = ("Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n"
        "Description: GNU C Library\n continued line\n .\n\n"
        "Package: openssl\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2\n\n"
        "Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n")
APK = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\nP:busybox\nV:1.36.1-r15\no:busybox\n\n"

# os-release, dpkg, apk, Python, npm
put("os-release", "debian", OS_DEBIAN)
put("os-release", "alpine", OS_ALPINE)
put("os-release", "odd", 'ID="unterminated\nID_LIKE="rhel fedora"\n=novalue\nVERSION_ID=\'9.3\'\\\n\r\n')
put("dpkg-status", "two", DPKG)
put("dpkg-status", "malformed", "Package libc6\n Status: install\nPackage: x\nVersion:\n\n\n:\n")
put("dpkg-status-d", "distroless", "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n")
put("dpkg-status-d", "empty-version", "Package: base-files\nVersion: \nSource: base-files (12.4)\n")
put("apk", "two", APK)
put("apk", "malformed", "P:\nV:1\n\nP:x\n\nV:2\nP:y\nZZZ\n")
put("python", "metadata", "Metadata-Version: 2.1\nName: Requests_OAuthlib\nVersion: 1.3.1\nSummary: x\n\nbody\n")
put("python", "pkg-info", "Metadata-Version: 1.0\r\nName: six\r\nVersion: 1.16.0\r\n")
put("npm", "plain", json.dumps({"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}))
put("npm", "scoped", json.dumps({"name": "@types/node", "version": "20.11.5", "dependencies": {"undici-types": "~5.26.4"}}))
put("npm", "nested", "[" * 40 + "]" * 40)

# rpm: an rpmdb.sqlite with one header blob (NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM).
def rpm_header(tags):
    entries, data = [], b""
    for tag, kind, value in tags:
        if kind == 4:
            while len(data) % 4: data += b"\0"
            entries.append((tag, 4, len(data), 1)); data += struct.pack(">I", value)
        else:
            entries.append((tag, 6, len(data), 1)); data += value.encode() + b"\0"
    blob = struct.pack(">II", len(entries), len(data))
    for e in entries: blob += struct.pack(">IIII", *e)
    return blob + data

def rpmdb(blobs, extra_sql=""):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "rpmdb.sqlite")
        c = sqlite3.connect(p)
        c.execute("PRAGMA page_size=1024")
        c.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        for b in blobs: c.execute("INSERT INTO Packages (blob) VALUES (?)", (b,))
        if extra_sql: c.executescript(extra_sql)
        c.commit(); c.close()
        return open(p, "rb").read()

put("rpm", "one", rpmdb([rpm_header([(1000, 6, "bash"), (1001, 6, "5.1.8"), (1002, 6, "9.el9"), (1003, 4, 1),
                                     (1022, 6, "x86_64"), (1044, 6, "bash-5.1.8-9.el9.src.rpm")])]))
put("rpm", "bad-blobs", rpmdb([b"\0\0\0\x01\0\0\0\x04", rpm_header([(1000, 6, "x")])[:20], b"",
                               rpm_header([(1000, 6, "gpg-pubkey"), (1001, 6, "1")])]))

# Java: a jar with pom.properties, and a war holding that jar (nested).
def zip_bytes(files, method=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in files: z.writestr(name, data)
    return b.getvalue()
jar = zip_bytes([("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n"),
                 ("META-INF/maven/org.example/lib/pom.properties", "groupId=org.example\nartifactId=lib\nversion=1.2.3\n")])
put("java", "jar", jar)
put("java", "war", zip_bytes([("WEB-INF/lib/lib-1.2.3.jar", jar),
                              ("META-INF/maven/org.example/app/pom.properties", "#c\ngroupId = org.example\nartifactId=app\nversion=2.0\n")],
                             zipfile.ZIP_STORED))
put("java", "stored", zip_bytes([("META-INF/maven/g/a/pom.properties", "groupId=g\nartifactId=a\nversion=0.1\n")], zipfile.ZIP_STORED))

# Go: an ELF file with Go 1.18+ build information (inline strings) at a 16-byte aligned offset.
def uvarint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def go_binary(modinfo, version="go1.22.1", flags=2):
    sentinel = bytes(range(0x30, 0x40))
    mod = sentinel + modinfo.encode() + sentinel
    head = b"\x7fELF" + b"\0" * 60
    info = b"\xff Go buildinf:" + bytes([8, flags]) + b"\0" * 16
    return head + info + uvarint(len(version)) + version.encode() + uvarint(len(mod)) + mod + b"\0" * 32
put("go", "modules", go_binary("path\texample.com/app\nmod\texample.com/app\t(devel)\t\n"
                               "dep\tgolang.org/x/text\tv0.14.0\th1:abc=\ndep\tgithub.com/a/b\tv1.0.0\n=>\t../b\t\t\n"))
put("go", "pre-1.18", go_binary("", flags=0))
put("go", "truncated", go_binary("dep\tx\tv1\n")[:90])

# OpenVEX
put("openvex", "doc", json.dumps({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1", "author": "sec",
    "timestamp": "2026-01-02T03:04:05Z", "version": 1, "statements": [
        {"vulnerability": {"name": "CVE-2024-1", "aliases": ["GHSA-aaaa-bbbb-cccc"]},
         "products": [{"@id": "pkg:oci/app@sha256%3Aabab", "subcomponents": [{"@id": "pkg:deb/debian/libc6"}]}],
         "status": "not_affected", "justification": "component_not_present", "timestamp": "2026-02-01T00:00:00.5Z"},
        {"vulnerability": "CVE-2024-2", "products": ["pkg:npm/left-pad@1.3.0"], "status": "under_investigation"}]}))

# Advisory feeds: this project's own test fixtures, and one record written here per shape.
for name in sorted(os.listdir(os.path.join(FIXTURES, "osv"))):
    if name.endswith(".json"): put("osv", name[:-5].lower(), open(os.path.join(FIXTURES, "osv", name), "rb").read())
put("osv", "all-zip", open(os.path.join(FIXTURES, "osv-all.zip"), "rb").read())
put("osv", "versions", json.dumps({"id": "PYSEC-2099-7", "modified": "2099-01-01T00:00:00Z", "aliases": ["CVE-2099-7"],
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [{"package": {"ecosystem": "PyPI", "name": "Pkg_Name"}, "versions": ["1.0", "1.0.post1"],
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "1.1"}]}]}]}))
put("debian", "tracker", open(os.path.join(FIXTURES, "debian-tracker.json"), "rb").read())
put("debian", "states", json.dumps({"openssl": {"CVE-2099-1": {"description": "x", "releases": {
    "bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2", "urgency": "high"},
    "trixie": {"status": "open", "urgency": "unimportant", "nodsa": "Minor issue"},
    "sid": {"status": "resolved", "fixed_version": "0", "urgency": "not yet assigned"}}}}}))
put("alpine", "secdb", open(os.path.join(FIXTURES, "alpine-secdb.json"), "rb").read())
put("alpine", "v3-19", json.dumps({"distroversion": "v3.19", "reponame": "main", "urlprefix": "https://dl-cdn.alpinelinux.org/alpine",
    "apkurl": "{{urlprefix}}/{{distroversion}}/{{reponame}}/{{arch}}/{{pkg.name}}-{{pkg.ver}}.apk", "archs": ["x86_64"],
    "packages": [{"pkg": {"name": "openssl", "secfixes": {"3.1.4-r1": ["CVE-2023-5363"], "0": ["CVE-2000-1 CVE-2000-2"]}}}]}))

# Layers: tar streams with the files the catalogers read, whiteouts and links; gzip and zstd.
def tar_bytes(entries, fmt=tarfile.GNU_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, kind, data in entries:
            i = tarfile.TarInfo(name); i.mtime = 0
            if kind == "dir": i.type = tarfile.DIRTYPE
            elif kind == "sym": i.type = tarfile.SYMTYPE; i.linkname = data
            elif kind == "hard": i.type = tarfile.LNKTYPE; i.linkname = data
            else:
                data = data.encode() if isinstance(data, str) else data; i.size = len(data)
                t.addfile(i, io.BytesIO(data)); continue
            t.addfile(i)
    return b.getvalue()
base = tar_bytes([("etc", "dir", None), ("usr/lib/os-release", "file", OS_DEBIAN), ("etc/os-release", "sym", "../usr/lib/os-release"),
                  ("var/lib/dpkg/status", "file", DPKG), ("var/lib/dpkg/status.d/tzdata", "file", "Package: tzdata\nVersion: 2024a\n"),
                  ("usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", "file", "Name: six\nVersion: 1.16.0\n"),
                  ("usr/lib/node_modules/left-pad/package.json", "file", '{"name":"left-pad","version":"1.3.0"}'),
                  ("opt/app.jar", "file", jar), ("usr/bin/app", "file", go_binary("mod\texample.com/app\tv1.0.0\t\n")),
                  ("usr/bin/app2", "hard", "usr/bin/app")])
put("layer", "base-tar", base)
put("layer", "base-gzip", gzip.compress(base, mtime=0))
put("layer", "whiteouts-pax", tar_bytes([("etc/.wh..wh..opq", "file", ""), ("usr/lib/.wh.os-release", "file", ""),
    ("lib/apk/db/installed", "file", APK), ("x/" + "long/" * 30 + "file", "file", "data"),
    ("../escape", "file", "x"), ("/abs/path", "file", "y"), ("loop", "sym", "loop"), ("h", "hard", "missing")], tarfile.PAX_FORMAT))
if shutil.which("zstd"):
    put("layer", "apk-zstd", subprocess.run(["zstd", "-q", "-c", "--no-check"], input=tar_bytes([("lib/apk/db/installed", "file", APK)]),
                                            capture_output=True, check=True).stdout)
else:
    sys.exit("zstd is needed to write the zstd layer seed")
