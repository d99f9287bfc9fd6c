"""Admission to a mesh, pure: both sides prove they hold the mesh secret, and each
proves it holds the Ed25519 key its node id is the hash of, bound to this TLS channel.

  dialer   -> listener  hello     {node_id, mesh_id, nonce, key}
  listener -> dialer    challenge {node_id, nonce, key, proof, sig}
  dialer   -> listener  proof     {proof, sig}
  listener -> dialer    welcome   {}

  proof = HMAC(secret, side | both nonces | both ids)            (holds the mesh secret)
  sig   = Ed25519(key, transcript(side, nonces, ids, keys, cert)) (is that node id)

node id = sha256(key)[:16] in hex, so an id cannot be claimed without its key. The
transcript names the listener's TLS certificate as each side sees it (the listener:
its own; the dialer: the one this QUIC session was set up with, whose key must be
the listener's key): a relay that terminates TLS towards each side has its own
certificate towards the dialer, so neither signature verifies across it and it
cannot sit in the middle. Neither side serves anything else on the connection until
this completes; the secret never crosses the wire; nonces make every proof single-use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def new_nonce() -> bytes:
    return secrets.token_bytes(32)


def proof(secret: bytes, side: str, dialer_nonce: bytes, listener_nonce: bytes, dialer_id: str, listener_id: str) -> bytes:
    message = b"|".join([side.encode(), dialer_nonce, listener_nonce, dialer_id.encode(), listener_id.encode()])
    return hmac.new(secret, message, hashlib.sha256).digest()


def check(expected: bytes, got: object) -> bool:
    return isinstance(got, bytes) and hmac.compare_digest(expected, got)


def transcript(side: str, dialer_nonce: bytes, listener_nonce: bytes, dialer_id: str, listener_id: str,
               dialer_key: bytes, listener_key: bytes, listener_cert_sha256: bytes) -> bytes:
    return b"|".join([b"mesh-llm admission v2", side.encode(), dialer_nonce, listener_nonce, dialer_id.encode(),
                      listener_id.encode(), dialer_key, listener_key, listener_cert_sha256])


def sign(private_key: "Ed25519PrivateKey", message: bytes) -> bytes:
    return private_key.sign(message)


def key_id(key: bytes) -> str:
    """The id of a raw Ed25519 public key: sha256[:16] in hex (node ids, owner ids)."""
    return hashlib.sha256(key).hexdigest()[:32]


def key_matches(node_id: object, key: object) -> bool:
    """Whether `key` (32 raw bytes) is an Ed25519 key whose hash is `node_id`."""
    from meshcore.identity import node_id_of
    if not isinstance(key, bytes) or len(key) != 32 or not isinstance(node_id, str):
        return False
    try:
        return node_id_of(Ed25519PublicKey.from_public_bytes(key)) == node_id
    except ValueError:
        return False


def verify(key: bytes, signature: object, message: bytes) -> bool:
    if not isinstance(signature, bytes):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False
