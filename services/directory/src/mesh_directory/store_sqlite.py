"""The embedded store: SQLite in WAL mode, in this process. One connection,
serialised by a lock, called from worker threads (never blocking the event loop).
Replays are refused through a table (so across restarts too), in the transaction
of the write they guard; rate limits are
counted in memory, which is exact for the one process a SQLite file serves (run
replicas on PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from mesh_directory import migrations
from mesh_directory.limits import RateLimiter
from mesh_directory.listing import SIGNATURE_WINDOW_S
from mesh_directory.store import Replayed, Row, Signed, StoreUnavailable, models_column

COLUMNS = "listing_id, mesh_id, name, region, models, body, digest, published_at, expires_at"
REPLAY_SQL = """
INSERT INTO replay_guard (public_key, signed_at, signatures) VALUES (?, ?, ?)
ON CONFLICT (public_key) DO UPDATE SET
    signatures = CASE WHEN replay_guard.signed_at = excluded.signed_at
                      THEN replay_guard.signatures || ' ' || excluded.signatures ELSE excluded.signatures END,
    signed_at = excluded.signed_at
WHERE excluded.signed_at > replay_guard.signed_at
   OR (excluded.signed_at = replay_guard.signed_at
       AND instr(' ' || replay_guard.signatures || ' ', ' ' || excluded.signatures || ' ') = 0)
RETURNING 1"""
T = TypeVar("T")
UPSERT_SQL = f"""
INSERT INTO listings ({COLUMNS}, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM listings))
ON CONFLICT (listing_id) DO UPDATE SET mesh_id = excluded.mesh_id, name = excluded.name, region = excluded.region,
    models = excluded.models, body = excluded.body, digest = excluded.digest, published_at = excluded.published_at,
    expires_at = excluded.expires_at, seq = excluded.seq"""


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.migrate()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite database {self.path}: {exc}") from exc
        self.lock = threading.Lock()
        self.limiter: dict[tuple[float, float], RateLimiter] = {}

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def migrate(self) -> None:
        self.conn.execute(migrations.TABLE)
        applied = {v for (v,) in self.conn.execute("SELECT version FROM schema_migrations")}
        for m in migrations.pending(applied, migrations.available("sqlite")):
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
            self.conn.executescript(f"BEGIN IMMEDIATE;\n{m.sql}\nINSERT INTO schema_migrations VALUES "
                                    f"({m.version}, '{m.name}', '{stamp}');\nCOMMIT;")

    async def _run(self, fn, *args):  # noqa: ANN001, ANN202 - any of the methods below
        def locked():  # noqa: ANN202
            with self.lock:
                return fn(*args)
        try:
            return await asyncio.to_thread(locked)
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk full, ...
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._run(self.conn.close)

    def _signed(self, signed: Signed, write: Callable[[], T]) -> T:
        """`write` in one transaction with taking `signed`'s signature (raises Replayed)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self.conn.execute(REPLAY_SQL, (signed.public_key, signed.signed_at, signed.signature)).fetchone() is None:
                raise Replayed()
            result = write()
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT (busy, disk full) leaves it open
                self.conn.execute("ROLLBACK")
            raise
        return result

    def _put(self, listing_id: str, body: dict, body_json: str, digest: str, ttl_s: float) -> bool:
        now = time.time()
        if self._refresh(listing_id, digest, ttl_s, now):
            return False
        self.conn.execute(UPSERT_SQL, (listing_id, body["mesh_id"], body["name"], body.get("region", ""),
                                       models_column(body), body_json, digest, now, now + ttl_s))
        return True

    def _refresh(self, listing_id: str, digest: str, ttl_s: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.conn.execute("UPDATE listings SET expires_at = ? WHERE listing_id = ? AND digest = ? "
                                 "AND expires_at > ?", (now + ttl_s, listing_id, digest, now)).rowcount > 0

    async def put(self, signed: Signed, listing_id: str, body: dict, body_json: str, digest: str,
                  ttl_s: float) -> bool:
        return await self._run(self._signed, signed, lambda: self._put(listing_id, body, body_json, digest, ttl_s))

    async def refresh(self, signed: Signed, listing_id: str, digest: str, ttl_s: float) -> bool:
        return await self._run(self._signed, signed, lambda: self._refresh(listing_id, digest, ttl_s))

    async def delete(self, signed: Signed, listing_id: str) -> bool:
        return await self._run(self._signed, signed, lambda: self.conn.execute(
            "DELETE FROM listings WHERE listing_id = ?", (listing_id,)).rowcount > 0)

    async def version(self) -> tuple[int, int]:
        return await self._run(lambda: tuple(self.conn.execute(
            "SELECT count(*), coalesce(max(seq), 0) FROM listings").fetchone()))

    def _live(self) -> tuple[float, list[Row]]:
        now = time.time()
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM listings WHERE expires_at > ? "
                                 "ORDER BY published_at DESC, listing_id DESC", (now,)).fetchall()
        return now, [Row(*r) for r in rows]

    async def live(self) -> tuple[float, list[Row]]:
        return await self._run(self._live)

    def _purge(self) -> int:
        now = time.time()
        self.conn.execute("DELETE FROM replay_guard WHERE signed_at < ?", (now - 2 * SIGNATURE_WINDOW_S,))
        return self.conn.execute("DELETE FROM listings WHERE expires_at <= ?", (now,)).rowcount

    async def purge_expired(self) -> int:
        return await self._run(self._purge)

    async def take_token(self, bucket: str, rate: float, burst: float) -> float:
        limiter = self.limiter.get((rate, burst))
        if limiter is None:
            limiter = self.limiter[(rate, burst)] = RateLimiter(rate, burst)
        return limiter.check(bucket)
