// Evaluations: the latest ones, and one evaluation's timeline, runs and output.

import { api } from "./api.js";
import { ago, badge, card, evalLink, h, ms, replace, stat, table, when } from "./dom.js";

const STATUSES = ["", "queued", "running", "completed", "failed", "timeout", "cancelled", "error"];

export function mountList(root, _params, ctx) {
  const filters = { status: "", backend: "" };
  const list = h("div", { "data-testid": "evaluations" });
  const select = (name, values) => h("select", { id: name, onchange: (e) => { filters[name] = e.target.value; refresh().catch(ctx.failed); } },
    values.map((v) => h("option", { value: v }, v || "any")));
  const open = h("form", { class: "row", onsubmit: (e) => {
    e.preventDefault();
    const id = e.target.elements.eval_id.value.trim();
    if (id) location.hash = `#/evaluation/${encodeURIComponent(id)}`;
  } }, h("label", { for: "eval_id" }, "Open an evaluation by id", h("input", { id: "eval_id", name: "eval_id", size: 36, class: "mono" })), h("button", { type: "submit" }, "Open"));
  root.append(h("h1", {}, "Evaluations"),
    h("div", { class: "toolbar" }, h("label", { for: "status" }, "status ", select("status", STATUSES)),
      h("label", { for: "backend" }, "path ", select("backend", ["", "legacy", "celery"])), open),
    card("Latest evaluations", list));

  async function refresh() {
    const page = await api("/api/evaluations", { query: { ...filters, limit: 50 } });
    replace(list, h("p", { class: "muted" }, `${page.total} evaluation(s)`),
      table(["evaluation", "tenant", "path", "status", "exit ", "created", "runtime "], page.items.map((e) => [
        evalLink(e.eval_id), e.tenant, badge(e.backend), badge(e.status), e.exit_code ?? "—", ago(e.created_at), ms(e.runtime_ms),
      ]), { empty: "no evaluation matches", label: "evaluations" }));
  }
  return { title: "Evaluations", refresh, intervalMs: 10000 };
}

function detail(value) {
  const entries = Object.entries(value || {});
  if (!entries.length) return null;
  return h("span", { class: "mono muted" }, entries.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" "));
}

function streams(run) {
  return [
    h("h3", {}, `stdout${run.output_truncated ? " (truncated)" : ""}`),
    h("pre", { class: "output", "data-testid": `stdout-${run.role}` }, h("span", { class: "line" }, run.output ?? "")),
    run.error ? [h("h3", {}, `stderr${run.error_truncated ? " (truncated)" : ""}`), h("pre", { class: "output" }, h("span", { class: "line" }, run.error))] : null,
  ];
}

export function mountOne(root, [evalId], ctx) {
  const body = h("div");
  root.append(h("p", {}, h("a", { href: "#/evaluations" }, "← evaluations")),
    h("h1", {}, "Evaluation ", h("span", { class: "mono" }, evalId)), body);

  async function refresh() {
    const [view, events] = await Promise.all([
      api(`/api/eval/${encodeURIComponent(evalId)}`),
      api(`/api/admin/evaluations/${encodeURIComponent(evalId)}/events`),
    ]);
    const runs = view.runs.length ? view.runs : [{ ...view, role: "primary" }];
    const shadowed = runs.some((r) => r.role === "shadow");
    replace(body,
      h("div", { class: "stats" },
        stat("status", badge(view.status), { "data-testid": "status" }),
        stat("path", badge(view.backend), { "data-testid": "backend" }),
        stat("tenant", view.tenant), stat("language", view.language),
        stat("exit code", view.exit_code ?? "—"), stat("run time", ms(view.runtime_ms)),
        stat("created", when(view.created_at)),
        shadowed ? stat("comparison", h("a", { href: `#/comparison/${encodeURIComponent(evalId)}` }, "side by side")) : null),
      h("div", { class: "grid" },
        card("Timeline", h("ol", { class: "timeline", "data-testid": "timeline" }, events.map((e) => h("li", {},
          h("strong", {}, e.event), " ", e.role ? badge(e.role, "") : null, " ", e.status ? badge(e.status) : null,
          h("br"), h("span", { class: "muted" }, when(e.at)), " ", detail(e.detail))))),
        card("Runs", table(["role", "path", "status", "exit ", "executor", "attempts ", "replays ", "run time ", "reason"], runs.map((r) => [
          r.role, badge(r.backend), badge(r.status), r.exit_code ?? "—", r.executor_id ?? "—", r.attempts, r.replays ?? 0, ms(r.runtime_ms), r.reason ?? "—",
        ]), { label: "runs" }))),
      runs.map((r) => card(`Output of the ${r.role} run (${r.backend})`, streams(r))),
      card("Code", h("pre", { class: "output" }, h("span", { class: "line" }, view.code))));
  }
  return { title: `Evaluation ${evalId}`, refresh, intervalMs: 5000, wants: (event) => event?.eval_id === evalId };
}
