"""The proxy's app: the API paths of every family (meshcore.api_paths) answered by the
bare ASGI relay (mesh_proxy.forward.Forwarder), FastAPI for the model list, health and
metrics; CORS and Host guards in front of both."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshcore import __version__
from meshcore.config import ProxyConfig
from meshcore.home import Home
from meshcore.host_guard import HostGuard

from mesh_proxy.client_mode import MeshClient
from mesh_proxy.cors import CorsGuard
from mesh_proxy.errors import ModelNotFound, ProxyError, error_response
from mesh_proxy.forward import BackendOpener, Forwarder
from mesh_proxy.metrics import CONTENT_TYPE, ProxyMetrics
from mesh_proxy.node_link import follow_node, report_demand
from mesh_proxy.routes import Router



def create_app(config: ProxyConfig, client: "MeshClient | None" = None) -> HostGuard:
    """The API app: HostGuard → CorsGuard → Forwarder (the API paths) → FastAPI (the rest).
    The relay sits outside FastAPI so that each relayed chunk's `send` goes straight to
    the server (no middleware wrappers per chunk). With `client` (client-only mode)
    routes and streams come from the proxy's own mesh member; otherwise from the local
    node agent."""
    home = Home(Path(config.home))
    router = client.router if client is not None else Router()
    opener = client if client is not None else BackendOpener(str(home.tunnel_socket))
    metrics = ProxyMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [] if client is not None else [
            asyncio.create_task(follow_node(home, router, metrics), name="follow node"),
            asyncio.create_task(report_demand(home, router), name="report demand")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(title="Mesh LLM API", version=__version__, lifespan=lifespan)
    app.state.router = router

    @app.exception_handler(ProxyError)
    async def on_proxy_error(request: Request, exc: ProxyError) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        return error_response(request.url.path, exc.status_code,
                              f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error", code)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request.url.path, 400, str(exc), "invalid_request_error", "invalid_request")

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok" if router.node_connected else "starting", "models": router.model_ids()}

    def model_object(model_id: str) -> dict:
        """One model in the OpenAI shape, plus where the mesh serves it. A split lists
        its nodes in layer order, each with its role: "host" (the node serving it, which
        runs llama-server) or "worker"."""
        eps = [e for e in router.endpoints if e.model_id == model_id]
        host, split = next(((e.node_id, e.split) for e in eps if e.split), ("", ()))
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "mesh-llm",
                "status": "serving" if any(e.serving for e in eps) else eps[0].state,
                "nodes": sorted({e.node_id for e in eps if e.node_id}),
                "split": [{"node_id": n, "role": "host" if n == host else "worker", "layers": c, "fraction": f}
                          for n, c, f in split]}

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_object(m) for m in router.model_ids()]}

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str) -> dict:
        if model_id not in router.model_ids():
            raise ModelNotFound(f"model {model_id!r} is not served in this mesh "
                                f"(served: {', '.join(router.model_ids()) or 'none'})")
        return model_object(model_id)

    relay = Forwarder(app, router, opener, config.max_body_bytes, metrics)
    # outermost: a rebinding page gets nothing, not even CORS answers
    return HostGuard(CorsGuard(relay, origins=config.cors_origins))
