// Migration: the split in force, the controls (set, ramp, pause, promote, abort), the guard's
// decisions, the report as charts and the audit log.

import { api, ApiError } from "./api.js";
import { barChart } from "./charts.js";
import { ago, badge, card, h, ms, pct, replace, stat, table, when } from "./dom.js";
import { COLORS } from "./overview.js";

const PATHS = ["legacy", "celery"];
const WINDOWS = ["5m", "15m", "1h", "24h"];

function percentInput(id, label, value) {
  return h("label", { for: id }, label,
    h("input", { id, name: id, type: "number", min: 0, max: 100, step: "any", value: value ?? "", required: true, style: "width:7rem" }));
}

function share(form, name) {
  return Number(form.elements[name].value) / 100;
}

function controls(doc, act) {
  const form = h("form", { class: "controls", "aria-label": "migration controls", onsubmit: (e) => e.preventDefault() });
  const steps = doc.ramp.steps.map((s) => Math.round(s * 1000) / 10).join(", ");
  form.append(
    h("label", { for: "reason" }, "Reason (recorded in the audit log, required for every change)"),
    h("textarea", { id: "reason", name: "reason", required: true, placeholder: "why this change" }),
    h("fieldset", {}, h("legend", {}, "Split"),
      h("div", { class: "row" },
        percentInput("celery_percentage", "Celery share (%)", Math.round(doc.celery_percentage * 1000) / 10),
        h("label", { for: "mode" }, "Mode", h("select", { id: "mode", name: "mode" },
          ["split", "shadow"].map((m) => h("option", { value: m, selected: m === doc.mode }, m)))),
        percentInput("shadow_percentage", "Shadow share (%)", Math.round(doc.shadow_percentage * 1000) / 10),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "celery_enabled", checked: doc.celery_enabled }), "Celery enabled"),
        h("button", { type: "button", class: "primary", onclick: () => act("set", form) }, "Set split"),
        h("button", { type: "button", onclick: () => act("promote", form) }, "Promote to this share"))),
    h("fieldset", {}, h("legend", {}, "Ramp"),
      h("div", { class: "row" },
        h("label", { for: "steps" }, "Steps (%, comma-separated)", h("input", { id: "steps", name: "steps", value: steps })),
        h("label", { for: "hold" }, "Hold each step (s)", h("input", { id: "hold", name: "hold", type: "number", min: 1, value: doc.ramp.hold_seconds, style: "width:7rem" })),
        h("button", { type: "button", onclick: () => act("ramp", form) }, "Start ramp"))),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => act("pause", form) }, "Pause (all to legacy)"),
      h("button", { type: "button", class: "danger", onclick: () => act("abort", form) }, "Abort migration")),
    h("p", { id: "control-result", role: "status", class: "muted" }));
  return form;
}

function request(action, form) {
  switch (action) {
    case "set":
      return ["PUT", "/api/admin/migration", {
        celery_percentage: share(form, "celery_percentage"),
        shadow_percentage: share(form, "shadow_percentage"),
        mode: form.elements.mode.value,
        celery_enabled: form.elements.celery_enabled.checked,
      }];
    case "promote":
      return ["POST", "/api/admin/migration/promote", { celery_percentage: share(form, "celery_percentage") }];
    case "ramp":
      return ["POST", "/api/admin/migration/ramp", {
        steps: form.elements.steps.value.split(",").map((s) => Number(s.trim()) / 100).filter((s) => s > 0),
        hold_seconds: Number(form.elements.hold.value),
      }];
    default:
      return ["POST", `/api/admin/migration/${action}`, {}];
  }
}

function guardSummary(report) {
  const latest = report.latest;
  const decisions = report.decisions || [];
  return h("div", {},
    h("div", { class: "stats" },
      stat("latest decision", latest ? badge(latest.verdict?.decision ?? latest.state) : "none lately"),
      stat("breach streak", report.streak ? `${report.streak.breaches}${latest?.breach_after ? ` of ${latest.breach_after}` : ""}` : "0"),
      stat("evaluated", latest ? ago(latest.evaluated_at) : "—")),
    h("h3", {}, "Recent decisions"),
    table(["when", "state", "decision", "streak ", "action"], decisions.map((d) => [
      h("span", { class: "nowrap" }, when(d.evaluated_at)), d.state, d.verdict ? badge(d.verdict.decision) : "—", d.streak,
      d.action ? h("span", {}, badge(d.action, "warn"), " ", d.action_detail || "") : "—",
    ]), { empty: "no decision recorded", label: "guard decisions" }));
}

function guardChecks(report) {
  const checks = report.latest?.verdict?.checks || [];
  return table(["check", "verdict", "value ", "threshold ", "recent ", "samples", "detail"], checks.map((c) => [
      c.name, badge(c.verdict), fmt(c.value), fmt(c.threshold), fmt(c.recent_value),
      Object.entries(c.samples || {}).map(([k, v]) => `${k} ${v}`).join(", "), h("span", { class: "muted" }, c.detail),
    ]), { empty: "no guard decision yet (the leader evaluates while Celery takes traffic)", label: "guard checks" });
}

function fmt(value) {
  return value === null || value === undefined ? "—" : Math.round(value * 1000) / 1000;
}

function reportCharts(report) {
  const series = PATHS.map((p) => ({ name: p, color: COLORS[p] }));
  const latencyGroups = [];
  for (const measure of ["queue_wait", "run_time", "end_to_end"]) {
    for (const q of ["p50", "p95", "p99"]) {
      latencyGroups.push({ label: `${measure.replace(/_/g, " ")} ${q}`, values: PATHS.map((p) => report.paths[p]?.[measure]?.[`${q}_ms`] ?? null) });
    }
  }
  const statuses = [...new Set(PATHS.flatMap((p) => Object.keys(report.paths[p]?.by_status || {})))].sort();
  const outcomes = Object.entries(report.comparisons.by_outcome || {});
  return h("div", { class: "grid wide" },
    card("Latency percentiles (ms)", barChart({ label: "Latency percentiles per path", groups: latencyGroups.filter((g) => g.label.includes("end to end") || g.label.includes("p95")), series, format: (v) => ms(v) })),
    card("Runs by status", statuses.length
      ? barChart({ label: "Runs by status per path", groups: statuses.map((s) => ({ label: s, values: PATHS.map((p) => report.paths[p]?.by_status?.[s] ?? 0) })), series, format: (v) => String(Math.round(v)), integer: true })
      : h("p", { class: "empty" }, "no run in this window")),
    card("Success and error rates", barChart({ label: "Success and error rate per path", series, format: (v) => `${Math.round(v * 100)} %`,
      groups: [
        { label: "success", values: PATHS.map((p) => report.paths[p]?.success_rate ?? null) },
        { label: "error", values: PATHS.map((p) => report.paths[p]?.error_rate ?? null) },
      ] })),
    card("Comparison outcomes", outcomes.length
      ? barChart({ label: "Shadow comparisons by outcome", series: [{ name: "comparisons", color: "#5b4fb3" }], format: (v) => String(Math.round(v)), integer: true,
        groups: outcomes.map(([o, n]) => ({ label: o.replace(/_/g, " "), values: [n] })) })
      : h("p", { class: "empty" }, "no comparison in this window")),
    card("Per path", table(["path", "runs ", "ended ", "success", "errors", "p50 ", "p95 ", "p99 "], PATHS.map((p) => {
      const s = report.paths[p] || {};
      return [badge(p), s.total ?? 0, s.terminal ?? 0, pct(s.success_rate), pct(s.error_rate), ms(s.end_to_end?.p50_ms), ms(s.end_to_end?.p95_ms), ms(s.end_to_end?.p99_ms)];
    }), { label: "report per path" })));
}

function auditTable(entries) {
  return table(["when", "who", "action", "version", "changes", "reason"], entries.map((e) => [
    when(e.at), e.actor, badge(e.action, "warn"), `${e.version_before} → ${e.version_after}`,
    h("span", { class: "mono" }, Object.entries(e.changes || {}).map(([k, [a, b]]) => `${k}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`).join("; ")),
    e.reason,
  ]), { empty: "no change recorded", label: "audit log" });
}

export function mount(root, _params, ctx) {
  let doc = null;
  let window = "1h";
  const head = h("div", { class: "stats", "data-testid": "document" });
  const controlBox = h("div");
  const guard = h("div");
  const checks = h("div");
  const reportBox = h("div");
  const audit = h("div", { "data-testid": "audit" });
  const windowSelect = h("select", { id: "window", onchange: (e) => { window = e.target.value; refresh().catch(ctx.failed); } },
    WINDOWS.map((w) => h("option", { value: w, selected: w === window }, w)));
  root.append(h("h1", {}, "Migration"), head,
    h("div", { class: "grid" }, card("Controls", controlBox), card("Guard", guard)),
    card("Guard checks of the latest decision: values, thresholds, samples", checks),
    h("div", { class: "toolbar" }, h("h2", {}, "Report"), h("label", { for: "window" }, "window ", windowSelect)),
    reportBox, card("Audit log", audit));

  async function act(action, form) {
    const result = form.querySelector("#control-result");
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      result.className = "error";
      result.textContent = "Give a reason: every change is recorded with it.";
      form.elements.reason.focus();
      return;
    }
    const [method, path, body] = request(action, form);
    try {
      doc = await api(path, { method, body: { expected_version: doc.version, reason, ...body } });
      result.className = "muted";
      result.textContent = `${action}: done, version ${doc.version} in force.`;
      form.elements.reason.value = "";
      ctx.toast(`Migration ${action}: version ${doc.version}`);
      await refresh();
    } catch (error) {
      if (error instanceof ApiError && error.unauthorised) return ctx.failed(error);
      result.className = "error";
      result.textContent = error.status === 409
        ? `Refused: the settings changed meanwhile (${error.message}). Reloaded; check and try again.`
        : `Refused: ${error.message}`;
      await refresh();
    }
  }

  async function refresh(rebuildControls = false) {
    const [fresh, guardReport, report, entries] = await Promise.all([
      api("/api/admin/migration"),
      api("/api/admin/migration/guard", { query: { limit: 10 } }),
      api("/api/migration/report", { query: { window, samples: 0 } }),
      api("/api/admin/migration/audit", { query: { limit: 20 } }).catch((error) => ({ error })),
    ]);
    const first = doc === null;
    doc = fresh;
    replace(head,
      stat("version", doc.version, { "data-testid": "version" }),
      stat("mode", doc.mode, { "data-testid": "mode" }),
      stat("Celery", doc.force_legacy ? "paused (legacy forced)" : doc.celery_enabled ? "enabled" : "disabled", { "data-testid": "celery-enabled" }),
      stat("Celery share", pct(doc.celery_percentage), { "data-testid": "celery-share" }),
      stat("shadow share", `${pct(doc.shadow_percentage)}${doc.mode === "shadow" ? "" : " (in shadow mode)"}`, { "data-testid": "shadow-share" }),
      stat("ramp", doc.ramp.active ? `on, ${doc.ramp.steps.map(pct).join(" → ")}` : "off"),
      stat("changed", `${ago(doc.updated_at)} by ${doc.updated_by}`));
    // The form keeps what the operator is typing; it is rebuilt only on the first read and
    // after a refused change.
    if (first || rebuildControls) replace(controlBox, controls(doc, act));
    replace(guard, guardSummary(guardReport));
    replace(checks, guardChecks(guardReport));
    replace(reportBox, reportCharts(report));
    replace(audit, entries.error ? h("p", { class: "error" }, entries.error.message) : auditTable(entries));
  }

  return { title: "Migration", refresh: () => refresh(false), intervalMs: 10000 };
}
