"""A malicious member: it joins with a valid invite token (so it is admitted) and then
asks honest nodes for what no member may have. Issue 12's first slice: per-stream-kind
authorisation. Every attempt must fail and the honest nodes keep serving, unrestarted.

The attacker is this test process with its own Ed25519 identity and a real QUIC
connection (meshcore's endpoint) to the real node processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conftest import TINY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.identity import MeshSecret, load_or_create_identity, node_id_of
from meshcore.membership import NodeRecord
from meshcore.token import InviteToken
from meshcore.transport import MeshConnection, MeshEndpoint
from meshcore.wire import FrameError, Kind, encode_frame, read_frame
from meshnode import MeshNode, greedy, start_node

MODEL = TINY.name
# RPC_HELLO (command 14, no payload): the first thing llama.cpp's RPC client sends.
RPC_HELLO = bytes([14]) + (0).to_bytes(8, "little")


async def attacker(tmp: Path, node: MeshNode) -> tuple[MeshEndpoint, MeshConnection]:
    token = InviteToken.decode(node.wait_token())
    (tmp / "attacker").mkdir(exist_ok=True)
    endpoint = MeshEndpoint(load_or_create_identity(tmp / "attacker"), lambda: MeshSecret(token.mesh_id, token.secret))
    conn = await endpoint.dial(token.addrs[0])
    return endpoint, conn


async def answer(conn: MeshConnection, kind: Kind, header: dict, payload: bytes, timeout: float = 20) -> bytes:
    """Everything the node sends back on one stream until it closes it."""
    reader, writer = await conn.open_stream(kind, header)
    writer.write(payload)
    return await asyncio.wait_for(reader.read(), timeout)


def rpc_servers(node: MeshNode) -> list:
    return [p for p in node.descendants() if "ggml-rpc-server" in p.name()]


def http(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> MeshNode:
    node = start_node(tmp_path_factory.mktemp("honest"), [models[MODEL]])
    yield node
    node.stop()


async def test_no_member_drives_a_node_that_is_no_split_worker(tmp_path: Path, honest: MeshNode) -> None:
    assert rpc_servers(honest) == []  # not a split worker: no rpc-server at all
    endpoint, conn = await attacker(tmp_path, honest)
    try:
        started = time.monotonic()
        assert await answer(conn, Kind.RPC, {"model": MODEL}, RPC_HELLO) == b""
        assert time.monotonic() - started >= 9  # it waited for a grant that never came, then closed
        assert await answer(conn, Kind.RPC, {"model": 12}, RPC_HELLO) == b""
    finally:
        endpoint.close()
    assert "refused an RPC stream" in honest.log()
    assert rpc_servers(honest) == []


async def test_member_http_streams_reach_only_the_forwarded_api(tmp_path: Path, honest: MeshNode) -> None:
    endpoint, conn = await attacker(tmp_path, honest)
    pid = honest.llama_pid(MODEL)
    try:
        for method, path in (("GET", "/props"), ("GET", "/slots"), ("POST", "/slots/0?action=erase"),
                             ("GET", "/v1/chat/completions"), ("POST", "/lora-adapters"), ("POST", "/props")):
            reply = await answer(conn, Kind.HTTP, {"model": MODEL}, http(method, path))
            assert reply.startswith(b"HTTP/1.1 404") and b'"code": "not_found"' in reply, (path, reply[:200])
        big = await answer(conn, Kind.HTTP, {"model": MODEL},
                           b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 413"), big[:200]
        # A request with another one pipelined behind it: only the first is answered.
        body = b'{"model": "%s", "prompt": "hi", "max_tokens": 2}' % MODEL.encode()
        reply = await answer(conn, Kind.HTTP, {"model": MODEL},
                             http("POST", "/v1/completions", body) + http("GET", "/slots"))
        assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 ") == 1, reply[:300]
        assert b'"text"' in reply and b"n_ctx" not in reply  # a completion, not the slots listing
        garbage = await answer(conn, Kind.HTTP, {"model": MODEL}, b"NOT HTTP AT ALL\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400"), garbage[:200]
    finally:
        endpoint.close()
    assert honest.llama_pid(MODEL) == pid  # never restarted
    assert len(greedy(honest.api, MODEL, 4)) == 3


async def test_a_split_worker_serves_only_its_host(tmp_path: Path, models: dict[str, Path]) -> None:
    first = start_node(tmp_path / "n0", [models[MODEL]], "--split", wait=False)
    nodes = [first]
    try:
        nodes.append(start_node(tmp_path / "n1", [models[MODEL]], "--split", "--join", first.wait_token(),
                                wait=False))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                split = [n for n in nodes if len(n.node_status().models[0].split) == 2
                         and n.node_status().models[0].state == 2]
            except Exception:  # noqa: BLE001 - not up yet
                split = []
            if split:
                break
            await asyncio.sleep(0.3)
        [host] = split
        worker = next(n for n in nodes if n is not host)
        worker.wait_serving([MODEL], timeout=60)
        before = greedy(host.api, MODEL, 8)
        assert len(rpc_servers(worker)) == 1 and rpc_servers(host) == []
        host_id = host.node_status().node_id
        endpoint, conn = await attacker(tmp_path, worker)
        try:
            # The model the worker holds layers of, asked by someone who is not its host.
            assert await answer(conn, Kind.RPC, {"model": MODEL}, RPC_HELLO) == b""
            # Take the host out of the worker's mesh by words: a goodbye that is not the
            # host's own, and gossip saying it is dead or left (others' opinions).
            host_record = next(r for r in (await gossip(conn, []))["records"] if r["node_id"] == host_id)
            await control(conn, {"t": "leave", "record": {**host_record, "state": "left"}})
            for state in ("left", "dead"):
                await gossip(conn, [{**host_record, "state": state}])
            # Indirect probes: of a node nobody knows, of itself, and a burst at once.
            unknown = "f" * 32
            assert (await control(conn, {"t": "ping_req", "target": unknown}))["ok"] is False
            burst = await asyncio.gather(*(control(conn, {"t": "ping_req", "target": host_id}) for _ in range(5)))
            assert sum(1 for r in burst if r["ok"]) < 5  # one at a time per member
            await asyncio.sleep(2)
        finally:
            endpoint.close()
        assert "refused an RPC stream" in worker.log()
        assert "ignored a leave" in worker.log()
        assert next(p for p in worker.node_status().peers if p.node_id == host_id).state == "alive"
        assert greedy(worker.api, MODEL, 8) == before  # the split still works, same tokens
    finally:
        for node in nodes:
            node.stop()


async def control(conn: MeshConnection, message: dict) -> dict:
    reader, writer = await conn.open_stream(Kind.CONTROL, message)
    writer.write_eof()
    try:
        return await asyncio.wait_for(read_frame(reader), 10)
    except FrameError:
        return {}  # no answer (leave)


async def gossip(conn: MeshConnection, records: list[dict]) -> dict:
    """One push-pull exchange as the attacker: send an empty digest, read the reply,
    push `records`."""
    reader, writer = await conn.open_stream(Kind.GOSSIP, {"digest": {}})
    reply = await asyncio.wait_for(read_frame(reader), 10)
    writer.write(encode_frame({"records": records}))
    writer.write_eof()
    return reply


def forged(i: int, role: str = "node", **tampered: object) -> dict:
    """A record the attacker signs with a fresh key of its own (keys cost nothing), then
    `tampered` fields changed after signing (their own checks refuse them first)."""
    key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
    record = NodeRecord(node_id=node_id_of(key.public_key()), version=int(time.time() * 1000), role=role,
                        addrs=(f"127.9.{i // 250 % 250}.{i % 250}:4000",))
    return {**record.signed(key).to_wire(), **tampered}


def own(i: int, **fields: object) -> dict:
    """A well-formed record of the attacker's own key `i`, `fields` signed with it."""
    key = Ed25519PrivateKey.from_private_bytes(i.to_bytes(32, "little"))
    return NodeRecord(node_id=node_id_of(key.public_key()), version=int(time.time() * 1000),
                      **fields).signed(key).to_wire()  # type: ignore[arg-type]


async def test_records_cannot_turn_a_node_into_a_packet_cannon(tmp_path: Path, honest: MeshNode) -> None:
    """Records list addresses that honest nodes dial; a member lists a victim's in many
    records of its own (16 each, the most a record may hold). The node backs off per
    address and dials few at once: the victim gets a trickle, not a flood."""
    victim = await asyncio.get_running_loop().create_datagram_endpoint(Counter, local_addr=("127.0.0.1", 0))
    transport, counter = victim
    port = transport.get_extra_info("sockname")[1]
    endpoint, conn = await attacker(tmp_path, honest)
    try:
        too_many = own(5000, addrs=(f"127.0.0.1:{port}",) * 17)
        await gossip(conn, [too_many] + [own(i, addrs=(f"127.0.0.1:{port}",) * 16) for i in range(5001, 5051)])
        await asyncio.sleep(12)
    finally:
        endpoint.close()
        transport.close()
    # Each dial is an Initial packet and its retransmissions (~3 in the 3 s it may take);
    # without the backoff, 50 records x 16 addresses would be dialled on every probe.
    assert 0 < counter.datagrams <= 40, counter.datagrams
    assert honest.node_status().node_state == "serving"


class Counter(asyncio.DatagramProtocol):
    datagrams = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.datagrams += 1


async def test_bad_or_flooding_records_neither_crash_nor_blind_a_node(tmp_path: Path, honest: MeshNode) -> None:
    agent = honest.child_pid("mesh_node")
    honest_id = honest.node_status().node_id
    endpoint, conn = await attacker(tmp_path, honest)
    try:
        reply = await gossip(conn, [forged(1, addrs=["evil-no-port"])])
        honest_record = next(r for r in reply["records"] if r["node_id"] == honest_id)
        await gossip(conn, [forged(2, splits={MODEL: [[honest_id, 2 ** 40]]})])
        await gossip(conn, [forged(3, demand={MODEL: -5})])
        # The honest node's own record, forged: evicted for good, a better offer, a higher version.
        for change in ({"state": "left", "version": 2 ** 62}, {"vram_bytes": 1 << 50}, {"version": 2 ** 40}):
            await gossip(conn, [{**honest_record, **change}])
        after = next(r for r in (await gossip(conn, []))["records"] if r["node_id"] == honest_id)
        assert after["state"] == "alive" and after["vram_bytes"] == honest_record["vram_bytes"]
        assert honest_record["version"] <= after["version"] < 2 ** 62  # only the node itself raises it
        # A flood of well-formed records: kept to the cap, in pieces no bigger than a frame.
        for start in range(100, 3100, 500):
            await gossip(conn, [forged(i, role="client") for i in range(start, start + 500)])
        deadline = time.monotonic() + 20
        while len(honest.node_status().peers) < 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the node checks this member's signatures at 500 a second (burst 1,024)
        reply = await gossip(conn, [])
        assert len(reply["records"]) <= 512
    finally:
        endpoint.close()
    status = honest.node_status()
    # Kept to the signature-check budget of one member (the rest are dropped, not queued)
    # and never past the table's cap.
    assert 1000 <= len(status.peers) < 2048
    bad = {forged(i)["node_id"] for i in (1, 2, 3)}
    assert not bad & {p.node_id for p in status.peers}  # none of the records with bad fields got in
    assert status.node_state == "serving"
    assert honest.child_pid("mesh_node") == agent  # the node agent never restarted
    assert len(greedy(honest.api, MODEL, 4)) == 3
    assert "Traceback" not in honest.log()



def largest(i: int) -> dict:
    """One of the largest records a member may gossip (~13 KB: long model ids in its lists)."""
    from meshcore.membership import MAX_MODELS
    return own(i, models_on_disk=tuple(f"{i}-{j}-" + "m" * 180 for j in range(MAX_MODELS))[:60])


async def test_records_at_the_byte_caps_neither_cut_links_nor_stop_a_join_nor_blind_the_api(
        tmp_path: Path, honest: MeshNode) -> None:
    """Issue 28, items 1 and 2. Four records of ~330 KB (lists of 256 names of 256
    characters) used to make every gossip reply exceed the frame limit: the node closed its
    connection to the honest peer asking, and a node joining it crash-looped. Eleven large
    records made its status too big for the proxy's gRPC channel, and every API request
    answered 503. Now: the fat records are refused, a flood of the largest allowed ones
    fills the table to its byte budget, and a node joins, routes and answers through it."""
    agent = honest.child_pid("mesh_node")
    since = len(honest.log())  # the honest node is shared with the tests before: this test's lines only
    endpoint, conn = await attacker(tmp_path, honest)
    try:
        fat = [own(9000 + i, models_on_disk=tuple(f"{i}{j}" + "f" * 250 for j in range(256))) for i in range(4)]
        await gossip(conn, fat)
        for start in range(20000, 20000 + 720, 60):  # 60 a message: under the 1 MiB frame
            await gossip(conn, [largest(i) for i in range(start, start + 60)])
        reply = await gossip(conn, [])
        assert len(encode_frame(reply)) < 1 << 20
        flood = {largest(i)["node_id"] for i in range(20000, 20000 + 720)}
        deadline = time.monotonic() + 20
        while len(flood & {p.node_id for p in honest.node_status().peers}) < 400:  # this loop sends them meanwhile
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
        joiner = start_node(tmp_path / "joiner", [], "--join", honest.wait_token(), wait=False)
        try:
            joiner.wait_token()
            joiner.wait_serving([MODEL], timeout=60)  # the honest node's model, routed through it
            assert len(greedy(joiner.api, MODEL, 4)) == 3  # through the mesh, to the honest node
            assert "Traceback" not in joiner.log() and "FrameError" not in joiner.log()
        finally:
            joiner.stop()
    finally:
        endpoint.close()
    status = honest.node_status()
    fat_ids = {r["node_id"] for r in fat}
    assert not fat_ids & {p.node_id for p in status.peers}
    assert 400 < len(flood & {p.node_id for p in status.peers}) < 720  # up to the table's byte budget
    assert len(greedy(honest.api, MODEL, 4)) == 3  # its own API still routes
    assert honest.child_pid("mesh_node") == agent
    assert "closing mesh connection" not in honest.log()[since:]
    assert honest.log()[since:].count(" is dead: ") <= 20  # hundreds of unreachable records: a bounded log
