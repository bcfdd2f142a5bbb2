// Small SVG charts drawn here (no library): lines over time and grouped bars. Every mark has a
// <title> with its value, and every chart a table-free text summary in aria-label.

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 220;
const PAD = { left: 52, right: 12, top: 12, bottom: 30 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// The top of the y axis; counts get whole-number ticks (4 steps of one or more).
function yMax(top, integer) {
  return integer ? Math.max(4, Math.ceil(niceMax(top) / 4) * 4) : niceMax(top);
}

function frame(svg, maxY, format) {
  // Tick labels as precise as the ticks are apart.
  const tick = format || ((v) => String(v));
  const plotH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + plotH - (plotH * i) / 4;
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, stroke: "#e3e6ec" }));
    svg.append(el("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6678" },
      tick((maxY * i) / 4)));
  }
}

function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const item of series) {
    const entry = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = item.color;
    if (item.dashed) swatch.style.opacity = ".55";
    entry.append(swatch, item.name);
    box.append(entry);
  }
  return box;
}

function wrap(svg, series, label) {
  const figure = document.createElement("div");
  figure.className = "chart";
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  figure.append(svg, legend(series));
  return figure;
}

// series: [{name, color, dashed?, points: [[Date|number, number|null]]}]; x is time.
export function lineChart({ series, label, format = (v) => String(Math.round(v * 10) / 10), xFormat, integer = false }) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}` });
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const xs = series.flatMap((s) => s.points.map((p) => +p[0]));
  const maxY = yMax(Math.max(0, ...all.map((p) => p[1])), integer);
  frame(svg, maxY, format);
  if (!xs.length) return wrap(svg, series, `${label}: no data`);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const px = (x) => PAD.left + (x1 === x0 ? plotW / 2 : ((+x - x0) / (x1 - x0)) * plotW);
  const py = (y) => PAD.top + plotH - (y / maxY) * plotH;
  const fmtX = xFormat || ((x) => new Date(x).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }));
  const ticks = x1 === x0 ? [[x0, "middle"]] : [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]];
  for (const [x, anchor] of ticks) {
    svg.append(el("text", { x: px(x), y: H - 8, "text-anchor": anchor, "font-size": 11, fill: "#5d6678" }, fmtX(x)));
  }
  for (const item of series) {
    const points = item.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (!points.length) continue;
    const d = points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("path", { d, fill: "none", stroke: item.color, "stroke-width": 2,
      "stroke-dasharray": item.dashed ? "5 4" : "none", "data-series": item.name }));
    for (const p of points) {
      const dot = el("circle", { cx: px(p[0]), cy: py(p[1]), r: 3, fill: item.color, "data-value": p[1] });
      dot.append(el("title", {}, `${item.name} at ${fmtX(+p[0])}: ${format(p[1])}`));
      svg.append(dot);
    }
  }
  const last = series.map((s) => {
    const points = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    return points.length ? `${s.name} ${format(points[points.length - 1][1])}` : `${s.name} none`;
  });
  return wrap(svg, series, `${label}; latest: ${last.join(", ")}`);
}

// groups: [{label, values: [number|null per series]}]; series: [{name, color}].
export function barChart({ groups, series, label, format = (v) => String(Math.round(v * 10) / 10), integer = false }) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}` });
  const values = groups.flatMap((g) => g.values.filter((v) => v !== null && v !== undefined));
  const maxY = yMax(Math.max(0, ...values), integer);
  frame(svg, maxY, format);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, groups.length);
  const bar = Math.min(40, (slot * 0.8) / Math.max(1, series.length));
  groups.forEach((group, g) => {
    const start = PAD.left + slot * g + (slot - bar * series.length) / 2;
    svg.append(el("text", { x: PAD.left + slot * g + slot / 2, y: H - 8, "text-anchor": "middle",
      "font-size": 11, fill: "#5d6678" }, group.label));
    group.values.forEach((value, s) => {
      if (value === null || value === undefined) return;
      const h = (value / maxY) * plotH;
      const rect = el("rect", { x: start + bar * s, y: PAD.top + plotH - h, width: bar - 2,
        height: Math.max(h, 0.5), fill: series[s].color, "data-value": value });
      rect.append(el("title", {}, `${series[s].name}, ${group.label}: ${format(value)}`));
      svg.append(rect);
    });
  });
  const summary = groups.map((g) => `${g.label}: ${g.values.map((v, s) => `${series[s].name} ${v === null || v === undefined ? "none" : format(v)}`).join(", ")}`);
  return wrap(svg, series, `${label}. ${summary.join("; ")}`);
}
