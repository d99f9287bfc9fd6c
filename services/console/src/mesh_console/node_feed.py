"""The console's live copy of the node status: follows the node agent's gRPC
WatchStatus stream (reconnecting), keeps the latest JSON view and signals
every change to the SSE subscribers."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from meshcore import grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.changes import Changes
from meshcore.home import Home

from mesh_console.changes_view import describe_changes
from mesh_console.status_view import status_json

log = logging.getLogger(__name__)
RECONNECT_S = 0.5
MAX_EVENTS = 100


class NodeFeed:
    def __init__(self, home: Home, api_port: int) -> None:
        self.home = home
        self.api_port = api_port
        self.latest: dict | None = None
        self.changes = Changes()
        self.events: list[tuple[int, float, str]] = []  # (seq, unix time, what changed), the last MAX_EVENTS

    def _set(self, view: dict | None) -> None:
        described = describe_changes(self.latest, view)
        self.latest = view
        self.changes.bump()
        now = time.time()
        self.events = (self.events + [(self.changes.seq, now, text) for text in described])[-MAX_EVENTS:]

    def history(self) -> list[dict]:
        """The last changes this console saw, oldest first (the page shows them at once)."""
        return [{"time": round(t, 3), "text": text} for _, t, text in self.events]

    async def run(self) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.home.grpc_target, options=grpc_limits.OPTIONS) as channel:
                    stub = node_pb2_grpc.NodeAgentStub(channel)
                    async for status in stub.WatchStatus(pb.WatchStatusRequest()):
                        self._set(status_json(status, self.api_port))
            except grpc.aio.AioRpcError as exc:
                if self.latest is not None:
                    log.warning("lost the node agent (%s); reconnecting", exc.code().name)
            if self.latest is not None:
                self._set(None)
            await asyncio.sleep(RECONNECT_S)
