// One bar per member: memory offered, used by its models, free; one scale for all.
import { members } from "./mesh.js";
import { el, gib, short } from "./dom.js";

export function drawMemory(container, s) {
  const list = members(s).filter((m) => m.role !== "client" && m.state === "alive");
  const scale = Math.max(...list.map((m) => m.offered), 1e-9);
  container.replaceChildren(...list.map((m) => {
    const used = Math.max(0, m.offered - m.free);
    const meter = el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": m.offered.toFixed(2),
                              "aria-valuenow": used.toFixed(2), "data-node-id": m.id,
                              "aria-label": `${m.me ? "this node" : "node " + short(m.id)}: ${gib(used)} used of ${gib(m.offered)} offered, ${gib(m.free)} free` },
      el("span", { class: "offered", style: { width: `${(100 * m.offered) / scale}%` } }),
      el("span", { class: "used", style: { width: `${(100 * used) / scale}%` } }));
    return el("div", { class: "mem" },
      el("div", { class: "label" }, el("span", { text: m.me ? "this node" : short(m.id) }),
        el("span", { class: "muted", text: `${gib(used)} used · ${gib(m.free)} free · ${gib(m.offered)} offered` })),
      meter);
  }));
}
