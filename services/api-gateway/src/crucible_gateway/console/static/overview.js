// Overview: throughput and latency per path, queue depths (sampled), executors, workers.

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { ago, badge, card, evalLink, h, ms, pct, replace, stat, table } from "./dom.js";

export const COLORS = { legacy: "#b35c00", celery: "#1f6fb2" };
const PATHS = ["legacy", "celery"];
const SAMPLE_MS = 5000;
const MAX_SAMPLES = 120;
// Queue-depth samples survive a visit to another page.
const samples = [];

function depthOf(queues, backend) {
  const part = queues[backend] || {};
  if (part.error) return null;
  return backend === "legacy" ? (part.queued ?? 0) + (part.processing ?? 0) : part.total ?? 0;
}

function oldestAge(part) {
  // The queue-service says oldest_queued_age_s; the broker's view may say oldest_age_seconds
  // (overall, or per queue).
  const value = part.oldest_age_seconds ?? part.oldest_queued_age_s;
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return Object.entries(value).map(([q, s]) => `${q} ${Math.round(s)} s`).join(", ") || "—";
  return `${Math.round(value)} s`;
}

function throughput(series, bucketSeconds) {
  const perMinute = 60 / bucketSeconds;
  return lineChart({
    label: "Evaluations started per minute, per path",
    format: (v) => v.toFixed(v < 10 ? 1 : 0),
    series: PATHS.map((backend) => ({
      name: backend,
      color: COLORS[backend],
      points: series.map((b) => [new Date(b.until), (b.paths[backend]?.total ?? 0) * perMinute]),
    })),
  });
}

function latency(series) {
  return lineChart({
    label: "End-to-end latency per path (p50 solid, p95 dashed), milliseconds",
    format: (v) => ms(v),
    series: PATHS.flatMap((backend) => [
      { name: `${backend} p50`, color: COLORS[backend], points: series.map((b) => [new Date(b.until), b.paths[backend]?.p50_ms ?? null]) },
      { name: `${backend} p95`, color: COLORS[backend], dashed: true, points: series.map((b) => [new Date(b.until), b.paths[backend]?.p95_ms ?? null]) },
    ]),
  });
}

function queueTables(queues) {
  const legacy = queues.legacy || {};
  const celery = queues.celery || {};
  // A queue's entry is its depth, or an object with it (and its oldest message's age); the ages
  // may also come as one map beside the queues.
  const ages = typeof celery.oldest_age_seconds === "object" && celery.oldest_age_seconds ? celery.oldest_age_seconds : {};
  const celeryRows = Object.entries(celery.queues || {}).map(([name, entry]) => {
    const detailed = typeof entry === "object" && entry !== null;
    const depth = detailed ? entry.depth ?? entry.waiting ?? entry.messages ?? entry.total ?? "—" : entry;
    const age = detailed && entry.oldest_age_seconds !== undefined ? entry.oldest_age_seconds : ages[name];
    return [name, depth, age === undefined || age === null ? "—" : `${Math.round(age)} s`];
  });
  return h("div", {},
    h("h3", {}, "Legacy (queue-service)"),
    legacy.error ? h("p", { class: "error" }, legacy.error) : table(
      ["queued ", "processing ", "oldest waiting", "waiting consumers "],
      [[legacy.queued ?? 0, legacy.processing ?? 0, oldestAge(legacy), legacy.waiting_consumers ?? 0]],
      { label: "legacy queue" }),
    h("h3", {}, "Celery queues"),
    celery.error ? h("p", { class: "error" }, celery.error) : table(
      ["queue", "waiting ", "oldest waiting"], celeryRows, { label: "celery queues" }),
    typeof celery.oldest_age_seconds === "number" ? h("p", { class: "muted" }, `oldest Celery message: ${oldestAge(celery)}`) : null,
    h("p", {}, "Dead letters: ", h("a", { href: "#/dead-letters", "data-testid": "dead-letter-count" },
      String(queues.dead_letter?.entries ?? queues.dead_letter?.error ?? "—"))));
}

function slots(executor) {
  if (!executor.ok) return badge("down", "bad");
  const cells = [];
  for (let i = 0; i < (executor.slots ?? 0); i++) {
    cells.push(h("span", { class: i < executor.busy ? "slot busy" : "slot", "aria-hidden": "true" }));
  }
  return h("span", {}, h("span", { class: "slots" }, cells), ` ${executor.busy}/${executor.slots} busy`);
}

function executorsTable(executors) {
  return table(["executor", "status", "slots"], executors.map((e) => [
    h("span", {}, h("strong", {}, e.executor_id || "?"), h("br"), h("span", { class: "muted mono" }, e.url)),
    e.ok ? badge(e.status, e.status === "ok" ? "good" : "warn") : h("span", { class: "error" }, e.error),
    slots(e),
  ]), { empty: "the gateway knows no executor", label: "executors" });
}

function workersTable(workers) {
  if (workers.error) return h("p", { class: "error" }, workers.error);
  return table(["worker", "concurrency ", "queues", "tasks done "], Object.entries(workers.workers || {}).map(([name, w]) => [
    h("span", { class: "mono" }, name), w.concurrency ?? "—", (w.queues || []).join(", "),
    Object.values(w.tasks_total || {}).reduce((a, b) => a + b, 0),
  ]), { empty: "no Celery worker answered", label: "celery workers" });
}

export function mount(root) {
  const head = h("div", { class: "stats", "data-testid": "split" });
  const charts = h("div", { class: "grid" });
  const depth = h("div");
  const queues = h("div");
  const machines = h("div", { class: "grid" });
  const recent = h("div");
  root.append(h("h1", {}, "Overview"), head, charts,
    h("div", { class: "grid" }, card("Queue depth per path (sampled every 5 s)", depth), card("Queues", queues)),
    machines, card("Latest evaluations", recent));
  let lastSample = 0;

  async function refresh() {
    const [data, latest] = await Promise.all([
      // The default window: the last ten minutes in twenty buckets.
      api("/api/admin/overview", { query: { window: "10m", buckets: 20 } }),
      api("/api/evaluations", { query: { limit: 8 } }),
    ]);
    const m = data.migration;
    replace(head,
      stat("mode", m.mode, { "data-testid": "mode" }),
      stat("Celery share", m.force_legacy ? "paused (legacy forced)" : m.celery_enabled ? pct(m.celery_percentage) : "off", { "data-testid": "celery-share" }),
      stat("shadow share", m.mode === "shadow" ? pct(m.shadow_percentage) : "— (split mode)"),
      stat("dead letters", data.queues.dead_letter?.entries ?? "—"),
      stat("updated", ago(data.generated_at)));
    if (Array.isArray(data.series)) {
      replace(charts,
        card("Throughput (per minute)", throughput(data.series, data.bucket_seconds)),
        card("Latency, end to end", latency(data.series)));
    } else {
      replace(charts, card("Throughput and latency", h("p", { class: "error" }, data.series.error)));
    }
    if (Date.now() - lastSample >= SAMPLE_MS - 500 || !samples.length) {
      lastSample = Date.now();
      samples.push({ at: new Date(data.generated_at), legacy: depthOf(data.queues, "legacy"), celery: depthOf(data.queues, "celery") });
      if (samples.length > MAX_SAMPLES) samples.shift();
    }
    replace(depth, lineChart({
      label: "Evaluations waiting or running per path, sampled",
      format: (v) => String(Math.round(v)),
      integer: true,
      series: PATHS.map((backend) => ({ name: backend, color: COLORS[backend], points: samples.map((s) => [s.at, s[backend]]) })),
    }));
    replace(queues, queueTables(data.queues));
    replace(machines,
      card("Executors", h("div", { "data-testid": "executors" }, executorsTable(data.executors))),
      card("Celery workers", h("div", { "data-testid": "workers" }, workersTable(data.workers))));
    replace(recent, table(["evaluation", "path", "status", "created", "runtime "], latest.items.map((e) => [
      evalLink(e.eval_id), badge(e.backend), badge(e.status), ago(e.created_at), ms(e.runtime_ms),
    ]), { empty: "no evaluation yet", label: "latest evaluations" }));
  }

  return { title: "Overview", refresh, intervalMs: SAMPLE_MS };
}
