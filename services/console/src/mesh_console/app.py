"""The console's FastAPI app: the page, /api/status, /api/events (SSE) and
/api/chat, which relays a chat request to this node's API proxy (same origin
for the browser, so the API needs no CORS)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshcore.api_errors import error_body
from meshcore.config import ConsoleConfig
from meshcore.home import Home
from meshcore.host_guard import HostGuard, is_loopback
from meshcore.http1 import UpstreamBroken, send_request

from mesh_console.node_feed import NodeFeed

STATIC = Path(__file__).parent / "static"
MAX_CHAT_BYTES = 1 << 20


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it passes `limit` (a declared Content-Length
    over it is refused before reading anything): never more than `limit` held."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and len(declared) <= 20 and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def chat_error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> JSONResponse:
    """The chat's own refusals, in the OpenAI shape its page reads (as the API's are)."""
    return JSONResponse(error_body(message, type_, code), status_code=status)


class SecurityHeaders:
    """On every answer: nothing from the mesh is ever run as the console's script or shown
    in another site's frame (the pages load only their own files; see static/)."""

    HEADERS = [(b"content-security-policy", b"default-src 'self'; base-uri 'none'; object-src 'none'; "
                                            b"frame-ancestors 'none'; form-action 'self'"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)
        await self.app(scope, receive, with_headers)


def unavailable() -> JSONResponse:
    return JSONResponse(error_body("the node agent is not reachable yet", "unavailable", "node_unavailable"),
                        status_code=503, headers={"Retry-After": "1"})


def for_client(status: dict | None, request: Request) -> dict | None:
    """The status as this client may see it: the invite token holds the mesh secret,
    so it is shown only to a browser on this machine (127.0.0.1 / ::1), never to one
    reaching the console over the network (--listen-all)."""
    if status is None or is_loopback(request.client):
        return status
    return {**status, "token": "", "token_hidden": True}


def create_app(config: ConsoleConfig) -> FastAPI:
    feed = NodeFeed(Home(Path(config.home)), config.api_port)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run(), name="node feed")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Mesh LLM console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HostGuard)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    def view(request: Request) -> dict | None:
        status = for_client(feed.latest, request)
        return {**status, "history": feed.history()} if status is not None else None

    @app.get("/api/status")
    async def status(request: Request) -> Response:
        return JSONResponse(view(request)) if feed.latest is not None else unavailable()

    @app.get("/api/events")
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            seen = -1
            while True:
                if seen != feed.changes.seq:
                    for seq, when, text in feed.events:
                        if seen >= 0 and seq > seen:
                            yield f"event: change\ndata: {json.dumps({'time': when, 'text': text})}\n\n".encode()
                    seen = feed.changes.seq
                    payload = json.dumps(view(request) or {"node_state": "unreachable"})
                    yield f"event: status\ndata: {payload}\n\n".encode()
                try:
                    async with asyncio.timeout(config.keepalive_s):
                        await feed.changes.wait(seen)
                except TimeoutError:
                    yield b": keepalive\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        """For this page's chat only: a JSON body (which another site's page cannot send
        without a CORS preflight, which this console never allows), and never from another
        site (`Sec-Fetch-Site`). Whatever the model's server answers comes back as an event
        stream or JSON, never as a page of the console's origin."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return chat_error(403, "the console's chat answers its own page only", "cross_site")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return chat_error(415, "send the chat request as JSON (Content-Type: application/json)",
                              "unsupported_media_type")
        body = await read_capped(request, MAX_CHAT_BYTES)
        if body is None:
            return chat_error(413, "chat request too large", "request_too_large")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", config.api_port)
            upstream = await send_request(reader, writer, "POST", "/v1/chat/completions",
                                          f"127.0.0.1:{config.api_port}", body)
        except (OSError, UpstreamBroken) as exc:
            return chat_error(502, f"the API on port {config.api_port} is not answering ({exc})", "api_unavailable",
                              "server_error")

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.body():
                    yield chunk
            except UpstreamBroken:
                pass
            finally:
                await upstream.close()
        kind = "text/event-stream" if upstream.content_type.startswith("text/event-stream") else "application/json"
        return StreamingResponse(relay(), status_code=upstream.status, media_type=kind)

    return app
