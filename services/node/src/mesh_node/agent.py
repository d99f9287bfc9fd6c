"""The node agent: identity, the mesh link, the gRPC API on the home's unix
socket, and one ModelRunner per model, all owned by one TaskGroup. Cancelling
`run()` (SIGTERM, Ctrl-C) says goodbye to the mesh and stops every llama-server
before it returns."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc

from meshcore import __version__, grpc_limits
from meshcore.api import node_pb2_grpc
from meshcore.catalog import fetchable
from meshcore.config import NodeConfig
from meshcore.errors import ConfigError, PortInUse, TokenError
from meshcore.home import Home
from meshcore.identity import (IDENTITY_KEY, Identity, MeshSecret, load_or_create_identity, load_or_create_mesh_secret, load_or_create_owner,
                               load_pending_rotation, newest_key)
from meshcore.link_tls import LinkTls
from meshcore.member import MeshMember
from meshcore.membership import NodeRecord, next_version, owner_statement
from meshcore.models import model_id_of
from meshcore.netaddr import advertised_addresses
from meshcore.split_policy import describe
from meshcore.process import free_tcp_port, unix_socket_alive
from meshcore.token import InviteToken

from meshcore.llama_bin import RPC_SERVER, llama_bin_dir
from mesh_node.llama_server import LlamaServerFailed, RpcServer
from mesh_node.rpc_data import bind_data_port
from mesh_node.rpc_tunnel import RpcTunnels
from mesh_node.grpc_api import NodeAgentService
from mesh_node.memory import offered_memory_bytes
from mesh_node.mesh_link import MeshLink
from mesh_node.fetch import can_fetch_here
from mesh_node.model_runner import ModelRunner
from mesh_node.planner import FIT_FACTOR
from mesh_node.publisher import Publisher
from mesh_node.reconciler import Reconciler
from mesh_node.state import ModelEntry, NodeState

log = logging.getLogger(__name__)


async def start_grpc(home: Home, service: NodeAgentService) -> grpc.aio.Server:
    sock = home.node_socket
    if unix_socket_alive(str(sock)):
        raise ConfigError(f"another mesh-llm node is already running with home {home.root}")
    sock.unlink(missing_ok=True)
    server = grpc.aio.server(options=grpc_limits.OPTIONS)
    node_pb2_grpc.add_NodeAgentServicer_to_server(service, server)
    server.add_insecure_port(home.grpc_target)
    await server.start()
    os.chmod(sock, 0o600)
    return server


def mesh_to_use(home: Home, join: tuple[str, ...], identity: Identity,
                publish: bool = False) -> tuple[MeshSecret, list[InviteToken]]:
    """The mesh secret: the joined mesh's (from the tokens) or this node's own. A key
    this node already holds for the same mesh at a newer epoch (rotated while it was a
    member) wins over the --join token it was first started with. To publish, only a mesh
    this node created to be published (identity.load_or_create_mesh_secret)."""
    try:
        tokens = [InviteToken.decode(t) for t in join]
    except TokenError as exc:
        raise ConfigError(str(exc)) from exc
    if not tokens:
        return load_or_create_mesh_secret(home.root, identity.public_bytes, publish), []
    if publish:
        raise ConfigError("a node that joins a mesh does not publish it (its owner does): drop --publish")
    if len({(t.mesh_id, t.secret) for t in tokens}) > 1:
        raise ConfigError("the --join tokens belong to different meshes (or to one before and after rotate-key)")
    mesh = newest_key(home.root, tokens[0].mesh)
    if mesh.epoch > tokens[0].epoch:
        log.info("the mesh key was rotated since this --join token was made: using the newer key this node has")
    return mesh, tokens  # saved once the mesh admits this node (MeshLink.join), not before


async def run_rpc_server(bin_dir: Path, port: int, home: Home, config: NodeConfig, state: NodeState) -> None:
    """This node's ggml-rpc-server (127.0.0.1 only), running only while this node is a
    split worker (state.rpc_grants), restarted if it dies: its host reaches it through
    the mesh. llama.cpp's RPC server trusts whoever connects, so it is not left up."""
    if not (bin_dir / RPC_SERVER).exists():
        log.warning("no %s in %s: this node cannot take part in splits", RPC_SERVER, bin_dir)
        return
    seen = -1
    while True:
        while not state.rpc_grants:
            seen = await state.changes.wait(seen)
        server = RpcServer(bin_dir / RPC_SERVER, port, home.root / "logs" / "rpc-server.log",
                           home.root / "rpc-cache", config.device, config.threads)
        async with server:
            exited = asyncio.ensure_future(server.wait_exit())
            try:
                await server.wait_healthy(60)
            except (LlamaServerFailed, TimeoutError) as exc:
                log.warning("rpc-server did not start: %s", exc)
            else:
                state.set_rpc_port(port)
                while state.rpc_grants and not exited.done():
                    waiter = asyncio.ensure_future(state.changes.wait(seen))
                    await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
                    if waiter.done():
                        seen = waiter.result()
                    else:
                        waiter.cancel()
            finally:
                state.set_rpc_port(None)
            if not exited.done():
                exited.cancel()
                continue  # no longer a worker: leaving the block stops it
        log.warning("%s; restarting it in 2 s", server.exit_reason(exited.result()))
        await asyncio.sleep(2)


async def run(config: NodeConfig, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; then leave the mesh first (peers stop routing
    here at once), then stop the models."""
    home = Home(Path(config.home)).ensure()
    identity = load_or_create_identity(home.root)
    mesh, tokens = mesh_to_use(home, config.join, identity, config.publish)
    bin_dir = llama_bin_dir(config.llama_bin_dir)
    vram, source = offered_memory_bytes(config.max_vram_gb, config.device)
    paths = [Path(p) for p in config.models]
    owner = load_or_create_owner(home.root, Path(config.owner_key) if config.owner_key else None)
    record = NodeRecord(node_id=identity.node_id, version=next_version(), role="node", vram_bytes=vram,
                        models_on_disk=tuple(sorted(model_id_of(p) for p in paths)), app_version=__version__,
                        mesh_name=config.mesh_name, owner=owner.public_bytes,
                        owner_sig=owner.private_key.sign(owner_statement(identity.public_bytes)),
                        split_with=config.split_with,
                        can_fetch=fetchable(vram, FIT_FACTOR) if can_fetch_here() else ())
    member = MeshMember(identity, mesh, record)
    try:
        port = await member.endpoint.listen("0.0.0.0", config.bind_port)
    except OSError as exc:
        raise PortInUse(f"UDP port {config.bind_port} (the mesh endpoint, --bind-port) is already in use; "
                        "stop whatever uses it or pick another port") from exc
    data_sock = bind_data_port(port, pinned=config.bind_port != 0)
    member.publish(addrs=tuple(advertised_addresses(port)))
    state = NodeState(identity.node_id, mesh.mesh_id, "", vram, __version__, member)
    link = MeshLink(home, state, member, port)
    # Claimed before the gRPC API is up (a rotate-key then waits for it); an unreadable file stops the start.
    link.resume_rotation(load_pending_rotation(home.root))
    link.refresh_token()
    log.info("node %s in mesh %s; mesh endpoint on UDP port %d, split data on TCP port %d; offering %.1f GiB "
             "(%s memory); llama.cpp from %s", identity.node_id[:12], mesh.mesh_id[:12], port,
             data_sock.getsockname()[1], vram / (1 << 30), source, bin_dir)
    log.info("owner %s; this node %s", owner.node_id, describe(config.split_with, owner.node_id))
    rpc_port = free_tcp_port()
    tls = LinkTls(identity, home.root / IDENTITY_KEY, home.run_dir / "data-cert.pem")
    tunnels = RpcTunnels(member, state, tls, data_sock)
    state.rpc_links = tunnels.links
    def make_runner(entry: ModelEntry, decision) -> ModelRunner:  # noqa: ANN001 - Reconciler.decision
        return ModelRunner(entry, config, state, bin_dir, home.root / "logs", decision, tunnels,
                           home.root / "rpc-cache" / "rpc", gpu=source in ("nvidia", "apple"))

    reconciler = Reconciler(config, state, make_runner)
    server = await start_grpc(home, NodeAgentService(state, link, reconciler))
    try:
        async with asyncio.TaskGroup() as tasks:
            rpc_task = tasks.create_task(run_rpc_server(bin_dir, rpc_port, home, config, state), name="rpc-server")
            data_task = tasks.create_task(tunnels.run(), name="split data path")
            pinned = [ModelEntry(model_id_of(p), p, p.stat().st_size) for p in paths]
            models_task = tasks.create_task(reconciler.run(pinned), name="models")
            mesh_task = tasks.create_task(link.run(tokens), name="mesh link")
            publisher = Publisher(config, identity, link) if config.publish else None
            publish_task = tasks.create_task(publisher.run(), name="publish") if publisher else None
            await stop.wait()
            log.info("stopping: leaving the mesh, then stopping the models")
            if publisher is not None and publish_task is not None:
                publish_task.cancel()
                await publisher.withdraw()
            await link.leave()
            for task in [mesh_task, rpc_task, data_task, models_task]:
                task.cancel()
    finally:
        await server.stop(grace=0.5)
        home.node_socket.unlink(missing_ok=True)
