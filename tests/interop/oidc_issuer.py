"""A small, real OIDC issuer for tests: serves discovery and JWKS over HTTP on loopback and signs
ID tokens with RS256 and ES256 (python `cryptography`). It counts the requests it receives, so a
test can prove an issuer was never contacted."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    length = length or (n.bit_length() + 7) // 8
    return n.to_bytes(length, "big")


class OIDCIssuer:
    def __init__(self, path: str = ""):
        """``path``: the issuer URL's path (e.g. ``/clusters/prod``, as a Kubernetes service-account
        issuer has); discovery and keys are served under it."""
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                issuer.requests += 1
                if self.path == path + "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                elif self.path == path + "/jwks":
                    body = issuer.jwks()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def jwks(self) -> dict:
        rn = self.rsa.public_key().public_numbers()
        en = self.ec.public_key().public_numbers()
        return {"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64url(_int_bytes(rn.n)), "e": b64url(_int_bytes(rn.e))},
            {"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
             "x": b64url(_int_bytes(en.x, 32)), "y": b64url(_int_bytes(en.y, 32))},
        ]}

    def token(self, sub: str, aud: str, alg: str = "RS256", iss: str | None = None, lifetime: int = 300,
              not_before: int = -5, extra: dict | None = None) -> str:
        """An ID token; ``extra`` adds or replaces claims (a list ``aud``, ``kubernetes.io``)."""
        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "kid": "rsa-1" if alg == "RS256" else "ec-1"}
        claims = {"iss": iss or self.url, "sub": sub, "aud": aud, "iat": now, "nbf": now + not_before, "exp": now + lifetime}
        claims.update(extra or {})
        signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
        if alg == "RS256":
            signature = self.rsa.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.ec.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = _int_bytes(r, 32) + _int_bytes(s, 32)
        return signing_input.decode() + "." + b64url(signature)
