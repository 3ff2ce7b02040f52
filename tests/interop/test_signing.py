"""Notation-compatible signing: ``berth certificate create-signing``, ``berth sign``,
``berth verify`` and ``berth trust-store`` against a real ``berth serve``.

The signature that ``berth sign`` pushes is checked independently here, with the
``cryptography`` package and ``requests`` (code that is not Berth's): the signature
manifest's shape, the JWS envelope's protected header and payload, the ECDSA signature
over ``BASE64URL(protected) '.' BASE64URL(payload)`` with the x5c leaf key, and the x5c
chain (leaf issued by the CA). Then ``berth verify`` passes with a matching trust policy
and fails, naming the failed check, with a policy that trusts another identity.

The referrers API is a Berth feature the reference registry lacks: ``berth_only``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers import ALL_MANIFEST_TYPES, sha256_digest
from test_cli import Cli, layout, push  # noqa: F401  (layout is a fixture)

pytestmark = pytest.mark.berth_only

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SUBJECT = "CN=payments.org,O=Platform"


def b64url_decode(text: str) -> bytes:
    assert "=" not in text, "base64url in JWS carries no padding"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def get(registry, path: str, accept: str = "") -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    r = requests.get(f"{registry.base}{path}", headers=headers, auth=registry.creds, timeout=30)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    return r


@pytest.fixture
def signer(registry, tmp_path):
    """A CLI with credentials in the environment and a private Notation config dir."""
    c = Cli(registry, tmp_path / "xdg")
    c.extra_env.update({
        "BERTH_USERNAME": registry.username,
        "BERTH_PASSWORD": registry.password,
        "NOTATION_CONFIG": str(tmp_path / "notation"),
    })
    return c


def write_policy(path: Path, scope: str, identity: str, level: str = "strict") -> Path:
    path.write_text(json.dumps({
        "version": "1.0",
        "trustPolicies": [{
            "name": "payments",
            "registryScopes": [scope],
            "signatureVerification": {"level": level},
            "trustStores": ["ca:payments-ca"],
            "trustedIdentities": [identity],
        }],
    }))
    return path


def test_sign_and_verify(registry, signer, layout, tmp_path):
    repo = "payments/api"
    push(registry, layout, repo, registry.creds)
    manifest = get(registry, f"/v2/{repo}/manifests/v1", ALL_MANIFEST_TYPES)
    digest = sha256_digest(manifest.content)
    ref = f"{registry.host}/{repo}@{digest}"

    # --- certificates ---------------------------------------------------------
    prefix = tmp_path / "payments"
    signer("certificate", "create-signing", "--subject", SUBJECT, "--ca", "--out", str(prefix))
    key_file, crt_file, ca_file = Path(f"{prefix}.key"), Path(f"{prefix}.crt"), Path(f"{prefix}-ca.crt")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    chain = x509.load_pem_x509_certificates(crt_file.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    assert len(chain) == 2 and chain[1] == ca_cert
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "payments.org"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Platform"
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in eku
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"

    # --- signing a tag is refused, with the digest to sign instead --------------
    p = signer.run("sign", f"{registry.host}/{repo}:v1", "--key", str(key_file), "--cert", str(crt_file),
                   "--insecure", check=False)
    assert p.returncode != 0
    assert digest in p.stdout.decode()
    assert "sign by digest" in p.stderr.decode()

    # --- sign ---------------------------------------------------------------------
    signer("sign", ref, "--key", str(key_file), "--cert", str(crt_file), "--expiry", "24h", "--insecure")

    # --- the signature, checked independently ---------------------------------------
    index = get(registry, f"/v2/{repo}/referrers/{digest}?artifactType={NOTARY_SIGNATURE}").json()
    sigs = [m for m in index["manifests"] if m.get("artifactType") == NOTARY_SIGNATURE]
    assert len(sigs) == 1, index
    sig_manifest_raw = get(registry, f"/v2/{repo}/manifests/{sigs[0]['digest']}", ALL_MANIFEST_TYPES).content
    assert sha256_digest(sig_manifest_raw) == sigs[0]["digest"]
    sm = json.loads(sig_manifest_raw)
    assert sm["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert sm["artifactType"] == NOTARY_SIGNATURE
    assert sm["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2}
    assert get(registry, f"/v2/{repo}/blobs/{EMPTY_DIGEST}").content == b"{}"
    assert sm["subject"]["digest"] == digest and sm["subject"]["size"] == len(manifest.content)
    assert len(sm["layers"]) == 1 and sm["layers"][0]["mediaType"] == "application/jose+json"
    envelope_raw = get(registry, f"/v2/{repo}/blobs/{sm['layers'][0]['digest']}").content
    assert sha256_digest(envelope_raw) == sm["layers"][0]["digest"]
    env = json.loads(envelope_raw)
    assert set(env) == {"payload", "protected", "header", "signature"}

    header = json.loads(b64url_decode(env["protected"]))
    assert header["alg"] == "ES256"
    assert header["cty"] == "application/vnd.cncf.notary.payload.v1+json"
    assert header["io.cncf.notary.signingScheme"] == "notary.x509"
    assert set(header["crit"]) == {"io.cncf.notary.signingScheme", "io.cncf.notary.expiry"}
    assert header["io.cncf.notary.signingTime"].endswith("Z")
    assert header["io.cncf.notary.expiry"] > header["io.cncf.notary.signingTime"]

    payload = json.loads(b64url_decode(env["payload"]))
    assert payload["targetArtifact"]["digest"] == digest
    assert payload["targetArtifact"]["size"] == len(manifest.content)
    assert payload["targetArtifact"]["mediaType"] == sm["subject"]["mediaType"]

    x5c = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in env["header"]["x5c"]]
    assert x5c == [leaf, ca_cert]
    assert env["header"]["io.cncf.notary.signingAgent"].startswith("berth/")
    thumbs = json.loads(sm["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"])
    assert thumbs == [hashlib.sha256(base64.b64decode(c)).hexdigest() for c in env["header"]["x5c"]]

    # JWS signature: raw r||s (64 bytes for ES256) over ASCII(protected '.' payload)
    raw_sig = b64url_decode(env["signature"])
    assert len(raw_sig) == 64
    der_sig = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    signing_input = (env["protected"] + "." + env["payload"]).encode("ascii")
    x5c[0].public_key().verify(der_sig, signing_input, ec.ECDSA(hashes.SHA256()))
    # the chain: leaf issued (and signed) by the CA, the CA self-signed
    x5c[0].verify_directly_issued_by(x5c[1])
    x5c[1].verify_directly_issued_by(x5c[1])

    # --- trust store ------------------------------------------------------------------
    signer("trust-store", "add", "--type", "ca", "--store", "payments-ca", str(ca_file))
    stored = Path(signer.extra_env["NOTATION_CONFIG"]) / "truststore/x509/ca/payments-ca/payments-ca.crt"
    assert x509.load_pem_x509_certificate(stored.read_bytes()) == ca_cert
    listing = signer("trust-store", "list").stdout.decode()
    assert "ca:payments-ca" in listing and "payments.org Signing CA" in listing

    # --- verify -----------------------------------------------------------------------
    scope = f"{registry.host}/{repo}"
    good = write_policy(tmp_path / "good.json", scope, "x509.subject: CN=payments.org, O=Platform")
    out = signer("verify", ref, "--trust-policy", str(good), "--insecure").stdout.decode()
    assert "verified" in out and sigs[0]["digest"] in out

    other = write_policy(tmp_path / "other.json", scope, "x509.subject: CN=someone-else.org, O=Platform")
    p = signer.run("verify", ref, "--trust-policy", str(other), "--insecure", check=False)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "authenticity" in err and "trusted identity" in err, err

    # a policy whose trust store does not hold the CA fails on authenticity too
    untrusted = tmp_path / "untrusted.json"
    untrusted.write_text(good.read_text().replace("ca:payments-ca", "ca:nobody"))
    p = signer.run("verify", ref, "--trust-policy", str(untrusted), "--insecure", check=False)
    assert p.returncode != 0 and "authenticity" in p.stderr.decode()

    # an unsigned manifest has no signature to verify
    p = signer.run("verify", f"{registry.host}/{repo}@{sm['layers'][0]['digest']}", "--trust-policy", str(good),
                   "--insecure", check=False)
    assert p.returncode != 0


def test_sign_requires_credentials(registry, tmp_path, layout):
    repo = "payments/nocreds"
    push(registry, layout, repo, registry.creds)
    digest = sha256_digest(get(registry, f"/v2/{repo}/manifests/v1", ALL_MANIFEST_TYPES).content)
    c = Cli(registry, tmp_path / "xdg")
    prefix = tmp_path / "solo"
    c("certificate", "create-signing", "--subject", "CN=solo", "--out", str(prefix))
    assert len(x509.load_pem_x509_certificates(Path(f"{prefix}.crt").read_bytes())) == 1
    assert not Path(f"{prefix}-ca.crt").exists()
    p = c.run("sign", f"{registry.host}/{repo}@{digest}", "--key", f"{prefix}.key", "--cert", f"{prefix}.crt",
              "--insecure", check=False)
    assert p.returncode != 0 and "401" in p.stderr.decode()
