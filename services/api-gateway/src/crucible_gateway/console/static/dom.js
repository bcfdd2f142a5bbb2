// Building the page: h() makes elements (text is always text, never HTML), plus formatters.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") node.className = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const badge = (text, kind = text) => h("span", { class: `badge ${kind ?? ""}` }, text ?? "—");

export function table(headers, rows, { empty = "nothing yet", label } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { "aria-label": label },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.endsWith(" ") ? "num" : null }, x.trim())))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) =>
      h("td", { class: typeof cell === "number" ? "num" : null }, cell))))));
}

export function stat(label, value, attrs = {}) {
  return h("div", { class: "stat", ...attrs }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));
}

export const pct = (share) => (share === null || share === undefined ? "—" : `${Math.round(share * 1000) / 10} %`);
export const ms = (value) => (value === null || value === undefined ? "—" : value >= 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
export const ago = (iso) => {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - new Date(iso)) / 1000);
  return seconds < 90 ? `${Math.round(seconds)} s ago` : seconds < 5400 ? `${Math.round(seconds / 60)} min ago` : when(iso);
};
export const evalLink = (eval_id) => h("a", { href: `#/evaluation/${encodeURIComponent(eval_id)}`, class: "mono" }, eval_id);
export const card = (title, ...body) => h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...body);
