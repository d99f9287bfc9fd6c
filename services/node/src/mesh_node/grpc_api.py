"""The node agent's gRPC service (proto/mesh/v1/node.proto) over its unix socket."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, AsyncIterator

import grpc

from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.errors import ConfigError
from meshcore.ids import ModelId, NodeId

from mesh_node.state import NodeState

if TYPE_CHECKING:
    from mesh_node.mesh_link import MeshLink
    from mesh_node.reconciler import Reconciler


class NodeAgentService(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, state: NodeState, link: "MeshLink", reconciler: "Reconciler") -> None:
        self.state = state
        self.link = link
        self.reconciler = reconciler

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

    async def RotateKey(self, request: pb.RotateKeyRequest, context: grpc.aio.ServicerContext) -> pb.RotateKeyReply:
        known = list(self.link.member.membership.records)
        exclude = set()
        for prefix in request.exclude:
            matches = [n for n in known if n.startswith(prefix.lower())] if len(prefix) >= 6 else []
            if len(matches) != 1:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"--exclude {prefix!r} names {'no' if not matches else 'more than one'} node of "
                                    "this mesh (give 6 or more digits of its id)")
            exclude.add(NodeId(matches[0]))
        try:
            told = await self.link.rotate_secret(exclude)
        except ConfigError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.RotateKeyReply(token=self.state.token, members_told=told)

    async def DropModel(self, request: pb.DropModelRequest, context: grpc.aio.ServicerContext) -> pb.DropModelReply:
        model_id = ModelId(request.model_id)
        if not await self.reconciler.drop(model_id):
            served = ", ".join(sorted(self.state.runners)) or "none"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"this node does not serve {request.model_id!r} (serving: {served})")
        return pb.DropModelReply(message=f"stopped serving {model_id}")

    async def ReportDemand(self, request: pb.DemandReport, context: grpc.aio.ServicerContext) -> pb.DemandAck:
        self.state.observe_demand(dict(request.requests), time.monotonic())
        return pb.DemandAck()
