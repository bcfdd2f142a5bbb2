// Comparisons: the recorded ones (those that did not agree first), and one side by side.

import { api } from "./api.js";
import { badge, card, evalLink, h, ms, replace, table, when } from "./dom.js";
import { changedLines } from "./diff.js";

const OUTCOMES = ["mismatch", "shadow_failed_only", "primary_failed_only", "both_failed",
  "shadow_missing", "match_after_normalisation", "match"];

export function mountList(root, _params, ctx) {
  let outcome = "";
  const list = h("div", { "data-testid": "comparisons" });
  const filter = h("select", { id: "outcome", onchange: (e) => { outcome = e.target.value; refresh().catch(ctx.failed); } },
    h("option", { value: "" }, "every outcome"), OUTCOMES.map((o) => h("option", { value: o }, o.replace(/_/g, " "))));
  root.append(h("h1", {}, "Comparisons"),
    h("div", { class: "toolbar" }, h("label", { for: "outcome" }, "Outcome ", filter),
      h("span", { class: "muted" }, "Those that did not agree come first, newest first.")),
    card("Recorded comparisons", list));

  async function refresh() {
    const page = await api("/api/admin/comparisons", { query: { outcome, limit: 100 } });
    replace(list,
      h("p", { class: "muted" }, `${page.total} comparison(s)${outcome ? ` with outcome ${outcome.replace(/_/g, " ")}` : ""}`),
      table(["evaluation", "outcome", "differs in", "primary", "shadow", "recorded"], page.items.map((c) => [
        h("a", { href: `#/comparison/${encodeURIComponent(c.eval_id)}`, class: "mono" }, c.eval_id),
        badge(c.outcome.replace(/_/g, " "), c.outcome),
        c.differing_fields.join(", ") || "—",
        side(c.details.primary), side(c.details.shadow), when(c.created_at),
      ]), { empty: "no comparison recorded (they need shadow mode)", label: "comparisons" }));
  }

  return { title: "Comparisons", refresh, intervalMs: 10000 };
}

function side(run) {
  if (!run) return "—";
  return h("span", {}, badge(run.backend), " ", badge(run.status), " ", ms(run.duration_ms));
}

// An output as its lines; the newline ending the last line starts no line of its own.
export function linesOf(text) {
  return (text ?? "").replace(/\n$/, "").split("\n");
}

function output(text, changed, role) {
  if (!text) return h("pre", { class: "output", "data-role": role }, h("span", { class: "line none" }, "(empty)"));
  return h("pre", { class: "output", "data-role": role }, linesOf(text).map((line, i) => h("span", {
    class: changed[i] ? `line changed ${role}` : "line",
    "data-changed": changed[i] ? "true" : null,
    title: changed[i] ? "differs from the other run" : null,
  }, line)));
}

function duration(run) {
  if (!run.completed_at) return "—";
  return ms(new Date(run.completed_at) - new Date(run.created_at));
}

function facts(run, other, differing) {
  const differs = (name) => differing.includes(name) || (other && run[name] !== other[name]);
  const row = (label, value, name) => [h("dt", {}, label), h("dd", {}, name && other && differs(name) ? h("span", { class: "differs", "data-differs": name }, value) : value)];
  return h("dl", { class: "facts" },
    row("status", badge(run.status), "status"),
    row("exit code", run.exit_code ?? "—", "exit_code"),
    row("reason", run.reason ?? "—"),
    row("run time", ms(run.runtime_ms)),
    row("end to end", duration(run)),
    row("executor", run.executor_id ?? "—"),
    row("attempts", run.attempts));
}

function diffBlock(text) {
  return h("pre", { class: "output diff" }, text.split("\n").map((line) => h("span", {
    class: line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : null,
  }, line, "\n")));
}

export function mountOne(root, [evalId], ctx) {
  const body = h("div");
  root.append(h("p", {}, h("a", { href: "#/comparisons" }, "← all comparisons")),
    h("h1", {}, "Comparison ", h("span", { class: "mono" }, evalId)), body);

  async function refresh() {
    const [view, doc] = await Promise.all([
      api(`/api/eval/${encodeURIComponent(evalId)}/comparison`),
      api("/api/admin/migration"),
    ]);
    const { primary, shadow } = view;
    const text = (run, field) => (run ? (field === "stdout" ? run.output : run.error) ?? "" : "");
    const marks = Object.fromEntries(["stdout", "stderr"].map((f) => [f, changedLines(linesOf(text(primary, f)), linesOf(text(shadow, f)))]));
    const column = (run, other, role, key) => h("section", { class: "card", "data-testid": role, "aria-label": `${role} run` },
      h("h3", {}, role === "primary" ? "Primary" : "Shadow", run ? badge(run.backend) : null),
      run ? [facts(run, other, view.differing_fields),
        ["stdout", "stderr"].map((f) => [h("h3", {}, f, marks[f][key].some(Boolean) ? badge("differs", "bad") : null), output(text(run, f), marks[f][key], role)])]
        : h("p", { class: "empty" }, "no shadow run"));
    const rules = doc.comparison.rules;
    replace(body,
      h("div", { class: "stats" },
        h("div", { class: "stat" }, h("span", { class: "label" }, "outcome"), h("span", { class: "value", "data-testid": "outcome" }, badge(view.outcome.replace(/_/g, " "), view.outcome))),
        h("div", { class: "stat" }, h("span", { class: "label" }, "differs in"), h("span", { class: "value", "data-testid": "differing" }, view.differing_fields.join(", ") || "nothing")),
        h("div", { class: "stat" }, h("span", { class: "label" }, "recorded"), h("span", { class: "value" }, when(view.recorded_at))),
        h("div", { class: "stat" }, h("span", { class: "label" }, "evaluation"), h("span", { class: "value" }, evalLink(view.eval_id)))),
      h("div", { class: "side" }, column(primary, shadow, "primary", "before"), column(shadow, primary, "shadow", "after")),
      card("Normalisation", h("div", { "data-testid": "normalisation" },
        h("p", {}, view.normalised_fields.length
          ? `Made equal only by normalisation: ${view.normalised_fields.join(", ")}.`
          : "No field was made equal by normalisation."),
        h("p", { class: "muted" }, `Rules version ${view.rules_version} (the outputs below are raw, as each path wrote them); rules in force (version ${doc.comparison.rules_version}):`),
        table(["rule", "kind", "pattern", "replacement", "fields"], rules.map((r) => [
          h("strong", {}, r.name), r.kind, h("code", {}, r.pattern ?? "—"), r.kind === "mask" ? h("code", {}, r.replacement) : "—", r.fields.join(", "),
        ]), { label: "normalisation rules" }))),
      Object.keys(view.diff).length ? card("Unified diff (raw outputs)", Object.entries(view.diff).map(([f, d]) => [h("h3", {}, f), diffBlock(d)])) : null);
  }

  return { title: `Comparison ${evalId}`, refresh, intervalMs: 10000, wants: (event) => event?.eval_id === evalId };
}
