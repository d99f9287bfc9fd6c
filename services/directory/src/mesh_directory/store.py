"""Listing storage: the narrow interface the app uses, and its SQLite backend.

The interface is five calls (put, get_owner, delete, query, purge_expired) on
plain values, so a PostgreSQL backend is a drop-in: same table (listing_id text
primary key, mesh_id, name, region, body jsonb, published_at, expires_at, with
indexes on expires_at and name), `INSERT ... ON CONFLICT (listing_id) DO UPDATE`
for put, and the filters as WHERE clauses; run several directory replicas behind
a load balancer against it (the app keeps no state besides the rate limiter,
which is per replica). See docs/directory.md.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredListing:
    listing_id: str
    body: dict          # the Listing as JSON
    published_at: float
    expires_at: float


class ListingStore(Protocol):
    def put(self, listing_id: str, body: dict, published_at: float, expires_at: float) -> None: ...
    def exists(self, listing_id: str) -> bool: ...
    def delete(self, listing_id: str) -> bool: ...
    def query(self, now: float, model: str | None, region: str | None, name: str | None,
              limit: int) -> list[StoredListing]: ...
    def purge_expired(self, now: float) -> int: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS listings (
    listing_id   TEXT PRIMARY KEY,
    mesh_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    region       TEXT NOT NULL,
    models       TEXT NOT NULL,      -- space-separated served + wanted, for the model filter
    body         TEXT NOT NULL,
    published_at REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS listings_expiry ON listings (expires_at);
CREATE INDEX IF NOT EXISTS listings_name ON listings (name);
CREATE INDEX IF NOT EXISTS listings_published ON listings (published_at);
"""


class SqliteStore:
    """SQLite in WAL mode: survives restarts; one connection, serialised by a lock
    (the directory is one process; SQLite serialises writers anyway)."""

    def __init__(self, path: str | Path) -> None:
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)

    def put(self, listing_id: str, body: dict, published_at: float, expires_at: float) -> None:
        models = " " + " ".join([*body.get("models_served", []), *body.get("models_wanted", [])]) + " "
        with self.lock:
            self.conn.execute(
                "INSERT INTO listings VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(listing_id) DO UPDATE SET "
                "mesh_id=excluded.mesh_id, name=excluded.name, region=excluded.region, models=excluded.models, "
                "body=excluded.body, published_at=excluded.published_at, expires_at=excluded.expires_at",
                (listing_id, body["mesh_id"], body["name"], body.get("region", ""), models, json.dumps(body),
                 published_at, expires_at))

    def exists(self, listing_id: str) -> bool:
        with self.lock:
            return self.conn.execute("SELECT 1 FROM listings WHERE listing_id = ?", (listing_id,)).fetchone() is not None

    def delete(self, listing_id: str) -> bool:
        with self.lock:
            return self.conn.execute("DELETE FROM listings WHERE listing_id = ?", (listing_id,)).rowcount > 0

    def query(self, now: float, model: str | None, region: str | None, name: str | None,
              limit: int) -> list[StoredListing]:
        sql = "SELECT listing_id, body, published_at, expires_at FROM listings WHERE expires_at > ?"
        args: list = [now]
        if model:
            sql += " AND instr(models, ?) > 0"
            args.append(f" {model} ")
        if region:
            sql += " AND region = ?"
            args.append(region)
        if name:
            sql += " AND name = ?"
            args.append(name)
        sql += " ORDER BY published_at DESC LIMIT ?"
        args.append(limit)
        with self.lock:
            rows = self.conn.execute(sql, args).fetchall()
        return [StoredListing(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def purge_expired(self, now: float) -> int:
        with self.lock:
            return self.conn.execute("DELETE FROM listings WHERE expires_at <= ?", (now,)).rowcount
