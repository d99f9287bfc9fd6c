"""Forwarding one API request: read the body (bounded), peek at `model`, pick the
endpoint, send the original bytes, relay the response as it arrives; count it in
the proxy's metrics (mesh_proxy.metrics).

A client that disconnects cancels the upstream request: while waiting for the
response head we race the client's disconnect; while streaming, Starlette
cancels the relay, whose `finally` closes the backend connection, and
llama-server stops generating when its next write fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import AsyncIterator, Awaitable, Protocol, TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from mesh_proxy.errors import BackendGone, BadRequest, BodyTooLarge, ProxyError, UnsupportedMediaType
from mesh_proxy.metrics import ProxyMetrics
from mesh_proxy.routes import Endpoint, Router
from meshcore.api_errors import family_error
from meshcore.api_paths import Family, family_of
from meshcore.http1 import UpstreamBroken, UpstreamResponse, send_request
from meshcore.ids import NodeId
from meshcore.messages import TunnelRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
DRAIN_LIMIT = 64 * 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge. An oversized body is still read (and
    dropped) up to DRAIN_LIMIT so the client gets the 413 instead of a
    connection reset mid-upload; past that the connection is closed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise BodyTooLarge(f"request body is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_LIMIT:
            break
    if size > limit:
        raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    return b"".join(chunks)


def model_of(body: bytes) -> str | None:
    """The `model` the request names, or None if it names none."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    model = data.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a string naming the model")
    return model


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work`; if the client disconnects first, cancel it and return None."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class BackendOpener:
    """A byte stream to whoever serves an endpoint: TCP to a local llama-server,
    or the node agent's tunnel socket for a model served by another node."""

    def __init__(self, tunnel_socket: str) -> None:
        self.tunnel_socket = tunnel_socket

    async def _connect(self, endpoint: Endpoint, path: str) -> Streams:
        if endpoint.local:
            host, _, port = endpoint.address.rpartition(":")
            return await asyncio.open_connection(host, int(port))
        reader, writer = await asyncio.open_unix_connection(self.tunnel_socket)
        writer.write(TunnelRequest(NodeId(endpoint.node_id), endpoint.model_id, path).encode())
        return reader, writer

    async def open(self, endpoint: Endpoint, path: str = "/") -> Streams:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                return await self._connect(endpoint, path)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} is not answering; "
                              f"it may be restarting") from exc


def broken_stream_event(path: str, model: str) -> bytes:
    """The last event of a stream whose backend died mid-answer, in the family's form."""
    message = f"the backend serving {model!r} stopped mid-response"
    body = json.dumps(family_error(path, 502, message, "server_error", "backend_unavailable"))
    if family_of(path) is Family.ANTHROPIC:
        return f"event: error\ndata: {body}\n\n".encode()
    return f"data: {body}\n\ndata: [DONE]\n\n".encode()


async def relay(response: UpstreamResponse, endpoint: Endpoint, router: Router, path: str,
                metrics: ProxyMetrics, started: float) -> AsyncIterator[bytes]:
    events, first = 0, True
    try:
        async for chunk in response.body():
            if first:
                metrics.first_byte(endpoint.model_id, route_of(endpoint), started)
                first = False
            events += chunk.count(b"data: ") - chunk.count(b"data: [DONE]")
            yield chunk
    except UpstreamBroken as exc:
        log.warning("stream for %s broke: %s", endpoint.model_id, exc)
        yield broken_stream_event(path, endpoint.model_id)
    finally:
        await response.close()
        router.end(endpoint)
        metrics.stream_events(endpoint.model_id, route_of(endpoint), events)


class Opener(Protocol):
    async def open(self, endpoint: Endpoint, path: str = "/") -> Streams: ...


def require_json(request: Request) -> None:
    """API requests are JSON. Refusing every other Content-Type also refuses what a web
    page may POST to 127.0.0.1 without a CORS preflight (text/plain, forms): a page the
    user visits cannot spend this machine's models."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"send the request body as JSON with 'Content-Type: application/json' "
                                   f"(got {ctype or 'no Content-Type'!r})")


def route_of(endpoint: Endpoint) -> str:
    return "local" if endpoint.local else "remote"


async def forward(request: Request, router: Router, opener: Opener, path: str, limit: int,
                  metrics: ProxyMetrics) -> Response:
    try:
        return await _forward(request, router, opener, path, limit, metrics)
    except ProxyError as exc:
        metrics.refused(family_of(path).value, exc.code)
        raise


async def _forward(request: Request, router: Router, opener: Opener, path: str, limit: int,
                   metrics: ProxyMetrics) -> Response:
    started = time.monotonic()
    require_json(request)
    body = await read_body(request, limit)
    endpoint = router.choose(model_of(body))
    route = route_of(endpoint)
    router.begin(endpoint)
    handed_off = False
    try:
        reader, writer = await opener.open(endpoint, path)
        try:
            response = await unless_disconnected(
                request, send_request(reader, writer, "POST", path, endpoint.address, body))
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        if response is None:
            writer.close()
            log.info("client went away before %s answered; request cancelled", endpoint.model_id)
            return Response(status_code=499)
        # The proxy owns the CORS policy (mesh_proxy.cors): llama-server's own headers go.
        headers = {k: v for k, v in response.headers if k != "content-type" and not k.startswith("access-control-")}
        metrics.answered(endpoint.model_id, route, family_of(path).value, response.status)
        if response.content_type.startswith("text/event-stream"):
            handed_off = True
            return StreamingResponse(relay(response, endpoint, router, path, metrics, started),
                                     status_code=response.status,
                                     media_type=response.content_type, headers=headers)
        try:
            content = await response.read_all()
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        finally:
            await response.close()
        metrics.first_byte(endpoint.model_id, route, started)
        metrics.usage_tokens(endpoint.model_id, route, content)
        return Response(content, status_code=response.status, media_type=response.content_type, headers=headers)
    finally:
        if not handed_off:
            router.end(endpoint)
