"""Carries out what mesh_node.decide says for one model; decides nothing itself.

- Serve: run llama-server here, alone. Host: run it with `--rpc` through local
  tunnel ports to the plan's workers, until the decision changes (a member died, a
  better host, a peer to split with). Work / StandBy / Fail: say so in the model's
  state and grant (or not) this node's rpc-server to the host named.
- A model that may be split is first prepared for zero-transfer loading (so this node
  can be a worker) and only then advertised on disk; its layer count is read once.
- A llama-server that dies is restarted after a backoff (1, 2, 4 ... 30 s); after
  MAX_FAILED_STARTS starts in a row that never became healthy the runner records
  that it gave up (with llama-server's last words), and decide() says what next:
  Fail while the plan is the same, a new try when it changes, let go if promoted.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from meshcore.api import node_pb2 as pb
from meshcore.config import NodeConfig
from meshcore.ids import NodeId
from meshcore.models import model_id_of
from meshcore.process import free_tcp_port

from mesh_node import weights_cache
from mesh_node.gguf_info import block_count, is_embedding_model
from mesh_node.llama_server import LlamaServer, LlamaServerFailed, draft_counts
from mesh_node.decide import Decision, Fail, Held, Host, Serve, StandBy, Work, why_replan
from mesh_node.planner import FIT_FACTOR, Plan, layer_split
from mesh_node.rpc_tunnel import RpcTunnels
from mesh_node.state import ModelEntry, NodeState

log = logging.getLogger(__name__)
MAX_FAILED_STARTS = 3
DRAFT_METRICS_S = 5.0  # how often a model with a draft reads its acceptance rate
LOAD_TIMEOUT_S = 900.0
MAX_BACKOFF_S = 30.0
SETTLE_S = 2.0


def offload_args(layers: tuple[int, ...], gpu: bool) -> list[str]:
    """llama-server flags placing `layers` (host first, then workers in --rpc order).

    llama.cpp offloads the *last* --n-gpu-layers layers, the output layer counting
    as one more after the last block, and lists RPC devices before local GPUs;
    --tensor-split weights give each device its share of the offloaded layers. The
    output layer goes with the last device, so that device's weight includes it."""
    workers = list(layers[1:])
    if not workers:
        return []
    if gpu:  # everything offloaded: the workers' devices, then this host's GPU (with the output layer)
        weights = workers + [layers[0] + 1]
        return ["--n-gpu-layers", "999", "--tensor-split", ",".join(map(str, weights))]
    # CPU host: it keeps the first layers; the last worker also takes the output layer.
    workers[-1] += 1
    return ["--n-gpu-layers", str(sum(workers)), "--tensor-split", ",".join(map(str, workers))]


@dataclass
class ModelRunner:
    entry: ModelEntry
    config: NodeConfig
    state: NodeState
    bin_dir: Path
    logs_dir: Path
    decision: Callable[[str], Decision]  # the reconciler's decide() for a model, now
    tunnels: RpcTunnels | None = None
    cache_dir: Path | None = None  # rpc-server's tensor cache (zero-transfer weights)
    gpu: bool = False              # the host offloads to its own GPU as well
    # What only this runner knows, for decide() (Held):
    plan: Plan | None = None
    gave_up: tuple[Plan | None, str] | None = None
    serving_since: float | None = None
    layers: int = 0

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    def held(self, **flags: bool) -> Held:
        return Held(self.model_id, self.entry.size_bytes, serving_since=self.serving_since, layers=self.layers,
                    plan=self.plan, gave_up=self.gave_up, **flags)

    def fits_here(self) -> bool:
        return self.state.vram_bytes >= FIT_FACTOR * self.entry.size_bytes and not self.config.split

    @property
    def draft_path(self) -> str:
        """This model's draft (speculative decoding), "" if none."""
        return dict(self.config.drafts).get(str(self.entry.path), "")

    def draft_args(self, split_host: bool = False) -> list[str]:
        """llama-server's speculative decoding options for this model's draft, if it has
        one. The draft always runs on this node: a CPU split host keeps its layers off
        the RPC devices (-ngld 0), a GPU host puts them on its own device."""
        if not self.draft_path:
            return []
        args = ["--model-draft", self.draft_path, "--spec-type", "draft-simple"]  # this llama.cpp infers no type from a plain GGUF
        if split_host and (not self.gpu or not self.config.device):
            args += ["--gpu-layers-draft", "0" if not self.gpu else "99"]
        if self.config.device and self.gpu:
            args += ["--device-draft", self.config.device]
        return args

    async def watch_draft(self, port: int) -> None:
        """Keep the draft's acceptance rate in the status, from llama-server's metrics."""
        while True:
            await asyncio.sleep(DRAFT_METRICS_S)
            counts = await draft_counts("127.0.0.1", port)
            if counts and counts[0] > 0:
                self.state.update_model(self.model_id, draft_acceptance=counts[1] / counts[0])

    async def run(self) -> None:
        extra = list(self.config.extra_llama_args)
        if self.draft_path:
            self.state.update_model(self.model_id, draft=model_id_of(Path(self.draft_path)))
            extra += ["--metrics"]
        try:
            if await asyncio.to_thread(is_embedding_model, self.entry.path):
                extra += ["--embeddings"]
        except (ValueError, OSError) as exc:  # gguf-py could not read it; let llama-server say why
            log.warning("could not read the metadata of %s (%s)", self.entry.path, exc)
        if self.fits_here() or self.state.member is None or self.tunnels is None:
            self.state.ready_models.add(self.model_id)
            self.state.mesh_changed()
        else:
            await self.prepare_weights()
            await self.wait_gossiped()
            self.layers = await asyncio.to_thread(block_count, self.entry.path)
            self.state.mesh_changed()  # decide() again: a worker's part needs the layer count
        seen = -1
        while True:
            decision = self.decision(self.model_id)
            if isinstance(decision, Serve):
                self.state.grant_rpc(self.model_id, None)
                await self.keep_serving(extra + self.draft_args())
                continue
            if isinstance(decision, Host):
                self.state.grant_rpc(self.model_id, None)
                await self.host_split(decision.plan, extra)
                continue
            if isinstance(decision, Work):
                self.plan = decision.plan
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_WORKER, port=0, split=(),
                                        worker=decision.part, reason=decision.why)
                grant = decision.part[0]
            elif isinstance(decision, StandBy):
                self.plan = decision.plan
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_STANDBY, port=0, split=(), worker=None,
                                        reason=decision.why)
                grant = decision.grant
            else:
                assert isinstance(decision, Fail)
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0, split=(), worker=None,
                                        reason=decision.why)
                grant = None
            self.state.grant_rpc(self.model_id, NodeId(grant) if grant else None)
            seen = await self.state.changes.wait(seen)

    # -- llama-server ----------------------------------------------------------------

    async def keep_serving(self, args: list[str], plan: Plan | None = None, rpc_devices: int = 0) -> str | None:
        """Run llama-server with `args` until the split `plan` it carries out must end
        (returns why), or until it fails for good (records gave_up, returns None)."""
        failed_starts = restarts = 0
        broken = asyncio.ensure_future(self.wait_plan_broken(plan)) if plan is not None else None
        try:
            while True:
                port = free_tcp_port()
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING, port=port, restarts=restarts,
                                        reason=f"starting llama-server on 127.0.0.1:{port}")
                server = LlamaServer(self.bin_dir / "llama-server", self.entry.path, self.model_id, port,
                                     self.logs_dir / f"llama-server-{self.model_id}.log",
                                     ctx_size=self.config.ctx_size * self.config.parallel,
                                     parallel=self.config.parallel, device=self.config.device, extra_args=args,
                                     threads=self.config.threads,
                                     rpc_devices=rpc_devices)
                try:
                    async with server:
                        await server.wait_healthy(LOAD_TIMEOUT_S)
                        failed_starts = 0
                        self.serving_since = time.monotonic()
                        self.state.update_model(self.model_id, state=pb.MODEL_STATE_SERVING, reason="")
                        exited = asyncio.ensure_future(server.wait_exit())
                        watcher = asyncio.ensure_future(self.watch_draft(port)) if self.draft_path else None
                        try:
                            await asyncio.wait({exited} | ({broken} if broken else set()),
                                               return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            self.serving_since = None
                            if watcher is not None:
                                watcher.cancel()
                        if broken is not None and broken.done():
                            exited.cancel()
                            return broken.result()
                        reason = server.exit_reason(exited.result())
                except LlamaServerFailed as exc:
                    failed_starts += 1
                    reason = str(exc)
                except TimeoutError:
                    failed_starts += 1
                    reason = f"llama-server did not become healthy within {LOAD_TIMEOUT_S:.0f} s"
                if broken is not None and broken.done():
                    return broken.result()
                if failed_starts >= MAX_FAILED_STARTS:
                    self.gave_up = (plan, f"gave up after {failed_starts} failed starts: {reason}")
                    self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0,
                                            reason=self.gave_up[1])
                    return None
                restarts += 1
                delay = min(MAX_BACKOFF_S, 2.0 ** (restarts - 1))
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0, restarts=restarts,
                                        reason=f"{reason}; restarting in {delay:.0f} s")
                await asyncio.sleep(delay)
        finally:
            if broken is not None:
                broken.cancel()

    # -- split ---------------------------------------------------------------------

    async def prepare_weights(self) -> None:
        assert self.cache_dir is not None
        local = weights_cache.reads_local_gguf(self.bin_dir)
        self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING,
                                reason="indexing its weights for zero-transfer loading" if local else
                                "preparing weights for zero-transfer loading (copying big tensors)")
        if not local:
            log.warning("the llama.cpp in %s cannot load weights from local GGUF files (a stock build?): as a "
                        "split worker this node keeps a copy of %s's big tensors in its cache instead",
                        self.bin_dir, self.model_id)
        try:
            stats = await asyncio.to_thread(weights_cache.prepare, self.entry.path, self.cache_dir,
                                            self.bin_dir / weights_cache.HASHER, local)
        except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
            log.warning("could not prepare %s for zero-transfer loading (%s): as a worker this node will "
                        "be sent the weights over the mesh instead", self.model_id, exc)
        else:
            if stats.bytes_hashed:
                log.info("prepared %s for splits: %d tensors %s (%.0f kB written), %.0f MB hashed in %.1f s "
                         "(%.2f s per GB)", self.model_id, stats.tensors,
                         "indexed" if stats.local_index else f"in {stats.written} cache copies",
                         stats.bytes_written / 1e3, stats.bytes_hashed / 1e6, stats.seconds,
                         stats.seconds / max(stats.bytes_hashed / 1e9, 1e-9))
            else:
                log.info("prepared %s for splits: its index is up to date (%d tensors)", self.model_id, stats.tensors)
        self.state.ready_models.add(self.model_id)
        self.state.mesh_changed()

    async def wait_gossiped(self) -> None:
        """Until this node's readiness is in its record, then a round of gossip more (so
        the other candidates' readiness arrives before the first plan)."""
        assert self.state.member is not None
        member, seen = self.state.member, -1
        while self.model_id not in member.membership.own.models_on_disk:
            seen = await member.changes.wait(seen)
        await asyncio.sleep(SETTLE_S)

    async def host_split(self, plan: Plan, extra: list[str]) -> None:
        assert self.tunnels is not None and self.state.member is not None
        self.plan = plan
        if not plan.workers:  # --split, and no peer to split with yet
            log.info("serving %s alone for now: --split asks for a split, and no other node with the model "
                     "has joined; it will be split when one does", self.model_id)
            why = await self.keep_serving(extra + self.draft_args(), plan)
            self.after_plan(why)
            return
        layers = layer_split(self.layers, plan.fractions)
        split = tuple(zip(plan.members, layers, plan.fractions))
        if self.gpu:  # llama.cpp puts the RPC devices' layers first, this host's GPU last
            split = split[1:] + split[:1]
        log.info("hosting %s split across %d nodes: %s", self.model_id, len(plan.members),
                 ", ".join(f"{n[:12]} {c} layers" for n, c, _ in split))
        async with self.tunnels.open_links(self.model_id, plan.workers) as ports:
            args = extra + ["--rpc", ",".join(f"127.0.0.1:{p}" for p in ports)]
            args += offload_args(layers, self.gpu) + self.draft_args(split_host=True)
            self.state.update_model(self.model_id, split=split, worker=None)
            why = await self.keep_serving(args, plan, rpc_devices=len(ports))
        self.after_plan(why)

    def after_plan(self, why: str | None) -> None:
        """A hosted plan ended because it broke (`why`), or llama-server gave up (None:
        decide() then says Fail until the plan changes)."""
        if why:
            log.info("re-planning %s: %s", self.model_id, why)
            self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING, port=0, split=(),
                                    reason=f"re-planning: {why}")
        else:
            self.state.update_model(self.model_id, split=())

    async def wait_plan_broken(self, plan: Plan) -> str:
        """Why the plan this node carries out ended, once decide() no longer says Host(plan)."""
        assert self.state.member is not None
        seen = -1
        while True:
            seen = await self.state.changes.wait(seen)
            why = why_replan(plan, self.decision(self.model_id), self.state.member.membership.records)
            if why is not None:
                return why
