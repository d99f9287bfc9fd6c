"""A stand-in node agent for relay benchmarks: serves the NodeAgent gRPC status on a
home's socket with one route, model "synthetic" served locally at 127.0.0.1:PORT (the
synthetic upstream), so the real proxy forwards to it as it would to llama-server.

    python -m relay.agent --home H --upstream-port P
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import AsyncIterator

import grpc

from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home


class Agent(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, port: int) -> None:
        self.status = pb.NodeStatus(node_id="0" * 32, node_state="serving", routes=pb.RouteTable(routes=[pb.Route(
            model_id="synthetic", node_id="0" * 32, local=True, endpoint=f"127.0.0.1:{port}",
            state=pb.MODEL_STATE_SERVING)]))

    async def GetStatus(self, request, context):  # noqa: ANN001, ANN201, N802
        return self.status

    async def WatchStatus(self, request, context) -> AsyncIterator[pb.NodeStatus]:  # noqa: ANN001, N802
        yield self.status
        await asyncio.Event().wait()

    async def ReportDemand(self, request, context):  # noqa: ANN001, ANN201, N802
        return pb.DemandAck()


async def main_async(home: Home, port: int) -> None:
    home.ensure()
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeAgentServicer_to_server(Agent(port), server)
    server.add_insecure_port(home.grpc_target)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    a = p.parse_args()
    asyncio.run(main_async(Home(Path(a.home)), a.upstream_port))


if __name__ == "__main__":
    main()
