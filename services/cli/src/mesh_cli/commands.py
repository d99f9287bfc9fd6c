"""`mesh-llm rotate-key` and `mesh-llm drop MODEL`: talk to the running node."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from meshcore.api import node_pb2 as pb
from meshcore.api import node_pb2_grpc
from meshcore.home import Home, default_home
from meshcore.process import unix_socket_alive


def node_stub(home_arg: str) -> tuple[grpc.Channel, node_pb2_grpc.NodeAgentStub]:
    home = Home(Path(home_arg).expanduser().resolve())
    if not unix_socket_alive(str(home.node_socket)):
        print(f"mesh-llm: no node is running with home {home.root} (start one with mesh-llm --model ...)",
              file=sys.stderr)
        sys.exit(1)
    channel = grpc.insecure_channel(home.grpc_target)
    return channel, node_pb2_grpc.NodeAgentStub(channel)


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mesh-llm")
    sub = parser.add_subparsers(dest="command", required=True)
    rotate = sub.add_parser("rotate-key", help="replace the mesh secret; old invite tokens stop working")
    rotate.add_argument("--home", default=str(default_home()))
    drop = sub.add_parser("drop", help="stop serving a model on the running node")
    drop.add_argument("model")
    drop.add_argument("--home", default=str(default_home()))
    args = parser.parse_args(argv)
    channel, stub = node_stub(args.home)
    with channel:
        try:
            if args.command == "rotate-key":
                reply = stub.RotateKey(pb.RotateKeyRequest(), timeout=30)
                print(f"mesh-llm: new mesh secret shared with {reply.members_told} members; "
                      f"old invite tokens no longer work. New token:", file=sys.stderr)
                print(reply.token)
            else:
                reply = stub.DropModel(pb.DropModelRequest(model_id=args.model), timeout=60)
                print(f"mesh-llm: {reply.message}", file=sys.stderr)
        except grpc.RpcError as exc:
            print(f"mesh-llm: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    return 0


COMMANDS = {"rotate-key", "drop"}
