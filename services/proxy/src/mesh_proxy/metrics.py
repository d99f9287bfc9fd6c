"""`GET /metrics`: Prometheus text for this proxy and its node (prometheus_client).

The proxy's own, per model and per route (`local`: this node's llama-server;
`remote`: another node, over the mesh) and per API family:
- mesh_llm_requests_total{model, route, family, status}: answered requests;
- mesh_llm_errors_total{family, code}: requests the proxy refused or could not route
  (bad JSON, unknown model, loading, backend gone, ...);
- mesh_llm_time_to_first_byte_seconds{model, route}: from the request's arrival to the
  first byte of the answer (for a stream: its first event, about the first token);
- mesh_llm_completion_tokens_total{model, route}: tokens generated, from the answer's
  `usage` (`completion_tokens`, `output_tokens`), or one per streamed event when a
  stream carries no usage — `rate()` of it is tokens/s.
The node's, read from the node agent's latest status (absent on a client-only proxy):
- mesh_llm_memory_offered_bytes; mesh_llm_models{state}; mesh_llm_peers{role, state};
- mesh_llm_rpc_bytes_total{peer, model, direction} of the splits this node hosts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from meshcore.api import node_pb2 as pb
from meshcore.model_state import word

TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
USAGE_PARSE_MAX = 256 * 1024


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("mesh_llm_requests", "API requests answered by a backend",
                                ["model", "route", "family", "status"], registry=self.registry)
        self.errors = Counter("mesh_llm_errors", "API requests the proxy refused or could not route",
                              ["family", "code"], registry=self.registry)
        self.ttfb = Histogram("mesh_llm_time_to_first_byte_seconds", "Arrival to the first byte of the answer",
                              ["model", "route"], buckets=TTFB_BUCKETS, registry=self.registry)
        self.tokens = Counter("mesh_llm_completion_tokens", "Tokens generated (usage, or one per streamed event)",
                              ["model", "route"], registry=self.registry)
        self.node_status: pb.NodeStatus | None = None
        self.registry.register(_NodeCollector(self))
        # labelled children, looked up once per label set (prometheus_client's labels() takes a
        # lock and builds a key each call: a good part of a request's bookkeeping)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child

    def answered(self, model: str, route: str, family: str, status: int) -> None:
        self._child(self.requests, model, route, family, str(status)).inc()

    def first_byte(self, model: str, route: str, started: float, at: float | None = None) -> None:
        """The first body byte came at `at` (time.monotonic(); now if None)."""
        self._child(self.ttfb, model, route).observe((time.monotonic() if at is None else at) - started)

    def refused(self, family: str, code: str | None) -> None:
        self.errors.labels(family, code or "error").inc()

    def usage_tokens(self, model: str, route: str, body: bytes) -> None:
        """Tokens from a whole (not streamed) answer's usage, if it says. Bodies over
        USAGE_PARSE_MAX (embeddings of big batches) are not parsed on the request path."""
        if len(body) > USAGE_PARSE_MAX:
            return
        try:
            usage = json.loads(body).get("usage") or {}
        except (ValueError, AttributeError):
            return
        n = usage.get("completion_tokens", usage.get("output_tokens")) if isinstance(usage, dict) else None
        if isinstance(n, int) and n > 0:
            self._child(self.tokens, model, route).inc(n)

    def stream_events(self, model: str, route: str, events: int) -> None:
        if events:
            self._child(self.tokens, model, route).inc(events)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector:
    """Gauges from the node agent's latest status, read at scrape time."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        status = self.metrics.node_status
        if status is None:
            return
        memory = GaugeMetricFamily("mesh_llm_memory_offered_bytes", "Memory this node offers for weights")
        memory.add_metric([], status.my_vram_gb * (1 << 30))
        yield memory
        models = GaugeMetricFamily("mesh_llm_models", "This node's models by state", labels=["state"])
        counts: dict[str, int] = {}
        for model in status.models:
            counts[word(model.state)] = counts.get(word(model.state), 0) + 1
        for state, n in sorted(counts.items()):
            models.add_metric([state], n)
        yield models
        peers = GaugeMetricFamily("mesh_llm_peers", "Members of the mesh this node knows", labels=["role", "state"])
        by: dict[tuple[str, str], int] = {}
        for peer in status.peers:
            by[(peer.role, peer.state)] = by.get((peer.role, peer.state), 0) + 1
        for (role, state), n in sorted(by.items()):
            peers.add_metric([role, state], n)
        yield peers
        rpc = CounterMetricFamily("mesh_llm_rpc_bytes", "Bytes on the RPC links of splits this node hosts",
                                  labels=["peer", "model", "direction"])
        for link in status.rpc_links:
            rpc.add_metric([link.peer, link.model, "to_worker"], link.bytes_to_worker)
            rpc.add_metric([link.peer, link.model, "from_worker"], link.bytes_from_worker)
        yield rpc
