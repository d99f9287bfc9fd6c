"""Keeps one model served: alone when it fits this node, split across nodes when not.

- Fits (memory >= 1.1 x file size, no --split): run llama-server here.
- Does not fit: first prepare the weights for zero-transfer loading (so this
  node can be a worker) and only then advertise the model on disk. Then, from
  the gossiped records: if some node already serves it, stand by; else the
  planner elects a host; the host runs llama-server with `--rpc` through local
  tunnel ports to its workers; every other node stands by (its rpc-server works
  for the host). A plan whose member dies is replaced at once.
- A llama-server that dies is restarted after a backoff (1, 2, 4 ... 30 s); after
  MAX_FAILED_STARTS starts in a row that never became healthy the runner gives
  up and leaves the model failed, with llama-server's last words as the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from meshcore.api import node_pb2 as pb
from meshcore.config import NodeConfig
from meshcore.ids import NodeId
from meshcore.membership import ALIVE
from meshcore.models import model_id_of
from meshcore.process import free_tcp_port
from meshcore.split_policy import may_pair

from mesh_node import weights_cache
from mesh_node.gguf_info import block_count, is_embedding_model
from mesh_node.llama_server import LlamaServer, LlamaServerFailed, draft_counts
from mesh_node.planner import FIT_FACTOR, Plan, choose_host, keep_or_replan, layer_split, planned_part
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
    tunnels: RpcTunnels | None = None
    cache_dir: Path | None = None  # rpc-server's tensor cache (zero-transfer weights)
    gpu: bool = False              # the host offloads to its own GPU as well

    @property
    def model_id(self) -> str:
        return self.entry.model_id

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
            await self.keep_serving(extra + self.draft_args())
            return
        await self.prepare_weights()
        await self.serve_split(extra)

    # -- alone ---------------------------------------------------------------------

    async def keep_serving(self, args: list[str], plan_broken: "asyncio.Future[str] | None" = None,
                           rpc_devices: int = 0) -> str | None:
        """Run llama-server with `args` until it fails for good (returns None) or
        `plan_broken` resolves (returns why)."""
        failed_starts = restarts = 0
        while True:
            port = free_tcp_port()
            self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING, port=port, restarts=restarts,
                                    reason=f"starting llama-server on 127.0.0.1:{port}")
            server = LlamaServer(self.bin_dir / "llama-server", self.entry.path, self.model_id, port,
                                 self.logs_dir / f"llama-server-{self.model_id}.log",
                                 ctx_size=self.config.ctx_size * self.config.parallel,
                                 parallel=self.config.parallel, device=self.config.device, extra_args=args,
                                 rpc_devices=rpc_devices)
            try:
                async with server:
                    await server.wait_healthy(LOAD_TIMEOUT_S)
                    failed_starts = 0
                    self.state.update_model(self.model_id, state=pb.MODEL_STATE_SERVING, reason="")
                    exited = asyncio.ensure_future(server.wait_exit())
                    waiters = {exited} | ({plan_broken} if plan_broken is not None else set())
                    watcher = asyncio.ensure_future(self.watch_draft(port)) if self.draft_path else None
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if watcher is not None:
                            watcher.cancel()
                    if plan_broken is not None and plan_broken.done():
                        exited.cancel()
                        return plan_broken.result()
                    reason = server.exit_reason(exited.result())
            except LlamaServerFailed as exc:
                failed_starts += 1
                reason = str(exc)
            except TimeoutError:
                failed_starts += 1
                reason = f"llama-server did not become healthy within {LOAD_TIMEOUT_S:.0f} s"
            if plan_broken is not None and plan_broken.done():
                return plan_broken.result()
            if failed_starts >= MAX_FAILED_STARTS:
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0,
                                        reason=f"gave up after {failed_starts} failed starts: {reason}")
                return None
            restarts += 1
            delay = min(MAX_BACKOFF_S, 2.0 ** (restarts - 1))
            self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0, restarts=restarts,
                                    reason=f"{reason}; restarting in {delay:.0f} s")
            await asyncio.sleep(delay)

    # -- split ---------------------------------------------------------------------

    async def prepare_weights(self) -> None:
        assert self.cache_dir is not None
        self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING,
                                reason="preparing weights for zero-transfer loading (hashing big tensors)")
        try:
            stats = await asyncio.to_thread(weights_cache.prepare, self.entry.path, self.cache_dir,
                                            self.bin_dir / weights_cache.HASHER)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("could not prepare %s for zero-transfer loading (%s): as a worker this node will "
                        "be sent the weights over the mesh instead", self.model_id, exc)
        else:
            log.info("prepared %s for splits: %d big tensors, %d cache files written (%.0f MB) in %.1f s",
                     self.model_id, stats.tensors, stats.written, stats.bytes_written / 1e6, stats.seconds)
        self.state.ready_models.add(self.model_id)
        self.state.mesh_changed()

    def records(self) -> list:
        assert self.state.member is not None
        return list(self.state.member.membership.records.values())

    def served_elsewhere(self) -> str | None:
        assert self.state.member is not None
        for peer in self.state.member.membership.alive_peers(role="node"):
            if self.model_id in peer.serving:
                return peer.node_id
        return None

    async def serve_split(self, extra: list[str]) -> None:
        assert self.state.member is not None and self.tunnels is not None
        member, me = self.state.member, self.state.node_id
        plan: Plan | None = None
        seen = -1
        while self.model_id not in member.membership.own.models_on_disk:  # our readiness is gossiped first
            seen = await member.changes.wait(seen)
        await asyncio.sleep(SETTLE_S)  # let a round of gossip bring the other candidates' readiness
        n_layers = await asyncio.to_thread(block_count, self.entry.path)
        while True:
            other = self.served_elsewhere()
            plan = keep_or_replan(plan, self.records(), self.model_id, self.entry.size_bytes, self.config.split)
            # Who may use this node's rpc-server for this model, by this node's own reckoning:
            # the host it elects when that host splits the model (the exact worker set can
            # differ for a moment between nodes' views of RTT), or the node that serves it
            # and names this node in its split; never a host the split allow-list excludes.
            host_record = member.membership.records.get(plan.host) if plan.host else None
            grant = plan.host if plan.host != me and plan.workers and host_record is not None \
                and may_pair(host_record, member.membership.own) else None
            if other:
                part = self.gossiped_part(other)
                if part is not None:
                    grant = other
                    self.work(part, f"holds layers {part[1]}-{part[1] + part[2] - 1} of {part[3]} "
                                    f"for the split hosted by node {other[:12]}")
                else:
                    self.stand_by(f"node {other[:12]} serves it")
            elif not plan.fits:
                grant = None
                self.state.update_model(self.model_id, state=pb.MODEL_STATE_FAILED, port=0, split=(), worker=None,
                                        reason=f"cannot serve: {plan.reason}")
            elif plan.host != me and me in plan.workers:
                part = planned_part(plan, me, layer_split(n_layers, plan.fractions))
                self.work(part, f"will hold layers {part[1]}-{part[1] + part[2] - 1} of {part[3]} for the "
                                f"split node {plan.host[:12]} is loading")
            elif plan.host != me:
                self.stand_by(f"node {plan.host[:12]} was elected to serve it")
            else:
                self.state.grant_rpc(self.model_id, None)
                await self.host_split(plan, extra, n_layers)
                seen = -1
                continue
            self.state.grant_rpc(self.model_id, NodeId(grant) if grant else None)
            seen = await member.changes.wait(seen)

    def gossiped_part(self, host: str) -> tuple[str, int, int, int] | None:
        """(host, first layer, layers, total layers) of this node in the split `host`
        publishes for this model, or None if this node is not in it."""
        assert self.state.member is not None
        record = self.state.member.membership.records.get(host)
        if record is None or not may_pair(record, self.state.member.membership.own):
            return None  # a host this node's split allow-list does not admit gets no layers of it
        parts = record.splits.get(self.model_id, [])
        first = 0
        for node, layers in parts:
            if node == self.state.node_id:
                return (host, first, layers, sum(c for _, c in parts))
            first += layers
        return None

    def work(self, part: tuple[str, int, int, int], reason: str) -> None:
        self.state.update_model(self.model_id, state=pb.MODEL_STATE_WORKER, port=0, split=(), worker=part,
                                reason=reason)

    def stand_by(self, reason: str) -> None:
        self.state.update_model(self.model_id, state=pb.MODEL_STATE_STANDBY, port=0, split=(), worker=None,
                                reason=reason)

    async def host_split(self, plan: Plan, extra: list[str], n_layers: int) -> None:
        assert self.tunnels is not None and self.state.member is not None
        if not plan.workers:  # --split, and no peer to split with yet
            log.info("serving %s alone for now: --split asks for a split, and no other node with the model "
                     "has joined; it will be split when one does", self.model_id)
            broken = asyncio.ensure_future(self.wait_plan_broken(plan))
            try:
                why = await self.keep_serving(extra + self.draft_args(), broken)
            finally:
                broken.cancel()
            await self.after_plan(why)
            return
        layers = layer_split(n_layers, plan.fractions)
        split = tuple(zip(plan.members, layers, plan.fractions))
        if self.gpu:  # llama.cpp puts the RPC devices' layers first, this host's GPU last
            split = split[1:] + split[:1]
        log.info("hosting %s split across %d nodes: %s", self.model_id, len(plan.members),
                 ", ".join(f"{n[:12]} {c} layers" for n, c, _ in split))
        async with self.tunnels.open_links(self.model_id, plan.workers) as ports:
            args = extra + ["--rpc", ",".join(f"127.0.0.1:{p}" for p in ports)]
            args += offload_args(layers, self.gpu) + self.draft_args(split_host=True)
            self.state.update_model(self.model_id, split=split, worker=None)
            broken = asyncio.ensure_future(self.wait_plan_broken(plan))
            try:
                why = await self.keep_serving(args, broken, rpc_devices=len(ports))
            finally:
                broken.cancel()
        await self.after_plan(why)

    async def after_plan(self, why: str | None) -> None:
        """A plan ended: re-plan at once if it broke (`why`); if llama-server failed
        for good, wait for the mesh to change before planning again."""
        assert self.state.member is not None
        if why:
            log.info("re-planning %s: %s", self.model_id, why)
            self.state.update_model(self.model_id, state=pb.MODEL_STATE_LOADING, port=0, split=(),
                                    reason=f"re-planning: {why}")
        else:
            await self.state.member.changes.wait(self.state.member.changes.seq)

    async def wait_plan_broken(self, plan: Plan) -> str:
        assert self.state.member is not None
        member = self.state.member
        seen = -1
        while True:
            seen = await member.changes.wait(seen)
            records = member.membership.records
            gone = [n for n in plan.members if n not in records or records[n].state != ALIVE]
            if gone:
                return f"node {gone[0][:12]} of its split is {records[gone[0]].state if gone[0] in records else 'gone'}"
            elected = choose_host(list(records.values()), self.model_id, self.entry.size_bytes, self.config.split)
            if elected is not None and elected.node_id != self.state.node_id:
                return f"node {elected.node_id[:12]} is the better host (two nodes planned at once)"
            if not plan.workers:
                fresh = keep_or_replan(plan, list(records.values()), self.model_id, self.entry.size_bytes,
                                       self.config.split)
                if fresh.workers:
                    return f"node {fresh.workers[0][:12]} joined with the model: splitting it"
