"""Client-only mode: this proxy joins the mesh by itself (no node agent, no
llama.cpp on this machine), as an API-only member that is never chosen to serve.

It holds a MeshMember with role "client": dials a member from the invite token,
pulls gossip, keeps the route table from it and opens QUIC HTTP streams straight
to the node serving each model. For the console it serves the same gRPC
NodeAgent status API on the home's socket that a node agent would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import AsyncIterator

import grpc

from meshcore import __version__, grpc_limits, mesh_view
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.demand import DemandMeter
from meshcore.errors import ConfigError, TokenError
from meshcore.home import Home
from meshcore.identity import load_or_create_identity, newest_key, save_mesh_secret
from meshcore.member import MeshMember
from meshcore.membership import NodeRecord, next_version
from meshcore.messages import StreamHeader
from meshcore.token import InviteToken
from meshcore.transport import AdmissionRefused
from meshcore.wire import Kind

from mesh_proxy.errors import BackendGone
from mesh_proxy.forward import CONNECT_TIMEOUT_S, Streams
from mesh_proxy.node_link import DEMAND_REPORT_S
from mesh_proxy.routes import Endpoint, Router, endpoints_from_proto

log = logging.getLogger(__name__)
CLIENT_MESH_FILE = "client-mesh.json"  # never a node's own mesh.json in the same home


class MeshClient:
    def __init__(self, home: Home, tokens: list[InviteToken], router: Router) -> None:
        self.home = home.ensure()
        self.tokens = tokens
        self.router = router
        # The newest key held for this mesh: this client's own, or (a client from before
        # client-mesh.json existed) one it kept in mesh.json.
        mesh = newest_key(home.root, newest_key(home.root, tokens[0].mesh), CLIENT_MESH_FILE)
        identity = load_or_create_identity(home.root)
        record = NodeRecord(node_id=identity.node_id, version=next_version(), role="client", app_version=__version__)
        self.member = MeshMember(identity, mesh, record,
                                 on_rekey=lambda m: save_mesh_secret(home.root, m, CLIENT_MESH_FILE))

    def routes(self) -> pb.RouteTable:
        return pb.RouteTable(routes=mesh_view.remote_routes(self.member), version=self.member.changes.seq)

    def status(self) -> pb.NodeStatus:
        joined = any(self.member.conns.values())
        status = pb.NodeStatus(node_id=self.member.node_id, mesh_id=self.member.mesh.mesh_id,
                               node_state="client" if joined else "joining", version=__version__,
                               seq=self.member.changes.seq)
        status.routes.CopyFrom(self.routes())
        status.peers.extend(mesh_view.peers(self.member))
        return status

    async def open(self, endpoint: Endpoint, path: str = "/") -> Streams:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                return await self.member.open_stream(endpoint.node_id, Kind.HTTP, StreamHeader(endpoint.model_id).to_wire())  # type: ignore[arg-type]
        except (OSError, TimeoutError, ConnectionError, AdmissionRefused) as exc:
            raise BackendGone(f"the node serving {endpoint.model_id!r} is not reachable") from exc

    async def _join(self) -> None:
        try:
            peer = await self.member.join_until_admitted([a for t in self.tokens for a in t.addrs])
        except AdmissionRefused as exc:
            raise ConfigError(f"the mesh refused this client: {exc} (the invite token may be old)") from exc
        log.info("joined mesh %s as a client through node %s", self.member.mesh.mesh_id[:12], peer[:12])

    async def _follow(self) -> None:
        seen = -1
        while True:
            self.router.update(endpoints_from_proto(self.routes()))
            seen = await self.member.changes.wait(seen)

    async def _report_demand(self) -> None:
        """This client's requests per model, gossiped in its record like a node's."""
        meter = DemandMeter()
        while True:
            await asyncio.sleep(DEMAND_REPORT_S)
            meter.observe(dict(self.router.requests), time.monotonic())
            rates = meter.rates(time.monotonic())
            if rates != self.member.membership.own.demand:
                self.member.publish(demand=rates)

    async def run(self) -> None:
        server = await self._serve_status()
        try:
            await self._join()
            self.router.node_connected = True
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow(), name="follow mesh")
                tasks.create_task(self.member.run(), name="gossip and probes")
                tasks.create_task(self._report_demand(), name="demand")
        finally:
            await asyncio.shield(self.member.leave())
            await server.stop(grace=0.2)
            self.home.node_socket.unlink(missing_ok=True)

    async def _serve_status(self) -> grpc.aio.Server:
        sock = self.home.node_socket
        sock.unlink(missing_ok=True)
        server = grpc.aio.server(options=grpc_limits.OPTIONS)
        node_pb2_grpc.add_NodeAgentServicer_to_server(ClientStatusService(self), server)
        server.add_insecure_port(self.home.grpc_target)
        await server.start()
        os.chmod(sock, 0o600)
        return server


class ClientStatusService(node_pb2_grpc.NodeAgentServicer):
    """The status half of the NodeAgent API, for the console on a client machine."""

    def __init__(self, client: MeshClient) -> None:
        self.client = client

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.NodeStatus:
        return self.client.status()

    async def WatchStatus(self, request: pb.WatchStatusRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.NodeStatus]:
        seen = self.client.member.changes.seq
        yield self.client.status()
        while True:
            seen = await self.client.member.changes.wait(seen)
            yield self.client.status()

    async def GetRoutes(self, request: pb.GetRoutesRequest, context: grpc.aio.ServicerContext) -> pb.RouteTable:
        return self.client.routes()


def tokens_from(join: tuple[str, ...]) -> list[InviteToken]:
    try:
        return [InviteToken.decode(t) for t in join]
    except TokenError as exc:
        raise ConfigError(str(exc)) from exc
