// Mesh LLM console: renders /api/events (SSE) live and runs a chat through /api/chat.
// Every value from the mesh is inserted as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];

function gib(bytes) { return (bytes / 2 ** 30).toFixed(2) + " GiB"; }
function short(id) { return id ? id.slice(0, 12) : "–"; }

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function pill(text) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = "pill " + text;
  span.textContent = text;
  td.appendChild(span);
  return td;
}
function fillTable(id, rows, columns, empty) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(empty, "muted");
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    cells.forEach((c) => tr.appendChild(c));
    body.appendChild(tr);
  }
}

function modelNote(m) {
  if (m.worker) {  // a split's worker: which layers, for which host
    const w = m.worker, last = w.first_layer + w.layers - 1;
    return "layers " + w.first_layer + "-" + last + " of " + w.total_layers + " for host " + short(w.host);
  }
  const draft = m.draft ? "draft " + m.draft + " (" + Math.round(100 * m.draft_acceptance) + "% accepted)" : "";
  return [m.reason || (m.restarts ? m.restarts + " restarts" : ""), draft].filter(Boolean).join("; ");
}

function render(s) {
  const state = s.node_state || "unreachable";
  $("node-state").textContent = state;
  $("node-state").className = "pill " + state;
  if (!s.node_id) return;
  $("node-id").textContent = s.node_id;
  $("mesh-id").textContent = s.mesh_id;
  $("vram").textContent = s.my_vram_gb + " GiB";
  $("api").textContent = location.protocol + "//" + location.hostname + ":" + s.api_port + "/v1";
  $("version").textContent = s.version;
  if (s.token_hidden) {  // the secret is shown only to a browser on the node's own machine
    $("token").value = "";
    $("token").placeholder = "shown only on this machine (open the console at 127.0.0.1)";
  } else if ($("token").value !== s.token) $("token").value = s.token;
  fillTable("models", s.models.map((m) => [cell(m.name), pill(m.state), cell(gib(m.size_bytes)),
    cell(modelNote(m), "muted")]), 4, "no models");
  fillTable("routes", s.routes.map((r) => [cell(r.model), cell(short(r.node_id)),
    cell(r.local ? "this node" : "remote"), pill(r.state)]), 4, "no routes");
  fillTable("peers", s.peers.map((p) => [cell(short(p.id)), cell(p.role), pill(p.state),
    cell(p.vram_gb + " GiB (" + p.free_gb + " free)"),
    cell(p.serving.map((m) => p.promoted[m] ? m + " (promoted)" : m).join(", ")),
    cell(Object.keys(p.spare).join(", "), "muted"), cell(p.rtt_ms + " ms")]), 7, "no peers");
  const standbys = (m) => s.peers.filter((p) => p.state === "alive" && m in p.spare).length + (m in s.spare ? 1 : 0);
  fillTable("demand", s.demand.map((d) => [cell(d.model), cell(String(d.requests_per_min)),
    cell(d.servers + (d.promoting ? " (+1 loading)" : "")), cell(String(standbys(d.model)))]), 4, "no requests yet");
  fillTable("rebalances", s.rebalances.slice().reverse().map((r) => [
    cell(new Date(r.time * 1000).toLocaleTimeString()), cell(r.node_id === s.node_id ? "this node" : short(r.node_id)),
    cell(r.model), cell(r.action), cell(r.reason, "muted")]), 5, "none yet");
  const select = $("chat-model");
  const models = [...new Set(s.routes.filter((r) => r.state === "serving").map((r) => r.model))];
  const current = select.value;
  select.replaceChildren(...models.map((m) => { const o = document.createElement("option"); o.value = o.textContent = m; return o; }));
  if (models.includes(current)) select.value = current;
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("status", (e) => {
    $("conn").textContent = "live";
    $("conn").className = "pill live";
    render(JSON.parse(e.data));
  });
  events.addEventListener("change", (e) => {
    const li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + "  " + JSON.parse(e.data).text;
    $("changes").prepend(li);
    while ($("changes").children.length > 20) $("changes").lastChild.remove();
  });
  events.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "pill down"; };
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("chat-log").appendChild(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  const model = $("chat-model").value;
  if (!text) return;
  if (!model) { addMessage("error", "no model is serving yet"); return; }
  $("chat-input").value = "";
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  $("chat-send").disabled = true;
  let reply = "";
  try {
    const resp = await fetch("/api/chat", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: history, stream: true, max_tokens: 256 }),
    });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || resp.statusText);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) { reply += delta.content; out.textContent = reply; }
      }
    }
    if (!reply) out.textContent = "(the model ended its reply at once)";
    history.push({ role: "assistant", content: reply });
  } catch (err) {
    out.className = "msg error";
    out.textContent = "error: " + err.message;
    history.pop();
  } finally {
    $("chat-send").disabled = false;
  }
}

$("copy-token").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("token").value));
$("chat-form").addEventListener("submit", send);
$("chat-clear").addEventListener("click", () => { history.length = 0; $("chat-log").replaceChildren(); });
connect();
