"""Idle mode: `mesh-llm` with nothing to do (no model, no mesh to join or create).

It prints how to start or join a mesh, looks up the directory's public meshes (in
the background: a machine offline still gets its instructions at once), and serves
the same, read-only, on the console port (`/` and `/api/status`), until Ctrl-C. It
creates nothing: no home folder, no key, no mesh — those come when the user starts
one. Only console-side flags (`--console`, `--listen-all`, `--directory`) apply.
"""

from __future__ import annotations

import asyncio
import html
import logging
from argparse import Namespace

from meshcore import directory_client as dc
from meshcore.http_service import run_http_service

log = logging.getLogger("mesh_cli")
ACTIONS = ("model", "join", "join_file", "auto", "client", "publish", "mesh_name", "draft")


def is_idle(args: Namespace) -> bool:
    return not any(getattr(args, name, None) for name in ACTIONS)


def instructions(console_port: int) -> str:
    return "\n".join([
        "Mesh LLM is not serving anything yet. To start:",
        "",
        "  mesh-llm --model Qwen2.5-7B          serve a model (a catalog name is downloaded first;",
        "                                       `mesh-llm download` lists them) or a GGUF path",
        "  mesh-llm --join TOKEN                join the mesh of an invite token (add --model to serve)",
        "  mesh-llm --auto                      join the best public mesh from the directory",
        "  mesh-llm --client --join TOKEN       use a mesh's models from this machine (API only)",
        "  mesh-llm --model M --mesh-name NAME  start a public mesh others can find",
        "",
        f"This page: http://127.0.0.1:{console_port}/ (read-only until a node starts).",
    ])


def meshes_text(meshes: list[dict] | None, error: str) -> str:
    if meshes is None:
        return f"Public meshes: {error}" if error else "Public meshes: looking them up..."
    if not meshes:
        return "Public meshes: none listed right now."
    rows = [f"  {m['name']:<24} {', '.join(m['models_served'])[:60] or '-':<60} {m['node_count']} nodes"
            for m in meshes[:10]]
    return "\n".join(["Public meshes (join one with mesh-llm --auto --mesh-name NAME):", *rows])


class Idle:
    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.text = instructions(args.console)
        self.meshes: list[dict] | None = None
        self.error = ""

    async def look_up(self) -> None:
        url = dc.directory_url(self.args.directory)
        try:
            self.meshes = await asyncio.to_thread(dc.list_meshes, url)
        except dc.DirectoryError as exc:
            self.error = str(exc)
            self.meshes = None
        log.info("%s", meshes_text(self.meshes, self.error))

    async def look_up_then_wait(self) -> None:
        """The companion of the console: look the meshes up once, then keep serving
        until Ctrl-C (run_http_service ends both when either ends)."""
        await self.look_up()
        await asyncio.Event().wait()

    def app(self):  # noqa: ANN201 - a FastAPI app
        from fastapi import FastAPI
        from fastapi.responses import HTMLResponse

        from meshcore.host_guard import HostGuard
        app = FastAPI(title="Mesh LLM (idle)", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_middleware(HostGuard)

        @app.get("/api/status")
        async def status() -> dict:
            return {"node_state": "idle", "instructions": self.text, "public_meshes": self.meshes or [],
                    "directory_error": self.error}

        @app.get("/", response_class=HTMLResponse)
        async def page() -> str:
            body = html.escape(self.text + "\n\n" + meshes_text(self.meshes, self.error))
            return ("<!doctype html><meta charset=utf-8><title>Mesh LLM (idle)</title>"
                    "<meta http-equiv=refresh content=5>"
                    "<body style='font:15px/1.5 ui-monospace,monospace;max-width:60rem;margin:2rem auto;"
                    "padding:0 1rem;color-scheme:light dark'><h1>Mesh LLM is idle</h1>"
                    f"<pre style='white-space:pre-wrap'>{body}</pre></body>")

        return app


def run_idle(args: Namespace) -> int:
    idle = Idle(args)
    print(idle.text, flush=True)
    run_http_service("console", "read-only console (idle)", args.console, args.listen_all, idle.app,
                     companion=idle.look_up_then_wait)
    return 0
