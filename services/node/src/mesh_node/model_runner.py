"""Keeps one model served: start llama-server, wait for health, watch it, restart it.

A llama-server that dies is restarted after a backoff (1, 2, 4 ... 30 s). After
MAX_FAILED_STARTS starts in a row that never became healthy, the runner gives up
and leaves the model failed, with llama-server's own last words as the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from meshcore.api import node_pb2 as pb
from meshcore.config import NodeConfig
from meshcore.process import free_tcp_port

from mesh_node.gguf_info import is_embedding_model
from mesh_node.llama_server import LlamaServer, LlamaServerFailed
from mesh_node.state import ModelEntry, NodeState

log = logging.getLogger(__name__)
MAX_FAILED_STARTS = 3
LOAD_TIMEOUT_S = 900.0
MAX_BACKOFF_S = 30.0


@dataclass
class ModelRunner:
    entry: ModelEntry
    config: NodeConfig
    state: NodeState
    llama_server: Path
    logs_dir: Path

    async def run(self) -> None:
        model_id = self.entry.model_id
        extra = list(self.config.extra_llama_args)
        try:
            if await asyncio.to_thread(is_embedding_model, self.entry.path):
                extra += ["--embeddings"]
        except (ValueError, OSError) as exc:  # gguf-py could not read it; let llama-server say why
            log.warning("could not read the metadata of %s (%s)", self.entry.path, exc)
        failed_starts = 0
        restarts = 0
        while True:
            port = free_tcp_port()
            self.state.update_model(model_id, state=pb.MODEL_STATE_LOADING, port=port, restarts=restarts,
                                    reason=f"starting llama-server on 127.0.0.1:{port}")
            server = LlamaServer(self.llama_server, self.entry.path, model_id, port,
                                 self.logs_dir / f"llama-server-{model_id}.log",
                                 ctx_size=self.config.ctx_size * self.config.parallel,
                                 parallel=self.config.parallel, device=self.config.device, extra_args=extra)
            try:
                async with server:
                    await server.wait_healthy(LOAD_TIMEOUT_S)
                    failed_starts = 0
                    self.state.update_model(model_id, state=pb.MODEL_STATE_SERVING, reason="")
                    code = await server.wait_exit()
                    reason = server.exit_reason(code)
            except LlamaServerFailed as exc:
                failed_starts += 1
                reason = str(exc)
            except TimeoutError:
                failed_starts += 1
                reason = f"llama-server did not become healthy within {LOAD_TIMEOUT_S:.0f} s"
            if failed_starts >= MAX_FAILED_STARTS:
                self.state.update_model(model_id, state=pb.MODEL_STATE_FAILED, port=0,
                                        reason=f"gave up after {failed_starts} failed starts: {reason}")
                return
            restarts += 1
            delay = min(MAX_BACKOFF_S, 2.0 ** (restarts - 1))
            self.state.update_model(model_id, state=pb.MODEL_STATE_FAILED, port=0, restarts=restarts,
                                    reason=f"{reason}; restarting in {delay:.0f} s")
            await asyncio.sleep(delay)
