"""A member of a mesh: QUIC endpoint + gossip + failure detection + leave + rekey.

The node agent runs one with role "node" (it listens, serves models); a
client-only proxy runs one with role "client" (it dials members, never listens,
is never chosen to serve). State converges by push-pull anti-entropy: every
GOSSIP_INTERVAL_S each member exchanges digests with up to FANOUT random peers.
Failure detection: every member pings its peers each PROBE_INTERVAL_S (this is
also the RTT measurement); after SUSPECT_AFTER missed pings it asks up to
INDIRECT_PROBES other peers to ping the suspect, and only if none can reach it
marks it dead. A clean shutdown sends `leave` to every peer.
Healing: a partition makes both sides mark each other dead, and gossip only goes
to live peers, so every HEAL_INTERVAL_S a member also tries one exchange with a
random dead (not left) peer; once it gets through, each side refutes the other's
report that it died and the mesh is whole again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, Collection

from meshcore.changes import Changes
from meshcore.errors import ConfigError
from meshcore.identity import Identity, MeshSecret
from meshcore.ids import NodeId
from meshcore.log_limit import LimitedLog
from meshcore.membership import (ALIVE, DEAD, LEFT, MAX_RECORDS, MAX_RECORDS_PER_EXCHANGE, Membership,
                                 NodeRecord, RecordError)
from meshcore.messages import (Control, Leave, Ok, Ping, PingAck, PingReq, Pong, Refused, Rekey, parse_control,
                               to_wire)
from meshcore.transport import AdmissionRefused, MeshConnection, MeshEndpoint
from meshcore.wire import FrameError, Kind, encode_frame, read_frame

log = logging.getLogger(__name__)
GOSSIP_INTERVAL_S = 1.0
FANOUT = 3
PROBE_INTERVAL_S = 1.0
PING_TIMEOUT_S = 1.0
SUSPECT_AFTER = 3
INDIRECT_PROBES = 2
DIAL_TIMEOUT_S = 3.0
MAX_DIALS_AT_ONCE = 8         # dials in progress at once, to any address
DIAL_BACKOFF_S = (1.0, 15.0)  # an address that failed is not dialled again for 1 s, doubling to 15 s
HEAL_INTERVAL_S = 3.0
GOSSIP_PER_S = 5.0     # gossip exchanges a peer may start with this node a second (burst GOSSIP_BURST);
GOSSIP_BURST = 20.0    # an honest one starts about 1 (FANOUT peers each round): the rest are not read
VERIFY_PER_S = 500.0   # signature checks of gossiped records, per peer per second ...
VERIFY_BURST = 1024.0  # ... and at once (a joiner pulls up to 512 records an exchange)
# Test hook: answer pings this much later, as if this node were far away (the kernel
# here has no netem, so latency is injected in user space). Never set in production.
INJECTED_DELAY_S = float(os.environ.get("MESH_LLM_INJECT_DELAY_MS", "0")) / 1000


class MeshMember:
    def __init__(self, identity: Identity, mesh: MeshSecret, record: NodeRecord,
                 on_rekey: Callable[[MeshSecret], None] = lambda m: None) -> None:
        self.identity = identity
        self.mesh = mesh
        self.membership = Membership(record, sign=lambda r: r.signed(identity.private_key))
        self.endpoint = MeshEndpoint(identity, lambda: self.mesh, self._on_admitted, self._on_closed)
        self.endpoint.handlers[Kind.GOSSIP] = self._serve_gossip
        self.endpoint.handlers[Kind.CONTROL] = self._serve_control
        self.conns: dict[NodeId, MeshConnection] = {}
        self.rtt_ms: dict[NodeId, float] = {}
        self.missed: dict[NodeId, int] = {}
        self.changes = Changes()
        self.on_rekey = on_rekey
        self.on_peer_gone: list[Callable[[NodeId], None]] = []
        self._answers: dict[type, Callable[[NodeId, Any], Awaitable[Control]]] = {}
        self._dialing: dict[NodeId, asyncio.Future[MeshConnection]] = {}
        self._pinging_for: set[NodeId] = set()
        self._dial_slots = asyncio.Semaphore(MAX_DIALS_AT_ONCE)
        self._backoff: dict[str, tuple[float, float]] = {}  # address -> (not before, delay)
        self._dialling: set[str] = set()
        self._verify_budget: dict[NodeId, tuple[float, float]] = {}  # per peer: signature checks left, when
        self.dropped_records = 0  # gossiped records dropped over a peer's signature-check budget
        self._gossip_budget = Buckets(GOSSIP_PER_S, GOSSIP_BURST)
        self.dropped_exchanges = 0  # gossip exchanges peers started over their budget, not read
        # Peers found dead: a member can list hundreds of unreachable nodes, one line each would flood the log.
        self.peer_log = LimitedLog(log, 20, "%d more peers found dead or gone in the last minute")

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    # -- connections ---------------------------------------------------------------

    def _on_admitted(self, conn: MeshConnection) -> None:
        assert conn.peer_id is not None
        old = self.conns.get(conn.peer_id)
        # Both sides dialled at once: keep the connection dialled by the lower id.
        if old is not None and old is not conn and not old._closed.is_set():
            keep_new = (conn.dialer and self.node_id < conn.peer_id) or (not conn.dialer and conn.peer_id < self.node_id)
            if not keep_new:
                return
        self.conns[conn.peer_id] = conn

    def _on_closed(self, conn: MeshConnection) -> None:
        if conn.peer_id is not None and self.conns.get(conn.peer_id) is conn:
            del self.conns[conn.peer_id]
            record = self.membership.records.get(conn.peer_id)
            if record is not None and record.role == "client" and record.state == ALIVE:
                self._mark(conn.peer_id, LEFT, "client disconnected")

    async def connection(self, node_id: NodeId) -> MeshConnection:
        conn = self.conns.get(node_id)
        if conn is not None and not conn._closed.is_set():
            return conn
        pending = self._dialing.get(node_id)
        if pending is None:
            pending = asyncio.ensure_future(self._dial_record(node_id))
            self._dialing[node_id] = pending
            pending.add_done_callback(lambda done: self._dial_finished(node_id, done))
        return await asyncio.shield(pending)

    def _dial_finished(self, node_id: NodeId, done: asyncio.Future[MeshConnection]) -> None:
        self._dialing.pop(node_id, None)
        if not done.cancelled():
            done.exception()  # retrieved: a caller that gave up waiting leaves no "never retrieved" warning

    async def _dial_record(self, node_id: NodeId) -> MeshConnection:
        """Dial the addresses a node's record lists. Those are the node's own word, and
        a malicious member could list someone else's: so an address that failed is
        left alone for a while (backing off to 15 s), and few dials run at once,
        which bounds what members' records can make this node send anywhere."""
        record = self.membership.records.get(node_id)
        if record is None or not record.addrs:
            raise ConnectionError(f"no address known for node {node_id[:12]}")
        last: BaseException | None = None
        for addr in dict.fromkeys(record.addrs):
            async with self._dial_slots:
                now = time.monotonic()
                not_before, delay = self._backoff.get(addr, (0.0, 0.0))
                if now < not_before or addr in self._dialling:
                    last = ConnectionError(f"{addr} failed recently or is being dialled")
                    continue
                self._dialling.add(addr)
                try:
                    conn = await self.endpoint.dial(addr, DIAL_TIMEOUT_S)
                except (OSError, TimeoutError, AdmissionRefused, ConnectionError) as exc:
                    last = exc
                    self._back_off(addr, delay)
                    continue
                finally:
                    self._dialling.discard(addr)
            self._backoff.pop(addr, None)
            if conn.peer_id != node_id:
                conn.close()
                last = ConnectionError(f"{addr} is node {conn.peer_id}, not {node_id}")
                continue
            self.conns[node_id] = conn
            return conn
        raise ConnectionError(f"node {node_id[:12]} is not reachable ({last})")

    def _back_off(self, addr: str, delay: float) -> None:
        delay = min(DIAL_BACKOFF_S[1], max(DIAL_BACKOFF_S[0], 2 * delay))
        now = time.monotonic()
        if len(self._backoff) >= 4 * MAX_RECORDS:  # forget those whose wait is over
            self._backoff = {a: v for a, v in self._backoff.items() if v[0] > now}
        self._backoff[addr] = (now + delay, delay)

    async def open_stream(self, node_id: NodeId, kind: Kind, header: dict[str, Any] | None = None,
                          first: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = await self.connection(node_id)
        return await conn.open_stream(kind, header, first)

    async def request(self, node_id: NodeId, message: Control, timeout: float) -> Control:
        """Send a control message to a member and return its answer (FrameError if the
        answer is not a control message; OSError, ConnectionError or TimeoutError)."""
        async with asyncio.timeout(timeout):
            reader, writer = await self.open_stream(node_id, Kind.CONTROL, to_wire(message))
            try:
                writer.write_eof()
                return parse_control(await read_frame(reader))
            finally:
                writer.close()

    def answer(self, kind: type, handler: Callable[[NodeId, Any], Awaitable[Control]]) -> None:
        """Let `handler(sender, message)` answer control messages of type `kind` (a node's
        own requests, e.g. RpcLinkRequest); it decides who may send them."""
        self._answers[kind] = handler

    async def join(self, addrs: list[str]) -> NodeId:
        """Dial the first address that admits us and pull the mesh state from it."""
        errors = []
        for addr in addrs:
            try:
                conn = await self.endpoint.dial(addr, DIAL_TIMEOUT_S)
            except AdmissionRefused:
                raise
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors.append(f"{addr}: {exc or 'no answer'}")
                continue
            assert conn.peer_id is not None
            self.conns[conn.peer_id] = conn
            try:
                await self._gossip_with(conn.peer_id)
            except (FrameError, RecordError, OSError, ConnectionError, TimeoutError) as exc:
                log.warning("joined through %s, but its first gossip failed (%s): the next rounds will bring "
                            "the mesh's state", addr, exc)
            return conn.peer_id
        raise ConnectionError("no member answered: " + "; ".join(errors))

    async def join_until_admitted(self, addrs: list[str], retry_s: float = 2.0) -> NodeId:
        """Keep trying the addresses until a member admits us (the mesh may not be
        up yet); AdmissionRefused (wrong or old secret) is final and propagates."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.join(addrs)
            except ConnectionError as exc:
                if attempt == 1 or attempt % 15 == 0:
                    log.warning("could not reach the mesh yet (%s); retrying every %.0f s", exc, retry_s)
                await asyncio.sleep(retry_s)

    # -- gossip ----------------------------------------------------------------------

    def protected(self) -> set[NodeId]:
        """Peers this node knows first-hand (connected, or answering its probes): their
        records never make room for records it only heard of (Membership.merge)."""
        return set(self.conns) | set(self.rtt_ms)

    def _records_from(self, sender: NodeId, value: Any) -> list[NodeRecord]:
        """The records a peer sent that this node would take, their signatures checked at
        most VERIFY_PER_S a second per peer (burst VERIFY_BURST); the rest are dropped
        (they come again in a later round) and counted. A record that would be dropped
        anyway (not newer than ours) costs no signature check."""
        if not isinstance(value, list) or len(value) > MAX_RECORDS_PER_EXCHANGE:
            raise FrameError("gossip records are not a list of at most "
                             f"{MAX_RECORDS_PER_EXCHANGE}")
        now = time.monotonic()
        tokens, last = self._verify_budget.get(sender, (VERIFY_BURST, now))
        tokens = min(VERIFY_BURST, tokens + (now - last) * VERIFY_PER_S)
        records = []
        for item in value:
            head = record_head(item)
            if head is None or not self.membership.wants(*head):
                continue
            if tokens < 1:
                self.dropped_records += 1
                continue
            tokens -= 1
            try:
                records.append(NodeRecord.from_wire(item))
            except RecordError as exc:
                log.debug("dropped a gossiped record: %s", exc)
        self._verify_budget[sender] = (tokens, now)
        if len(self._verify_budget) > 4 * MAX_RECORDS:
            self._verify_budget = {k: v for k, v in self._verify_budget.items() if k in self.conns}
        return records

    def _apply(self, records: list[NodeRecord]) -> None:
        """Merge what a peer sent. Another member's opinion that a node is dead or
        left is not taken while this node's own probe of it has just succeeded: a
        malicious member cannot take a live node out of this node's routes by saying so."""
        records = [r for r in records if not (r.node_id in self.rtt_ms and self.missed.get(r.node_id) == 0
                                              and r.is_opinion())]
        known = self.membership.records
        before = {r.node_id: known[r.node_id].state for r in records if r.node_id in known}
        changed = self.membership.merge(records, protected=self.protected())
        for record in changed:
            if record.node_id == self.node_id:
                log.info("refuted a report that this node was dead")
            elif record.state == ALIVE and before.get(record.node_id) == DEAD:
                log.info("peer %s is reachable again", record.node_id[:12])
            elif record.state != ALIVE:
                self._peer_gone(record.node_id, f"{record.state} (heard from the mesh)")
        if changed:
            self.changes.bump()

    async def _gossip_with(self, node_id: NodeId) -> None:
        reader, writer = await self.open_stream(node_id, Kind.GOSSIP, {"digest": self.membership.digest()})
        try:
            reply = await read_frame(reader)
            self._apply(self._records_from(node_id, reply.get("records")))
            want = reply.get("want", [])
            want = [n for n in want[:MAX_RECORDS_PER_EXCHANGE] if isinstance(n, str)] if isinstance(want, list) else []
            writer.write(encode_frame({"records": [r.to_wire() for r in self.membership.sized(want)]}))
            writer.write_eof()
        finally:
            writer.close()

    async def _serve_gossip(self, conn: MeshConnection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        assert conn.peer_id is not None
        if not self._gossip_budget.take(conn.peer_id):
            self.dropped_exchanges += 1
            return  # not read: a peer starting exchanges faster than gossip needs costs nothing more
        first = await read_frame(reader)  # the header frame: {digest}
        digest = parse_digest(first.get("digest"))
        try:  # within the byte budgets, always under the frame limit; never a reason to close the asker's connection
            reply = encode_frame({"records": [r.to_wire() for r in self.membership.newer_than(digest)],
                                  "want": self.membership.wanted_from(digest)})
        except FrameError as exc:
            log.warning("a gossip reply did not fit a frame (%s): sent nothing this round", exc)
            return
        writer.write(reply)
        with contextlib.suppress(FrameError):
            self._apply(self._records_from(conn.peer_id, (await read_frame(reader)).get("records")))

    def publish(self, **changes: Any) -> None:
        """Change this node's own record (a new version, gossiped from the next round)."""
        self.membership.update_own(**changes)
        self.changes.bump()

    async def gossip_loop(self) -> None:
        while True:
            await asyncio.sleep(GOSSIP_INTERVAL_S)
            if self.membership.expire(time.monotonic()):
                self.changes.bump()
            role = self.membership.own.role
            peers = [r.node_id for r in self.membership.alive_peers(role="node")]
            targets = random.sample(peers, min(1 if role == "client" else FANOUT, len(peers)))
            await asyncio.gather(*(self._quietly(self._gossip_with(p)) for p in targets))

    async def heal_loop(self) -> None:
        while True:
            await asyncio.sleep(HEAL_INTERVAL_S)
            dead = [nid for nid, r in self.membership.records.items() if r.state == DEAD and r.role == "node"]
            if dead:
                exchange = self._gossip_with(random.choice(dead))
                await self._quietly(asyncio.wait_for(exchange, 2 * DIAL_TIMEOUT_S))

    @staticmethod
    async def _quietly(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except (OSError, TimeoutError, ConnectionError, FrameError, RecordError, AdmissionRefused) as exc:
            log.debug("mesh exchange failed: %s", exc)
            return None

    # -- failure detection -------------------------------------------------------------

    async def ping(self, node_id: NodeId, timeout: float = PING_TIMEOUT_S) -> float | None:
        """Round-trip time in ms over the mesh, or None if no answer in time."""
        try:
            async with asyncio.timeout(timeout):
                started = time.perf_counter()
                reader, writer = await self.open_stream(node_id, Kind.CONTROL, to_wire(Ping()))
                reply = parse_control(await read_frame(reader))
                writer.close()
            return (time.perf_counter() - started) * 1000 if isinstance(reply, Pong) else None
        except (OSError, TimeoutError, ConnectionError, FrameError, AdmissionRefused):
            return None

    async def _probe(self, node_id: NodeId) -> None:
        rtt = await self.ping(node_id)
        if rtt is not None:
            self.missed[node_id] = 0
            old = self.rtt_ms.get(node_id)
            self.rtt_ms[node_id] = rtt if old is None else 0.7 * old + 0.3 * rtt
            return
        self.missed[node_id] = self.missed.get(node_id, 0) + 1
        if self.missed[node_id] < SUSPECT_AFTER:
            return
        helpers = [r.node_id for r in self.membership.alive_peers(role="node") if r.node_id != node_id]
        helpers = [h for h in helpers if h in self.conns][:INDIRECT_PROBES]
        answers = await asyncio.gather(*(self._indirect_ping(h, node_id) for h in helpers))
        if any(answers):
            self.missed[node_id] = 0
            return
        self._mark(node_id, DEAD, f"no answer to {self.missed[node_id]} pings"
                   + (f" nor through {len(helpers)} other peers" if helpers else ""))

    async def _indirect_ping(self, helper: NodeId, target: NodeId) -> bool:
        try:
            async with asyncio.timeout(2 * PING_TIMEOUT_S + 0.5):
                reader, writer = await self.open_stream(helper, Kind.CONTROL, to_wire(PingReq(target)))
                reply = parse_control(await read_frame(reader))
                writer.close()
            return isinstance(reply, PingAck) and reply.ok
        except (OSError, TimeoutError, ConnectionError, FrameError, AdmissionRefused):
            return False

    def _mark(self, node_id: NodeId, state: str, why: str) -> None:
        if self.membership.mark(node_id, state) is not None:
            self.peer_log.info("peer %s is %s: %s", node_id[:12], state, why)
            self._peer_gone(node_id, why)
            self.changes.bump()

    def _peer_gone(self, node_id: NodeId, why: str) -> None:
        self.missed.pop(node_id, None)
        self.rtt_ms.pop(node_id, None)
        conn = self.conns.pop(node_id, None)
        if conn is not None:
            conn.cut(why)
        for callback in self.on_peer_gone:
            callback(node_id)

    async def probe_loop(self) -> None:
        last_published: dict[str, float] = {}
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            peers = [r.node_id for r in self.membership.alive_peers()
                     if r.role == "node" or r.node_id in self.conns]
            if self.membership.own.role == "client":
                peers = [p for p in peers if self.membership.records[p].role == "node"]
            await asyncio.gather(*(self._probe(p) for p in peers))
            rtt = {k: round(v, 2) for k, v in self.rtt_ms.items()}
            if significant_change(last_published, rtt):
                last_published = rtt
                self.publish(rtt_ms=rtt)

    async def _serve_control(self, conn: MeshConnection, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        """Control messages (meshcore.messages), each allowed only to whom may send it."""
        assert conn.peer_id is not None
        message = parse_control(await read_frame(reader))
        if isinstance(message, Ping):
            if INJECTED_DELAY_S:
                await asyncio.sleep(INJECTED_DELAY_S)
            writer.write(encode_frame(to_wire(Pong())))
        elif isinstance(message, PingReq):
            writer.write(encode_frame(to_wire(PingAck(await self._ping_for(conn.peer_id, message.target)))))
        elif isinstance(message, Leave):
            self._take_leave(conn.peer_id, message)
        elif isinstance(message, Rekey):
            why = self._rekey_refusal(conn.peer_id, message)
            if why:
                log.warning("refused a new mesh key from node %s: %s", conn.peer_id[:12], why)
                writer.write(encode_frame(to_wire(Refused(why))))
            else:
                self.mesh = replace(self.mesh, secret=message.secret, epoch=message.epoch)
                self.on_rekey(self.mesh)
                log.info("the mesh owner %s rotated the mesh key (epoch %d): reconnecting to every member",
                         self.mesh.owner[:12], self.mesh.epoch)
                writer.write(encode_frame(to_wire(Ok())))
                self._reconnect_all("the mesh key was rotated", keep=conn)  # the owner closes that one
        elif type(message) in self._answers:
            writer.write(encode_frame(to_wire(await self._answers[type(message)](conn.peer_id, message))))
        else:
            raise FrameError(f"{message.TAG} is an answer, not a request")
        writer.write_eof()

    async def _ping_for(self, sender: NodeId, target: NodeId) -> bool:
        """An indirect probe asked by `sender`: only of a node this node knows alive
        (never an address the sender chose), one at a time per sender, so a member
        cannot make this node ping anything it likes, or ping it in a loop."""
        record = self.membership.records.get(target)
        if record is None or record.role != "node" or record.state != ALIVE or target in (sender, self.node_id) \
                or sender in self._pinging_for:
            return False
        self._pinging_for.add(sender)
        try:
            return await self.ping(target) is not None
        finally:
            self._pinging_for.discard(sender)

    def _take_leave(self, sender: NodeId, message: Leave) -> None:
        """A peer says goodbye: only with its own record, signed by it, saying `left`."""
        records = parse_records([message.record])
        if not records or records[0].node_id != sender or records[0].state != LEFT or records[0].is_opinion():
            log.warning("ignored a leave from node %s that was not its own signed goodbye", sender[:12])
            return
        self._apply(records)

    async def _tell_all(self, message: Control, timeout: float = 2.0,
                        skip: Collection[NodeId] = ()) -> int:
        async def tell(conn: MeshConnection) -> bool:
            reader, writer = await conn.open_stream(Kind.CONTROL, to_wire(message))
            writer.write_eof()
            try:
                reply = parse_control(await read_frame(reader))
            except FrameError:
                return True  # no answer expected (leave)
            return isinstance(reply, Ok)
        conns = [c for nid, c in self.conns.items() if not c._closed.is_set() and nid not in skip]
        # Each member has `timeout` to answer: one that does not is counted out, the others still count.
        results = await asyncio.gather(*(self._quietly(asyncio.wait_for(tell(c), timeout)) for c in conns))
        return sum(1 for r in results if r)

    def _rekey_refusal(self, sender: NodeId, message: Rekey) -> str:
        """Why a rekey message is not taken ("" if it is): only the mesh's owner (its
        id is bound to its key at admission) may send one, for this mesh, newer."""
        if not self.mesh.owner or sender != self.mesh.owner:
            return "only the mesh's owner may rotate its key"
        if message.mesh_id != self.mesh.mesh_id:
            return "malformed"
        if message.epoch <= self.mesh.epoch:
            return f"not newer than this node's key (epoch {self.mesh.epoch})"
        return ""

    def _reconnect_all(self, why: str, keep: MeshConnection | None = None) -> None:
        """Close every connection (but `keep`): each is admitted again with the current
        key, so a member that was not given the new key (--exclude) is out."""
        for conn in list(self.endpoint.connections):
            if conn is not keep:
                conn.cut(why)
        for nid, conn in list(self.conns.items()):
            if conn is not keep:
                del self.conns[nid]

    def next_key(self) -> MeshSecret:
        """A new key for this mesh, one epoch on. Only the mesh's owner may make one."""
        if self.mesh.owner != self.node_id:
            raise ConfigError("only the mesh's owner can rotate its key"
                              + (f": run rotate-key on node {self.mesh.owner[:12]}" if self.mesh.owner else
                                 " (this mesh was created before owners existed: start a new one)"))
        return self.mesh.rotated()

    async def rotate_secret(self, exclude: Collection[NodeId] = (), new: MeshSecret | None = None,
                            before_telling: Callable[[], None] = lambda: None) -> int:
        """Hand out `new` (by default `next_key()`): tell every member but `exclude`, use it,
        then close every connection so that all are admitted again with it (revocation).
        Returns how many members confirmed. The caller keeps `new` on disk first
        (mesh_node.mesh_link), and `before_telling` is called once the members are
        connected, just before the first may get the key."""
        if new is None:
            new = self.next_key()
        elif self.mesh.owner != self.node_id or new.mesh_id != self.mesh.mesh_id or new.epoch <= self.mesh.epoch:
            raise ConfigError(f"key epoch {new.epoch} is not a rotation of this node's mesh key (epoch {self.mesh.epoch})")
        for record in self.membership.alive_peers():
            if record.node_id not in exclude:
                with contextlib.suppress(ConnectionError, OSError, TimeoutError, AdmissionRefused):
                    await self.connection(record.node_id)
        before_telling()
        told = await self._tell_all(Rekey(new.mesh_id, new.secret, new.epoch), skip=exclude)
        self.mesh = new
        self.on_rekey(new)
        self._reconnect_all("the mesh key was rotated")
        log.info("rotated the mesh key (epoch %d); told %d members%s", new.epoch, told,
                 f"; left out {', '.join(n[:12] for n in exclude)}" if exclude else "")
        return told

    async def leave(self) -> None:
        """Say goodbye so peers drop this node's routes at once."""
        record = self.membership.update_own(state=LEFT)
        with contextlib.suppress(TimeoutError):
            await self._tell_all(Leave(record.to_wire()), timeout=1.5)
        self.endpoint.close()

    async def run(self) -> None:
        """Gossip and failure detection, until cancelled (after joining, if joining)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.gossip_loop(), name="gossip")
            tasks.create_task(self.probe_loop(), name="probe")
            tasks.create_task(self.heal_loop(), name="heal")


def significant_change(old: dict[str, float], new: dict[str, float]) -> bool:
    if old.keys() != new.keys():
        return True
    return any(abs(new[k] - old[k]) > max(1.0, 0.25 * old[k]) for k in new)


class Buckets:
    """A token bucket per peer: `rate` a second, at most `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[NodeId, tuple[float, float]] = {}  # peer -> (tokens, when)

    def take(self, peer: NodeId) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1
        self.buckets[peer] = (tokens - 1 if ok else tokens, now)
        if len(self.buckets) > 4 * MAX_RECORDS:  # forget the full ones
            self.buckets = {k: v for k, v in self.buckets.items() if v[0] < self.burst}
        return ok


def record_head(value: Any) -> tuple[NodeId, int, str] | None:
    """A gossiped record's id, version and state, read without checking anything else
    (None if those are malformed): enough to know whether it would be taken."""
    if not isinstance(value, dict):
        return None
    node_id, version, state = value.get("node_id"), value.get("version"), value.get("state", ALIVE)
    if not (isinstance(node_id, str) and len(node_id) == 32 and isinstance(version, int)
            and not isinstance(version, bool) and isinstance(state, str)):
        return None
    return NodeId(node_id), version, state


def parse_records(value: Any) -> list[NodeRecord]:
    """The valid records of a gossip message; a bad one is dropped alone (one record
    never stops the others), and said in the debug log."""
    if not isinstance(value, list) or len(value) > 10000:
        raise FrameError("gossip records are not a list")
    records = []
    for item in value:
        try:
            records.append(NodeRecord.from_wire(item))
        except RecordError as exc:
            log.debug("dropped a gossiped record: %s", exc)
    return records


def parse_digest(value: Any) -> dict[str, list[int]]:
    if not isinstance(value, dict) or len(value) > 10000:
        raise FrameError("gossip digest is not a map")
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)):
            raise FrameError("gossip digest entry is malformed")
    return value
