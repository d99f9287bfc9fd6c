"""The mesh's messages, defined once: control messages, stream headers and the local
tunnel request. Typed and frozen; every service writes and reads them through here.

On the wire a control message is one msgpack map (a frame, meshcore.wire) whose "t"
names the type. `parse_control` turns a frame into one of the classes below or
raises FrameError naming what is wrong: a field of the wrong type or size is
never passed on. Who may send which message is decided where it is handled
(meshcore.member), from the admitted identity of the connection, never from a
field of the message.

| message | sender → receiver | answer |
|---|---|---|
| Ping | any member → any member | Pong |
| PingReq(target) | any member → a node (indirect probe of a suspect) | PingAck(ok) |
| Leave(record) | a member leaving → its peers; the record must be its own, signed, `left` | — |
| Rekey(mesh_id, secret, epoch) | the mesh's owner only → members | Ok / Refused(why) |
| RpcLinkRequest(model, cert) | a split's host → its worker (mesh_node.rpc_data) | RpcLinkOffer / Refused(why) |

HTTP and RPC streams start with a `StreamHeader` (the model they are for). The
local proxy asks its node agent for a stream to a remote node with one
`TunnelRequest` line on the agent's unix socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from meshcore.ids import NodeId
from meshcore.wire import FrameError

_NODE_ID = re.compile(r"^[0-9a-f]{32}$")
_TICKET = re.compile(r"^([0-9a-f]{32})?$")
MAX_MODEL_ID = 200
MAX_WHY = 200
MAX_CERT = 2048  # an Ed25519 self-signed certificate is ~300 bytes


def _node_id(value: Any, what: str) -> NodeId:
    if not isinstance(value, str) or not _NODE_ID.match(value):
        raise FrameError(f"{what} is not a node id")
    return NodeId(value)


def _cert(value: Any) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_CERT:
        raise FrameError("the certificate is missing or too big")
    return value


def _model(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MODEL_ID or any(c.isspace() for c in value):
        raise FrameError("the model is not a model id")
    return value


@dataclass(frozen=True)
class Ping:
    TAG: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Pong:
    TAG: ClassVar[str] = "pong"


@dataclass(frozen=True)
class PingReq:
    TAG: ClassVar[str] = "ping_req"
    target: NodeId


@dataclass(frozen=True)
class PingAck:
    TAG: ClassVar[str] = "ack"
    ok: bool


@dataclass(frozen=True)
class Leave:
    TAG: ClassVar[str] = "leave"
    record: dict  # the sender's own record in its wire form (meshcore.membership checks it)


@dataclass(frozen=True)
class Rekey:
    TAG: ClassVar[str] = "rekey"
    mesh_id: str
    secret: bytes
    epoch: int


@dataclass(frozen=True)
class RpcLinkRequest:
    """A split's host asks its worker for a direct TCP+TLS link to the worker's rpc-server
    for `model`; `cert`: the host's certificate (DER) for the worker to pin."""
    TAG: ClassVar[str] = "rpc_link"
    model: str
    cert: bytes


@dataclass(frozen=True)
class RpcLinkOffer:
    """The worker's answer: connect to `port` (TCP) at the address this mesh connection
    reaches it at, name `ticket` in TLS, pin `cert`. port 0: this worker has no TCP data
    path (use the QUIC RPC stream)."""
    TAG: ClassVar[str] = "rpc_offer"
    port: int
    ticket: str
    cert: bytes


@dataclass(frozen=True)
class Ok:
    TAG: ClassVar[str] = "ok"


@dataclass(frozen=True)
class Refused:
    TAG: ClassVar[str] = "refused"
    why: str


Control = Union[Ping, Pong, PingReq, PingAck, Leave, Rekey, RpcLinkRequest, RpcLinkOffer, Ok, Refused]


def to_wire(message: Control) -> dict[str, Any]:
    return {"t": message.TAG, **{k: getattr(message, k) for k in message.__dataclass_fields__}}


def parse_control(frame: dict[str, Any]) -> Control:
    tag = frame.get("t")
    if tag == Ping.TAG:
        return Ping()
    if tag == Pong.TAG:
        return Pong()
    if tag == PingReq.TAG:
        return PingReq(_node_id(frame.get("target"), "ping_req target"))
    if tag == PingAck.TAG:
        if not isinstance(frame.get("ok"), bool):
            raise FrameError("ack without ok")
        return PingAck(frame["ok"])
    if tag == Leave.TAG:
        if not isinstance(frame.get("record"), dict):
            raise FrameError("leave without a record")
        return Leave(frame["record"])
    if tag == Rekey.TAG:
        mesh_id, secret, epoch = frame.get("mesh_id"), frame.get("secret"), frame.get("epoch")
        if not (isinstance(mesh_id, str) and len(mesh_id) <= 64 and isinstance(secret, bytes) and len(secret) == 32
                and isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch < 1 << 63):
            raise FrameError("malformed rekey")
        return Rekey(mesh_id, secret, epoch)
    if tag == RpcLinkRequest.TAG:
        return RpcLinkRequest(_model(frame.get("model")), _cert(frame.get("cert")))
    if tag == RpcLinkOffer.TAG:
        port, ticket = frame.get("port"), frame.get("ticket")
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port < 65536
                and isinstance(ticket, str) and _TICKET.match(ticket)):
            raise FrameError("malformed rpc link offer")
        return RpcLinkOffer(port, ticket, _cert(frame.get("cert")))
    if tag == Ok.TAG:
        return Ok()
    if tag == Refused.TAG:
        why = frame.get("why")
        return Refused(why[:MAX_WHY] if isinstance(why, str) else "")
    raise FrameError(f"unknown control message {str(tag)[:32]!r}")


@dataclass(frozen=True)
class StreamHeader:
    """The first frame of an HTTP or RPC stream: which model it is for."""
    model: str

    def to_wire(self) -> dict[str, Any]:
        return {"model": self.model}

    @staticmethod
    def parse(frame: dict[str, Any]) -> "StreamHeader":
        return StreamHeader(_model(frame.get("model")))


@dataclass(frozen=True)
class TunnelRequest:
    """The line the local proxy sends on the node agent's tunnel socket before raw
    HTTP: "HTTP <node_id> <model> <path>\\n" (the path: for errors in its API family)."""
    node_id: NodeId
    model: str
    path: str = "/"
    MAX_LINE: ClassVar[int] = 512

    def encode(self) -> bytes:
        return f"HTTP {self.node_id} {self.model} {self.path}\n".encode()

    @staticmethod
    def decode(line: bytes) -> "TunnelRequest":
        if len(line) > TunnelRequest.MAX_LINE:
            raise FrameError("tunnel request line too long")
        try:
            kind, node_id, model, path = line.decode().split()
        except (UnicodeDecodeError, ValueError) as exc:
            raise FrameError("tunnel request is not 'HTTP <node_id> <model> <path>'") from exc
        if kind != "HTTP" or not path.startswith("/") or len(path) > MAX_MODEL_ID:
            raise FrameError(f"unknown tunnel kind {kind[:16]!r} or bad path")
        return TunnelRequest(_node_id(node_id, "tunnel node"), _model(model), path)
