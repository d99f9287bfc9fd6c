// The chat: streams /api/chat (the node's own API), Enter sends, Shift+Enter is a new line,
// Stop aborts; each reply shows its time to first token and tokens/s; the conversation
// is kept in localStorage across reloads; replies are rendered by markdown.js (no HTML).
import { $, el } from "./dom.js";
import { render } from "./markdown.js";

const KEY = "mesh-llm-chat";
// A reply is the model's server's to write, and that server may be a stranger's: past this
// many characters the page stops reading it (the request asks for 256 tokens).
const MAX_REPLY_CHARS = 256 * 1024;
let history = [];
let controller = null;

function save() {
  try {
    localStorage.setItem(KEY, JSON.stringify({ model: $("chat-model").value, history }));
  } catch (err) {  // storage full or refused: the chat goes on, unsaved
    console.warn("the chat history was not saved:", err.message);
  }
}

function message(role, text, stats) {
  const body = role === "assistant" ? render(text) : el("div", { class: "body", text });
  body.classList.add("body");
  const div = el("div", { class: `msg ${role}` }, el("div", { class: "who", text: role === "user" ? "you" : "model" }),
                 body, stats ? el("div", { class: "stats", text: stats }) : null);
  $("chat-log").append(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

function statsText(tokens, ttft, seconds) {
  const rate = tokens > 1 && seconds > 0 ? ` · ${((tokens - 1) / seconds).toFixed(1)} tokens/s` : "";
  return `${tokens} tokens · first token after ${Math.round(ttft)} ms${rate}`;
}

export function restoreChat() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || "{}");
    history = Array.isArray(saved.history) ? saved.history : [];
    for (const m of history) message(m.role, m.content, m.stats);
    return saved.model || "";
  } catch {
    history = [];
    return "";
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  const model = $("chat-model").value;
  if (!text || controller) return;
  if (!model) { message("error", "no model is serving yet"); return; }
  $("chat-input").value = "";
  history.push({ role: "user", content: text });
  message("user", text);
  const out = message("assistant", "");
  $("chat-send").disabled = true;
  $("chat-stop").hidden = false;
  controller = new AbortController();
  let reply = "", tokens = 0, first = 0, drawn = "", cut = false, failed = false;
  const draw = () => {  // at most once a frame: a fast stream does not re-render per token
    if (failed || drawn === reply) return;
    out.querySelector(".body").replaceWith(Object.assign(render(reply), { className: "body" }));
    drawn = reply;
  };
  let frame = 0;
  const started = performance.now();
  try {
    const resp = await fetch("/api/chat", {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: controller.signal,
      body: JSON.stringify({ model, messages: history.map(({ role, content }) => ({ role, content })),
                             stream: true, max_tokens: 256 }),
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
      if (reply.length > MAX_REPLY_CHARS) {
        cut = true;
        await reader.cancel();
        break;
      }
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
        if (delta && delta.content) {
          if (!tokens) first = performance.now() - started;
          tokens += 1;
          reply += delta.content;
          if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
        }
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") {
      failed = true;
      out.className = "msg error";
      out.querySelector(".body").textContent = "error: " + err.message;
      history.pop();
      save();
      return;
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    frame = 0;
    draw();
    controller = null;
    $("chat-send").disabled = false;
    $("chat-stop").hidden = true;
  }
  if (!reply) out.querySelector(".body").textContent = "(the model ended its reply at once)";
  if (cut) out.append(el("div", { class: "muted", text: `(the reply was cut at ${MAX_REPLY_CHARS / 1024} KB)` }));
  const stats = statsText(tokens, first, (performance.now() - started - first) / 1000);
  out.append(el("div", { class: "stats", text: stats }));
  history.push({ role: "assistant", content: reply, stats });
  save();
}

export function setupChat() {
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("chat-stop").addEventListener("click", () => controller && controller.abort());
  $("chat-clear").addEventListener("click", () => { history = []; $("chat-log").replaceChildren(); save(); });
  $("chat-model").addEventListener("change", save);
}

export function setModels(models, preferred) {
  const select = $("chat-model");
  const current = select.value || preferred;
  const names = models.map((m) => m.model);
  select.replaceChildren(...models.map((m) => el("option", {
    value: m.model, text: `${m.model} — ${m.split.length > 1 ? `split over ${m.split.length} nodes` : m.nodes[0] || "nowhere"} (${m.state})`,
  })));
  if (names.includes(current)) select.value = current;
  else { const serving = models.find((m) => m.state === "serving"); if (serving) select.value = serving.model; }
}
