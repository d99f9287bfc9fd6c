"""Serving GET /v1/meshes fast: a short-lived snapshot of the live listings shared
by every request of this replica, answers cached per query for the snapshot's life
(with their gzip form and ETag), 304 for a matching If-None-Match, and a plain ASGI
path in front of FastAPI for it (routing and validation through FastAPI cost more
than the answer itself).

Freshness: the snapshot is checked at most every `max_age_s` (one cheap query: the
listings' row count and highest change number) and reloaded when that changed or
one of its listings expired; a change made through this replica is visible to its
next read, a change made through another replica within `max_age_s`.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass

from mesh_directory import snapshot as snap
from mesh_directory.store import Store

LIMITS = {"model": 200, "region": 32, "name": 64, "cursor": 200}


@dataclass
class Epoch:
    """A snapshot as served during one check interval: its answers carry an expires_in
    countdown, so they are cached no longer than that."""

    snapshot: snap.Snapshot
    checked: float                 # time.monotonic() of the check
    db_now: float                  # the store's clock at that check
    pages: dict


class Reads:
    def __init__(self, store: Store, max_age_s: float = 1.0) -> None:
        self.store, self.max_age_s = store, max_age_s
        self.epoch: Epoch | None = None
        self.dirty = True
        self.lock = asyncio.Lock()
        self.reloads = 0

    def changed(self) -> None:
        """A write through this replica changed the listings: the next read checks."""
        self.dirty = True

    def now(self, epoch: Epoch) -> float:
        return epoch.db_now + (time.monotonic() - epoch.checked)

    def fresh(self, epoch: Epoch | None) -> bool:
        return epoch is not None and not self.dirty and time.monotonic() - epoch.checked < self.max_age_s

    async def current(self) -> Epoch:
        epoch = self.epoch
        if self.fresh(epoch):
            return epoch  # type: ignore[return-value]
        async with self.lock:  # one check at a time; the others wait for its result
            if self.fresh(self.epoch):
                return self.epoch  # type: ignore[return-value]
            self.dirty = False  # a write from now on marks it again
            old = self.epoch
            version = await self.store.version()
            checked = time.monotonic()
            if old is not None and version == old.snapshot.version and old.snapshot.min_expiry > self.now(old):
                self.epoch = Epoch(old.snapshot, checked, self.now(old), {})
            else:
                db_now, rows = await self.store.live()
                self.reloads += 1
                self.epoch = Epoch(snap.take(rows, version, db_now), time.monotonic(), db_now, {})
            return self.epoch

    async def page(self, query: snap.Query) -> snap.Page:
        epoch = await self.current()
        cached = epoch.pages.get(query)
        if cached is None:
            if len(epoch.pages) >= snap.MAX_CACHED:
                epoch.pages.clear()
            cached = epoch.pages[query] = snap.answer(epoch.snapshot, query, self.now(epoch))
        return cached


def parse_query(raw: bytes) -> snap.Query | str:
    """The query of GET /v1/meshes, or what is wrong with it (in words). Unknown
    parameters are ignored; a repeated one counts its last value."""
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                                       max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        return f"query: {exc}"
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in LIMITS or key == "limit":
            values[key] = value
    for key, most in LIMITS.items():
        if len(values.get(key, "")) > most:
            return f"query.{key}: at most {most} characters"
    limit = 100
    if "limit" in values:
        text = values["limit"].strip()
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 500:
            return "query.limit: a whole number from 1 to 500"
        limit = int(text)
    cursor = None
    if values.get("cursor"):
        try:
            cursor = snap.decode_cursor(values["cursor"])
        except ValueError as exc:
            return f"query.cursor: {exc}"
    return snap.Query(values.get("model") or None, values.get("region") or None, values.get("name") or None,
                      limit, cursor)


def headers_for(page: snap.Page, gzipped: bool) -> list[tuple[bytes, bytes]]:
    body = page.gzipped if gzipped else page.body
    headers = [(b"content-type", b"application/json"), (b"etag", page.etag.encode()),
               (b"vary", b"accept-encoding"), (b"cache-control", b"public, max-age=1"),
               (b"content-length", str(len(body)).encode())]
    if gzipped:
        headers.append((b"content-encoding", b"gzip"))
    return headers
