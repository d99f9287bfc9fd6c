"""What GET /v1/meshes answers, computed from a snapshot of the live listings (pure
functions, no I/O): the filters, one listing per mesh, pages behind an opaque
cursor, the JSON body, its ETag, and whether a request's headers accept gzip or
already hold the current ETag.

Order: newest first (published_at, then listing id, descending); published_at is
when a listing's content last changed, so refreshes that change nothing move
nothing and pages stay put. One listing per mesh: the newest of the mesh's
listings that pass the filters. The cursor names the last listing of the previous
page, so a page is "the listings after it" whatever was published since.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field

from mesh_directory.store import Row

CURSOR = re.compile(r"^(\d{1,12}(?:\.\d{1,17})?(?:e[+-]?\d+)?)\|([0-9a-f]{32})$")
MAX_CACHED = 1000   # query answers (and filtered lists) kept per snapshot


@dataclass(frozen=True)
class Query:
    model: str | None = None
    region: str | None = None
    name: str | None = None
    limit: int = 100
    cursor: tuple[float, str] | None = None


@dataclass(frozen=True)
class Page:
    body: bytes
    etag: str
    gzipped: bytes


@dataclass
class Snapshot:
    """The live listings at one moment, and answers computed from them."""

    rows: list[Row]
    version: tuple[int, int]
    db_now: float          # the store's clock when it was taken
    min_expiry: float      # the earliest expires_at among rows (inf when none)
    selections: dict = field(default_factory=dict)


def take(rows: list[Row], version: tuple[int, int], db_now: float) -> Snapshot:
    return Snapshot(rows, version, db_now, min((r.expires_at for r in rows), default=float("inf")))


def encode_cursor(row: Row) -> str:
    return base64.urlsafe_b64encode(f"{row.published_at!r}|{row.listing_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The (published_at, listing_id) a cursor names; ValueError if it is not one we made."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from this directory") from None
    match = CURSOR.match(raw)
    if not match:
        raise ValueError("not a cursor from this directory")
    return float(match[1]), match[2]


def select(rows: list[Row], model: str | None, region: str | None, name: str | None) -> list[Row]:
    """The rows passing the filters, one per mesh (the first, i.e. newest), in order."""
    wanted = f" {model} " if model else None
    seen: set[str] = set()
    out = []
    for row in rows:
        if ((wanted and wanted not in row.models) or (region and row.region != region)
                or (name and row.name != name) or row.mesh_id in seen):
            continue
        seen.add(row.mesh_id)
        out.append(row)
    return out


def page(selected: list[Row], cursor: tuple[float, str] | None, limit: int) -> tuple[list[Row], str | None]:
    """The `limit` rows after `cursor`, and the cursor of the next page (None: last page)."""
    start = 0
    if cursor is not None:
        start = next((i for i, r in enumerate(selected) if (r.published_at, r.listing_id) < cursor), len(selected))
    rows = selected[start:start + limit]
    more = start + limit < len(selected)
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def render(rows: list[Row], next_cursor: str | None, now: float) -> bytes:
    """{"meshes": [{"id", ...the listing..., "published_at", "expires_in"}], "next_cursor"}; the
    stored JSON bodies are spliced in as they are (no parse, no re-encode)."""
    parts = []
    for r in rows:
        inner = r.body.strip()[1:-1].strip()
        parts.append(f'{{"id":"{r.listing_id}",{inner}{"," if inner else ""}"published_at":{r.published_at!r},'
                     f'"expires_in":{max(0.0, round(r.expires_at - now, 1))!r}}}')
    return f'{{"meshes":[{",".join(parts)}],"next_cursor":{json.dumps(next_cursor)}}}'.encode()


def etag(rows: list[Row], next_cursor: str | None) -> str:
    """A weak validator of the page's content: the same listings with the same content
    give the same tag (the expires_in countdown is not content)."""
    h = hashlib.blake2b(digest_size=12)
    for r in rows:
        h.update(f"{r.listing_id}|{r.published_at!r}|{r.digest}|".encode())
        if not r.digest:  # written before digests existed
            h.update(r.body.encode())
    h.update((next_cursor or "").encode())
    return f'W/"{h.hexdigest()}"'


def answer(snapshot: Snapshot, query: Query, now: float) -> Page:
    key = (query.model, query.region, query.name)
    selected = snapshot.selections.get(key)
    if selected is None:
        if len(snapshot.selections) >= MAX_CACHED:
            snapshot.selections.clear()
        selected = snapshot.selections[key] = select(snapshot.rows, *key)
    rows, next_cursor = page(selected, query.cursor, query.limit)
    body = render(rows, next_cursor, now)
    return Page(body, etag(rows, next_cursor), gzip.compress(body, 6, mtime=0))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (a q of 0 refuses it)."""
    star = False
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if coding.strip() == "gzip":
            return q > 0
        if coding.strip() == "*":
            star = q > 0
    return star


def etag_matches(if_none_match: str, tag: str) -> bool:
    """If-None-Match against our (weak) tag, compared weakly (RFC 9110)."""
    if if_none_match.strip() == "*":
        return True
    bare = tag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))
