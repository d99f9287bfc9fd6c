"""The directory's HTTP API (FastAPI; the OpenAPI document is at /openapi.json).

  GET    /v1/meshes?model=&region=&name=&limit=&cursor=   live listings, newest first, one per mesh
  POST   /v1/meshes                                       publish or refresh (signed)
  POST   /v1/meshes/{listing_id}/refresh                  keep an unchanged listing (signed, no body)
  DELETE /v1/meshes/{listing_id}                          remove (signed by the same key)
  GET    /healthz

Requests pass, outermost first: the rate limit (RateLimit), the body cap
(BodyLimit), the read path for GET /v1/meshes (FastReads, reads.py), then FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Annotated, AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Path as PathParam, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshcore.directory_client import signing_bytes

from mesh_directory import snapshot as snap
from mesh_directory.limits import BodyLimit, client_key, send_error
from mesh_directory.listing import (DeleteRequest, PublishRequest, RefreshRequest, digest, listing_id,
                                    token_matches, verify)
from mesh_directory.reads import Reads, headers_for, parse_query
from mesh_directory.store import Replayed, Signed, Store, StoreUnavailable

log = logging.getLogger("mesh_directory")
TTL_S = 120.0
SNAPSHOT_S = 1.0
PURGE_EVERY_S = 30.0
UNAVAILABLE = "the directory's database is not answering; try again shortly"


@dataclass(frozen=True)
class DirectoryConfig:
    read_rate: float = 20.0    # GET requests per second per client (0: unlimited)
    read_burst: float = 60.0
    write_rate: float = 1.0    # POST/DELETE per second per client (0: unlimited)
    write_burst: float = 10.0
    ttl_s: float = TTL_S       # a listing not refreshed within this is gone
    snapshot_s: float = SNAPSHOT_S  # reads see other replicas' changes within this


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status, headers)


def signed(request: PublishRequest | RefreshRequest | DeleteRequest) -> Signed:
    return Signed(request.public_key, request.signed_at, request.signature)


Send = Callable[[dict], Awaitable[None]]


class RateLimit:
    """ASGI middleware: a token bucket per client address and method, kept by the
    store (shared by every replica on PostgreSQL); 429 with Retry-After past it."""

    def __init__(self, app, store: Store, config: DirectoryConfig) -> None:  # noqa: ANN001
        self.app, self.store, self.config = app, store, config

    async def __call__(self, scope: dict, receive, send: Send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        c = self.config
        rate, burst = (c.read_rate, c.read_burst) if scope["method"] in ("GET", "HEAD") else (c.write_rate, c.write_burst)
        if rate > 0:
            try:
                wait = await self.store.take_token(client_key(scope) + scope["method"], rate, burst)
            except StoreUnavailable as exc:
                log.warning("%s (%s)", UNAVAILABLE, exc)
                return await send_error(send, 503, UNAVAILABLE, "unavailable", [(b"retry-after", b"5")])
            if wait > 0:
                return await send_error(send, 429, "too many requests; slow down", "rate_limited",
                                        [(b"retry-after", str(max(1, round(wait))).encode())])
        await self.app(scope, receive, send)


async def respond(reads: Reads, query: snap.Query, headers: dict[bytes, bytes]) -> tuple[int, list, bytes]:
    """(status, headers, body) of GET /v1/meshes for a valid query."""
    page = await reads.page(query)
    if_none_match = headers.get(b"if-none-match")
    if if_none_match and snap.etag_matches(if_none_match.decode("latin-1"), page.etag):
        return 304, [(b"etag", page.etag.encode()), (b"vary", b"accept-encoding"),
                     (b"cache-control", b"public, max-age=1")], b""
    gzipped = snap.accepts_gzip(headers.get(b"accept-encoding", b"").decode("latin-1"))
    return 200, headers_for(page, gzipped), page.gzipped if gzipped else page.body


class FastReads:
    """ASGI: GET/HEAD /v1/meshes answered here, everything else by FastAPI."""

    def __init__(self, app, reads: Reads) -> None:  # noqa: ANN001
        self.app, self.reads = app, reads

    async def __call__(self, scope: dict, receive, send: Send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["path"] != "/v1/meshes" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        query = parse_query(scope.get("query_string", b""))
        if isinstance(query, str):
            return await send_error(send, 422, query, "invalid_query")
        try:
            status, headers, body = await respond(self.reads, query, dict(scope.get("headers", [])))
        except StoreUnavailable as exc:
            log.warning("%s (%s)", UNAVAILABLE, exc)
            return await send_error(send, 503, UNAVAILABLE, "unavailable", [(b"retry-after", b"5")])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def create_app(store: Store, config: DirectoryConfig = DirectoryConfig()) -> RateLimit:
    reads = Reads(store, config.snapshot_s)

    async def purge_forever() -> None:
        """Every replica purges: the database decides what has expired, and deleting
        twice is harmless; no replica is special."""
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            try:
                if await store.purge_expired():
                    reads.changed()
            except StoreUnavailable as exc:
                log.warning("could not purge expired listings: %s (will retry)", exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                purger = tasks.create_task(purge_forever())
                try:
                    yield
                finally:
                    purger.cancel()
        finally:
            await store.close()

    app = FastAPI(title="Mesh LLM directory", version="1", lifespan=lifespan,
                  description="Public meshes that chose to be found. Listings are signed by the publishing node.")

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid')}", "invalid_listing")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "http_error")

    @app.exception_handler(StoreUnavailable)
    async def on_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("%s (%s)", UNAVAILABLE, exc)
        return error(503, UNAVAILABLE, "unavailable", {"Retry-After": "5"})

    @app.exception_handler(Replayed)
    async def on_replayed(request: Request, exc: Replayed) -> JSONResponse:
        return error(409, "this signature was already used (a replay); sign again", "replayed")

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:  # a bug must not look like a crash
        log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal error", "internal")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/meshes")
    async def list_meshes(request: Request,
                          model: Annotated[str | None, Query(max_length=200)] = None,
                          region: Annotated[str | None, Query(max_length=32)] = None,
                          name: Annotated[str | None, Query(max_length=64)] = None,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100,
                          cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
                          ) -> Response:
        """Live listings, newest first, one per mesh; `next_cursor` pages on. ETag /
        If-None-Match (304) and gzip. (Served by FastReads; documented here.)"""
        query = parse_query(request.url.query.encode())
        if isinstance(query, str):
            return error(422, query, "invalid_query")
        status, headers, body = await respond(reads, query, {k.lower(): v for k, v in request.headers.raw})
        return Response(body, status, {k.decode(): v.decode() for k, v in headers})

    @app.post("/v1/meshes")
    async def publish(request: PublishRequest) -> JSONResponse:
        body = request.listing.model_dump()
        why = verify(request.public_key, request.signature, signing_bytes(body, request.signed_at, "publish"),
                     request.signed_at)
        if why:
            return error(403, why, "bad_signature")
        why = token_matches(body, request.public_key)
        if why:
            return error(403, why, "token_mismatch")
        lid, content = listing_id(request.public_key), digest(body)
        if await store.put(signed(request), lid, body, json.dumps(body, separators=(",", ":")), content, config.ttl_s):
            reads.changed()
        return JSONResponse({"id": lid, "expires_in": config.ttl_s, "digest": content})

    @app.post("/v1/meshes/{lid}/refresh")
    async def refresh(lid: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")], request: RefreshRequest) -> JSONResponse:
        """Keep a listing whose content has not changed since the publish that answered
        `digest`: a few hundred bytes instead of the listing. 404 `not_listed` when
        there is no live listing with that content here: publish it in full."""
        if listing_id(request.public_key) != lid:
            return error(403, "only the key that published a listing can refresh it", "not_owner")
        why = verify(request.public_key, request.signature,
                     signing_bytes(None, request.signed_at, f"refresh:{lid}:{request.digest}"), request.signed_at)
        if why:
            return error(403, why, "bad_signature")
        if not await store.refresh(signed(request), lid, request.digest, config.ttl_s):
            return error(404, "no live listing with this content here; publish the full listing", "not_listed")
        return JSONResponse({"id": lid, "expires_in": config.ttl_s, "digest": request.digest})

    @app.delete("/v1/meshes/{lid}")
    async def remove(lid: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")], request: DeleteRequest) -> JSONResponse:
        if listing_id(request.public_key) != lid:
            return error(403, "only the key that published a listing can remove it", "not_owner")
        why = verify(request.public_key, request.signature, signing_bytes(None, request.signed_at, f"delete:{lid}"),
                     request.signed_at)
        if why:
            return error(403, why, "bad_signature")
        if not await store.delete(signed(request), lid):
            return error(404, "no such listing", "not_found")
        reads.changed()
        return JSONResponse({"deleted": lid})

    return RateLimit(BodyLimit(FastReads(app, reads)), store, config)
