// Small DOM helpers. Everything from the mesh or a model goes in as text, never as HTML.
export const $ = (id) => document.getElementById(id);
export const short = (id) => (id ? id.slice(0, 12) : "–");
export const gib = (n) => `${Number(n).toFixed(2)} GiB`;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") Object.assign(node.style, v);  // an object: the page's CSP allows no style attribute
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function fillTable(id, rows, columns, empty) {
  const body = $(id).querySelector("tbody");
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { class: "muted", colspan: String(columns), text: empty })));
    return;
  }
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) =>
    c instanceof Node ? el("td", {}, c) : el("td", { text: String(c) })))));
}

export const pill = (word) => el("span", { class: `pill ${word}`, text: word });
