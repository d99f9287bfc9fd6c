"""Listing storage: the interface the app uses (`Store`), the rows it reads, and
`open_store` which picks the backend from the database address: a file path is
SQLite (store_sqlite.py, the embedded default), postgresql://... is PostgreSQL
(store_postgres.py, shared by any number of directory replicas).

A write is refused as a replay (`Replayed`) when it was signed before the newest
signature taken from its key, or is that very one; the check is in the write's own
transaction.

Every method is async and takes no clock: the backend's own clock decides (SQLite:
this process; PostgreSQL: the database's now(), so replicas agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The database did not answer (down, unreachable, overloaded): a 503, not a bug."""


class Replayed(Exception):
    """This signature was already taken from this key (or an older one was): a 409."""


@dataclass(frozen=True, slots=True)
class Signed:
    """Who signed a write, and when. Every write takes one: its replay check and its
    effect are one transaction, so a write the database did not keep (a replica killed
    between the two) leaves its signature unused and the same request can be sent again."""

    public_key: str
    signed_at: int
    signature: str


@dataclass(frozen=True, slots=True)
class Row:
    """One live listing as readers see it."""

    listing_id: str
    mesh_id: str
    name: str
    region: str
    models: str          # " served wanted " (space-separated, padded) for the whole-name model filter
    body: str            # the listing as a JSON object
    digest: str
    published_at: float  # epoch seconds, when this content was first published
    expires_at: float


class Store(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def put(self, signed: Signed, listing_id: str, body: dict, body_json: str, digest: str,
                  ttl_s: float) -> bool:
        """Publish or refresh; True when the content changed (or is new). Raises Replayed."""
    async def refresh(self, signed: Signed, listing_id: str, digest: str, ttl_s: float) -> bool:
        """Extend a live listing whose content has this digest; False if there is none. Raises Replayed."""
    async def delete(self, signed: Signed, listing_id: str) -> bool:
        """False if there was no such listing. Raises Replayed."""
    async def version(self) -> tuple[int, int]:
        """(row count, highest change number): differs whenever the listings' content changed."""
    async def live(self) -> tuple[float, list[Row]]:
        """(the store's clock now, live listings newest first: published_at, then listing_id, descending)."""
    async def purge_expired(self) -> int: ...
    async def take_token(self, bucket: str, rate: float, burst: float) -> float:
        """0 if a request may go ahead, else seconds until it may (token bucket)."""
    def describe(self) -> str: ...


def models_column(body: dict) -> str:
    return " " + " ".join([*body.get("models_served", []), *body.get("models_wanted", [])]) + " "


def redact(url: str) -> str:
    """The database address as it may be logged: no password."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str) -> Store:
    """The store for `db` (a SQLite path or a postgresql:// address), its schema
    migrated. Raises StoreUnavailable with a message in words if it cannot be opened."""
    if is_postgres(db):
        from mesh_directory.store_postgres import PostgresStore
        return PostgresStore(db)
    from mesh_directory.store_sqlite import SqliteStore
    return SqliteStore(db)
