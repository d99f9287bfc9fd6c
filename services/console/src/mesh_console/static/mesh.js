// The mesh as the page draws it, derived from one /api/status view (pure).
// A member's role: host (runs a split's llama-server), worker (holds a split's layers),
// serving (serves a model alone), standby (serves nothing), client (API only), dead.

export function members(s) {
  const splits = s.routes.filter((r) => r.split && r.split.length > 1 && r.node_id);
  const roleOf = (id, role, state, serving) => {
    if (state !== "alive") return "dead";
    if (role === "client") return "client";
    if (splits.some((r) => r.node_id === id)) return "host";
    if (splits.some((r) => r.split.some((p) => p.node_id === id))) return "worker";
    return serving.length ? "serving" : "standby";
  };
  const layersOf = (id) => splits.flatMap((r) => r.split.filter((p) => p.node_id === id && r.node_id !== id)
    .map((p) => `${r.model}: ${p.layers} layers`));
  const meServing = s.models.filter((m) => m.state === "serving").map((m) => m.name);
  const me = {
    id: s.node_id, me: true, state: "alive", rtt: 0, offered: s.my_vram_gb,
    free: s.my_free_gb ?? s.my_vram_gb, serving: meServing,
    role: s.node_state === "client" ? "client" : roleOf(s.node_id, "node", "alive", meServing),
  };
  const peers = s.peers.map((p) => ({
    id: p.id, me: false, state: p.state, rtt: p.rtt_ms, offered: p.vram_gb, free: p.free_gb ?? p.vram_gb,
    serving: p.serving, role: roleOf(p.id, p.role, p.state, p.serving),
  }));
  return [me, ...peers].map((m) => ({ ...m, layers: layersOf(m.id) }));
}

// Split links: host -> worker, with the layers the worker holds.
export function splitLinks(s) {
  return s.routes.filter((r) => r.split && r.split.length > 1 && r.node_id).flatMap((r) =>
    r.split.filter((p) => p.node_id !== r.node_id).map((p) => ({ model: r.model, host: r.node_id, worker: p.node_id,
                                                                 layers: p.layers })));
}

// Every model the mesh knows, where it runs and its state, with its demand.
export function meshModels(s) {
  const demand = new Map((s.demand || []).map((d) => [d.model, d.requests_per_min]));  // a Map: "toString" is a name
  const byModel = new Map();
  for (const r of s.routes) {
    const entry = byModel.get(r.model) || { model: r.model, nodes: [], state: r.state, split: [] };
    if (r.node_id) entry.nodes.push(r.local ? "this node" : r.node_id.slice(0, 12));
    if (r.split && r.split.length > 1) entry.split = r.split;
    if (r.state === "serving") entry.state = "serving";
    byModel.set(r.model, entry);
  }
  return [...byModel.values()].sort((a, b) => a.model.localeCompare(b.model))
    .map((m) => ({ ...m, demand: demand.get(m.model) || 0 }));
}
