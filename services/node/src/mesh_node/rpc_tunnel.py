"""RPC over the mesh. No RPC port is ever reachable from another machine:

- on a worker, a QUIC RPC stream is piped to the local rpc-server (127.0.0.1);
- on a split's host, `open_links()` opens one local port per worker (127.0.0.1)
  for `llama-server --rpc`; each connection to it becomes a QUIC RPC stream to
  that worker. Bytes each way are counted per link (the console's rpc_links).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from meshcore.ids import NodeId
from meshcore.member import MeshMember
from meshcore.pipe import splice
from meshcore.transport import MeshConnection
from meshcore.wire import MAX_HEADER_FRAME, Kind, read_frame


@dataclass
class RpcLink:
    peer: str
    model: str
    to_worker: list[int] = field(default_factory=lambda: [0, 0])    # [bytes, reads]
    from_worker: list[int] = field(default_factory=lambda: [0, 0])  # [bytes, reads]


class RpcTunnels:
    def __init__(self, member: MeshMember, rpc_port: Callable[[], int | None]) -> None:
        self.member = member
        self.rpc_port = rpc_port
        self.links: list[RpcLink] = []
        member.endpoint.handlers[Kind.RPC] = self._serve_rpc

    async def _serve_rpc(self, conn: MeshConnection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        await read_frame(reader, MAX_HEADER_FRAME)  # {"model": ...}: for the logs of a later version
        port = self.rpc_port()
        if not port:
            writer.write_eof()
            return
        local = await asyncio.open_connection("127.0.0.1", port)
        await splice((reader, writer), local)

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
                        remote = await self.member.open_stream(NodeId(worker), Kind.RPC, {"model": model})
                    except (ConnectionError, OSError, TimeoutError):
                        writer.close()
                        return
                    await splice((reader, writer), remote, link.to_worker, link.from_worker)

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
