"""The directory service as a real process, on SQLite and on a real PostgreSQL
(every test runs on both): publish, discover, expiry, restart, ownership, replays,
and hostile input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore.directory_client import sign
from meshcore.identity import MeshSecret, node_id_of, public_bytes
from meshcore.ids import NodeId
from meshcore.token import InviteToken, owned_mesh_id
from meshnode import free_port


PLACEHOLDER_TOKEN = "haF2AadtZXNoX2lk2SA" + "A" * 40


def listing(name: str = "alpha", **overrides: object) -> dict:
    body = {"token": PLACEHOLDER_TOKEN, "mesh_id": "ab" * 16, "name": name, "region": "eu",
            "models_served": ["Qwen2.5-3B-Instruct-Q4_K_M"], "models_wanted": ["Llama-3-70B"],
            "models_on_disk": ["Qwen2.5-3B-Instruct-Q4_K_M"], "total_vram_gb": 48.0, "node_count": 3,
            "client_count": 1, "max_clients": 0, "version": "0.1.0"}
    body.update(overrides)
    return body


def owned_mesh(key: Ed25519PrivateKey) -> MeshSecret:
    """The mesh the node holding `key` created (its id bound to the key, as the directory
    requires of a listing); the same one for the same key, so a test can publish it again."""
    pub = public_bytes(key)
    salt = hashlib.sha256(pub).digest()[:16]
    return MeshSecret(owned_mesh_id(pub, salt), b"s" * 32, NodeId(node_id_of(key.public_key())), 0, pub, salt, True)


def publish_body(key: Ed25519PrivateKey, body: dict, now: float | None = None) -> dict:
    """Signed as the node holding `key` publishes; the listing's placeholder token is
    replaced by that node's own invite to the mesh it owns, and the mesh id by that mesh's
    (the directory checks both)."""
    if body.get("token") == PLACEHOLDER_TOKEN:
        mesh = owned_mesh(key)
        body = {**body, "mesh_id": mesh.mesh_id,
                "token": InviteToken.of(mesh, ("127.0.0.1:4000",), node_id_of(key.public_key())).encode()}
    return {"listing": body, **sign(key, body, "publish", now)}


class Directory:
    """`mesh-llm directory` on a SQLite file, or on PostgreSQL (a postgresql:// address,
    passed the way the docs say: in MESH_LLM_DIRECTORY_DB, never in argv)."""

    def __init__(self, db: Path | str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        where = ["--db", str(db)]
        if str(db).startswith("postgresql://"):
            env["MESH_LLM_DIRECTORY_DB"], where = str(db), []
        self.proc = subprocess.Popen([sys.executable, "-m", "mesh_cli", "directory", "--port", str(self.port),
                                      *where, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("directory did not start")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(10)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def directory(directory_db: str) -> Iterator[Directory]:
    d = Directory(directory_db, "--write-rate", "0", "--read-rate", "0")
    yield d
    d.stop()


def test_publish_discover_filter_refresh_and_delete(directory: Directory) -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with httpx.Client(base_url=directory.url) as http:
        r = http.post("/v1/meshes", json=publish_body(a, listing("alpha")))
        assert r.status_code == 200, r.text
        lid = r.json()["id"]
        assert http.post("/v1/meshes", json=publish_body(b, listing("beta", mesh_id="cd" * 16, region="us",
                                                                     models_served=["Other"], models_wanted=[]))).status_code == 200
        names = lambda **q: [m["name"] for m in http.get("/v1/meshes", params=q).json()["meshes"]]  # noqa: E731
        assert sorted(names()) == ["alpha", "beta"]
        assert names(model="Qwen2.5-3B-Instruct-Q4_K_M") == ["alpha"]
        assert names(model="Llama-3-70B") == ["alpha"]  # wanted counts too
        assert names(model="Qwen2.5") == []  # whole names only
        assert names(region="us") == ["beta"] and names(name="alpha") == ["alpha"]
        # Refresh by the same key replaces the listing.
        assert http.post("/v1/meshes", json=publish_body(a, listing("alpha", node_count=5))).json()["id"] == lid
        [alpha] = [m for m in http.get("/v1/meshes").json()["meshes"] if m["name"] == "alpha"]
        assert alpha["node_count"] == 5 and 0 < alpha["expires_in"] <= 120
        # Another key cannot remove it; the owner can.
        assert http.request("DELETE", f"/v1/meshes/{lid}", json=sign(b, None, f"delete:{lid}")).status_code == 403
        forged = {**sign(b, None, f"delete:{lid}"), "public_key": sign(a, None, "x")["public_key"]}
        assert http.request("DELETE", f"/v1/meshes/{lid}", json=forged).status_code == 403
        assert http.request("DELETE", f"/v1/meshes/{lid}", json=sign(a, None, f"delete:{lid}")).status_code == 200
        assert names() == ["beta"]


def test_listings_expire_and_survive_a_restart(directory_db: str) -> None:
    db = directory_db
    short = Directory(db, "--ttl", "2", "--write-rate", "0")
    key = Ed25519PrivateKey.generate()
    try:
        assert httpx.post(f"{short.url}/v1/meshes", json=publish_body(key, listing())).status_code == 200
        assert len(httpx.get(f"{short.url}/v1/meshes").json()["meshes"]) == 1
        time.sleep(2.5)
        assert httpx.get(f"{short.url}/v1/meshes").json()["meshes"] == []
    finally:
        assert short.stop() == 0
    kept = Directory(db)
    try:
        assert httpx.post(f"{kept.url}/v1/meshes", json=publish_body(key, listing("kept"))).status_code == 200
    finally:
        kept.stop()
    restarted = Directory(db)
    try:
        assert [m["name"] for m in httpx.get(f"{restarted.url}/v1/meshes").json()["meshes"]] == ["kept"]
    finally:
        restarted.stop()


@pytest.mark.parametrize("mutate,status", [
    (lambda b: {**b, "signature": "00" * 64}, 403),
    (lambda b: {**b, "listing": {**b["listing"], "node_count": 99}}, 403),  # signed something else
    (lambda b: {**b, "listing": {**b["listing"], "name": "<script>alert(1)</script>"}}, 422),
    (lambda b: {**b, "listing": {**b["listing"], "node_count": -1}}, 422),
    (lambda b: {**b, "listing": {**b["listing"], "total_vram_gb": 1e12}}, 422),
    (lambda b: {**b, "listing": {**b["listing"], "models_served": ["m"] * 1000}}, 422),
    (lambda b: {**b, "listing": {**b["listing"], "surprise": 1}}, 422),
    (lambda b: {**b, "public_key": "zz"}, 422),
])
def test_bad_publishes_are_4xx(directory: Directory, mutate, status: int) -> None:  # noqa: ANN001
    body = mutate(publish_body(Ed25519PrivateKey.generate(), listing()))
    r = httpx.post(f"{directory.url}/v1/meshes", json=body)
    assert r.status_code == status, r.text
    assert "error" in r.json() and r.headers["content-type"] == "application/json"


def test_old_signatures_malformed_json_and_big_bodies(directory: Directory) -> None:
    key = Ed25519PrivateKey.generate()
    old = publish_body(key, listing(), now=time.time() - 3600)
    assert httpx.post(f"{directory.url}/v1/meshes", json=old).status_code == 403
    assert httpx.post(f"{directory.url}/v1/meshes", content=b"{nope", headers={"content-type": "application/json"}).status_code == 422
    assert httpx.post(f"{directory.url}/v1/meshes", content=b"x" * 200_000).status_code == 413
    chunked = httpx.post(f"{directory.url}/v1/meshes", content=iter([b"x" * 50_000] * 4))
    assert chunked.status_code == 413
    assert httpx.get(f"{directory.url}/v1/meshes", params={"limit": 100000}).status_code == 422
    assert httpx.get(f"{directory.url}/v1/meshes", params={"name": "x" * 1000}).status_code == 422
    assert httpx.get(f"{directory.url}/nothing").status_code == 404


def test_floods_get_429(directory_db: str) -> None:
    d = Directory(directory_db, "--read-rate", "5", "--write-rate", "1")
    try:
        codes = [httpx.get(f"{d.url}/v1/meshes").status_code for _ in range(120)]
        assert 429 in codes and codes[0] == 200
        limited = next(r for r in (httpx.get(f"{d.url}/v1/meshes") for _ in range(5)) if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        key = Ed25519PrivateKey.generate()
        writes = [httpx.post(f"{d.url}/v1/meshes", json=publish_body(key, listing())).status_code for _ in range(20)]
        assert writes[0] == 200 and 429 in writes
    finally:
        d.stop()


def test_openapi_document_is_served(directory: Directory) -> None:
    spec = httpx.get(f"{directory.url}/openapi.json").json()
    assert {"/v1/meshes", "/v1/meshes/{lid}", "/healthz"} <= set(spec["paths"])


def test_a_listing_must_carry_its_publishers_own_token_for_that_mesh(directory: Directory) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    mine = owned_mesh(key)

    def token(mesh_id: str, issuer: Ed25519PrivateKey) -> str:
        return InviteToken(mesh_id, b"s" * 32, ("127.0.0.1:4000",), node_id_of(issuer.public_key())).encode()
    for bad in (token("cd" * 16, key),            # a token for another (private) mesh
                token(mine.mesh_id, other),       # someone else's token for this mesh
                token(mine.mesh_id, key),         # its own, but without the proof that it owns the mesh
                "haF2AadtZXNoX2lk2SA" + "B" * 40):  # not a token at all
        reply = httpx.post(f"{directory.url}/v1/meshes", json=publish_body(key, listing(token=bad,
                                                                                       mesh_id=mine.mesh_id)))
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "token_mismatch", reply.text
    assert httpx.get(f"{directory.url}/v1/meshes").json()["meshes"] == []


def test_only_a_meshs_owner_may_list_it(directory: Directory) -> None:
    """Issue 28: anyone could list their own token under a popular mesh's id (the newest
    listing per mesh was shown, so every --auto joiner landed in the attacker's mesh), and
    a member could list the real secret naming itself owner."""
    owner, attacker, member = (Ed25519PrivateKey.generate() for _ in range(3))
    with httpx.Client(base_url=directory.url) as http:
        assert http.post("/v1/meshes", json=publish_body(owner, listing("popular"))).status_code == 200
        real = owned_mesh(owner)
        hijack = owned_mesh(attacker)  # the attacker's own mesh, listed under the popular id
        forged = InviteToken(real.mesh_id, hijack.secret, ("127.0.0.1:4000",), node_id_of(attacker.public_key()),
                             hijack.owner, 0, hijack.owner_key, hijack.salt).encode()
        stolen = InviteToken(real.mesh_id, real.secret, ("127.0.0.1:4000",), node_id_of(member.public_key()),
                             NodeId(node_id_of(member.public_key()))).encode()  # the real secret, "owned" by the member
        relay = InviteToken.of(real, ("127.0.0.1:4000",), node_id_of(member.public_key())).encode()  # owner's proof, member's key
        for key, token in ((attacker, forged), (member, stolen), (member, relay)):
            reply = http.post("/v1/meshes", json=publish_body(key, listing("popular", mesh_id=real.mesh_id,
                                                                           token=token, node_count=99)))
            assert reply.status_code == 403, reply.text
        [shown] = http.get("/v1/meshes").json()["meshes"]
        assert shown["mesh_id"] == real.mesh_id and InviteToken.decode(shown["token"]).mesh.owner == real.owner


def test_a_replayed_signature_is_refused(directory: Directory) -> None:
    key = Ed25519PrivateKey.generate()
    body = publish_body(key, listing())
    assert httpx.post(f"{directory.url}/v1/meshes", json=body).status_code == 200
    replay = httpx.post(f"{directory.url}/v1/meshes", json=body)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "replayed"
    older = publish_body(key, listing(), now=body["signed_at"] - 5)  # validly signed, but older than the last
    assert httpx.post(f"{directory.url}/v1/meshes", json=older).status_code == 409
    changed = publish_body(key, listing(node_count=4), now=body["signed_at"])  # same second, new content: fresh
    assert httpx.post(f"{directory.url}/v1/meshes", json=changed).status_code == 200
