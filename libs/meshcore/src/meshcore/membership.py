"""Mesh membership, pure: versioned node records and how they merge.

Each node owns one record and is the only one that raises its version. Records
are signed by their owner (Ed25519; the record carries the public key, whose hash
is the node id) and checked when they arrive from the wire: no member can forge or
raise another node's record. Others may only mark a record `dead` (failure
detector) or `left` (a client that disconnected) at the version they know — the
signature covers it as `alive` — and the owner, on hearing that, refutes by raising
its version. A clean shutdown publishes `left`, signed by the owner. Versions are wall-clock
milliseconds; one more than a day ahead of this node's clock is refused.
Merge rule: higher version wins; at equal version, dead/left beats alive. A new
incarnation starts at max(last + 1, wall-clock ms), so a restarted node's record
is always newer than the dead one peers remember.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Collection

import msgpack

from meshcore.ids import NodeId

ALIVE, DEAD, LEFT = "alive", "dead", "left"
MESH, OWNER = "mesh", "owner"  # split_with words: any member; nodes of the same owner
STATE_RANK = {ALIVE: 0, DEAD: 1, LEFT: 2}
ROLES = ("node", "client")
MAX_LIST = 256
MAX_MODELS = 64               # model ids one record may list in each of its model lists and maps
MAX_RTT_PEERS = 256           # peers a record may give an RTT for (a node publishes its 64 nearest)
PUBLISHED_RTT_PEERS = 64
MAX_ADDRS = 16                # addresses one record may list (a node advertises at most 9)
MAX_LAYERS = 1 << 16          # no model has more layers; the route table carries them as uint32
MAX_RTT_MS = 1e6
# Memory one node may claim: 4 TiB. Eight of the largest accelerators (288 GB each) are
# 2.1 TiB and 1.1x the largest open GGUF (BF16, 671B) is 1.4 TiB; a claim beyond it is a
# lie (issue 28: 2^62 bytes won host elections), and a real machine beyond it offers 4 TiB.
MAX_VRAM_BYTES = 1 << 42
MAX_RECORDS = 2048            # records one node keeps (beyond it, records it only heard of make room, or new ones wait)
MAX_RECORDS_PER_EXCHANGE = 512  # records sent in one gossip reply (the rest follow in later rounds)
# Budgets in bytes (a record's size: its signed form, meshcore.membership.NodeRecord.size).
# A few valid records of the largest kind used to make a gossip reply exceed the 1 MiB frame
# (issue 28): every bound that matters is in bytes, not only in counts.
MAX_RECORD_BYTES = 16 << 10   # one record; an honest node's is 1-4 KB
MAX_REPLY_BYTES = 512 << 10   # records in one gossip message: half the frame limit, always under it
MAX_TABLE_BYTES = 8 << 20     # every record one node keeps (~4.5x that in memory: bench/attacker_memory.py)
EXPIRE_S = 3600.0             # a dead or left record is forgotten this long after it last changed
MAX_TOMBSTONES = 4096
_NODE_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_CLOCK_AHEAD_S = 86400.0


class RecordError(ValueError):
    """A gossiped record with missing or absurd fields."""


@dataclass(frozen=True)
class NodeRecord:
    node_id: NodeId
    version: int
    addrs: tuple[str, ...] = ()              # where its mesh endpoint listens ("ip:port")
    role: str = "node"                       # "node" serves models; "client" only asks
    vram_bytes: int = 0                      # memory offered for weights
    models_on_disk: tuple[str, ...] = ()
    serving: tuple[str, ...] = ()            # model ids its llama-server answers for now
    demand: dict[str, int] = field(default_factory=dict)    # requests per model seen by its proxy
    rtt_ms: dict[str, float] = field(default_factory=dict)  # its measured RTT to each peer
    app_version: str = ""
    state: str = ALIVE
    mesh_name: str = ""
    splits: dict[str, list] = field(default_factory=dict)  # model -> [[node_id, layers], ...] it hosts
    owner: bytes = b""                       # the public key of the person running it (meshcore.split_policy)
    owner_sig: bytes = b""                   # that owner's signature of this node's key: "this node is mine"
    split_with: tuple[str, ...] = (MESH,)    # whom it shares a split with: MESH, OWNER, or owner/node ids
    can_fetch: tuple[str, ...] = ()          # catalog models it could download and hold (not on disk)
    spare: dict[str, int] = field(default_factory=dict)  # models on its disk it does not run: id -> bytes
    free_bytes: int = 0                      # memory not taken by the models it runs
    promoted: dict[str, str] = field(default_factory=dict)  # models it runs because the mesh wanted them: id -> why
    key: bytes = b""                         # the node's Ed25519 public key (node id = its hash)
    sig: bytes = b""                         # the node's signature of signing_bytes()

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("addrs", "models_on_disk", "serving", "split_with", "can_fetch"):
            data[key] = list(data[key])
        return data

    @cached_property
    def size(self) -> int:
        """Its size in bytes (its signed form: every field but the signature): what the
        byte budgets count. Computed once per record (records are immutable)."""
        return len(self.signing_bytes()) + 64

    def signing_bytes(self, state: str | None = None) -> bytes:
        """What the owner signs: every field but the signature, with its own state."""
        owner_state = self.state if state is None else state
        return msgpack.packb(["mesh-llm record v3", self.node_id, self.version, list(self.addrs), self.role,
                              self.vram_bytes, list(self.models_on_disk), list(self.serving),
                              sorted(self.demand.items()), sorted(self.rtt_ms.items()), self.app_version,
                              owner_state, self.mesh_name, sorted(self.splits.items()), self.owner,
                              self.owner_sig, list(self.split_with), list(self.can_fetch),
                              sorted(self.spare.items()), self.free_bytes, sorted(self.promoted.items()), self.key])

    @property
    def owner_id(self) -> str:
        """The owner's id (the hash of its key, like node ids), "" if none."""
        from meshcore.admission import key_id
        return key_id(self.owner) if self.owner else ""

    def signed(self, private_key: Any) -> "NodeRecord":
        from meshcore.identity import public_bytes
        record = replace(self, key=public_bytes(private_key))
        return replace(record, sig=private_key.sign(record.signing_bytes()))

    def verified(self) -> bool:
        """Signed by the key whose hash is the node id, as it is, or as `alive` when
        another node marked it dead or left (an opinion about a known version, which the
        owner refutes by raising its version)."""
        from meshcore import admission
        if not admission.key_matches(self.node_id, self.key):
            return False
        return admission.verify(self.key, self.sig, self.signing_bytes()) or (
            self.state != ALIVE and admission.verify(self.key, self.sig, self.signing_bytes(ALIVE)))

    def is_opinion(self) -> bool:
        """Dead or left by another node's word (its signature covers it as alive),
        not by its owner's."""
        from meshcore import admission
        return self.state != ALIVE and not admission.verify(self.key, self.sig, self.signing_bytes())

    @staticmethod
    def from_wire(data: Any) -> "NodeRecord":
        if not isinstance(data, dict):
            raise RecordError("record is not a map")
        try:
            record = NodeRecord(
                node_id=_node_id(data["node_id"]), version=_int(data["version"]),
                addrs=_addrs(data.get("addrs", [])), role=_str(data.get("role", "node"), 16),
                vram_bytes=_int(data.get("vram_bytes", 0), MAX_VRAM_BYTES + 1),
                models_on_disk=_strs(data.get("models_on_disk", []), MAX_MODELS),
                serving=_strs(data.get("serving", []), MAX_MODELS),
                demand=_counts(data.get("demand", {}), int, 1 << 63, MAX_MODELS),
                rtt_ms=_counts(data.get("rtt_ms", {}), float, MAX_RTT_MS, MAX_RTT_PEERS),
                app_version=_str(data.get("app_version", ""), 64),
                state=_str(data.get("state", ALIVE), 8), mesh_name=_str(data.get("mesh_name", ""), 128),
                splits=_splits(data.get("splits", {})), owner=_optional_bytes(data.get("owner", b""), 32),
                owner_sig=_optional_bytes(data.get("owner_sig", b""), 64),
                split_with=_split_with(data.get("split_with", [MESH])),
                can_fetch=_strs(data.get("can_fetch", []), MAX_MODELS),
                spare=_counts(data.get("spare", {}), int, 1 << 63, MAX_MODELS),
                free_bytes=_int(data.get("free_bytes", 0), MAX_VRAM_BYTES + 1),
                promoted=_texts(data.get("promoted", {}), MAX_MODELS),
                key=_bytes(data.get("key"), 32), sig=_bytes(data.get("sig"), 64))
        except KeyError as exc:
            raise RecordError(f"record has no {exc.args[0]}") from exc
        if record.free_bytes > record.vram_bytes:
            raise RecordError("record claims more free memory than memory")
        if record.state not in STATE_RANK or record.role not in ROLES:
            raise RecordError(f"record has state {record.state!r} / role {record.role!r}")
        if record.version > (time.time() + MAX_CLOCK_AHEAD_S) * 1000:
            raise RecordError("record version is far in the future")
        if record.size > MAX_RECORD_BYTES:
            raise RecordError(f"record of node {record.node_id[:12]} is {record.size} bytes, over {MAX_RECORD_BYTES}")
        if not record.verified():
            raise RecordError(f"record of node {record.node_id[:12]} is not signed by that node's key")
        if bool(record.owner) != bool(record.owner_sig) or (record.owner and not _owner_vouches(record)):
            raise RecordError(f"the owner of node {record.node_id[:12]} did not sign for it")
        return record


def owner_statement(node_key: bytes) -> bytes:
    """What an owner signs to say a node is theirs."""
    return b"mesh-llm owner v1|" + node_key


def _owner_vouches(record: NodeRecord) -> bool:
    from meshcore import admission
    return admission.verify(record.owner, record.owner_sig, owner_statement(record.key))


def _optional_bytes(value: Any, size: int) -> bytes:
    return b"" if value == b"" else _bytes(value, size)


def _split_with(value: Any) -> tuple[str, ...]:
    words = _strs(value)
    if len(words) > 64 or not words or not all(w in (MESH, OWNER) or _NODE_ID.match(w) for w in words):
        raise RecordError("split_with is not mesh, owner or a list of ids")
    return words


def _str(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise RecordError("a text field is not text or is too long")
    return value


def _int(value: Any, limit: int = 1 << 63) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise RecordError("a number field is not a non-negative integer in range")
    return value


def _bytes(value: Any, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise RecordError("a key or signature is missing or the wrong size")
    return value


def _node_id(value: Any) -> NodeId:
    if not isinstance(value, str) or not _NODE_ID.match(value):
        raise RecordError("a node id is not 32 hex digits")
    return NodeId(value)


def _addrs(value: Any) -> tuple[str, ...]:
    """Mesh endpoints as "ip:port" or "[v6]:port": IP literals and real ports only (a
    peer dials them: nothing else may reach the dialer)."""
    out = []
    if isinstance(value, list) and len(value) > MAX_ADDRS:
        raise RecordError(f"a record lists more than {MAX_ADDRS} addresses")
    for addr in _strs(value):
        host, sep, port = addr.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            ipaddress.ip_address(host)
            ok = bool(sep) and port.isdigit() and 0 < int(port) < 65536
        except ValueError:
            ok = False
        if not ok:
            raise RecordError(f"an address is not ip:port: {addr[:64]!r}")
        out.append(addr)
    return tuple(out)


def _strs(value: Any, limit: int = MAX_LIST) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise RecordError("a list field is not a list or is too long")
    return tuple(_str(v, 256) for v in value)


def _counts(value: Any, kind: type, limit: float, entries: int = MAX_LIST) -> dict:
    if not isinstance(value, dict) or len(value) > entries:
        raise RecordError("a map field is not a map or is too long")
    out = {}
    for k, v in value.items():
        if not isinstance(v, kind if kind is int else (int, float)) or isinstance(v, bool) \
                or not (math.isfinite(v) and 0 <= v < limit):
            raise RecordError("a map value is not a number in range")
        out[_str(k, 256)] = kind(v)
    return out


def _texts(value: Any, entries: int = MAX_LIST) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > entries:
        raise RecordError("a map field is not a map or is too long")
    return {_str(k, 256): _str(v, 256) for k, v in value.items()}


def _splits(value: Any) -> dict[str, list]:
    if not isinstance(value, dict) or len(value) > MAX_MODELS:
        raise RecordError("splits is not a map or is too long")
    out = {}
    for model, parts in value.items():
        if not isinstance(parts, list) or len(parts) > 64 or \
                not all(isinstance(p, list) and len(p) == 2 for p in parts):
            raise RecordError("a split is not a list of [node_id, layers]")
        out[_str(model, 256)] = [[_node_id(node_id), _int(layers, MAX_LAYERS)] for node_id, layers in parts]
    return out


def fit(record: NodeRecord) -> NodeRecord:
    """This node's own record within what peers take: each model list and map at most
    MAX_MODELS entries (in order), RTTs of its PUBLISHED_RTT_PEERS nearest peers."""
    nearest = dict(sorted(record.rtt_ms.items(), key=lambda kv: (kv[1], kv[0]))[:PUBLISHED_RTT_PEERS])
    head = lambda d: dict(list(d.items())[:MAX_MODELS])  # noqa: E731
    return replace(record, models_on_disk=record.models_on_disk[:MAX_MODELS], serving=record.serving[:MAX_MODELS],
                   can_fetch=record.can_fetch[:MAX_MODELS], demand=head(record.demand), spare=head(record.spare),
                   promoted=head(record.promoted), splits=head(record.splits), rtt_ms=nearest)


def newer(a: NodeRecord, b: NodeRecord | None) -> bool:
    """Does `a` supersede `b`?"""
    if b is None:
        return True
    return (a.version, STATE_RANK[a.state]) > (b.version, STATE_RANK[b.state])


def next_version(last: int = 0) -> int:
    return max(last + 1, int(time.time() * 1000))


class Membership:
    """The records this node knows, its own included."""

    def __init__(self, me: NodeRecord, sign: Callable[[NodeRecord], NodeRecord] = lambda r: r) -> None:
        """`sign`: signs this node's own record each time it changes (MeshMember passes
        its identity's key; pure tests leave records unsigned)."""
        self.me = me.node_id
        self.sign = sign
        self.records: dict[NodeId, NodeRecord] = {me.node_id: sign(fit(me))}
        self.changed_at: dict[NodeId, float] = {}       # monotonic time a peer's record last changed here
        self.tombstones: dict[NodeId, int] = {}        # expired records: id -> version (never taken back)
        self.bytes = 0                                  # size of the peers' records kept (MAX_TABLE_BYTES)

    @property
    def own(self) -> NodeRecord:
        return self.records[self.me]

    def copy(self) -> "Membership":
        """An independent copy (records are immutable; the maps are not shared)."""
        view = Membership(self.own)  # the own record is already signed: not signed again
        view.sign = self.sign
        view.records, view.changed_at, view.tombstones = dict(self.records), dict(self.changed_at), dict(self.tombstones)
        view.bytes = self.bytes
        return view

    def update_own(self, **changes: Any) -> NodeRecord:
        record = self.sign(fit(replace(self.own, version=next_version(self.own.version), **changes)))
        self.records[self.me] = record
        return record

    def wants(self, node_id: NodeId, version: int, state: str) -> bool:
        """Would a record with this head be taken (newer than ours, not forgotten at that
        version)? Asked before a gossiped record's signature is checked: one that would
        be dropped anyway costs nothing."""
        if node_id == self.me:
            return state != ALIVE
        known = self.records.get(node_id)
        if known is None:
            return version > self.tombstones.get(node_id, -1)
        return (version, STATE_RANK.get(state, 0)) > (known.version, STATE_RANK[known.state])

    def merge(self, incoming: list[NodeRecord], protected: Collection[NodeId] = ()) -> list[NodeRecord]:
        """Take what is newer; return the records that changed. A record that
        says this node is dead is refuted by a new version of our own.

        The table holds at most MAX_RECORDS records and MAX_TABLE_BYTES of them. When a
        newer or new record does not fit, records of nodes this node only heard of make
        room, the least recently changed first; those in `protected` (peers this node is
        connected to or has probed: the caller knows) are never dropped for another, so a
        member flooding records can churn only records like its own."""
        changed = []
        candidates: list[NodeId] | None = None  # who may make room, least recently changed first
        for record in incoming:
            if record.node_id == self.me:
                if record.state != ALIVE and record.version >= self.own.version and self.own.state == ALIVE:
                    changed.append(self.update_own())
                continue
            known = self.records.get(record.node_id)
            if known is None and record.version <= self.tombstones.get(record.node_id, -1):
                continue
            if not newer(record, known):
                continue
            grow = record.size - (known.size if known is not None else 0)
            while self.bytes + grow > MAX_TABLE_BYTES or (known is None and len(self.records) >= MAX_RECORDS):
                if candidates is None:
                    candidates = sorted((nid for nid in self.records if nid != self.me and nid not in protected),
                                        key=lambda nid: self.changed_at.get(nid, 0.0), reverse=True)
                victim = candidates.pop() if candidates else None
                while victim is not None and (victim == record.node_id or victim not in self.records):
                    victim = candidates.pop() if candidates else None
                if victim is None:
                    break
                self._forget(victim)
            else:
                self.records[record.node_id] = record
                self.bytes += grow
                self.changed_at[record.node_id] = time.monotonic()
                self.tombstones.pop(record.node_id, None)
                changed.append(record)
        return changed

    def _forget(self, node_id: NodeId) -> None:
        record = self.records.pop(node_id)
        self.bytes -= record.size
        self.changed_at.pop(node_id, None)

    def expire(self, now: float, after_s: float = EXPIRE_S) -> list[NodeId]:
        """Forget dead and left records unchanged for `after_s` (monotonic `now`). A
        tombstone keeps their version, so gossip from a peer that still has one does not
        bring it back; a newer version (the node came back) is taken as usual."""
        gone = [nid for nid, r in self.records.items() if nid != self.me and r.state != ALIVE
                and now - self.changed_at.get(nid, now) >= after_s]
        for nid in gone:
            self.tombstones[nid] = self.records[nid].version
            self._forget(nid)
        while len(self.tombstones) > MAX_TOMBSTONES:
            self.tombstones.pop(next(iter(self.tombstones)))
        return gone

    def mark(self, node_id: NodeId, state: str) -> NodeRecord | None:
        """Mark a peer dead or left at the version we know (our opinion, gossiped)."""
        record = self.records.get(node_id)
        if record is None or node_id == self.me or STATE_RANK[record.state] >= STATE_RANK[state]:
            return None
        marked = replace(record, state=state)
        self.records[node_id] = marked
        self.bytes += marked.size - record.size
        self.changed_at[node_id] = time.monotonic()
        return marked

    def digest(self) -> dict[str, list[int]]:
        return {nid: [r.version, STATE_RANK[r.state]] for nid, r in self.records.items()}

    def newer_than(self, digest: dict[str, list[int]], limit: int = MAX_RECORDS_PER_EXCHANGE,
                   max_bytes: int = MAX_REPLY_BYTES) -> list[NodeRecord]:
        """Our records the holder of `digest` lacks (at most `limit`, and `max_bytes` of
        them: the rest next round). This node's own record goes first."""
        out, used = [], 0
        for nid in (self.me, *(n for n in self.records if n != self.me)):
            r = self.records[nid]
            theirs = digest.get(nid)
            if theirs is None or (r.version, STATE_RANK[r.state]) > tuple(theirs):
                if used + r.size > max_bytes:
                    break
                out.append(r)
                used += r.size
                if len(out) >= limit:
                    break
        return out

    def sized(self, ids: list[str], max_bytes: int = MAX_REPLY_BYTES) -> list[NodeRecord]:
        """Our records of `ids` (those we have), up to `max_bytes` of them."""
        out, used = [], 0
        for nid in ids:
            r = self.records.get(NodeId(nid))
            if r is None:
                continue
            if used + r.size > max_bytes:
                break
            out.append(r)
            used += r.size
        return out

    def wanted_from(self, digest: dict[str, list[int]], limit: int = MAX_RECORDS_PER_EXCHANGE) -> list[str]:
        """Ids whose record in `digest` is newer than ours (at most `limit`; never expired
        ones at a version we already forgot). A full table still asks: records it only
        heard of make room (merge)."""
        out = []
        for nid, (version, rank) in digest.items():
            mine = self.records.get(NodeId(nid))
            if mine is None:
                if version <= self.tombstones.get(NodeId(nid), -1):
                    continue
            elif (version, rank) <= (mine.version, STATE_RANK[mine.state]):
                continue
            out.append(nid)
            if len(out) >= limit:
                break
        return out

    def alive_peers(self, role: str | None = None) -> list[NodeRecord]:
        return [r for nid, r in self.records.items()
                if nid != self.me and r.state == ALIVE and (role is None or r.role == role)]
