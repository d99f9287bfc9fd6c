"""The node agent's gRPC service (proto/mesh/v1/node.proto) over its unix socket."""

from __future__ import annotations

from typing import AsyncIterator

import grpc

from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc

from mesh_node.state import NodeState


class NodeAgentService(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, state: NodeState) -> None:
        self.state = state

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.NodeStatus:
        return self.state.snapshot()

    async def WatchStatus(self, request: pb.WatchStatusRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.NodeStatus]:
        seen = self.state.seq
        yield self.state.snapshot()
        while True:
            seen = await self.state.changes.wait(seen)
            yield self.state.snapshot()

    async def GetRoutes(self, request: pb.GetRoutesRequest, context: grpc.aio.ServicerContext) -> pb.RouteTable:
        return self.state.routes()
