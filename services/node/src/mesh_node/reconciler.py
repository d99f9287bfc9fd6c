"""The thin reconciler: asks mesh_node.decide what to do with every model this node
holds and carries it out. It owns the model runners (one task each, in its TaskGroup):

- the models asked for with --model run from the start, whatever the demand;
- a spare model (a GGUF in the models folders: mesh_node.spare) gets a runner when the
  mesh promotes it here, and loses it when the mesh lets the copy go; a catalog model
  the mesh wants is downloaded first (mesh_node.fetch);
- it keeps the node's offer up to date (spare models with sizes, free memory, why each
  promoted model runs), which mesh_link gossips, and the demand its proxy reported
  (meshcore.demand), aged every TICK_S;
- each promotion and demotion is logged in words and kept for the status API, and so
  are the promotions it sees other nodes make.

It calls decide() again on every change of the node or the mesh, and every TICK_S (a
copy's minimum serving time and demand age out with the clock, not with events), in a
thread, over a snapshot of the records: a pass over a mesh at its caps takes tenths of a
second (bench/decide.py) and must not stall pings and gossip on the event loop. The
runners read the latest decisions (`decision()`); a pass whose answer differs from the
last wakes them (the node's change counter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from meshcore import catalog
from meshcore.config import NodeConfig
from meshcore.home import Home
from meshcore.ids import ModelId
from meshcore.models import model_parts, search_dirs

from mesh_node.decide import Decision, Held, Local, Serve, StandBy, decide, used_bytes
from mesh_node.fetch import FetchFailed, can_fetch_here, fetch
from mesh_node.model_runner import ModelRunner
from mesh_node.rebalance import Thresholds
from mesh_node.spare import scan
from mesh_node.state import ModelEntry, NodeState

log = logging.getLogger(__name__)
TICK_S = 5.0
SCAN_S = 30.0


@dataclass
class Running:
    runner: ModelRunner
    task: asyncio.Task
    pinned: bool = False
    picked: bool = False   # --auto's own choice: kept like a pinned model


class Reconciler:
    def __init__(self, config: NodeConfig, state: NodeState, make_runner: Callable[..., ModelRunner]) -> None:
        """`make_runner(entry, decision)`: a ModelRunner for one model (the agent binds
        the binaries, logs, tunnels and cache folders)."""
        self.config = config
        self.state = state
        self.make_runner = make_runner
        self.running: dict[ModelId, Running] = {}
        self.fetching: dict[ModelId, asyncio.Task] = {}
        self.broken: set[ModelId] = set()       # promoted here and failed: not offered again
        self.thresholds = Thresholds(hot_rpm=config.hot_rpm, imbalance=config.hot_imbalance,
                                     cool_rpm=config.hot_rpm / 2, min_serve_s=config.min_serve_s)
        self.catalog_sizes = {e.model_id: e.size for e in catalog.entries()} if can_fetch_here() else {}
        self.disk: dict[ModelId, tuple[Path, int]] = {}
        self.folders = search_dirs(Home(Path(config.home)))
        self.excluded = {str(Path(p).resolve()) for p in [*config.models, *(d for _, d in config.drafts)]}
        self.why: dict[ModelId, str] = {}        # why each promoted (or picked) model runs here
        self.seen_promoted: dict[str, dict[str, str]] = {}
        self._decisions: tuple[tuple[int, float], dict[str, Decision]] | None = None
        self._tasks: asyncio.TaskGroup | None = None

    # -- what decide() sees --------------------------------------------------------

    def local(self) -> Local:
        held = {m: r.runner.held(pinned=r.pinned, running=not r.pinned, picked=r.picked)
                for m, r in self.running.items()}
        for model, (path, size) in self.offered_spare().items():
            held.setdefault(model, Held(model, size))
        return Local(held=held, vram_bytes=self.state.vram_bytes, now=time.monotonic(), force_split=self.config.split,
                     eager=self.config.auto_serve, in_mesh=self.state.member is not None,
                     thresholds=self.thresholds, catalog_sizes=self.catalog_sizes)

    def offered_spare(self) -> dict[ModelId, tuple[Path, int]]:
        return {m: v for m, v in self.disk.items()
                if m not in self.running and m not in self.state.dropped and m not in self.broken}

    def _inputs(self) -> tuple[tuple[int, float], dict, Local]:
        key = (self.state.seq, round(time.monotonic() / TICK_S))
        records = dict(self.state.member.membership.records) if self.state.member is not None else {}
        return key, records, self.local()

    def decisions(self) -> dict[str, Decision]:
        """The latest decide() for every held model (the first one computed here, at once)."""
        if self._decisions is None:
            key, records, local = self._inputs()
            self._decisions = (key, decide(records, self.state.node_id, local))
        return self._decisions[1]

    async def refresh(self) -> None:
        """decide() again, off the event loop, if the node or the mesh changed (or a tick
        passed) since the last pass; wake the runners if the answer changed."""
        key, records, local = self._inputs()
        if self._decisions is not None and self._decisions[0] == key:
            return
        fresh = await asyncio.to_thread(decide, records, self.state.node_id, local)
        before = self._decisions
        self._decisions = (key, fresh)
        if before is not None and before[1] != fresh:
            self.state.mesh_changed()

    def decision(self, model_id: str) -> Decision:
        return self.decisions().get(model_id) or StandBy("not held here", run=False)

    # -- carrying it out -----------------------------------------------------------

    def start(self, entry: ModelEntry, pinned: bool = False, picked: bool = False, why: str = "") -> None:
        assert self._tasks is not None
        self.state.add_model(entry)
        runner = self.make_runner(entry, self.decision)
        task = self._tasks.create_task(self.guard(entry.model_id, runner.run()), name=f"model {entry.model_id}")
        self.running[entry.model_id] = Running(runner, task, pinned, picked)
        self.state.runners[entry.model_id] = task
        if why:
            self.why[entry.model_id] = why

    async def guard(self, model_id: ModelId, work: "asyncio.Future | object") -> None:
        """A runner, until it ends or is cancelled (drop, demotion, shutdown)."""
        with contextlib.suppress(asyncio.CancelledError):
            await work  # type: ignore[misc]
        self.running.pop(model_id, None)

    async def stop(self, model_id: ModelId) -> None:
        running = self.running.pop(model_id, None)
        self.state.runners.pop(model_id, None)
        if running is not None:
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
        self.state.drop_model(model_id)
        self.why.pop(model_id, None)

    async def drop(self, model_id: ModelId) -> bool:
        """`mesh-llm drop`: stop it here, and never promote it here again."""
        if model_id not in self.running:
            return False
        self.state.dropped.add(model_id)
        await self.stop(model_id)
        self.publish_offer()
        return True

    async def apply(self) -> None:
        decisions = self.decisions()
        me = self.state.node_id
        for model, decision in decisions.items():
            model = ModelId(model)
            running = self.running.get(model)
            if running is None and isinstance(decision, Serve) and model not in self.fetching:
                if decision.fetch or model not in self.disk:
                    self.start_fetch(model, decision.why, decision.picked)
                else:
                    path, size = self.disk[model]
                    log.info("serving %s: %s", model, decision.why)
                    self.state.note_rebalance(me, model, "promoted", decision.why)
                    self.start(ModelEntry(model, path, size), picked=decision.picked, why=decision.why)
            elif running is not None and not running.pinned and isinstance(decision, StandBy) and not decision.run:
                why = decision.why
                log.info("no longer serving %s: %s", model, why)
                self.state.note_rebalance(me, model, "let go", why)
                if running.runner.gave_up is not None:
                    self.broken.add(model)
                await self.stop(model)
        self.publish_offer()

    def start_fetch(self, model: ModelId, why: str, picked: bool) -> None:
        assert self._tasks is not None
        entry = catalog.find(model)
        if entry is None:
            return
        log.info("downloading %s (%.1f GB) to serve it: %s", entry.name, entry.size / 1e9, why)
        self.state.note_rebalance(self.state.node_id, model, "promoted", f"downloading it: {why}")
        self.why[model] = why
        self.fetching[model] = self._tasks.create_task(self.fetch_then_serve(model, entry, why, picked),
                                                       name=f"fetch {model}")

    async def fetch_then_serve(self, model: ModelId, entry: catalog.CatalogEntry, why: str, picked: bool) -> None:
        try:
            path = await fetch(entry)
        except FetchFailed as exc:
            log.warning("could not download %s: %s", entry.name, exc)
            self.broken.add(model)
            self.why.pop(model, None)
            self.state.note_rebalance(self.state.node_id, model, "let go", f"the download failed: {exc}")
        else:
            self.disk[model] = (path, sum(p.stat().st_size for p in model_parts(path)))
            self.start(ModelEntry(model, path, self.disk[model][1]), picked=picked, why=why)
        finally:
            self.fetching.pop(model, None)
            self.publish_offer()

    def publish_offer(self) -> None:
        decisions = self.decisions()
        held = self.local().held
        free = self.state.vram_bytes - used_bytes(
            {m: d for m, d in decisions.items() if m in self.running or m in self.fetching}, held,
            self.state.vram_bytes, self.catalog_sizes)
        promoted = {m: why for m, why in self.why.items() if m in self.running or m in self.fetching}
        self.state.set_offer(self.offered_spare(), max(0, free), promoted)

    def note_peers(self) -> None:
        """Log the promotions other nodes make (their records say why)."""
        if self.state.member is None:
            return
        for record in self.state.member.membership.alive_peers(role="node"):
            before = self.seen_promoted.get(record.node_id, {})
            for model, why in record.promoted.items():
                if model not in before:
                    self.state.note_rebalance(record.node_id, model, "promoted", why)
            for model in before:
                if model not in record.promoted:
                    self.state.note_rebalance(record.node_id, model, "let go", "")
            self.seen_promoted[record.node_id] = dict(record.promoted)

    async def rescan(self) -> None:
        found = await asyncio.to_thread(scan, self.folders, self.excluded)
        if found != self.disk:
            self.disk = found
            self.publish_offer()

    # -- running -------------------------------------------------------------------

    async def run(self, pinned: list[ModelEntry]) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for entry in pinned:
                self.start(entry, pinned=True)
            await self.rescan()
            last_scan = time.monotonic()
            seen = -1
            while True:
                self.state.age_demand(time.monotonic())
                self.note_peers()
                await self.refresh()
                await self.apply()
                if time.monotonic() - last_scan >= SCAN_S:
                    await self.rescan()
                    last_scan = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_S):
                        seen = await self.state.changes.wait(seen)
