"""Forwarding one API request: read the body (bounded), peek at `model`, pick the
endpoint, send the original bytes, relay the response as it arrives; count it in
the proxy's metrics (mesh_proxy.metrics).

`Forwarder` is a bare ASGI layer in front of FastAPI's router: a POST to one of
the forwarded paths (meshcore.api_paths.FORWARDED) is handled here and never
reaches FastAPI's routing, request objects or StreamingResponse; everything else
passes through. Each relayed chunk costs one read of the backend, one decode of its
chunked framing (meshcore.http1_body) and one ASGI send: this is the path every
token of every stream takes (docs/benchmarks.md, "The proxy measured alone").

A client that disconnects cancels the upstream request: the proxy's server protocol
(mesh_proxy.fast_http) calls `BackendExchange.abandon` when the client's connection is
lost, which ends the wait for the head or the relay with ClientGone and closes the
backend connection; llama-server stops generating when its next write fails. (Where no
such protocol serves, and on the client-only proxy's generic relay, a task watching
ASGI `receive` does the same.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, Protocol, TypeVar

from mesh_proxy.errors import (BackendGone, BadRequest, BodyTooLarge, MethodNotAllowed, ProxyError,
                               UnsupportedMediaType)
from mesh_proxy.fast_http import body_writer
from mesh_proxy.metrics import ProxyMetrics
from mesh_proxy.routes import Endpoint, Router
from mesh_proxy.splice import BackendExchange, ClientGone
from meshcore.api_errors import family_error
from meshcore.api_paths import FORWARDED, Family, family_of
from meshcore.http1 import UpstreamBroken, UpstreamResponse, send_request
from meshcore.ids import NodeId
from meshcore.messages import TunnelRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0
DRAIN_LIMIT = 64 * 1024 * 1024
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, or BodyTooLarge. An oversized body is still read (and
    dropped) up to DRAIN_LIMIT so the client gets the 413 instead of a
    connection reset mid-upload; past that the connection is closed."""
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise BodyTooLarge(f"request body is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_LIMIT:
            break
        if not message.get("more_body", False):
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


async def until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T | None:
    """Run `work`; if the client disconnects first, cancel it and return None."""
    try:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work)
            watcher = group.create_task(until_disconnected(receive))
            task.add_done_callback(lambda _: watcher.cancel())
            watcher.add_done_callback(lambda w: None if w.cancelled() else task.cancel())
    except BaseExceptionGroup as group_error:  # only `work` can fail: its error, as if awaited
        raise group_error.exceptions[0] from None
    return None if task.cancelled() else task.result()


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class BackendOpener:
    """A connection to whoever serves an endpoint, on a node: TCP to a local
    llama-server, or the node agent's tunnel socket for a model served by another
    node; its protocol is the spliced relay (mesh_proxy.splice)."""

    def __init__(self, tunnel_socket: str) -> None:
        self.tunnel_socket = tunnel_socket

    async def exchange(self, endpoint: Endpoint, path: str) -> BackendExchange:
        """A connection whose protocol is the relay itself (mesh_proxy.splice)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                if endpoint.local:
                    host, _, port = endpoint.address.rpartition(":")
                    _, exchange = await loop.create_connection(lambda: BackendExchange("POST"), host, int(port))
                else:
                    ask = TunnelRequest(NodeId(endpoint.node_id), endpoint.model_id, path).encode()
                    _, exchange = await loop.create_unix_connection(lambda: BackendExchange("POST", ask),
                                                                    self.tunnel_socket)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} is not answering; "
                              f"it may be restarting") from exc
        return exchange


def broken_stream_event(path: str, model: str) -> bytes:
    """The last event of a stream whose backend died mid-answer, in the family's form."""
    message = f"the backend serving {model!r} stopped mid-response"
    body = json.dumps(family_error(path, 502, message, "server_error", "backend_unavailable"))
    if family_of(path) is Family.ANTHROPIC:
        return f"event: error\ndata: {body}\n\n".encode()
    return f"data: {body}\n\ndata: [DONE]\n\n".encode()


async def relay(response: UpstreamResponse, endpoint: Endpoint, path: str, metrics: ProxyMetrics,
                started: float, send: Send) -> None:
    events, first, broke = 0, True, None
    try:
        async for chunk in response.body():
            if first:
                metrics.first_byte(endpoint.model_id, route_of(endpoint), started)
                first = False
            events += chunk.count(b"data: ") - chunk.count(b"data: [DONE]")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamBroken as exc:
        broke = exc
    finally:
        await response.close()
        metrics.stream_events(endpoint.model_id, route_of(endpoint), events)
    await end_stream(send, path, endpoint.model_id, broke)


async def end_stream(send: Send, path: str, model: str, broke: UpstreamBroken | None) -> None:
    """The end of a relayed stream; one whose backend broke ends with the family's error event."""
    if broke is not None:
        log.warning("stream for %s broke: %s", model, broke)
        await send({"type": "http.response.body", "body": broken_stream_event(path, model), "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content, "more_body": False})


class Opener(Protocol):
    """Where the generic relay gets a byte stream (the client-mode proxy's mesh member)."""

    async def open(self, endpoint: Endpoint, path: str = "/") -> Streams: ...


def require_json(scope: Scope) -> None:
    """API requests are JSON. Refusing every other Content-Type also refuses what a web
    page may POST to 127.0.0.1 without a CORS preflight (text/plain, forms): a page the
    user visits cannot spend this machine's models."""
    ctype = header(scope, b"content-type")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"send the request body as JSON with 'Content-Type: application/json' "
                                   f"(got {ctype or 'no Content-Type'!r})")


def route_of(endpoint: Endpoint) -> str:
    return "local" if endpoint.local else "remote"


class Forwarder:
    """The ASGI layer that answers POSTs to the forwarded paths; anything else goes to `app`."""

    def __init__(self, app: ASGIApp, router: Router, opener: "BackendOpener | Opener", limit: int,
                 metrics: ProxyMetrics) -> None:
        self.app = app
        self.router = router
        self.opener = opener
        self.limit = limit
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in FORWARDED:
            return await self.app(scope, receive, send)
        path = scope["path"]
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} {path}: use POST", {"Allow": "POST"})
            await self.forward(scope, receive, send, path)
        except ProxyError as exc:
            self.metrics.refused(family_of(path).value, exc.code)
            await exc.response(path)(scope, receive, send)
        except ClientGone:
            log.info("client went away before its request was answered; request cancelled")

    async def forward(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        started = time.monotonic()
        require_json(scope)
        body = await read_body(scope, receive, self.limit)
        endpoint = self.router.choose(model_of(body))
        route = route_of(endpoint)
        self.router.begin(endpoint)
        try:
            await self.answer(endpoint, route, path, body, started, receive, send, scope)
        finally:
            self.router.end(endpoint)

    async def answer(self, endpoint: Endpoint, route: str, path: str, body: bytes, started: float,
                     receive: Receive, send: Send, scope: Scope) -> None:
        if isinstance(self.opener, BackendOpener):
            return await self.answer_spliced(endpoint, route, path, body, started, receive, send, scope)
        metrics = self.metrics
        reader, writer = await self.opener.open(endpoint, path)
        try:
            response = await unless_disconnected(
                receive, send_request(reader, writer, "POST", path, endpoint.address, body))
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        if response is None:
            writer.close()
            raise ClientGone()
        headers = response_headers(response.headers, response.content_type)
        metrics.answered(endpoint.model_id, route, family_of(path).value, response.status)
        if response.content_type.startswith("text/event-stream"):
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await stream_until_disconnected(
                receive, relay(response, endpoint, path, metrics, started, send))
            return
        try:
            content = await response.read_all()
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        finally:
            await response.close()
        metrics.first_byte(endpoint.model_id, route, started)
        metrics.usage_tokens(endpoint.model_id, route, content)
        await send_whole(send, response.status, headers, content)

    async def answer_spliced(self, endpoint: Endpoint, route: str, path: str, body: bytes, started: float,
                             receive: Receive, send: Send, scope: Scope) -> None:
        """The same answer on a backend connection the proxy owns (mesh_proxy.splice):
        streamed chunks go to the client from the connection's data callback. The client
        going away abandons the exchange: through the server protocol's callback
        (mesh_proxy.fast_http), or else a task watching ASGI `receive`."""
        exchange = await self.opener.exchange(endpoint, path)  # type: ignore[union-attr]
        writer = body_writer(scope)
        try:
            exchange.send_request(path, endpoint.address, body)
            if writer is not None:
                writer.on_client_gone(exchange.abandon)
                await self.answer_exchange(exchange, writer.write, endpoint, route, path, started, send)
            elif await unless_disconnected(receive, _done(self.answer_exchange(
                    exchange, None, endpoint, route, path, started, send))) is None:
                raise ClientGone()
        except ClientGone:
            if not exchange.streaming:
                raise
            log.info("client went away mid-stream; the backend request was cancelled")
        finally:
            exchange.close()

    async def answer_exchange(self, exchange: BackendExchange, sink: "Callable[[bytes], bool] | None",
                              endpoint: Endpoint, route: str, path: str, started: float, send: Send) -> None:
        metrics = self.metrics
        try:
            await exchange.head()
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        headers = response_headers(exchange.headers, exchange.content_type)
        metrics.answered(endpoint.model_id, route, family_of(path).value, exchange.status)
        if exchange.content_type.startswith("text/event-stream"):
            await send({"type": "http.response.start", "status": exchange.status, "headers": headers})
            exchange.start_body(sink)
            await self.relay_spliced(exchange, endpoint, path, started, send)
            return
        try:
            content = await exchange.read_all()
        except UpstreamBroken as exc:
            raise BackendGone(f"the backend for model {endpoint.model_id!r} failed: {exc}") from exc
        metrics.first_byte(endpoint.model_id, route, started)
        metrics.usage_tokens(endpoint.model_id, route, content)
        await send_whole(send, exchange.status, headers, content)

    async def relay_spliced(self, exchange: BackendExchange, endpoint: Endpoint, path: str, started: float,
                            send: Send) -> None:
        async def send_chunk(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        broke = None
        try:
            await exchange.relay(send_chunk)
        except UpstreamBroken as exc:
            broke = exc
        finally:
            route = route_of(endpoint)
            if exchange.first_chunk_at is not None:
                self.metrics.first_byte(endpoint.model_id, route, started, exchange.first_chunk_at)
            self.metrics.stream_events(endpoint.model_id, route, exchange.events)
        await end_stream(send, path, endpoint.model_id, broke)


def response_headers(upstream: list[tuple[str, str]], content_type: str) -> list[tuple[bytes, bytes]]:
    """The backend's headers for the client. The proxy owns the CORS policy
    (mesh_proxy.cors): llama-server's own access-control headers go."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in upstream
               if k != "content-type" and not k.startswith("access-control-")]
    headers.append((b"content-type", content_type.encode("latin-1")))
    return headers


async def stream_until_disconnected(receive: Receive, streaming: Awaitable[None]) -> None:
    """Run the relay; a client that goes away cancels it (and so the backend request)."""
    if await unless_disconnected(receive, _done(streaming)) is None:
        log.info("client went away mid-stream; the backend request was cancelled")


async def _done(work: Awaitable[None]) -> bool:
    await work
    return True
