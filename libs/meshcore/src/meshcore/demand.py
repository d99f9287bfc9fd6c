"""Demand per model, pure: requests per minute over a sliding window.

A proxy counts every request by the model it names, since it started (served,
loading or not served at all: a 404 is demand too). Whoever gossips demand (the node
agent for its proxy, a client-only proxy for itself) feeds those running totals to
a DemandMeter with the time, and publishes `rates()`: requests seen in the last
WINDOW_S, per minute, whole numbers. Old requests fall out of the window, so demand
ages out by itself when requests stop — or when the proxy stops reporting.

Bounds (a proxy names whatever clients send): at most MAX_MODELS models are tracked;
names are the proxy's to vet (mesh_proxy.routes.demand_name).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0
MAX_MODELS = 64


@dataclass
class DemandMeter:
    window_s: float = WINDOW_S
    last: dict[str, int] = field(default_factory=dict)                          # running totals last seen
    events: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)   # (time, new requests)

    def observe(self, totals: dict[str, int], now: float) -> None:
        """The proxy's running totals at `now`. A total lower than last time means the
        proxy restarted: all of it is new."""
        for model, total in totals.items():
            before = self.last.get(model, 0)
            new = total - before if total >= before else total
            self.last[model] = total
            if new > 0 and (model in self.events or len(self.events) < MAX_MODELS):
                self.events.setdefault(model, deque()).append((now, new))

    def rates(self, now: float) -> dict[str, int]:
        """Requests per minute per model over the window (models with none left out)."""
        out = {}
        for model in list(self.events):
            seen = self.events[model]
            while seen and seen[0][0] <= now - self.window_s:
                seen.popleft()
            if not seen:
                del self.events[model]
                continue
            per_minute = round(sum(n for _, n in seen) * 60.0 / self.window_s)
            if per_minute:
                out[model] = per_minute
        return out
