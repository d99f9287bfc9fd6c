"""Invite tokens: base64url (no padding) of msgpack {v, mesh_id, secret, addrs, node_id,
owner, epoch} (owner: the node id allowed to rotate the key; epoch: how often it did;
tokens made before owners existed lack both: nobody may rotate such a mesh's key).

Anyone holding a token can join the mesh, so it is printed only to the node's own
user (terminal, local console). Decoding validates every field and raises
TokenError with a sentence a user can act on.
"""

from __future__ import annotations

import base64
import binascii
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


@dataclass(frozen=True)
class InviteToken:
    mesh_id: MeshId
    secret: bytes
    addrs: tuple[str, ...]  # "ip:port" (or "[v6]:port") of the inviting node's QUIC endpoint
    node_id: NodeId
    owner: NodeId = NodeId("")
    epoch: int = 0

    def encode(self) -> str:
        packed = msgpack.packb({"v": TOKEN_VERSION, "mesh_id": self.mesh_id, "secret": self.secret,
                                "addrs": list(self.addrs), "node_id": self.node_id, "owner": self.owner,
                                "epoch": self.epoch})
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
        return InviteToken(MeshId(mesh_id), secret, tuple(addrs), NodeId(node_id), NodeId(owner), epoch)

    @property
    def mesh(self) -> "MeshSecret":
        from meshcore.identity import MeshSecret
        return MeshSecret(self.mesh_id, self.secret, self.owner, self.epoch)


def valid_addr(addr: str) -> bool:
    m = _ADDR.match(addr)
    return bool(m) and 0 < int(m[2]) < 65536
