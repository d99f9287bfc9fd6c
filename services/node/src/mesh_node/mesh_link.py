"""The node agent's side of the mesh: the QUIC endpoint, joining, gossip of this
node's record, HTTP streams to and from remote nodes.

- Incoming HTTP streams (a remote proxy asking for a model served here) are
  piped to the local llama-server for that model.
- The local proxy reaches remote models through `run/tunnel.sock`: it sends one
  `TunnelRequest` line (meshcore.messages) and then raw HTTP; the link opens a QUIC HTTP
  stream to that node and pipes both ways. When a peer dies or leaves, its open
  tunnels are cut at once, so a client mid-stream gets an error, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import replace
from typing import Any, Collection, Coroutine

from meshcore.api import node_pb2 as pb
from meshcore.api_errors import family_error
from meshcore.errors import ConfigError
from meshcore.home import Home
from meshcore.identity import (MeshSecret, PendingRotation, clear_pending_rotation, save_mesh_secret,
                               save_pending_rotation)
from meshcore.ids import NodeId
from meshcore.log_limit import LimitedLog
from meshcore.member import MeshMember
from meshcore.messages import StreamHeader, TunnelRequest
from meshcore.netaddr import advertised_addresses
from meshcore.pipe import splice
from meshcore.token import InviteToken
from meshcore.transport import AdmissionRefused, MeshConnection
from meshcore.wire import MAX_HEADER_FRAME, FrameError, Kind, read_frame

from mesh_node.backend_relay import BackendRelay
from mesh_node.http_gate import READ_SIZE, Admit, BodyBudget, Refused, read_request
from mesh_node.state import NodeState

log = logging.getLogger(__name__)
SWITCH_TIMEOUT_S = 10.0  # buddy mode: a listed mesh that does not admit this node in time is left alone
ADDRESS_CHECK_S = 5.0
RESUME_WAIT_S = 15.0  # after a restart, how long an unfinished key rotation waits for members to reconnect


def http_error(status: int, message: str, code: str, target: str = "/") -> bytes:
    """An HTTP error answer in the shape of `target`'s API family (meshcore.api_errors)."""
    kind = "service_unavailable" if status in (502, 503) else "invalid_request_error"
    body = json.dumps(family_error(target, status, message, kind, code)).encode()
    reason = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 413: "Payload Too Large",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class MeshLink:
    def __init__(self, home: Home, state: NodeState, member: MeshMember, port: int) -> None:
        self.home = home
        self.state = state
        self.member = member
        self.port = port
        self.tunnels: dict[NodeId, set[asyncio.Task]] = defaultdict(set)
        self._rotation: asyncio.Future[int] | None = None
        self.bodies = BodyBudget()  # members' request bodies held at once (mesh_node.http_gate)
        self.refusals = LimitedLog(log, 20, "refused %d more requests from members in the last minute")
        member.endpoint.handlers[Kind.HTTP] = self._serve_http
        member.on_peer_gone.append(self._cut_tunnels)
        member.on_rekey = self._save_secret

    def _save_secret(self, mesh: MeshSecret) -> None:
        save_mesh_secret(self.home.root, mesh)
        self.refresh_token()

    def refresh_token(self) -> None:
        mesh = self.member.mesh
        token = InviteToken.of(mesh, tuple(advertised_addresses(self.port)), self.member.node_id)
        self.state.set_identity(mesh.mesh_id, token.encode())

    async def watch_addresses(self) -> None:
        """This machine's addresses can change (a network cable, DHCP, a container
        moved to another network): republish them so peers and new tokens use the new ones."""
        while True:
            await asyncio.sleep(ADDRESS_CHECK_S)
            addrs = tuple(advertised_addresses(self.port))
            if addrs != self.member.membership.own.addrs:
                log.info("this machine's addresses changed: now reachable at %s", ", ".join(addrs))
                self.member.publish(addrs=addrs)
                self.refresh_token()

    async def rotate_secret(self, exclude: Collection[NodeId] = ()) -> int:
        """rotate-key: the new key goes to disk (rotation.json) before any member hears of
        it, and the rotation runs to its end even if the caller goes away (the CLI's
        Ctrl-C or deadline cancels this call, not the rotation): members must never hold
        a key the owner has lost. A node killed mid-way finishes it at its next start
        (`resume_rotation`)."""
        if self._rotation is not None and not self._rotation.done():
            raise ConfigError("a key rotation is already under way on this node; wait for it to finish")
        pending = PendingRotation(self.member.next_key(), frozenset(exclude), telling=False)
        save_pending_rotation(self.home.root, pending)
        return await asyncio.shield(self._claim_rotation(self._finish_rotation(pending)))

    def _claim_rotation(self, work: Coroutine[Any, Any, int]) -> asyncio.Future[int]:
        """The one rotation this node runs at a time (rotate_secret refuses a second)."""
        self._rotation = asyncio.ensure_future(work)
        self._rotation.add_done_callback(self._rotation_done)
        return self._rotation

    async def _finish_rotation(self, pending: PendingRotation) -> int:
        def telling() -> None:
            save_pending_rotation(self.home.root, replace(pending, telling=True))
        told = await self.member.rotate_secret(pending.exclude, pending.new, before_telling=telling)
        clear_pending_rotation(self.home.root)
        return told

    @staticmethod
    def _rotation_done(done: asyncio.Future[int]) -> None:
        """Said here too, for a rotation whose caller went away before it ended."""
        if done.cancelled():
            log.warning("the mesh key rotation was stopped; it is finished at the next start")
        elif done.exception() is not None:
            log.warning("the mesh key rotation failed (%s); it is tried again at the next start", done.exception())

    def resume_rotation(self, pending: PendingRotation | None, wait_s: float = RESUME_WAIT_S) -> None:
        """A key rotation this node began at its last run and did not end (killed, power
        lost; `pending` was read from rotation.json at start). If no member can have the
        new key yet, it is dropped: the node stays on the old key. Else it is finished,
        claimed at once (a rotate-key meanwhile is refused): once a member has
        reconnected (or after `wait_s`), those still on the old key are told and the node
        switches; members that had taken it are admitted again with it. A member on the
        old key that is not back by then is left out, as one unreachable during a
        rotation would be."""
        if pending is None:
            return
        mesh, new = self.member.mesh, pending.new
        if new.mesh_id != mesh.mesh_id or new.epoch <= mesh.epoch or mesh.owner != self.member.node_id:
            log.info("dropped an unfinished key rotation (epoch %d) that no longer applies to this node's mesh",
                     new.epoch)
            clear_pending_rotation(self.home.root)
            return
        if not pending.telling:
            log.warning("the mesh key rotation begun at the last stop reached no member; it was dropped "
                        "(run rotate-key again)")
            clear_pending_rotation(self.home.root)
            return
        log.info("a mesh key rotation (epoch %d) was cut short at the last stop: finishing it once members "
                 "reconnect", new.epoch)
        self._claim_rotation(self._resume(pending, wait_s))

    async def _resume(self, pending: PendingRotation, wait_s: float) -> int:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                seen = -1
                while not self.member.membership.alive_peers():
                    seen = await self.member.changes.wait(seen)
        return await self._finish_rotation(pending)

    # -- joining -------------------------------------------------------------------

    async def join(self, tokens: list[InviteToken]) -> None:
        try:
            peer = await self.member.join_until_admitted([a for t in tokens for a in t.addrs])
        except AdmissionRefused as exc:
            raise ConfigError(f"the mesh refused this node: {exc} (the invite token may be old: "
                              f"ask a member for a new one)") from exc
        self._save_secret(self.member.mesh)  # only now: a refused --join must not replace this node's key
        log.info("joined mesh %s through node %s", self.member.mesh.mesh_id[:12], peer[:12])

    async def switch_mesh(self, token: InviteToken, timeout_s: float = SWITCH_TIMEOUT_S) -> bool:
        """Leave a mesh this node is alone in and join another one (buddy mode). A listing
        is a stranger's word: its address may be dead, or a node of another mesh that
        refuses this one. Then this node stays in its own mesh (logged in one line) and
        False is returned; the new key is saved only once the other mesh admitted it."""
        mine = self.member.mesh
        self.member.mesh = token.mesh
        try:
            async with asyncio.timeout(timeout_s):
                peer = await self.member.join(list(token.addrs))
        except (AdmissionRefused, ConnectionError, OSError, TimeoutError) as exc:
            self.member.mesh = mine
            log.warning("could not join mesh %s (%s): staying in this node's own mesh", token.mesh_id[:12],
                        exc or "no answer")
            return False
        self._save_secret(self.member.mesh)
        log.info("joined mesh %s through node %s", self.member.mesh.mesh_id[:12], peer[:12])
        self.member.changes.bump()
        return True

    # -- tunnels -------------------------------------------------------------------

    def _cut_tunnels(self, node_id: NodeId) -> None:
        for task in self.tunnels.pop(node_id, set()):
            task.cancel()

    def _track(self, node_id: NodeId) -> asyncio.Task:
        task = asyncio.current_task()
        assert task is not None
        self.tunnels[node_id].add(task)
        return task

    async def _serve_tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ask = TunnelRequest.decode(await reader.readuntil(b"\n"))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, FrameError):
            writer.close()
            return
        node_id, model, target = ask.node_id, ask.model, ask.path
        task = self._track(node_id)
        answered = [0]  # bytes relayed back to the proxy
        try:
            # The request follows its TunnelRequest at once: it goes with the stream's header.
            first = await reader.read(READ_SIZE)
            remote = await self.member.open_stream(node_id, Kind.HTTP, StreamHeader(model).to_wire(), first)
            await splice((reader, writer), remote, b_to_a=answered, close_a=False,
                         label=f"the stream to node {node_id[:12]} for {model}")
        except (ConnectionError, OSError, TimeoutError, AdmissionRefused) as exc:
            log.warning("no stream to node %s for %s: %s", node_id[:12], model, exc)
            writer.write(http_error(503, f"the node serving {model!r} is not reachable right now; retry shortly",
                                    "model_not_ready", target))
        except asyncio.CancelledError:
            log.info("cut the stream to node %s for %s: the node is gone", node_id[:12], model)
            if not answered[0]:  # nothing sent back yet: the request can simply be retried
                writer.write(http_error(503, f"the node serving {model!r} stopped answering; retry shortly",
                                        "model_not_ready", target))
        finally:
            self.tunnels[node_id].discard(task)
            writer.close()

    async def _serve_http(self, conn: MeshConnection, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """A member's request for a model served here: checked (http_gate), sent to the
        local llama-server as one rebuilt request, its answer streamed back. The member
        going away (stream ended or reset) abandons the request."""
        model = StreamHeader.parse(await read_frame(reader, MAX_HEADER_FRAME)).model
        peer = str(conn.peer_id)
        try:
            request = await read_request(reader, admit=Admit(lambda: bool(self.state.local_port(model)), model,
                                                             self.bodies, peer))
        except Refused as exc:
            self.refusals.warning("refused a request from node %s: %s", peer[:12], exc.message)
            writer.write(http_error(exc.status, exc.message, exc.code, exc.target))
            writer.write_eof()
            return
        loop = asyncio.get_running_loop()
        try:
            port = self.state.local_port(model)
            if not port:
                writer.write(http_error(503, f"model {model!r} is not served by this node right now",
                                        "model_not_ready", request.target))
                writer.write_eof()
                return
            _, relay = await loop.create_connection(
                lambda: BackendRelay(request.encode(f"127.0.0.1:{port}"), conn, writer), "127.0.0.1", port)
        except OSError:
            writer.write(http_error(502, f"the backend for {model!r} is not answering", "backend_unavailable",
                                    request.target))
            writer.write_eof()
            return
        finally:
            self.bodies.give(peer, request.held)  # handed on (or dropped): its bytes are not held here any more
        gone = asyncio.ensure_future(reader.read(1))  # nothing more may come: data or EOF ends it
        try:
            await asyncio.wait({relay.done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            relay.close()
            with contextlib.suppress(Exception):
                writer.close()

    # -- running -------------------------------------------------------------------

    async def _publish_local_changes(self) -> None:
        seen = -1
        while True:
            seen = await self.state.changes.wait(seen)
            serving = tuple(sorted(m.model_id for m in self.state.models.values()
                                   if m.state == pb.MODEL_STATE_SERVING))
            on_disk = tuple(sorted(m for m in self.state.models if m in self.state.ready_models))
            splits = {m.model_id: [[n, c] for n, c, _ in m.split] for m in self.state.models.values()
                      if m.split and m.state == pb.MODEL_STATE_SERVING}
            offer = {"spare": {m: size for m, (_, size) in self.state.spare.items()},
                     "free_bytes": self.state.free_bytes, "promoted": dict(self.state.promoted),
                     "demand": dict(self.state.demand)}
            own = self.member.membership.own
            if (own.serving, own.models_on_disk, own.splits) != (serving, on_disk, splits) \
                    or any(getattr(own, k) != v for k, v in offer.items()):
                self.member.publish(serving=serving, models_on_disk=on_disk, splits=splits, **offer)

    async def _follow_mesh(self) -> None:
        seen = -1
        while True:
            seen = await self.member.changes.wait(seen)
            self.state.mesh_changed()

    async def run(self, tokens: list[InviteToken]) -> None:
        sock = self.home.tunnel_socket
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve_tunnel, path=str(sock))
        os.chmod(sock, 0o600)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_mesh(), name="follow mesh")
                tasks.create_task(self._publish_local_changes(), name="publish")
                tasks.create_task(self.watch_addresses(), name="addresses")
                if tokens:
                    await self.join(tokens)
                tasks.create_task(self.member.run(), name="gossip and probes")
        finally:
            server.close()
            sock.unlink(missing_ok=True)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.member.leave()
