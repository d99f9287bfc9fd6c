"""`mesh-llm` (no subcommand): start a node on this machine and supervise it.

Order: validate everything a user can get wrong (model paths, ports, a node
already running in this home) before starting anything; start the node agent and
wait for its gRPC API; start the proxy and the console; print where things are
and the invite token (the node agent logs each model's progress); on Ctrl-C or SIGTERM
stop the proxy and console, then the node agent (which stops llama-server).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
from argparse import Namespace
from pathlib import Path

import grpc

from meshcore import catalog, grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.config import ConsoleConfig, NodeConfig, ProxyConfig, to_json
from meshcore.directory_client import best_mesh, directory_url, list_meshes
from meshcore.errors import ConfigError, ModelNotFound
from meshcore.home import Home
from meshcore.host_guard import check_origin
from meshcore.llama_bin import check_device, list_devices, llama_bin_dir
from meshcore.membership import MESH, OWNER
from meshcore.models import looks_like_path, model_id_of, resolve_model
from meshcore.process import bind_tcp, unix_socket_alive
from meshcore.split_policy import parse_split_with
from meshcore.token import InviteToken

from mesh_cli.download import download, on_disk
from mesh_cli.supervisor import Child, GiveUp, keep_running
from mesh_cli.token_files import keep_token_file, read_join_file

log = logging.getLogger("mesh_cli")
NODE_START_TIMEOUT_S = 60.0


def choose_mesh(args: Namespace, models: tuple[str, ...]) -> bool:
    """--auto: put the best mesh's token in args.join. Returns True for buddy mode
    (a named mesh that does not exist yet: this node creates and publishes it)."""
    base = directory_url(args.directory)
    meshes = list_meshes(base, name=args.mesh_name)
    choice = best_mesh(meshes, [Path(m).stem for m in models], args.region or None)
    if choice is not None:
        print(f"mesh-llm: joining mesh {choice.mesh['name']!r} ({choice.why})", file=sys.stderr)
        args.join = [choice.mesh["token"]]
        return False
    if args.client:
        raise ConfigError(f"no mesh with room for a client was found in the directory {base}"
                          + (f" under the name {args.mesh_name!r}" if args.mesh_name else ""))
    if args.mesh_name:
        print(f"mesh-llm: no mesh named {args.mesh_name!r} yet: creating it and publishing it", file=sys.stderr)
        return True
    print("mesh-llm: no public mesh found: starting a new mesh of your own", file=sys.stderr)
    return False


def model_path(spec: str, home: Home, fetch: bool = False) -> Path:
    """--model: a file, a name in the models folders, or a catalog name — downloaded
    first, with progress, when `fetch` (mesh-llm's main does it before the event loop
    starts, so a download blocks nothing and Ctrl-C stops it at once)."""
    try:
        return resolve_model(spec, home)
    except ModelNotFound:
        entry = None if looks_like_path(spec) else catalog.find(spec)
        if entry is None:
            raise
    found = on_disk(entry)
    if found is None and not fetch:
        raise ModelNotFound(f"model {spec!r} ({entry.name}) is not downloaded yet")
    return found or download(entry)


def fetch_models(args: Namespace) -> None:
    """Download the catalog models --model and --draft name that are not on disk yet
    (not on a client, nor on a client-only install: build_configs says why in one line)."""
    if args.client or importlib.util.find_spec("mesh_node") is None:
        return
    home = Home(Path(args.home).expanduser().resolve())
    for spec in [*args.model, *([args.draft] if args.draft else [])]:
        model_path(spec, home, fetch=True)


def choose_drafts(args: Namespace, models: tuple[str, ...], home: Home) -> tuple[tuple[str, str], ...]:
    """(model, draft) pairs: --draft for every model; else each model's catalog draft
    when it is on disk; none with --no-draft."""
    if args.draft and args.no_draft:
        raise ConfigError("--draft and --no-draft contradict each other; keep one")
    if args.no_draft or args.client:
        return ()
    if args.draft:
        draft = str(model_path(args.draft, home))
        return tuple((m, draft) for m in models if m != draft)
    pairs = []
    for m in models:
        entry = catalog.find(model_id_of(Path(m)))
        draft_entry = catalog.find(entry.draft) if entry and entry.draft else None
        found = on_disk(draft_entry) if draft_entry else None
        if found is not None:
            log.info("%s will use the draft %s for speculative decoding (--no-draft to turn it off)",
                     model_id_of(Path(m)), draft_entry.name)  # type: ignore[union-attr]
            pairs.append((m, str(found)))
    return tuple(pairs)


def build_configs(args: Namespace) -> tuple[Home, NodeConfig, ProxyConfig, ConsoleConfig]:
    home = Home(Path(args.home).expanduser().resolve())
    if not args.client and importlib.util.find_spec("mesh_node") is None:
        raise ConfigError("this is a client-only install (no node agent): use mesh-llm --client --join TOKEN")
    if args.join_file:
        args.join.append(read_join_file(Path(args.join_file)))
    for token in args.join:
        InviteToken.decode(token)  # a mistyped token is a one-line error before anything starts
    if args.client and args.model:
        raise ConfigError("a --client serves no models: drop --model, or drop --client")
    if args.client and not args.join and not args.auto:
        raise ConfigError("--client needs --join TOKEN or --auto (the mesh to use)")
    models = tuple(str(model_path(spec, home)) for spec in args.model)
    if args.device and args.client:
        raise ConfigError("a --client runs no llama.cpp: drop --device, or drop --client")
    if args.device:  # checked against what the built llama.cpp reports, before anything starts
        args.device = check_device(args.device, list_devices(llama_bin_dir(args.llama_bin_dir)))
    if args.publish and args.join:
        raise ConfigError("--publish lists a mesh this node creates; a node that joins one (--join) does not "
                          "publish it: its owner does")
    buddy = choose_mesh(args, models) if args.auto else False
    host = "0.0.0.0" if args.listen_all else "127.0.0.1"
    for port, what in ((args.port, "API, --port"), (args.console, "console, --console")):
        bind_tcp(host, port, what).close()
    if args.port == args.console:
        raise ConfigError(f"--port and --console are both {args.port}; pick two different ports")
    home.ensure()
    if unix_socket_alive(str(home.node_socket)):
        raise ConfigError(f"a mesh-llm node is already running with home {home.root} "
                          f"(stop it, or pass another --home)")
    public = bool(args.publish or args.mesh_name or args.auto)
    split_with = parse_split_with(args.split_with) if args.split_with else ((OWNER,) if public else (MESH,))
    if args.owner_key and not Path(args.owner_key).expanduser().is_file():
        raise ConfigError(f"--owner-key {args.owner_key}: no such file")
    node = NodeConfig(home=str(home.root), models=models, max_vram_gb=args.max_vram, device=args.device,
                      bind_port=args.bind_port or 0, listen_all=args.listen_all,
                      llama_bin_dir=args.llama_bin_dir, ctx_size=args.ctx_size, parallel=args.parallel,
                      threads=args.threads or 0,
                      join=tuple(args.join), split=args.split, mesh_name=args.mesh_name or "",
                      publish=not args.join and (args.publish or bool(args.mesh_name) or buddy),
                      directory=args.directory or "",
                      region=args.region, max_clients=args.max_clients, buddy=buddy, split_with=split_with,
                      owner_key=str(Path(args.owner_key).expanduser().resolve()) if args.owner_key else "",
                      drafts=choose_drafts(args, models, home), auto_serve=bool(args.auto and not args.client),
                      hot_rpm=args.hot_rpm, min_serve_s=args.min_serve)
    proxy = ProxyConfig(home=str(home.root), port=args.port, listen_all=args.listen_all,
                        join=tuple(args.join) if args.client else (),
                        cors_origins=tuple(check_origin(o) for o in args.cors_origin))
    console = ConsoleConfig(home=str(home.root), port=args.console, api_port=args.port,
                            listen_all=args.listen_all)
    return home, node, proxy, console


async def wait_for_node(home: Home, node: Child) -> pb.NodeStatus:
    """Wait for the status API (the node agent's, or a client proxy's)."""
    async with asyncio.timeout(NODE_START_TIMEOUT_S):
        while True:
            if not node.running():
                raise GiveUp(f"the {node.name} could not start (see the message above)")
            if unix_socket_alive(str(home.node_socket)):
                async with grpc.aio.insecure_channel(home.grpc_target, options=grpc_limits.OPTIONS) as channel:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        return await node_pb2_grpc.NodeAgentStub(channel).GetStatus(pb.GetStatusRequest())
            await asyncio.sleep(0.1)


def banner(status: pb.NodeStatus, proxy: ProxyConfig, console: ConsoleConfig) -> str:
    shown = "127.0.0.1" if not proxy.listen_all else "<this machine>"
    example = status.models[0].model_id if status.models else "MODEL"
    if proxy.join:
        return "\n".join(["", f"  Mesh LLM client {status.node_id[:12]} of mesh {status.mesh_id[:12]} (API only)",
                          f"  API      http://{shown}:{proxy.port}/v1   (OpenAI-compatible)",
                          f"  Console  http://{shown}:{console.port}/", ""])
    return "\n".join([
        "",
        f"  Mesh LLM node {status.node_id[:12]} (mesh {status.mesh_id[:12]})",
        f"  API      http://{shown}:{proxy.port}/v1   (OpenAI-compatible)",
        f"  Console  http://{shown}:{console.port}/",
        f"  Try      curl http://127.0.0.1:{proxy.port}/v1/chat/completions -H 'Content-Type: application/json' "
        f"-d '{{\"model\": \"{example}\", \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'",
        "  Invite token (others join with: mesh-llm --join TOKEN):",
        f"  {status.token}",
        "",
    ])


async def launch(args: Namespace) -> int:
    home, node_cfg, proxy_cfg, console_cfg = build_configs(args)
    node = Child("node agent", "mesh_node", to_json(node_cfg))
    proxy = Child("API proxy", "mesh_proxy", to_json(proxy_cfg))
    console = Child("console", "mesh_console", to_json(console_cfg))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    # A client machine runs no node agent: its proxy joins the mesh and serves the status API.
    roles = [proxy, console] if proxy_cfg.join else [node, proxy, console]
    try:
        await roles[0].start()
        status = await wait_for_node(home, roles[0])
        for child in roles[1:]:
            await child.start()
        print(banner(status, proxy_cfg, console_cfg), file=sys.stderr, flush=True)
        async with asyncio.TaskGroup() as tasks:
            watchers = [tasks.create_task(keep_running(c)) for c in roles]
            helpers = [tasks.create_task(keep_token_file(home, Path(args.token_file), status.token))
                       ] if args.token_file and status.token else []
            stopper = tasks.create_task(stop.wait())
            await asyncio.wait([*watchers, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in [*watchers, *helpers, stopper]:
                task.cancel()
    except* GiveUp as group:
        print(f"mesh-llm: {group.exceptions[0]}", file=sys.stderr)
        code = 1
    except* TimeoutError:
        print(f"mesh-llm: the node agent did not answer within {NODE_START_TIMEOUT_S:.0f} s", file=sys.stderr)
        code = 1
    finally:
        print("mesh-llm: stopping", file=sys.stderr, flush=True)
        await asyncio.gather(proxy.stop(5), console.stop(5))
        await node.stop(20)
    return code
