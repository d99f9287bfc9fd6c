"""`mesh-llm rotate-key` and `mesh-llm drop MODEL` (talk to the running node),
`mesh-llm discover` (asks the directory) and `mesh-llm download` (the catalog)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from meshcore import directory_client as dc
from meshcore import grpc_limits
from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home, default_home
from meshcore.process import unix_socket_alive

from mesh_cli.download import download_command


def node_stub(home_arg: str) -> tuple[grpc.Channel, node_pb2_grpc.NodeAgentStub]:
    home = Home(Path(home_arg).expanduser().resolve())
    if not unix_socket_alive(str(home.node_socket)):
        print(f"mesh-llm: no node is running with home {home.root} (start one with mesh-llm --model ...)",
              file=sys.stderr)
        sys.exit(1)
    channel = grpc.insecure_channel(home.grpc_target, options=grpc_limits.OPTIONS)
    return channel, node_pb2_grpc.NodeAgentStub(channel)


def discover(args: argparse.Namespace) -> int:
    try:
        meshes = dc.list_meshes(dc.directory_url(args.directory), args.model, args.region, args.mesh_name)
    except dc.DirectoryError as exc:
        print(f"mesh-llm: {exc}", file=sys.stderr)
        return 1
    if args.auto:
        choice = dc.best_mesh(meshes, [args.model] if args.model else [], args.region)
        if choice is None:
            print("mesh-llm: --auto would find no mesh with room", file=sys.stderr)
            return 1
        print(json.dumps({"mesh": choice.mesh, "score": choice.score, "why": choice.why}) if args.json
              else f"--auto would join {choice.mesh['name']!r} ({choice.mesh['mesh_id'][:12]}): {choice.why}")
        return 0
    if args.json:
        print(json.dumps(meshes, indent=2))
        return 0
    rows = [("NAME", "REGION", "MODELS", "NODES", "VRAM GB", "CLIENTS")]
    for m in meshes:
        clients = f"{m['client_count']}/{m['max_clients']}" if m.get("max_clients") else str(m["client_count"])
        rows.append((m["name"], m.get("region") or "-", ", ".join(m["models_served"]) or "-", str(m["node_count"]),
                     f"{m['total_vram_gb']:.0f}", clients))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if not meshes:
        print("(no public meshes match)", file=sys.stderr)
    return 0


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mesh-llm")
    sub = parser.add_subparsers(dest="command", required=True)
    find = sub.add_parser("discover", help="list public meshes from the directory")
    find.add_argument("--model")
    find.add_argument("--region")
    find.add_argument("--mesh-name")
    find.add_argument("--directory")
    find.add_argument("--json", action="store_true")
    find.add_argument("--auto", action="store_true", help="print the mesh --auto would join, and why")
    rotate = sub.add_parser("rotate-key", help="replace the mesh secret (on the mesh's owner, the node that "
                                               "created it): every member is admitted again with it, old invite "
                                               "tokens stop working")
    rotate.add_argument("--home", default=str(default_home()))
    rotate.add_argument("--exclude", action="append", default=[], metavar="NODE",
                        help="leave this node out (its id, or 6+ digits of it); may repeat")
    drop = sub.add_parser("drop", help="stop serving a model on the running node")
    drop.add_argument("model")
    drop.add_argument("--home", default=str(default_home()))
    fetch = sub.add_parser("download", help="list the model catalog, or download models from it "
                                            "(into $MESH_LLM_MODELS_DIR or ~/.cache/mesh-llm/models)")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help="a catalog name, a unique prefix of one, or a size like 32b (case does not matter)")
    fetch.add_argument("--draft", action="store_true", help="also download the model's draft (speculative decoding)")
    args = parser.parse_args(argv)
    if args.command == "discover":
        return discover(args)
    if args.command == "download":
        return download_command(args.names, args.draft)
    channel, stub = node_stub(args.home)
    with channel:
        try:
            if args.command == "rotate-key":
                reply = stub.RotateKey(pb.RotateKeyRequest(exclude=args.exclude), timeout=30)
                left_out = f", {len(args.exclude)} left out" if args.exclude else ""
                print(f"mesh-llm: new mesh secret shared with {reply.members_told} members{left_out}; "
                      f"old invite tokens no longer work. New token:", file=sys.stderr)
                print(reply.token)
            else:
                reply = stub.DropModel(pb.DropModelRequest(model_id=args.model), timeout=60)
                print(f"mesh-llm: {reply.message}", file=sys.stderr)
        except grpc.RpcError as exc:
            print(f"mesh-llm: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    return 0


COMMANDS = {"rotate-key", "drop", "discover", "download"}
