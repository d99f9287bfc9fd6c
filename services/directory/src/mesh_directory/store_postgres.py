"""The shared store: PostgreSQL, for any number of directory replicas on one
database. Async (psycopg 3) with a connection pool; the schema is migrated at start
(migrations/postgresql/, under an advisory lock). Everything that must hold across
replicas lives here: listings and their expiry (by the database's clock: reads
filter on expires_at > now(), and whichever replica purges deletes expired rows in
SQL), replay protection (one atomic upsert per signature, in the transaction of the
write it signs) and the rate limits (one
atomic token-bucket upsert per request, in an unlogged table)."""

from __future__ import annotations

import contextlib
import datetime
import functools
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import psycopg
import psycopg_pool

from mesh_directory import migrations
from mesh_directory.listing import SIGNATURE_WINDOW_S
from mesh_directory.store import Replayed, Row, Signed, StoreUnavailable, models_column, redact

MIGRATION_LOCK = 0x6D65_7368  # pg_advisory_xact_lock key: one replica migrates at a time
CONNECT_TIMEOUT_S = 5
COLUMNS = ("listing_id, mesh_id, name, region, models, body::text, digest, "
           "extract(epoch from published_at)::float8, extract(epoch from expires_at)::float8")
REFRESH_SQL = ("UPDATE listings SET expires_at = now() + make_interval(secs => %s) "
               "WHERE listing_id = %s AND digest = %s AND expires_at > now()")
UPSERT_SQL = """
INSERT INTO listings (listing_id, mesh_id, name, region, models, body, digest, seq, published_at, expires_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, nextval('listing_changes'), now(), now() + make_interval(secs => %s))
ON CONFLICT (listing_id) DO UPDATE SET mesh_id = excluded.mesh_id, name = excluded.name, region = excluded.region,
    models = excluded.models, body = excluded.body, digest = excluded.digest, seq = excluded.seq,
    published_at = excluded.published_at, expires_at = excluded.expires_at"""
REPLAY_SQL = """
INSERT INTO replay_guard AS g (public_key, signed_at, signatures) VALUES (%s, %s, %s)
ON CONFLICT (public_key) DO UPDATE SET
    signatures = CASE WHEN g.signed_at = excluded.signed_at
                      THEN g.signatures || ' ' || excluded.signatures ELSE excluded.signatures END,
    signed_at = excluded.signed_at
WHERE excluded.signed_at > g.signed_at
   OR (excluded.signed_at = g.signed_at
       AND position(' ' || excluded.signatures || ' ' in ' ' || g.signatures || ' ') = 0)
RETURNING 1"""
BUCKET_SQL = """
INSERT INTO rate_buckets AS b (bucket, tokens, updated, granted)
VALUES (%(bucket)s, %(burst)s - 1, extract(epoch from clock_timestamp()), true)
ON CONFLICT (bucket) DO UPDATE SET
    tokens = least(%(burst)s, b.tokens + greatest(0, excluded.updated - b.updated) * %(rate)s)
             - CASE WHEN least(%(burst)s, b.tokens + greatest(0, excluded.updated - b.updated) * %(rate)s) >= 1
                    THEN 1 ELSE 0 END,
    granted = least(%(burst)s, b.tokens + greatest(0, excluded.updated - b.updated) * %(rate)s) >= 1,
    updated = excluded.updated
RETURNING granted, tokens"""

T = TypeVar("T")


def unavailable_as_503(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from exc
    return wrapper


class PostgresStore:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url, self.pool_size = url, pool_size
        self.pool: psycopg_pool.AsyncConnectionPool | None = None
        self.migrate()

    def describe(self) -> str:
        return f"PostgreSQL {redact(self.url)}"

    def migrate(self) -> None:
        """Apply the pending migrations (synchronously: this runs once, before serving)."""
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    conn.execute(migrations.TABLE)
                    applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
                    for m in migrations.pending(applied, migrations.available("postgresql")):
                        conn.execute(m.sql.encode())
                        conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                                     (m.version, m.name, datetime.datetime.now(datetime.timezone.utc).isoformat()))
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(f"cannot use the PostgreSQL database {redact(self.url)}: "
                                   f"{message.replace(self.url, redact(self.url))}") from exc

    async def start(self) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, open=False, timeout=10,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S})
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _one(self, sql: str, args: Any = None) -> tuple | None:
        assert self.pool is not None, "PostgresStore.start() first"
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchone() if cur.description else None

    @contextlib.asynccontextmanager
    async def _signed(self, signed: Signed) -> AsyncIterator[psycopg.AsyncConnection]:
        """A transaction that has taken `signed`'s signature (raises Replayed): a write
        made in it and the signature are kept together or not at all."""
        assert self.pool is not None, "PostgresStore.start() first"
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(REPLAY_SQL, (signed.public_key, signed.signed_at, signed.signature))
            if await cur.fetchone() is None:
                raise Replayed()
            yield conn

    @unavailable_as_503
    async def put(self, signed: Signed, listing_id: str, body: dict, body_json: str, digest: str,
                  ttl_s: float) -> bool:
        async with self._signed(signed) as conn:
            if (await conn.execute(REFRESH_SQL, (ttl_s, listing_id, digest))).rowcount:
                return False
            await conn.execute(UPSERT_SQL, (listing_id, body["mesh_id"], body["name"], body.get("region", ""),
                                            models_column(body), body_json, digest, ttl_s))
            return True

    @unavailable_as_503
    async def refresh(self, signed: Signed, listing_id: str, digest: str, ttl_s: float) -> bool:
        async with self._signed(signed) as conn:
            return (await conn.execute(REFRESH_SQL, (ttl_s, listing_id, digest))).rowcount > 0

    @unavailable_as_503
    async def delete(self, signed: Signed, listing_id: str) -> bool:
        async with self._signed(signed) as conn:
            return (await conn.execute("DELETE FROM listings WHERE listing_id = %s", (listing_id,))).rowcount > 0

    @unavailable_as_503
    async def version(self) -> tuple[int, int]:
        row = await self._one("SELECT count(*), coalesce(max(seq), 0) FROM listings")
        assert row is not None
        return int(row[0]), int(row[1])

    @unavailable_as_503
    async def live(self) -> tuple[float, list[Row]]:
        assert self.pool is not None, "PostgresStore.start() first"
        async with self.pool.connection() as conn:
            async with conn.transaction():  # one snapshot of the table, and its clock
                now = (await (await conn.execute("SELECT extract(epoch from now())::float8")).fetchone())[0]
                cur = await conn.execute(f"SELECT {COLUMNS} FROM listings WHERE expires_at > now() "
                                         "ORDER BY published_at DESC, listing_id DESC")
                return now, [Row(*r) for r in await cur.fetchall()]

    @unavailable_as_503
    async def purge_expired(self) -> int:
        assert self.pool is not None, "PostgresStore.start() first"
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM replay_guard WHERE signed_at < extract(epoch from now()) - %s",
                               (2 * SIGNATURE_WINDOW_S,))
            await conn.execute("DELETE FROM rate_buckets WHERE updated < extract(epoch from now()) - 600")
            return (await conn.execute("DELETE FROM listings WHERE expires_at <= now()")).rowcount

    @unavailable_as_503
    async def take_token(self, bucket: str, rate: float, burst: float) -> float:
        row = await self._one(BUCKET_SQL, {"bucket": bucket, "rate": rate, "burst": burst})
        assert row is not None
        granted, tokens = row
        return 0.0 if granted else (1 - tokens) / rate
