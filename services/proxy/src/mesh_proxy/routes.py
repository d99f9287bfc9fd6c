"""Route choice, pure: which endpoint serves a request for a model.

The table comes from the node agent (proto RouteTable). Among endpoints that are
serving, the one with the fewest requests in flight from this proxy wins (ties:
local first, then node id); a model that is only loading gives ModelUnavailable
with a Retry-After; a model nobody serves gives ModelNotFound.

Every request that names a model counts as demand for it (`requests`, gossiped by the
node as requests per minute: meshcore.demand), answered or not: a model nobody serves
that clients keep asking for is one the mesh should load (mesh_node.rebalance). Names
that are not model ids (`demand_name`) count for nothing.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from meshcore.api import node_pb2 as pb
from meshcore.model_state import word

STATES = (pb.MODEL_STATE_LOADING, pb.MODEL_STATE_SERVING, pb.MODEL_STATE_FAILED)  # what a route can be

from mesh_proxy.errors import BadRequest, ModelNotFound, ModelUnavailable

RETRY_AFTER_S = 2
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
MAX_UNSERVED_NAMES = 32  # names nobody serves counted at once (clients send anything)


def demand_name(model_id: str) -> str | None:
    """The name to count demand under, or None for something that cannot be a model id."""
    return model_id if _MODEL_NAME.match(model_id) else None


@dataclass(frozen=True)
class Endpoint:
    model_id: str
    node_id: str
    local: bool
    address: str  # "127.0.0.1:PORT" for a local llama-server
    state: str    # "loading" | "serving" | "failed" (restarting or given up)
    split: tuple[tuple[str, int, float], ...] = ()  # (node id, layers, fraction) of a split model

    @property
    def serving(self) -> bool:
        return self.state == "serving"

    @property
    def key(self) -> tuple[str, str]:
        return (self.node_id, self.model_id)


def endpoints_from_proto(table: pb.RouteTable) -> list[Endpoint]:
    return [Endpoint(r.model_id, r.node_id, r.local, r.endpoint,
                     word(r.state) if r.state in STATES else "failed",
                     tuple((p.node_id, p.layers, round(p.fraction, 4)) for p in r.split))
            for r in table.routes]


class Router:
    def __init__(self, rng: random.Random | None = None) -> None:
        """`rng`: breaks ties between equally busy endpoints (tests pass a seeded one)."""
        self.rng = rng or random.SystemRandom()
        self.endpoints: list[Endpoint] = []
        self.in_flight: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[str] = Counter()  # per model, since start
        self.node_connected = False

    def update(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    def model_ids(self) -> list[str]:
        return sorted({e.model_id for e in self.endpoints})

    def choose(self, model_id: str | None) -> Endpoint:
        """`model_id` None (a request that names no model, as llama.cpp's native
        endpoints send): the mesh's only model, if it has exactly one."""
        if model_id is None:
            known = self.model_ids()
            if len(known) != 1 and self.node_connected:
                raise BadRequest("the request names no 'model' and this mesh serves "
                                 + (f"{len(known)}: {', '.join(known)}; name one" if known else "none"))
            model_id = known[0] if known else ""
        candidates = [e for e in self.endpoints if e.model_id == model_id]
        self.count(model_id, known=bool(candidates))
        if not candidates:
            if not self.node_connected:
                raise ModelUnavailable("the node agent is not reachable yet; retry shortly",
                                       {"Retry-After": str(RETRY_AFTER_S)})
            known = ", ".join(self.model_ids()) or "none"
            raise ModelNotFound(f"model {model_id!r} is not served in this mesh (served: {known})")
        serving = [e for e in candidates if e.serving]
        if not serving:
            doing = "loading" if any(e.state == "loading" for e in candidates) else "not available (failed)"
            raise ModelUnavailable(f"model {model_id!r} is {doing}; retry shortly",
                                   {"Retry-After": str(RETRY_AFTER_S)})
        # The least busy; this node's own first; ties at random. (A fixed tie-break by node id
        # gave every idle request to whoever ground the lowest id: issue 28.)
        best = min((self.in_flight[e.key], not e.local) for e in serving)
        return self.rng.choice([e for e in serving if (self.in_flight[e.key], not e.local) == best])

    def count(self, model_id: str, known: bool) -> None:
        name = demand_name(model_id)
        if name is None or not self.node_connected:
            return
        if not known and name not in self.requests:
            served = {e.model_id for e in self.endpoints}
            if sum(1 for m in self.requests if m not in served) >= MAX_UNSERVED_NAMES:
                return
        self.requests[name] += 1

    def begin(self, endpoint: Endpoint) -> None:
        """A request to `endpoint` starts; pair with end() when its response is done."""
        self.in_flight[endpoint.key] += 1

    def end(self, endpoint: Endpoint) -> None:
        self.in_flight[endpoint.key] -= 1
        if self.in_flight[endpoint.key] <= 0:
            del self.in_flight[endpoint.key]
