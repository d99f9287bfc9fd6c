// Mesh LLM console: everything comes from /api/status and /api/events (SSE); the page
// redraws on each status event. Values from the mesh are inserted as text, never as HTML.
import { $, el, fillTable, gib, pill, short } from "./dom.js";
import { drawTopology } from "./topology.js";
import { drawMemory } from "./memory.js";
import { meshModels } from "./mesh.js";
import { restoreChat, setModels, setupChat } from "./chat.js";

let latest = null;
let rates = {};          // worker id -> bytes/s on its RPC link (this node hosts the split)
let lastLinks = null;    // [time, {worker: bytes}]
const preferredModel = restoreChat();
window.meshConsole = { renders: 0, lastRender: 0, eventsSeen: 0 };  // for the browser tests' timings

function modelNote(m) {
  if (m.worker) {
    const w = m.worker;
    return `layers ${w.first_layer}-${w.first_layer + w.layers - 1} of ${w.total_layers} for host ${short(w.host)}`;
  }
  const draft = m.draft ? `draft ${m.draft} (${Math.round(100 * m.draft_acceptance)}% accepted)` : "";
  return [m.reason || (m.restarts ? `${m.restarts} restarts` : ""), draft].filter(Boolean).join("; ");
}

function time(t) { return el("time", { text: new Date(t * 1000).toLocaleTimeString() }); }

function addChange(when, text) {
  $("changes").prepend(el("li", {}, time(when), document.createTextNode(text)));
  while ($("changes").children.length > 100) $("changes").lastChild.remove();
}

function updateRates(s) {
  const now = performance.now() / 1000;
  const bytes = Object.fromEntries((s.rpc_links || []).map((l) => [l.peer, l.bytes_to_worker + l.bytes_from_worker]));
  if (lastLinks && now > lastLinks[0]) {
    rates = Object.fromEntries(Object.entries(bytes).filter(([w]) => w in lastLinks[1])
      .map(([w, b]) => [w, Math.max(0, b - lastLinks[1][w]) / (now - lastLinks[0])]));
  }
  lastLinks = [now, bytes];
}

function render(s) {
  const state = s.node_state || "unreachable";
  $("node-state").textContent = state;
  $("node-state").className = "pill " + state;
  if (!s.node_id) return;
  latest = s;
  $("node-id").textContent = s.node_id;
  $("mesh-id").textContent = s.mesh_id || "–";
  $("api").textContent = `${location.protocol}//${location.hostname}:${s.api_port}/v1`;
  $("version").textContent = s.version;
  const client = state === "client" || state === "joining";
  $("token-box").hidden = client || !s.token && !s.token_hidden;
  $("role-note").hidden = !client;
  $("role-note").textContent = client ? "An API-only client of this mesh: it serves no models and has no invite token to give." : "";
  if (s.token_hidden) {
    $("token").value = "";
    $("token").placeholder = "shown only on this machine (open the console at 127.0.0.1)";
  } else if ($("token").value !== s.token) $("token").value = s.token;
  fillTable("own-models", s.models.map((m) => [m.name, pill(m.state), gib(m.size_bytes / 2 ** 30), modelNote(m)]), 4,
            client ? "a client runs no models" : "none: a standby (it serves what the mesh asks of it)");
  const models = meshModels(s);
  fillTable("models", models.map((m) => [m.model,
    m.split.length > 1 ? `split: ${m.split.map((p) => `${short(p.node_id)} ${p.layers} layers`).join(", ")}`
                       : m.nodes.join(", ") || "nowhere yet", pill(m.state), m.demand]), 4, "no models yet");
  fillTable("rebalances", (s.rebalances || []).slice().reverse().map((r) => [
    time(r.time), r.node_id === s.node_id ? "this node" : short(r.node_id), r.model, r.action, r.reason]), 5, "none yet");
  updateRates(s);
  drawTopology($("topology"), s, rates);
  drawMemory($("memory"), s);
  setModels(models, preferredModel);
  window.meshConsole.latest = s;
  window.meshConsole.renders += 1;
  window.meshConsole.lastRender = Date.now();
}

function connect() {
  const events = new EventSource("/api/events");
  let first = true;
  events.addEventListener("status", (e) => {
    $("conn").textContent = "live";
    $("conn").className = "pill live";
    const s = JSON.parse(e.data);
    if (first && s.history) {  // the node's recent changes, not only those since the page loaded
      $("changes").replaceChildren();
      s.history.forEach((h) => addChange(h.time, h.text));
      first = false;
    }
    window.meshConsole.eventsSeen += 1;
    render(s);
  });
  events.addEventListener("change", (e) => { const c = JSON.parse(e.data); addChange(c.time, c.text); });
  events.onerror = () => { first = true; $("conn").textContent = "reconnecting…"; $("conn").className = "pill down"; };
}

// RPC byte counters do not produce events: while this node hosts a split, read them every 2 s.
setInterval(async () => {
  if (!latest || !(latest.rpc_links || []).length) return;
  try {
    const resp = await fetch("/api/status");
    if (resp.ok) render(await resp.json());
  } catch { /* the next event redraws */ }
}, 2000);

window.addEventListener("resize", () => latest && drawTopology($("topology"), latest, rates));
$("copy-token").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("token").value));
setupChat();
connect();
