"""A split's RPC links. No RPC port is ever reachable from another machine:

- on a split's host, `open_links()` opens one local port per worker (127.0.0.1) for
  `llama-server --rpc`; each connection to it becomes a link to that worker's
  rpc-server: the direct TCP + TLS path (mesh_node.rpc_data) where it can be set up,
  else a QUIC RPC stream of the mesh connection, said once in the log and in the
  status (RpcLink.path). Once the direct path failed for a worker, that split's
  connections to it take the QUIC stream at once for DIRECT_RETRY_S (no 3 s wait each),
  then the direct path is tried again. Bytes each way are counted per link.
- on a worker, a link (either path) reaches the local rpc-server (127.0.0.1) only
  when this node's own plan makes it a worker of the split that the link's sender
  hosts, for the model the link names (`NodeState.rpc_grants`). llama.cpp's RPC
  protocol reads and writes the server's memory and fills its tensor cache: any other
  sender (a client, a member that is not the host, a host asking for another model) is
  refused, and one link at a time is served (the host's llama-server keeps one
  connection per worker). A link whose grant is withdrawn (the plan changed) is cut.
  The sender has RPC_GRANT_WAIT_S to become entitled: host and worker compute the same
  plan from gossip, not at the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable

from meshcore.api import node_pb2 as pb
from meshcore.ids import ModelId, NodeId
from meshcore.link_tls import LinkTls, nodelay
from meshcore.log_limit import LimitedLog
from meshcore.member import MeshMember
from meshcore.messages import Refused, RpcLinkOffer, RpcLinkRequest, StreamHeader
from meshcore.pipe import splice
from meshcore.socket_relay import RelayEnd, SocketRelay
from meshcore.transport import MeshConnection
from meshcore.wire import MAX_HEADER_FRAME, Kind, read_frame

from mesh_node import rpc_data
from mesh_node.state import NodeState

log = logging.getLogger(__name__)
RPC_GRANT_WAIT_S = 10.0
MAX_ASKING = 4  # link requests of one member waiting at once
DIRECT_RETRY_S = 60.0  # after the direct path failed for a worker, its links take the QUIC stream this long


@dataclass
class RpcLink:
    peer: str
    model: str
    to_worker: list[int] = field(default_factory=lambda: [0, 0])    # [bytes, reads]
    from_worker: list[int] = field(default_factory=lambda: [0, 0])  # [bytes, reads]
    path: int = pb.RPC_PATH_UNSPECIFIED
    path_note: str = ""  # why the QUIC stream, in words


class NotNow(Exception):
    """This link may not use the rpc-server (why, in words)."""


class RpcTunnels:
    """`data_sock`: the worker side's TCP listening socket (None: this node offers no direct path)."""

    def __init__(self, member: MeshMember, state: NodeState, tls: LinkTls,
                 data_sock: socket.socket | None = None) -> None:
        self.member = member
        self.state = state
        self.tls = tls
        self.data = rpc_data.RpcDataListener(tls, data_sock, self.serve_direct) if data_sock is not None else None
        self.links: list[RpcLink] = []
        self.busy = asyncio.Lock()  # one link to the rpc-server at a time
        self._asking: Counter[NodeId] = Counter()  # link requests waiting for this node's plan, per member
        self.refusals = LimitedLog(log, rpc_data.REFUSALS_LOGGED, "refused %d more split link requests in the last minute")
        member.endpoint.handlers[Kind.RPC] = self._serve_stream
        member.answer(RpcLinkRequest, self._offer)

    async def run(self) -> None:
        if self.data is not None:
            await self.data.run()

    # -- worker side ---------------------------------------------------------------------

    def entitled(self, model: object, sender: str | None) -> bool:
        return (isinstance(model, str) and sender is not None and self.state.rpc_grants.get(ModelId(model)) == sender
                and self.state.rpc_port is not None)

    async def _wait_entitled(self, model: object, sender: str | None) -> bool:
        try:
            async with asyncio.timeout(RPC_GRANT_WAIT_S):
                seen = -1
                while not self.entitled(model, sender):
                    seen = await self.state.changes.wait(seen)
        except TimeoutError:
            return False
        return True

    async def _offer(self, sender: NodeId, request: RpcLinkRequest) -> RpcLinkOffer | Refused:
        """A host asks for the direct path: a ticket, only for the host this node's plan
        names; MAX_ASKING requests of each sender at a time (each may wait for the plan;
        an honest host asks one per split it hosts with this node at once)."""
        if self._asking[sender] >= MAX_ASKING:
            return Refused("too many split link requests at once")
        self._asking[sender] += 1
        try:
            if not await self._wait_entitled(request.model, sender):
                self.refusals.warning("refused a split link request from node %s for %r: this node is not a "
                                      "worker of a split it hosts", sender[:12], request.model)
                return Refused("this node is not a worker of a split you host")
        finally:
            self._asking[sender] -= 1
            if not self._asking[sender]:
                del self._asking[sender]
        if self.data is None:
            return RpcLinkOffer(0, "", self.tls.cert_der)
        return self.data.offer(sender, ModelId(request.model), request.cert)

    @contextlib.asynccontextmanager
    async def _turn(self, model: str, sender: NodeId) -> AsyncIterator[int]:
        """The rpc-server's port, held for this link alone (NotNow if it may not have it)."""
        if not await self._wait_entitled(model, sender):
            raise NotNow("this node is not a worker of a split it hosts")
        try:
            async with asyncio.timeout(RPC_GRANT_WAIT_S):
                await self.busy.acquire()
        except TimeoutError:
            raise NotNow("another split link is in use") from None
        try:
            if not self.entitled(model, sender):
                raise NotNow("the plan changed")
            assert self.state.rpc_port is not None  # entitled() requires it
            yield self.state.rpc_port
        finally:
            self.busy.release()

    async def _while_entitled(self, work: Awaitable[object], model: str, sender: NodeId) -> None:
        """Run a link's copy until it ends, or until `sender` is no longer entitled (then cut it)."""
        async with asyncio.TaskGroup() as tasks:
            copying = tasks.create_task(work)
            withdrawn = tasks.create_task(self._wait_withdrawn(model, sender))
            await asyncio.wait({copying, withdrawn}, return_when=asyncio.FIRST_COMPLETED)
            copying.cancel()
            withdrawn.cancel()
        if not withdrawn.cancelled():
            log.info("cut the split link of node %s for %s: this node is no longer its worker", sender[:12], model)

    async def _wait_withdrawn(self, model: object, sender: str | None) -> None:
        seen = -1
        while self.entitled(model, sender):
            seen = await self.state.changes.wait(seen)

    async def _serve_stream(self, conn: MeshConnection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        """The QUIC path: an RPC stream from a host."""
        model, sender = StreamHeader.parse(await read_frame(reader, MAX_HEADER_FRAME)).model, conn.peer_id
        assert sender is not None  # streams are served only on admitted connections
        try:
            async with self._turn(model, sender) as port:
                local = await asyncio.open_connection("127.0.0.1", port)
                await self._while_entitled(splice((reader, writer), local, label=(
                    f"the RPC stream of node {sender[:12]} for {model}")), model, sender)
        except NotNow as exc:
            log.warning("refused an RPC stream from node %s for %r: %s", sender[:12], model, exc)
            writer.close()

    async def serve_direct(self, secure: ssl.SSLSocket, sender: NodeId, model: ModelId) -> None:
        """The direct path: a TLS connection whose ticket this node gave `sender`."""
        loop = asyncio.get_running_loop()
        local = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            async with self._turn(model, sender) as port:
                local.setblocking(False)
                await loop.sock_connect(local, ("127.0.0.1", port))
                relay = SocketRelay(secure, nodelay(local), greeting=rpc_data.READY,
                                    name=f"rpc-{sender[:8]}")
                log.info("split link from node %s for %s: direct TCP+TLS", sender[:12], model)
                await self._while_entitled(self._relay(relay, f"the split link of node {sender[:12]} for {model}"),
                                           model, sender)
        except NotNow as exc:
            log.warning("refused a split link from node %s for %r: %s", sender[:12], model, exc)
            with contextlib.suppress(OSError):
                secure.send(rpc_data.NOT_NOW)  # the host gives up this connection, not the direct path
        except OSError as exc:
            log.warning("could not reach this node's rpc-server for node %s: %s", sender[:12], exc)
        finally:
            secure.close()
            local.close()

    @staticmethod
    async def _relay(relay: SocketRelay, label: str) -> None:
        end = await relay.run()
        if end is RelayEnd.STALLED:
            log.warning("closed %s: the other side took nothing for %.0f s", label, relay.stall_s)
        elif end is RelayEnd.FAILED:
            log.warning("%s failed: %s", label, relay.error)

    # -- host side -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_links(self, model: str, workers: tuple[str, ...]) -> AsyncIterator[list[int]]:
        """Local ports, one per worker, in order, while the context lasts."""
        listeners: list[socket.socket] = []
        links: list[RpcLink] = []
        async with asyncio.TaskGroup() as tasks:
            accepting = []
            try:
                for worker in workers:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listeners.append(listener)
                    listener.bind(("127.0.0.1", 0))
                    listener.listen(8)
                    listener.setblocking(False)
                    link = RpcLink(worker, model)
                    links.append(link)
                    accepting.append(tasks.create_task(self._accept(listener, NodeId(worker), ModelId(model), link)))
                self.links.extend(links)
                yield [s.getsockname()[1] for s in listeners]
            finally:
                for task in accepting:
                    task.cancel()
                for listener in listeners:
                    listener.close()
                for link in links:
                    with contextlib.suppress(ValueError):
                        self.links.remove(link)

    async def _accept(self, listener: socket.socket, worker: NodeId, model: ModelId, link: RpcLink) -> None:
        loop = asyncio.get_running_loop()
        direct_failed = -DIRECT_RETRY_S  # when the direct path last failed for this worker
        async with asyncio.TaskGroup() as tasks:
            while True:
                conn, _ = await loop.sock_accept(listener)
                if loop.time() - direct_failed >= DIRECT_RETRY_S:
                    if await self._connect(nodelay(conn), worker, model, link, tasks):
                        direct_failed = loop.time()
                else:
                    tasks.create_task(self._over_quic(conn, worker, model, link))

    async def _connect(self, conn: socket.socket, worker: NodeId, model: ModelId, link: RpcLink,
                       tasks: asyncio.TaskGroup) -> bool:
        """Link one llama-server connection; True if the direct path failed (the QUIC
        stream took it). Set up before the next connection is accepted: llama-server
        opens them one after another."""
        try:
            secure, where = await rpc_data.dial(self.tls, self.member, worker, model, RPC_GRANT_WAIT_S)
        except rpc_data.LinkRefused as exc:
            log.warning("node %s refused the split link for %s: %s", worker[:12], model, exc)
            conn.close()
            return False
        except Exception as exc:  # noqa: BLE001 - NoDirectPath, or anything a worker's bytes caused
            why = str(exc) if isinstance(exc, rpc_data.NoDirectPath) else f"{type(exc).__name__}: {exc}"
            log.warning("split link to node %s for %s: no direct TCP path (%s); using the mesh's QUIC stream, "
                        "which is slower", worker[:12], model, why)
            link.path_note = why
            tasks.create_task(self._over_quic(conn, worker, model, link))
            return True
        if link.path != pb.RPC_PATH_DIRECT:
            log.info("split link to node %s for %s: direct TCP+TLS to %s", worker[:12], model, where)
        link.path, link.path_note = pb.RPC_PATH_DIRECT, ""
        relay = SocketRelay(conn, secure, link.to_worker, link.from_worker, name=f"rpc-{worker[:8]}")
        tasks.create_task(self._relay(relay, f"the split link to node {worker[:12]} for {model}"))
        return False

    async def _over_quic(self, conn: socket.socket, worker: NodeId, model: ModelId, link: RpcLink) -> None:
        reader, writer = await asyncio.open_connection(sock=conn)
        try:
            remote = await self.member.open_stream(worker, Kind.RPC, StreamHeader(model).to_wire())
        except (ConnectionError, OSError, TimeoutError):
            writer.close()
            return
        link.path = pb.RPC_PATH_QUIC
        await splice((reader, writer), remote, link.to_worker, link.from_worker,
                     label=f"the RPC stream to node {worker[:12]} for {model}")
