"""The node agent: identity, the gRPC API on the home's unix socket, and one
ModelRunner per model, all owned by one TaskGroup. Cancelling `run()` (SIGTERM,
Ctrl-C) stops every llama-server before it returns."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc

from meshcore import __version__
from meshcore.api import node_pb2_grpc
from meshcore.config import NodeConfig
from meshcore.errors import ConfigError
from meshcore.home import Home
from meshcore.identity import load_or_create_identity, load_or_create_mesh_secret
from meshcore.models import model_id_of
from meshcore.netaddr import advertised_addresses
from meshcore.process import free_udp_port, unix_socket_alive
from meshcore.token import InviteToken

from mesh_node.binaries import LLAMA_SERVER, llama_bin_dir
from mesh_node.grpc_api import NodeAgentService
from mesh_node.memory import offered_memory_bytes
from mesh_node.model_runner import ModelRunner
from mesh_node.state import ModelEntry, NodeState

log = logging.getLogger(__name__)


async def start_grpc(home: Home, state: NodeState) -> grpc.aio.Server:
    sock = home.node_socket
    if unix_socket_alive(str(sock)):
        raise ConfigError(f"another mesh-llm node is already running with home {home.root}")
    sock.unlink(missing_ok=True)
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeAgentServicer_to_server(NodeAgentService(state), server)
    server.add_insecure_port(home.grpc_target)
    await server.start()
    os.chmod(sock, 0o600)
    return server


async def run(config: NodeConfig) -> None:
    home = Home(Path(config.home)).ensure()
    identity = load_or_create_identity(home.root)
    mesh = load_or_create_mesh_secret(home.root)
    bin_dir = llama_bin_dir(config.llama_bin_dir)
    vram, source = offered_memory_bytes(config.max_vram_gb, config.device)
    port = config.bind_port or free_udp_port()
    token = InviteToken(mesh.mesh_id, mesh.secret, tuple(advertised_addresses(port)), identity.node_id)
    state = NodeState(identity.node_id, mesh.mesh_id, token.encode(), vram, __version__)
    log.info("node %s in mesh %s; offering %.1f GiB (%s memory); llama.cpp from %s",
             identity.node_id[:12], mesh.mesh_id[:12], vram / (1 << 30), source, bin_dir)
    server = await start_grpc(home, state)
    try:
        async with asyncio.TaskGroup() as tasks:
            for path_text in config.models:
                path = Path(path_text)
                entry = ModelEntry(model_id_of(path), path, path.stat().st_size)
                state.add_model(entry)
                runner = ModelRunner(entry, config, state, bin_dir / LLAMA_SERVER, home.root / "logs")
                tasks.create_task(runner.run(), name=f"model {entry.model_id}")
            tasks.create_task(asyncio.Event().wait(), name="until stopped")
    finally:
        await server.stop(grace=0.5)
        home.node_socket.unlink(missing_ok=True)
