"""The directory's HTTP API (FastAPI; the OpenAPI document is at /openapi.json).

  GET    /v1/meshes?model=&region=&name=&limit=   live listings, newest first, one per mesh
  POST   /v1/meshes                               publish or refresh (signed)
  DELETE /v1/meshes/{listing_id}                  remove (signed by the same key)
  GET    /healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Annotated, AsyncIterator

from fastapi import FastAPI, Path as PathParam, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshcore.directory_client import signing_bytes

from mesh_directory.limits import BodyLimit, RateLimiter, client_key
from mesh_directory.listing import DeleteRequest, PublishRequest, ReplayGuard, listing_id, token_matches, verify
from mesh_directory.store import ListingStore

TTL_S = 120.0
CACHE_S = 1.0
PURGE_EVERY_S = 30.0


@dataclass(frozen=True)
class DirectoryConfig:
    read_rate: float = 20.0    # GET requests per second per client (0: unlimited)
    read_burst: float = 60.0
    write_rate: float = 1.0    # POST/DELETE per second per client (0: unlimited)
    write_burst: float = 10.0
    ttl_s: float = TTL_S       # a listing not refreshed within this is gone


def error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                        status, headers)


def create_app(store: ListingStore, config: DirectoryConfig = DirectoryConfig()) -> BodyLimit:
    readers = RateLimiter(config.read_rate, config.read_burst)
    # GET answers, kept for up to CACHE_S and dropped on any publish or removal: listings
    # change far less often than they are read.
    cache: dict[tuple, tuple[float, bytes]] = {}
    writers = RateLimiter(config.write_rate, config.write_burst)
    replays = ReplayGuard()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def purge() -> None:
            while True:
                await asyncio.sleep(PURGE_EVERY_S)
                await asyncio.to_thread(store.purge_expired, time.time())
        task = asyncio.create_task(purge())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="Mesh LLM directory", version="1", lifespan=lifespan,
                  description="Public meshes that chose to be found. Listings are signed by the publishing node.")

    @app.middleware("http")
    async def rate_limit(request: Request, call_next):  # noqa: ANN001, ANN202
        limiter = readers if request.method in ("GET", "HEAD") else writers
        wait = limiter.check(client_key(request.scope) + request.method)
        if wait > 0:
            return error(429, "too many requests; slow down", "rate_limited", {"Retry-After": str(max(1, round(wait)))})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid')}", "invalid_listing")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "http_error")

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:  # a bug must not look like a crash
        return JSONResponse({"error": {"message": "internal error", "type": "server_error", "code": "internal"}}, 500)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/meshes")
    async def list_meshes(model: Annotated[str | None, Query(max_length=200)] = None,
                          region: Annotated[str | None, Query(max_length=32)] = None,
                          name: Annotated[str | None, Query(max_length=64)] = None,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
        now = time.time()
        key = (model, region, name, limit)
        hit = cache.get(key)
        if hit is not None and hit[0] > now:
            return Response(hit[1], media_type="application/json")
        rows = await asyncio.to_thread(store.query, now, model, region, name, limit * 2)
        seen, meshes = set(), []
        for row in rows:  # newest first: keep one listing per mesh
            if row.body["mesh_id"] in seen:
                continue
            seen.add(row.body["mesh_id"])
            meshes.append({"id": row.listing_id, **row.body, "published_at": row.published_at,
                           "expires_in": round(row.expires_at - now, 1)})
            if len(meshes) == limit:
                break
        body = json.dumps({"meshes": meshes}).encode()
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = (now + CACHE_S, body)
        return Response(body, media_type="application/json")

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
        if not replays.fresh(request.public_key, request.signed_at, request.signature):
            return error(409, "this signature was already used (a replay); sign again", "replayed")
        now = time.time()
        lid = listing_id(request.public_key)
        await asyncio.to_thread(store.put, lid, body, now, now + config.ttl_s)
        cache.clear()
        return JSONResponse({"id": lid, "expires_in": config.ttl_s})

    @app.delete("/v1/meshes/{lid}")
    async def remove(lid: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")], request: DeleteRequest) -> JSONResponse:
        if listing_id(request.public_key) != lid:
            return error(403, "only the key that published a listing can remove it", "not_owner")
        why = verify(request.public_key, request.signature, signing_bytes(None, request.signed_at, f"delete:{lid}"),
                     request.signed_at)
        if why:
            return error(403, why, "bad_signature")
        if not replays.fresh(request.public_key, request.signed_at, request.signature):
            return error(409, "this signature was already used (a replay); sign again", "replayed")
        if not await asyncio.to_thread(store.delete, lid):
            return error(404, "no such listing", "not_found")
        cache.clear()
        return JSONResponse({"deleted": lid})

    return BodyLimit(app)

