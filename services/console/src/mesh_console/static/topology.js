// The mesh as an SVG graph: one <g data-node-id> per member (its role, its models), a line
// from this node to each peer labelled with the RTT, and each split drawn as thick lines
// from its host to its workers with the layers they hold, the bytes/s on each RPC link and
// the path the link takes (direct TCP+TLS, or the mesh's QUIC stream as a fallback).
import { members, splitLinks } from "./mesh.js";
import { short } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const R = 32;
let W = 900, H = 460;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function place(list) {
  // This node in the middle, the others around it (ordered by id, so nobody jumps around).
  const pos = new Map();
  const others = list.filter((m) => !m.me).sort((a, b) => a.id.localeCompare(b.id));
  const me = list.find((m) => m.me);
  if (me) pos.set(me.id, [W / 2, H / 2]);
  const rx = W / 2 - (W < 600 ? 60 : 110), ry = H / 2 - 70;
  others.forEach((m, i) => {
    const a = -Math.PI / 2 + Math.PI / 5 + (2 * Math.PI * i) / Math.max(others.length, 1);
    pos.set(m.id, [W / 2 + rx * Math.cos(a), H / 2 + ry * Math.sin(a)]);
  });
  return pos;
}

const PATHS = { direct: "direct TCP+TLS", quic: "QUIC fallback" };
const rate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} MB/s` : bps >= 1e3 ? `${(bps / 1e3).toFixed(1)} kB/s`
  : `${Math.round(bps)} B/s`);

export function drawTopology(container, s, rates = {}) {
  // The drawing's own width follows the card's, so its text stays readable on a phone.
  W = Math.max(320, Math.min(1000, container.clientWidth || 900));
  H = W < 600 ? Math.round(W * 1.25) : 460;
  const list = members(s);
  const pos = place(list);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" });
  const me = list.find((m) => m.me);
  for (const m of list) {
    if (m.me || !me) continue;
    const [x1, y1] = pos.get(me.id), [x2, y2] = pos.get(m.id);
    root.append(svg("line", { class: "peer", x1, y1, x2, y2, "data-peer": m.id }));
    if (m.state === "alive") {
      root.append(svg("text", { class: "edge", x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4 }, `${m.rtt.toFixed(1)} ms`));
    }
  }
  const paths = Object.fromEntries((s.rpc_links || []).map((l) => [l.peer, PATHS[l.path]]));
  for (const link of splitLinks(s)) {
    if (!pos.has(link.host) || !pos.has(link.worker)) continue;
    const [x1, y1] = pos.get(link.host), [x2, y2] = pos.get(link.worker);
    root.append(svg("line", { class: "rpc", x1, y1, x2, y2, "data-host": link.host, "data-worker": link.worker }));
    const bps = rates[link.worker];
    const label = `${link.model}: ${link.layers} layers` + (bps !== undefined ? ` · ${rate(bps)}` : "")
      + (paths[link.worker] ? ` · ${paths[link.worker]}` : "");
    root.append(svg("text", { class: "edge rpc", x: (x1 + x2) / 2, y: (y1 + y2) / 2 + 14 }, label));
  }
  for (const m of list) {
    const [x, y] = pos.get(m.id);
    const g = svg("g", { class: `node ${m.role}${m.me ? " me" : ""}`, "data-node-id": m.id, "data-role": m.role,
                         transform: `translate(${x},${y})` });
    g.append(svg("title", {}, `${m.id} — ${m.role}${m.me ? " (this node)" : ""}`));
    g.append(svg("circle", { r: R }));
    g.append(svg("text", { y: -2 }, m.me ? "this node" : short(m.id).slice(0, 8)));
    g.append(svg("text", { class: "sub", y: 13 }, m.role));
    const models = [...m.serving, ...m.layers].slice(0, 3);
    models.forEach((t, i) => g.append(svg("text", { class: "sub", y: R + 15 + 13 * i }, t)));
    root.append(g);
  }
  container.replaceChildren(root);
}
