"""Invite tokens: base64url (no padding) of msgpack {v, mesh_id, secret, addrs, node_id,
owner, epoch, owner_key, salt} (owner: the node id allowed to rotate the key; epoch: how
often it did).

The owner is proven by the mesh id itself: a mesh's id is the hash of its owner's Ed25519
key and a salt (`owned_mesh_id`), and the token carries both. A token whose owner does not
prove out is refused; a token without them (made before this, or stripped by a member
hoping to pass as the owner) names no owner: nobody may rotate such a mesh's key, and a
directory does not list it (issue 28: a member could publish the real secret with itself
as owner, and joiners took its rekeys).

Anyone holding a token can join the mesh, so it is printed only to the node's own
user (terminal, local console). Decoding validates every field and raises
TokenError with a sentence a user can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from meshcore.errors import TokenError
from meshcore.ids import MeshId, NodeId

if TYPE_CHECKING:
    from meshcore.identity import MeshSecret

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 4096
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_ADDR = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
MESH_ID_CONTEXT = b"mesh-llm mesh id v1\x00"


def owned_mesh_id(owner_key: bytes, salt: bytes) -> MeshId:
    """The id of a mesh its owner's key created: sha256 of the key and a salt, 32 hex digits."""
    return MeshId(hashlib.sha256(MESH_ID_CONTEXT + owner_key + salt).hexdigest()[:32])


def owner_proven(mesh_id: str, owner: str, owner_key: bytes, salt: bytes) -> bool:
    """Whether `owner` created `mesh_id`: its key and the salt hash to the id, and the owner
    id is that key's."""
    from meshcore.admission import key_id
    return (len(owner_key) == 32 and len(salt) == 16 and owned_mesh_id(owner_key, salt) == mesh_id
            and key_id(owner_key) == owner)


@dataclass(frozen=True)
class InviteToken:
    mesh_id: MeshId
    secret: bytes
    addrs: tuple[str, ...]  # "ip:port" (or "[v6]:port") of the inviting node's QUIC endpoint
    node_id: NodeId
    owner: NodeId = NodeId("")
    epoch: int = 0
    owner_key: bytes = b""  # with `salt`: the proof that `owner` created the mesh (owned_mesh_id)
    salt: bytes = b""

    @staticmethod
    def of(mesh: "MeshSecret", addrs: tuple[str, ...], node_id: NodeId) -> "InviteToken":
        """A token to `mesh`, issued by `node_id` reachable at `addrs`."""
        return InviteToken(mesh.mesh_id, mesh.secret, addrs, node_id, mesh.owner, mesh.epoch, mesh.owner_key,
                           mesh.salt)

    @property
    def proven(self) -> bool:
        """Whether the token's owner is proven by its mesh id."""
        return owner_proven(self.mesh_id, self.owner, self.owner_key, self.salt)

    def encode(self) -> str:
        packed = msgpack.packb({"v": TOKEN_VERSION, "mesh_id": self.mesh_id, "secret": self.secret,
                                "addrs": list(self.addrs), "node_id": self.node_id, "owner": self.owner,
                                "epoch": self.epoch,
                                **({"owner_key": self.owner_key, "salt": self.salt} if self.owner_key else {})})
        return base64.urlsafe_b64encode(packed).rstrip(b"=").decode()

    @staticmethod
    def decode(text: str) -> "InviteToken":
        text = text.strip()
        if not text or len(text) > MAX_TOKEN_CHARS:
            raise TokenError("the invite token is empty or too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = msgpack.unpackb(raw, raw=False)
        except (binascii.Error, ValueError, msgpack.UnpackException) as exc:
            raise TokenError("the invite token is not valid (it may be cut short or mistyped)") from exc
        if not isinstance(data, dict):
            raise TokenError("the invite token is not valid")
        if data.get("v") != TOKEN_VERSION:
            raise TokenError(f"the invite token has version {data.get('v')!r}; this mesh-llm reads version {TOKEN_VERSION}")
        mesh_id, secret, addrs, node_id = (data.get(k) for k in ("mesh_id", "secret", "addrs", "node_id"))
        if not (isinstance(mesh_id, str) and _HEX32.match(mesh_id)):
            raise TokenError("the invite token has no valid mesh id")
        if not (isinstance(node_id, str) and _HEX32.match(node_id)):
            raise TokenError("the invite token has no valid node id")
        if not (isinstance(secret, bytes) and len(secret) == 32):
            raise TokenError("the invite token has no valid mesh secret")
        if not (isinstance(addrs, list) and addrs and len(addrs) <= 16
                and all(isinstance(a, str) and valid_addr(a) for a in addrs)):
            raise TokenError("the invite token has no valid address to join")
        owner, epoch = data.get("owner", ""), data.get("epoch", 0)
        if not (isinstance(owner, str) and (owner == "" or _HEX32.match(owner))):
            raise TokenError("the invite token has an invalid owner")
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch < 1 << 62):
            raise TokenError("the invite token has an invalid key epoch")
        owner_key, salt = data.get("owner_key", b""), data.get("salt", b"")
        if owner_key or salt:
            if not (isinstance(owner_key, bytes) and isinstance(salt, bytes)
                    and owner_proven(mesh_id, owner, owner_key, salt)):
                raise TokenError("the invite token's owner does not match its mesh id (a forged token?)")
        return InviteToken(MeshId(mesh_id), secret, tuple(addrs), NodeId(node_id), NodeId(owner), epoch,
                           owner_key, salt)

    @property
    def mesh(self) -> "MeshSecret":
        """The mesh it invites to. Its owner only if proven: a token without the proof names
        no owner (a member could otherwise hand out the secret naming itself)."""
        from meshcore.identity import MeshSecret
        if not self.proven:
            return MeshSecret(self.mesh_id, self.secret, NodeId(""), self.epoch)
        return MeshSecret(self.mesh_id, self.secret, self.owner, self.epoch, self.owner_key, self.salt)


def valid_addr(addr: str) -> bool:
    m = _ADDR.match(addr)
    return bool(m) and 0 < int(m[2]) < 65536
