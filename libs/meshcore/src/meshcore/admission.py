"""Admission to a mesh, pure: both sides prove they hold the mesh secret.

  dialer   -> listener  hello     {node_id, mesh_id, nonce}
  listener -> dialer    challenge {node_id, nonce, proof}    proof = HMAC(secret, "listener" | both nonces | both ids)
  dialer   -> listener  proof     {proof}                    proof = HMAC(secret, "dialer"   | both nonces | both ids)
  listener -> dialer    welcome   {}

Neither side serves anything else on the connection until this completes. The
secret never crosses the wire; the nonces make every proof single-use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_nonce() -> bytes:
    return secrets.token_bytes(32)


def proof(secret: bytes, side: str, dialer_nonce: bytes, listener_nonce: bytes, dialer_id: str, listener_id: str) -> bytes:
    message = b"|".join([side.encode(), dialer_nonce, listener_nonce, dialer_id.encode(), listener_id.encode()])
    return hmac.new(secret, message, hashlib.sha256).digest()


def check(expected: bytes, got: object) -> bool:
    return isinstance(got, bytes) and hmac.compare_digest(expected, got)
