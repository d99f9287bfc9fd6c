"""Several `mesh-llm directory` replicas on one PostgreSQL, and the read path
(ETag/304, gzip, cursor pages, refresh by digest) on both backends, as real processes."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshcore import directory_client as dc
from meshcore.directory_client import sign
from meshnode import wait_until
from test_directory import Directory, listing, publish_body


def names(url: str, **query: object) -> list[str]:
    return [m["name"] for m in httpx.get(f"{url}/v1/meshes", params=query).json()["meshes"]]


def test_a_listing_published_through_one_replica_is_listed_refreshed_and_deleted_through_the_other(
        postgres_url: str) -> None:
    one, two = (Directory(postgres_url, "--write-rate", "0", "--read-rate", "0") for _ in range(2))
    try:
        key = Ed25519PrivateKey.generate()
        reply = httpx.post(f"{one.url}/v1/meshes", json=publish_body(key, listing("shared")))
        assert reply.status_code == 200, reply.text
        lid = reply.json()["id"]
        wait_until(lambda: names(two.url) == ["shared"], 10)
        # Refreshed through the other replica, with new content: both list the new content.
        assert httpx.post(f"{two.url}/v1/meshes", json=publish_body(key, listing("shared", node_count=7))).json()["id"] == lid
        wait_until(lambda: [m["node_count"] for m in httpx.get(f"{one.url}/v1/meshes").json()["meshes"]] == [7], 10)
        # A publish replayed to the other replica is refused there (the guard is in the database).
        again = publish_body(key, listing("shared", node_count=8))
        assert httpx.post(f"{one.url}/v1/meshes", json=again).status_code == 200
        assert httpx.post(f"{two.url}/v1/meshes", json=again).status_code == 409
        # Deleted through the first; gone from both.
        assert httpx.request("DELETE", f"{one.url}/v1/meshes/{lid}", json=sign(key, None, f"delete:{lid}")).status_code == 200
        wait_until(lambda: names(one.url) == [] and names(two.url) == [], 10)
    finally:
        one.stop()
        two.stop()


def test_rate_limits_hold_across_replicas(postgres_url: str) -> None:
    """Burst 10 writes per client in all: alternating between two replicas does not
    give a client twice its share (each replica alone would allow 10)."""
    one, two = (Directory(postgres_url, "--write-rate", "0.01", "--read-rate", "0") for _ in range(2))
    try:
        codes = []
        for i in range(20):
            target = (one, two)[i % 2]
            codes.append(httpx.post(f"{target.url}/v1/meshes", json=publish_body(Ed25519PrivateKey.generate(),
                                                                               listing(f"m{i}"))).status_code)
        assert codes.count(200) == 10 and codes.count(429) == 10, codes
        assert set(codes[10:]) == {429}
    finally:
        one.stop()
        two.stop()


def test_a_replica_killed_mid_load_loses_nothing(postgres_url: str) -> None:
    """Publishes go to replica one while it is SIGKILLed: every publish it answered 200
    is listed through replica two, and whatever failed is published there afterwards."""
    one, two = (Directory(postgres_url, "--write-rate", "0", "--read-rate", "0", "--ttl", "600") for _ in range(2))
    keys = [Ed25519PrivateKey.generate() for _ in range(150)]
    acknowledged: list[int] = []
    failed: list[int] = []
    started = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as http:
            for i, key in enumerate(keys):
                try:
                    ok = http.post(f"{one.url}/v1/meshes", json=publish_body(key, listing(f"m{i}", mesh_id=f"{i:032x}"))
                                   ).status_code == 200
                except httpx.HTTPError:
                    ok = False
                (acknowledged if ok else failed).append(i)
                if len(acknowledged) == 20:
                    started.set()

    try:
        loader = threading.Thread(target=load)
        loader.start()
        assert started.wait(60)
        one.kill()
        loader.join(120)
        assert failed, "the kill happened after the load ended: nothing was tested"
        wait_until(lambda: {f"m{i}" for i in acknowledged} <= set(names(two.url, limit=500)), 10)
        for i in failed:
            body = publish_body(keys[i], listing(f"m{i}", mesh_id=f"{i:032x}"))
            assert httpx.post(f"{two.url}/v1/meshes", json=body).status_code in (200, 409)
        wait_until(lambda: len(names(two.url, limit=500)) == len(keys), 10)
    finally:
        two.stop()
        if one.proc.poll() is None:
            one.stop()


def test_etag_gzip_and_cursor_pages(directory_db: str) -> None:
    d = Directory(directory_db, "--write-rate", "0", "--read-rate", "0")
    try:
        for i in range(7):
            body = publish_body(Ed25519PrivateKey.generate(), listing(f"m{i}", mesh_id=f"{i:032x}"))
            assert httpx.post(f"{d.url}/v1/meshes", json=body).status_code == 200
        with httpx.Client(base_url=d.url) as http:
            first = http.get("/v1/meshes")
            assert first.headers["content-encoding"] == "gzip" and first.headers["vary"] == "accept-encoding"
            tag = first.headers["etag"]
            assert http.get("/v1/meshes", headers={"If-None-Match": tag}).status_code == 304
            assert http.get("/v1/meshes", headers={"If-None-Match": 'W/"other"'}).status_code == 200
            plain = http.get("/v1/meshes", headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers and plain.json() == first.json()
            with http.stream("GET", "/v1/meshes", headers={"Accept-Encoding": "gzip"}) as raw:
                unzipped = json.loads(gzip.decompress(b"".join(raw.iter_raw())))
            assert [m["id"] for m in unzipped["meshes"]] == [m["id"] for m in plain.json()["meshes"]]
            # Pages of 3 walk every mesh once, newest first, and end with next_cursor null.
            seen, cursor, pages = [], None, 0
            while True:
                reply = http.get("/v1/meshes", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
                seen += [m["name"] for m in reply["meshes"]]
                cursor, pages = reply["next_cursor"], pages + 1
                if cursor is None:
                    break
            assert seen == [f"m{i}" for i in reversed(range(7))] and pages == 3
            bad = http.get("/v1/meshes", params={"cursor": "bm90IGEgY3Vyc29y"})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_query"
            # A change makes the old tag stale.
            key = Ed25519PrivateKey.generate()
            assert http.post("/v1/meshes", json=publish_body(key, listing("new", mesh_id="ee" * 16))).status_code == 200
            assert http.get("/v1/meshes", headers={"If-None-Match": tag}).status_code == 200
    finally:
        d.stop()


def test_unchanged_refreshes_send_only_a_digest(directory_db: str) -> None:
    """The node's client publishes in full once, then refreshes by digest; a changed
    listing is published in full again. Content that did not change keeps its
    published_at (and the page its ETag)."""
    d = Directory(directory_db, "--write-rate", "0", "--read-rate", "0")
    try:
        key = Ed25519PrivateKey.generate()
        body = publish_body(key, listing("kept"))["listing"]
        reply = dc.publish(d.url, key, body)
        lid, digest = reply["id"], reply["digest"]
        [before] = httpx.get(f"{d.url}/v1/meshes").json()["meshes"]
        tag = httpx.get(f"{d.url}/v1/meshes").headers["etag"]
        assert dc.refresh(d.url, key, lid, digest)["expires_in"] == 120
        [after] = httpx.get(f"{d.url}/v1/meshes").json()["meshes"]
        assert after["published_at"] == before["published_at"]
        assert httpx.get(f"{d.url}/v1/meshes", headers={"If-None-Match": tag}).status_code == 304
        with pytest.raises(dc.DirectoryError, match="404"):
            dc.refresh(d.url, key, lid, "0" * 64)  # not the listed content: publish in full
        other = Ed25519PrivateKey.generate()
        with pytest.raises(dc.DirectoryError, match="403"):
            dc.refresh(d.url, other, lid, digest)  # not the owner
    finally:
        d.stop()


def test_the_database_password_is_never_logged_and_an_old_sqlite_file_is_migrated(
        postgres_url: str, tmp_path: Path) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    secret_file = tmp_path / "db-url"
    secret_file.write_text(postgres_url + "\n")
    d = Directory(tmp_path / "unused.sqlite3", "--db-file", str(secret_file))  # --db-file wins over --db
    d.stop()
    log = d.proc.stderr.read().decode()
    assert "PostgreSQL postgresql://mesh:***@" in log and password not in log, log
    out = subprocess.run([sys.executable, "-m", "mesh_directory", "--db", postgres_url.replace(password, "wrong-pw"),
                          "--db-wait", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "wrong-pw" not in out.stderr and "***" in out.stderr, out.stderr
    # A database from before numbered migrations: migrated; its listings, from before mesh ids
    # were bound to their owners' keys (issue 28), are dropped (live publishers list again).
    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript("""CREATE TABLE listings (listing_id TEXT PRIMARY KEY, mesh_id TEXT NOT NULL, name TEXT NOT NULL,
        region TEXT NOT NULL, models TEXT NOT NULL, body TEXT NOT NULL, published_at REAL NOT NULL, expires_at REAL NOT NULL);""")
    conn.execute("INSERT INTO listings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 ("ab" * 16, "cd" * 16, "legacy", "eu", " m ", '{"mesh_id": "' + "cd" * 16 + '", "name": "legacy"}',
                  1.0, 4e9))
    conn.commit()
    conn.close()
    legacy = Directory(old)
    try:
        assert names(legacy.url) == []
        key = Ed25519PrivateKey.generate()
        assert httpx.post(f"{legacy.url}/v1/meshes", json=publish_body(key, listing("new"))).status_code == 200
        assert names(legacy.url) == ["new"]
    finally:
        legacy.stop()
