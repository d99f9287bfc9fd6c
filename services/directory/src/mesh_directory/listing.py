"""What a listing is, and how its signature is checked.

A publish request is {listing, public_key, signed_at, signature}: the publishing
node's Ed25519 public key (hex), the time it signed (unix seconds), and its
signature over `signing_bytes(listing, signed_at, action)` (canonical JSON; defined
once, in meshcore.directory_client, which publishers sign with). The listing
id is derived from the key (it is the publishing node's id), so only that key can
refresh or remove it. The listing's invite token must be that node's own token for
that mesh (`token_matches`), and the mesh's owner: a mesh id is the hash of its
owner's key (meshcore.token.owned_mesh_id), so only that key may list it (issue 28:
anyone could list their own token under a popular mesh's id and take its joiners, or a
member the real secret naming itself owner). Nobody lists a token they did not issue, or a private
mesh's token under a public mesh's id. A signature older or newer than
SIGNATURE_WINDOW_S is refused, and so is one not newer than the last one this
directory took from the same key (no replays: every `Store` write checks its `Signed`, in the database,
in the same transaction as the write).
Field limits keep absurd values out (422), and nothing here is ever HTML.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SIGNATURE_WINDOW_S = 300
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\w.\-+:@/]+$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]


class Listing(BaseModel):
    """A mesh as it is shown to the world."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=20, max_length=4096, pattern=r"^[A-Za-z0-9_\-]+$",
                       description="invite token (base64url) that joins the mesh")
    mesh_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w .\-]+$")
    region: str = Field(default="", max_length=32, pattern=r"^[\w\-]*$")
    models_served: list[ModelName] = Field(default_factory=list, max_length=64)
    models_wanted: list[ModelName] = Field(default_factory=list, max_length=64)
    models_on_disk: list[ModelName] = Field(default_factory=list, max_length=256)
    total_vram_gb: float = Field(ge=0, le=1_000_000)
    node_count: int = Field(ge=1, le=100_000)
    client_count: int = Field(ge=0, le=1_000_000)
    max_clients: int = Field(default=0, ge=0, le=1_000_000, description="0: no limit")
    version: str = Field(max_length=32, pattern=r"^[\w.\-+]*$")


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listing: Listing
    public_key: Hex64
    signed_at: int = Field(ge=0, le=10**11)
    signature: Hex128


class RefreshRequest(BaseModel):
    """Keep a listing whose content has not changed: the digest the publish answered,
    signed (action `refresh:<listing id>:<digest>`), and no listing."""

    model_config = ConfigDict(extra="forbid")

    digest: Hex64
    public_key: Hex64
    signed_at: int = Field(ge=0, le=10**11)
    signature: Hex128


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: Hex64
    signed_at: int = Field(ge=0, le=10**11)
    signature: Hex128


def listing_id(public_key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:32]


def digest(listing: dict) -> str:
    """sha256 of the listing's canonical JSON: what a refresh names instead of the listing."""
    return hashlib.sha256(json.dumps(listing, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify(public_key_hex: str, signature_hex: str, message: bytes, signed_at: int, now: float | None = None) -> str | None:
    """None if valid, else why not (in words)."""
    now = time.time() if now is None else now
    if abs(now - signed_at) > SIGNATURE_WINDOW_S:
        return "the signature is too old or from the future (check the clock)"
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return "the signature does not match the listing and key"
    return None


def token_matches(listing: dict, public_key_hex: str) -> str | None:
    """None if the listing's token is the publishing node's own invite to the listed
    mesh, else why not (in words)."""
    from meshcore.errors import TokenError
    from meshcore.token import InviteToken
    try:
        token = InviteToken.decode(listing["token"])
    except TokenError as exc:
        return f"the listing's token does not decode: {exc}"
    if token.mesh_id != listing["mesh_id"]:
        return "the listing's token is for another mesh than its mesh_id"
    if token.node_id != listing_id(public_key_hex):
        return "the listing's token was not issued by the node whose key signed it"
    if not token.proven:
        return ("the listing's token does not prove its mesh's owner (mesh ids are bound to their owner's key: "
                "start a new public mesh with this version)")
    if token.owner_key.hex() != public_key_hex.lower():
        return "only a mesh's owner may list it (its id is bound to the owner's key)"
    return None
