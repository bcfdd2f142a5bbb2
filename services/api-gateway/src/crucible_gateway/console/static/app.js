// The console's shell: sign-in, navigation between pages, the live event stream, refreshes.

import { api, ApiError, authHeaders, token } from "./api.js";
import { LiveEvents } from "./sse.js";
import * as overview from "./overview.js";
import * as migration from "./migration.js";
import * as comparisons from "./comparisons.js";
import * as evaluations from "./evaluations.js";
import * as deadLetters from "./dead-letters.js";

const ROUTES = [
  [/^overview$/, overview.mount, "overview"],
  [/^migration$/, migration.mount, "migration"],
  [/^comparisons$/, comparisons.mountList, "comparisons"],
  [/^comparison\/(.+)$/, comparisons.mountOne, "comparisons"],
  [/^evaluations$/, evaluations.mountList, "evaluations"],
  [/^evaluation\/(.+)$/, evaluations.mountOne, "evaluations"],
  [/^dead-letters$/, deadLetters.mount, "dead-letters"],
];
// After an event, pages re-read once this long later, however many events came meanwhile (a
// steady stream must not put the re-read off for ever).
const DEBOUNCE_MS = 400;

const $ = (id) => document.getElementById(id);
let current = null;
let timer = null;
let debounce = null;
let live = null;

function toast(message, { error = false } = {}) {
  const box = $("toast");
  box.textContent = message;
  box.className = error ? "toast error" : "toast";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, error ? 8000 : 4000);
}

// What a page does with a failure: a refused token ends the session, anything else is said.
function failed(error) {
  if (error instanceof ApiError && error.unauthorised) {
    signOut(`Signed out: ${error.message}`);
    return;
  }
  toast(error.message || String(error), { error: true });
}

const context = { toast, failed, api };

// One read of the page at a time: a refresh asked for while one runs happens once after it
// (a busy event stream never piles reads of a slow page on the gateway).
let reading = null;
let readAgain = false;

async function refresh() {
  if (!current) return;
  if (reading) {
    readAgain = true;
    return;
  }
  const page = current;
  reading = (async () => {
    try {
      await page.refresh();
    } catch (error) {
      if (page === current) failed(error);
    }
  })();
  await reading;
  reading = null;
  if (readAgain) {
    readAgain = false;
    refresh();
  }
}

function route() {
  if (!token.get()) return;
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, "")) || "overview";
  const [pattern, mount, section] = ROUTES.find(([re]) => re.test(hash)) || ROUTES[0];
  const params = hash.match(pattern)?.slice(1) || [];
  if (current?.dispose) current.dispose();
  clearInterval(timer);
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = $("page");
  root.replaceChildren();
  current = mount(root, params, context);
  document.title = `${current.title} · Crucible console`;
  refresh();
  timer = setInterval(refresh, current.intervalMs || 10000);
}

function onLiveEvent(message) {
  // A page about one evaluation re-reads only for that evaluation's events.
  if (!current || (current.wants && !current.wants(message.data))) return;
  if (debounce) return;
  debounce = setTimeout(() => {
    debounce = null;
    refresh();
  }, DEBOUNCE_MS);
}

const LIVE_TEXT = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  unavailable: "live updates unavailable",
  refused: "live updates refused",
};

function startLive() {
  live = new LiveEvents({
    url: "/api/events",
    headers: authHeaders,
    onEvent: onLiveEvent,
    onState: (state, detail) => {
      const badge = $("live");
      badge.dataset.state = state;
      badge.textContent = LIVE_TEXT[state] || state;
      badge.title = detail || (state === "unavailable" ? "pages refresh on their interval" : "");
    },
  });
  live.start();
}

function showConsole() {
  $("login").hidden = true;
  for (const id of ["nav", "session", "page"]) $(id).hidden = false;
  startLive();
  route();
}

function signOut(message) {
  token.clear();
  live?.stop();
  clearInterval(timer);
  current?.dispose?.();
  current = null;
  for (const id of ["nav", "session", "page"]) $(id).hidden = true;
  $("page").replaceChildren();
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const given = $("token").value.trim();
  const error = $("login-error");
  if (!given) return;
  token.set(given);
  try {
    // Any admin read proves the token: 401/403 otherwise.
    await api("/api/admin/migration");
  } catch (failure) {
    token.clear();
    error.textContent = failure instanceof ApiError && failure.unauthorised
      ? `Sign-in refused: ${failure.message}.`
      : `The gateway did not answer: ${failure.message}`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  showConsole();
}

$("login-form").addEventListener("submit", signIn);
$("logout").addEventListener("click", () => signOut(""));
window.addEventListener("hashchange", route);
if (token.get()) showConsole();
else signOut("");
