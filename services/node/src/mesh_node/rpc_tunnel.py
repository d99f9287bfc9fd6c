"""RPC over the mesh. No RPC port is ever reachable from another machine:

- on a worker, a QUIC RPC stream is piped to the local rpc-server (127.0.0.1),
  and only when this node's own plan makes it a worker of the split that the
  stream's sender hosts, for the model the stream names (`NodeState.rpc_grants`).
  llama.cpp's RPC protocol reads and writes the server's memory and fills its
  tensor cache: any other sender (a client, a member that is not the host, a host
  asking for another model) is refused, and one stream at a time is served (the
  host's llama-server keeps one connection per worker). A stream whose grant is
  withdrawn (the plan changed) is cut. The sender has RPC_GRANT_WAIT_S to become
  entitled: host and worker compute the same plan from gossip, not at the same
  instant;
- on a split's host, `open_links()` opens one local port per worker (127.0.0.1)
  for `llama-server --rpc`; each connection to it becomes a QUIC RPC stream to
  that worker. Bytes each way are counted per link (the console's rpc_links).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

from meshcore.ids import NodeId
from meshcore.member import MeshMember
from meshcore.messages import StreamHeader
from meshcore.pipe import splice
from meshcore.transport import MeshConnection
from meshcore.wire import MAX_HEADER_FRAME, Kind, read_frame

from mesh_node.state import NodeState

log = logging.getLogger(__name__)
RPC_GRANT_WAIT_S = 10.0


@dataclass
class RpcLink:
    peer: str
    model: str
    to_worker: list[int] = field(default_factory=lambda: [0, 0])    # [bytes, reads]
    from_worker: list[int] = field(default_factory=lambda: [0, 0])  # [bytes, reads]


class RpcTunnels:
    def __init__(self, member: MeshMember, state: NodeState) -> None:
        self.member = member
        self.state = state
        self.links: list[RpcLink] = []
        self.busy = asyncio.Lock()  # one RPC stream at a time
        member.endpoint.handlers[Kind.RPC] = self._serve_rpc

    def entitled(self, model: object, sender: str | None) -> bool:
        return (isinstance(model, str) and sender is not None and self.state.rpc_grants.get(model) == sender
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

    async def _serve_rpc(self, conn: MeshConnection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        model, sender = StreamHeader.parse(await read_frame(reader, MAX_HEADER_FRAME)).model, conn.peer_id
        if not await self._wait_entitled(model, sender):
            self.refuse(writer, model, sender, "this node is not a worker of a split it hosts")
            return
        try:
            async with asyncio.timeout(RPC_GRANT_WAIT_S):
                await self.busy.acquire()
        except TimeoutError:
            self.refuse(writer, model, sender, "another RPC stream is in use")
            return
        try:
            if not self.entitled(model, sender):
                self.refuse(writer, model, sender, "the plan changed")
                return
            assert self.state.rpc_port is not None  # entitled() requires it
            local = await asyncio.open_connection("127.0.0.1", self.state.rpc_port)
            piping = asyncio.ensure_future(splice((reader, writer), local,
                                                  label=f"the RPC stream of node {str(sender)[:12]} for {model}"))
            withdrawn = asyncio.ensure_future(self._wait_withdrawn(model, sender))
            try:
                await asyncio.wait({piping, withdrawn}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                withdrawn.cancel()
                piping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await piping
            if withdrawn.done() and not withdrawn.cancelled():
                log.info("cut the RPC stream of node %s for %s: this node is no longer its worker",
                         str(sender)[:12], model)
        finally:
            self.busy.release()

    async def _wait_withdrawn(self, model: object, sender: str | None) -> None:
        seen = -1
        while self.entitled(model, sender):
            seen = await self.state.changes.wait(seen)

    def refuse(self, writer: asyncio.StreamWriter, model: object, sender: str | None, why: str) -> None:
        log.warning("refused an RPC stream from node %s for %r: %s", str(sender)[:12], model, why)
        writer.close()

    @contextlib.asynccontextmanager
    async def open_links(self, model: str, workers: tuple[str, ...]) -> AsyncIterator[list[int]]:
        """Local ports, one per worker, in order, while the context lasts."""
        servers, links = [], []
        try:
            for worker in workers:
                link = RpcLink(worker, model)

                async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 worker: str = worker, link: RpcLink = link) -> None:
                    try:
                        remote = await self.member.open_stream(NodeId(worker), Kind.RPC,
                                                               StreamHeader(model).to_wire())
                    except (ConnectionError, OSError, TimeoutError):
                        writer.close()
                        return
                    await splice((reader, writer), remote, link.to_worker, link.from_worker,
                                 label=f"the RPC stream to node {worker[:12]} for {model}")

                server = await asyncio.start_server(handle, "127.0.0.1", 0)
                servers.append(server)
                links.append(link)
            self.links.extend(links)
            yield [s.sockets[0].getsockname()[1] for s in servers]
        finally:
            for server in servers:
                server.close()
            for link in links:
                with contextlib.suppress(ValueError):
                    self.links.remove(link)
