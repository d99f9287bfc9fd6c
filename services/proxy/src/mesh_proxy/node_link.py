"""Keeps the proxy's Router in step with the node agent: a gRPC WatchStatus
stream over the home's unix socket, reconnecting when the agent restarts."""

from __future__ import annotations

import asyncio
import logging

import grpc

from meshcore import grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home

from mesh_proxy.metrics import ProxyMetrics
from mesh_proxy.routes import Router, endpoints_from_proto

log = logging.getLogger(__name__)
RECONNECT_S = 0.5
DEMAND_REPORT_S = 5.0


async def follow_node(home: Home, router: Router, metrics: ProxyMetrics | None = None) -> None:
    warned = False
    while True:
        try:
            async with grpc.aio.insecure_channel(home.grpc_target, options=grpc_limits.OPTIONS) as channel:
                stub = node_pb2_grpc.NodeAgentStub(channel)
                async for status in stub.WatchStatus(pb.WatchStatusRequest()):
                    if not router.node_connected:
                        log.info("connected to the node agent (%s)", home.node_socket)
                    router.node_connected = True
                    warned = False
                    router.update(endpoints_from_proto(status.routes))
                    if metrics is not None:
                        metrics.node_status = status
        except grpc.aio.AioRpcError as exc:
            if router.node_connected or not warned:
                log.warning("node agent not reachable (%s); retrying", exc.code().name)
                warned = True
        router.node_connected = False
        router.update([])
        await asyncio.sleep(RECONNECT_S)


async def report_demand(home: Home, router: Router) -> None:
    """Tell the node agent this proxy's request counts; the node gossips them."""
    sent: dict[str, int] = {}
    while True:
        await asyncio.sleep(DEMAND_REPORT_S)
        counts = dict(router.requests)
        if counts == sent or not router.node_connected:
            continue
        try:
            async with grpc.aio.insecure_channel(home.grpc_target, options=grpc_limits.OPTIONS) as channel:
                await node_pb2_grpc.NodeAgentStub(channel).ReportDemand(pb.DemandReport(requests=counts), timeout=5)
            sent = counts
        except grpc.aio.AioRpcError as exc:
            log.debug("could not report demand: %s", exc.code().name)
