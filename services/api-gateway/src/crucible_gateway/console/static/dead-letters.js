// Dead letters: the runs the platform gave up on; inspect, replay, remove, purge.

import { api } from "./api.js";
import { ago, badge, card, evalLink, h, replace, table, when } from "./dom.js";

const REASON_CHARS = 90;

export function mount(root, _params, ctx) {
  const list = h("div", { "data-testid": "dead-letters" });
  const inspected = h("div");
  const purgeBox = h("span", { class: "confirm" });
  root.append(h("h1", {}, "Dead letters"),
    h("div", { class: "toolbar" }, purgeBox), list, inspected);

  function purgeButton(total) {
    replace(purgeBox, h("button", { type: "button", class: "danger", disabled: !total, onclick: () => {
      replace(purgeBox, `Remove all ${total} entries without replaying them?`,
        h("button", { type: "button", class: "danger", onclick: () => purge().catch(ctx.failed) }, "Purge all"),
        h("button", { type: "button", onclick: () => purgeButton(total) }, "Cancel"));
    } }, "Purge…"));
  }

  async function purge() {
    const done = await api("/api/admin/dlq", { method: "DELETE" });
    ctx.toast(`${done.purged} dead letter(s) purged`);
    replace(inspected);
    await refresh();
  }

  async function replay(entry) {
    const done = await api(`/api/admin/dlq/${encodeURIComponent(entry.id)}/replay`, { method: "POST" });
    ctx.toast(`Replayed ${entry.eval_id} (${done.run.role}) on the ${done.run.backend} path: run ${done.run.status}, replay ${done.run.replays}`);
    replace(inspected);
    await refresh();
  }

  async function remove(entry) {
    await api(`/api/admin/dlq/${encodeURIComponent(entry.id)}`, { method: "DELETE" });
    ctx.toast(`Dead letter of ${entry.eval_id} removed`);
    replace(inspected);
    await refresh();
  }

  async function inspect(entry) {
    const full = await api(`/api/admin/dlq/${encodeURIComponent(entry.id)}`);
    replace(inspected, card(`Dead letter ${full.id}`, h("div", { "data-testid": "dead-letter" },
      h("dl", { class: "facts" },
        ...[["evaluation", full.eval_id ? evalLink(full.eval_id) : "—"], ["role", full.role ?? "—"], ["path", full.backend ? badge(full.backend) : "—"],
          ["task", `${full.task_name} (${full.task_id ?? "no id"})`], ["reason", full.reason], ["exception", `${full.exception_type ?? ""} ${full.exception ?? ""}`],
          ["attempts", full.attempts], ["first seen", when(full.first_seen_at)], ["failed", when(full.failed_at)], ["replays", full.replays]]
          .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      full.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, full.traceback)) : null,
      h("details", {}, h("summary", {}, "task arguments"), h("pre", {}, JSON.stringify(full.kwargs, null, 2))))));
    inspected.scrollIntoView({ block: "nearest" });
  }

  const guarded = (fn, entry) => () => fn(entry).catch(ctx.failed);

  async function refresh() {
    const page = await api("/api/admin/dlq", { query: { limit: 100 } });
    purgeButton(page.total);
    replace(list, card(`${page.total} entr${page.total === 1 ? "y" : "ies"}`,
      table(["evaluation", "role", "path", "reason", "attempts ", "failed", "replays ", ""], page.items.map((e) => [
        e.eval_id ? evalLink(e.eval_id) : "—", e.role ?? "—", e.backend ? badge(e.backend) : "—",
        // The whole reason is in the inspected entry.
        h("span", { title: e.reason }, e.reason.length > REASON_CHARS ? `${e.reason.slice(0, REASON_CHARS)}…` : e.reason), e.attempts,
        h("span", { title: when(e.failed_at) }, ago(e.failed_at)), e.replays,
        h("span", { class: "confirm nowrap" },
          h("button", { type: "button", onclick: guarded(inspect, e), "aria-label": `inspect ${e.eval_id}` }, "Inspect"),
          h("button", { type: "button", class: "primary", onclick: guarded(replay, e), "aria-label": `replay ${e.eval_id}` }, "Replay"),
          h("button", { type: "button", onclick: guarded(remove, e), "aria-label": `remove ${e.eval_id}` }, "Remove")),
      ]), { empty: "the dead-letter queue is empty", label: "dead letters" })));
  }

  return { title: "Dead letters", refresh, intervalMs: 10000 };
}
