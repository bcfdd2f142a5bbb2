"""The operator console in a real headless Chromium, over the whole suite: signing in, the
overview filling in, moving the split, a mismatching comparison side by side, a dead letter
replayed. One suite start and one browser for the whole module.

With CONSOLE_SCREENSHOTS=1 the screenshots of each page are saved in docs/console/ (the ones
README.md shows); otherwise in a temporary folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from crucible_runtime.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "ops-token-for-the-console-tests"
OPERATOR = {"X-Operator-Token": TOKEN}
ADMIN = "/api/admin/migration"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "console"
# Every expectation polls up to this long (the overview asks storage, executors and Celery).
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def gateway(suite):
    """A gateway of the shared suite with an operator token and a quick leader (comparisons)."""
    started = suite.gateway(
        CELERY_ENABLED="true",
        CELERY_PERCENTAGE="0",
        OPERATOR_TOKEN=f"ops:{TOKEN}",
        SUPERVISOR_INTERVAL="0.2",
    )
    yield started
    suite.extras.remove(started)
    started.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/bootstrap.sh installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage), wide enough for the side-by-side view."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def screenshot(shots: Path):
    def take(page: Page, name: str) -> Path:
        path = shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def admin(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=OPERATOR, timeout=30) as client:
        yield client


def sign_in(page: Page, url: str, token: str = TOKEN) -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page: Page, url: str) -> Page:
    sign_in(page, url)
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    return page


def change(admin: httpx.Client, **fields) -> dict:
    version = admin.get(ADMIN).json()["version"]
    response = admin.put(ADMIN, json={"expected_version": version, "reason": "test", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def submit(client, code: str) -> dict:
    response = client.post("/api/eval", json={"code": code})
    assert response.status_code == 202, response.text
    return response.json()


def wait_done(client, eval_id: str) -> dict:
    return wait_for(
        lambda: (
            (view := client.get(f"/api/eval/{eval_id}").json())["status"]
            not in ("queued", "running")
            and view
        ),
        timeout=60,
        what=f"{eval_id} to end",
    )


def test_a_wrong_token_is_refused_and_the_right_one_signs_in_and_out(gateway, page, screenshot):
    sign_in(page, gateway.url, token="not-the-operator-token")

    error = page.get_by_role("alert")
    expect(error).to_have_text(re.compile("Sign-in refused: wrong operator token"))
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    screenshot(page, "login-refused")

    sign_in(page, gateway.url)
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('crucible.operatorToken')") == TOKEN

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    # A reload after logging out stays signed out.
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_the_overview_fills_in_after_a_few_evaluations(gateway, admin, page, screenshot):
    change(admin, celery_percentage=0.5)
    accepted = [submit(admin, f"print({n} * 7)") for n in range(6)]
    for answer in accepted:
        assert wait_done(admin, answer["eval_id"])["status"] == "completed"

    signed_in(page, gateway.url)

    executors = page.get_by_test_id("executors")
    for n in (1, 2, 3):
        expect(executors).to_contain_text(f"executor-{n}")
    expect(executors).to_contain_text("busy")
    expect(page.get_by_test_id("workers")).to_contain_text("celery-worker")
    # Every path that took evaluations has a point above zero in the throughput chart.
    for backend in {answer["backend"] for answer in accepted}:
        chart = page.get_by_role("img", name=re.compile("Evaluations started per minute"))
        expect(chart.locator(f'path[data-series="{backend}"]')).to_have_count(1)
        assert page.wait_for_function(
            """backend => [...document.querySelectorAll('svg[aria-label^="Evaluations started"] circle')]
                .some(c => c.querySelector('title').textContent.startsWith(backend) && +c.dataset.value > 0)""",
            arg=backend,
        )
    latest = page.get_by_role("table", name="latest evaluations")
    expect(latest).to_contain_text(accepted[-1]["eval_id"])
    expect(page.get_by_test_id("celery-share")).to_contain_text("50 %")
    # On a gateway without GET /api/events the console says so and refreshes on its interval.
    expect(page.get_by_role("status").first).to_have_text(
        re.compile(r"^(live|live updates unavailable)$")
    )
    screenshot(page, "overview")


def test_moving_the_split_sends_the_next_evaluations_down_the_new_path(
    gateway, admin, page, screenshot
):
    change(admin, celery_percentage=0.0, mode="split")
    before = admin.get(ADMIN).json()["version"]
    signed_in(page, gateway.url)
    page.get_by_role("link", name="Migration").click()
    expect(page.get_by_test_id("version")).to_contain_text(str(before))

    page.get_by_label("Celery share (%)").fill("100")
    page.get_by_role("button", name="Set split").click()
    expect(page.locator("#control-result")).to_contain_text("Give a reason")
    page.get_by_label(re.compile("^Reason")).fill("the console moves everything to Celery")
    page.get_by_role("button", name="Set split").click()

    expect(page.get_by_test_id("version")).to_contain_text(str(before + 1))
    expect(page.get_by_test_id("celery-share")).to_contain_text("100 %")
    expect(page.get_by_test_id("audit")).to_contain_text("the console moves everything to Celery")
    document = admin.get(ADMIN).json()
    assert (document["celery_percentage"], document["updated_by"]) == (1.0, "ops")

    accepted = [submit(admin, "print('after the move')") for _ in range(4)]
    assert {answer["backend"] for answer in accepted} == {"celery"}
    for answer in accepted:
        view = wait_done(admin, answer["eval_id"])
        assert (view["backend"], view["output"]) == ("celery", "after the move\n")
    page.get_by_role("combobox", name="window").select_option("5m")
    expect(page.get_by_role("table", name="report per path")).to_contain_text("celery")
    screenshot(page, "migration")

    # A change based on a version someone else moved on from is refused and says so. Until the
    # page sends its change, its reads of the settings answer what it last saw (a live re-read
    # between the other change and the click would otherwise catch up first).
    shown = admin.get(ADMIN).json()
    sent: list[str] = []

    def hold_what_the_page_saw(route) -> None:
        settings_read = route.request.method == "GET" and route.request.url.endswith(ADMIN)
        if settings_read and not sent:
            route.fulfill(json=shown)
            return
        if route.request.method != "GET":
            sent.append(route.request.url)
        route.continue_()

    page.route("**/api/admin/migration**", hold_what_the_page_saw)
    expect(page.get_by_test_id("version")).to_contain_text(str(shown["version"]))
    change(admin, celery_percentage=0.5)
    page.get_by_label(re.compile("^Reason")).fill("a stale change")
    page.get_by_role("button", name="Pause (all to legacy)").click()
    expect(page.locator("#control-result")).to_contain_text("changed meanwhile")
    assert admin.get(ADMIN).json()["force_legacy"] is False
    page.unroute("**/api/admin/migration**")
    # The refusal makes the page read the settings again.
    expect(page.get_by_test_id("version")).to_contain_text(str(admin.get(ADMIN).json()["version"]))

    # Read again, the same control goes through; then each of the others, in an operator's order.
    def control(button: str, reason: str, **fields: str) -> dict:
        version = admin.get(ADMIN).json()["version"]
        for label, value in fields.items():
            page.get_by_label(label).fill(value)
        page.get_by_label(re.compile("^Reason")).fill(reason)
        page.get_by_role("button", name=button).click()
        expect(page.get_by_test_id("version")).to_contain_text(str(version + 1))
        expect(page.get_by_test_id("audit")).to_contain_text(reason)
        return admin.get(ADMIN).json()

    paused = control("Pause (all to legacy)", "Celery misbehaves")
    assert (paused["force_legacy"], paused["celery_percentage"]) == (True, 0.5)
    expect(page.get_by_test_id("celery-enabled")).to_contain_text("paused")
    promoted = control("Promote to this share", "fixed", **{"Celery share (%)": "25"})
    assert (promoted["force_legacy"], promoted["celery_percentage"]) == (False, 0.25)
    ramping = control(
        "Start ramp",
        "step by step",
        **{"Steps (%, comma-separated)": "40, 100", "Hold each step (s)": "3600"},
    )
    assert ramping["ramp"] == {
        "active": True,
        "steps": [0.4, 1.0],
        "hold_seconds": 3600,
    }
    assert ramping["celery_percentage"] == 0.4
    aborted = control("Abort migration", "back out")
    assert (aborted["celery_enabled"], aborted["force_legacy"]) == (False, True)
    assert aborted["celery_percentage"] == 0.0


def test_a_mismatching_comparison_shows_both_outputs_with_the_difference_marked(
    gateway, admin, page, screenshot
):
    change(
        admin,
        celery_enabled=True,
        force_legacy=False,
        celery_percentage=0.0,
        mode="shadow",
        shadow_percentage=1.0,
        ramp={"active": False},
    )
    code = "import random\nprint('the same on both paths')\nprint('random', random.random())"
    eval_id = submit(admin, code)["eval_id"]
    agreeing = {
        submit(admin, "print('agreed')")["eval_id"]: "match",
        submit(admin, "import datetime\nprint(datetime.datetime.now())")["eval_id"]: (
            "match_after_normalisation"
        ),
    }
    for compared, outcome in {eval_id: "mismatch", **agreeing}.items():
        wait_for(
            lambda compared=compared, outcome=outcome: (
                admin.get(f"/api/eval/{compared}/comparison").json()["outcome"] == outcome
            ),
            timeout=60,
            what=f"the {outcome} of {compared} to be recorded",
        )
    view = admin.get(f"/api/eval/{eval_id}/comparison").json()
    signed_in(page, gateway.url)

    page.get_by_role("link", name="Comparisons").click()
    listed = page.get_by_role("table", name="comparisons")
    for compared in agreeing:
        expect(listed).to_contain_text(compared)
    # Those that did not agree come first.
    outcomes = listed.locator("tbody tr td:nth-child(2)").all_inner_texts()
    first_agreeing = min(outcomes.index(o) for o in ("match", "match after normalisation"))
    assert "mismatch" in outcomes[:first_agreeing]
    screenshot(page, "comparisons")
    page.get_by_label("Outcome").select_option("mismatch")
    row = page.get_by_role("row").filter(has_text=eval_id)
    expect(row).to_contain_text("mismatch")
    expect(listed.get_by_text("match after normalisation")).to_have_count(0)
    row.get_by_role("link", name=eval_id).click()

    expect(page.get_by_test_id("outcome")).to_have_text("mismatch")
    expect(page.get_by_test_id("differing")).to_have_text("stdout")
    for role, run in (("primary", view["primary"]), ("shadow", view["shadow"])):
        column = page.get_by_test_id(role)
        expect(column).to_contain_text(run["backend"])
        stdout = column.locator(f'pre[data-role="{role}"]').first
        expect(stdout).to_contain_text(run["output"].splitlines()[1])
        changed = stdout.locator('[data-changed="true"]')
        expect(changed).to_have_count(1)
        expect(changed).to_have_text(run["output"].splitlines()[1])
        expect(stdout.locator(".line").first).to_have_text("the same on both paths")
    assert view["primary"]["output"] != view["shadow"]["output"]
    normalisation = page.get_by_test_id("normalisation")
    expect(normalisation).to_contain_text("No field was made equal by normalisation")
    for rule in ("trailing_whitespace", "hex_addresses", "timestamps", "temporary_paths"):
        expect(normalisation).to_contain_text(rule)
    expect(page.locator("pre.diff .add")).to_have_count(1)
    screenshot(page, "comparison")

    page.get_by_role("link", name=eval_id).click()
    expect(page.get_by_role("table", name="runs")).to_contain_text("shadow")
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("eval.created")
    expect(page.get_by_test_id("stdout-shadow")).to_contain_text(
        view["shadow"]["output"].splitlines()[1]
    )
    screenshot(page, "evaluation")
    change(admin, mode="split", shadow_percentage=0.0)


def test_a_dead_letter_is_inspected_and_replayed_from_the_console(suite, page, screenshot):
    # A broker of its own, drained by a worker that cannot reach any executor: runs end `error`.
    path = suite.dead_letter_path(f"ops:{TOKEN}")
    gateway = path.gateway
    with httpx.Client(base_url=gateway.url, headers=OPERATOR, timeout=30) as client:
        eval_id = submit(client, "print('replayed from the console')")["eval_id"]
        purged = submit(client, "print('purged from the console')")["eval_id"]
        for given_up in (eval_id, purged):
            assert wait_done(client, given_up)["status"] == "error"
        wait_for(
            lambda: client.get("/api/admin/dlq").json()["total"] == 2,
            timeout=30,
            what="the two dead letters",
        )
        signed_in(page, gateway.url)
        page.get_by_role("link", name="Dead letters").click()
        row = page.get_by_role("row").filter(has_text=eval_id)
        expect(row).to_contain_text("celery")

        row.get_by_role("button", name=f"inspect {eval_id}").click()
        entry = page.get_by_test_id("dead-letter")
        expect(entry).to_contain_text(eval_id)
        expect(entry).to_contain_text("tasks.evaluate_code")
        page.get_by_text("task arguments").click()
        expect(entry).to_contain_text("replayed from the console")
        screenshot(page, "dead-letters")

        # The cause is fixed (a worker that reaches the executors), then the entry is replayed.
        path.mend()
        row.get_by_role("button", name=f"replay {eval_id}").click()

        expect(page.locator("#toast")).to_contain_text(f"Replayed {eval_id}")
        expect(page.get_by_role("row").filter(has_text=eval_id)).to_have_count(0)
        view = wait_done(client, eval_id)
        assert (view["status"], view["output"]) == ("completed", "replayed from the console\n")
        assert view["runs"][0]["replays"] == 1

        # Purging asks first; what is left goes without being replayed.
        page.get_by_role("button", name="Purge…").click()
        expect(page.get_by_text("Remove all 1 entries without replaying them?")).to_be_visible()
        page.get_by_role("button", name="Purge all").click()
        expect(page.locator("#toast")).to_contain_text("1 dead letter(s) purged")
        expect(page.get_by_test_id("dead-letters")).to_contain_text("queue is empty")
        assert client.get("/api/admin/dlq").json()["total"] == 0
        assert client.get(f"/api/eval/{purged}").json()["status"] == "error"


SSE_TEXT = (
    ': keep-alive\r\nid: 1\r\nevent: eval.created\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
    "id: 2\ndata:plain\n\n:another comment\n\nevent: ignored\nid: 3\n\n"
)


def test_the_sse_parser_reads_messages_however_the_text_is_cut(gateway, page):
    page.goto(f"{gateway.url}/console/")

    readings = page.evaluate(
        """async ([text, sizes]) => {
          const { sseParser } = await import('/console/sse.js');
          return sizes.map((size) => {
            const got = [];
            const parser = sseParser((message) => got.push(message));
            for (let i = 0; i < text.length; i += size) parser.feed(text.slice(i, i + size));
            return { got, lastId: parser.lastId };
          });
        }""",
        [SSE_TEXT, [1, 2, 3, 7, len(SSE_TEXT)]],
    )

    expected = [
        {"id": "1", "event": "eval.created", "data": '{"a":\n1}'},
        {"id": "2", "event": "message", "data": "plain"},
    ]
    # A block without data dispatches nothing, but its id counts for Last-Event-ID.
    assert readings == [{"got": expected, "lastId": "3"}] * 5


def test_live_events_resume_with_last_event_id(gateway, page):
    """The stream is the gateway's GET /api/events once it serves one; here the browser answers
    it (each answer one event, then the end of the stream), so that the console's side is
    pinned on any gateway: the operator's header on every connection, and each reconnection
    resuming after the last event it read."""
    body = (
        "retry: 200\n: keep-alive\n\n"
        'id: 41\nevent: eval.status_changed\ndata: {"eval_id": "x", "event": '
        '"eval.status_changed"}\n\n'
    )
    page.route(
        "**/api/events",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=body
        ),
    )
    with page.expect_request("**/api/events") as first:
        signed_in(page, gateway.url)
    # The stream ended: the console connects again, after the `retry` the stream asked for.
    with page.expect_request(
        lambda request: (
            request.url.endswith("/api/events") and request.headers.get("last-event-id") == "41"
        )
    ) as again:
        pass

    assert "last-event-id" not in first.value.headers
    for request in (first.value, again.value):
        assert request.headers["x-operator-token"] == TOKEN
        assert request.headers["accept"] == "text/event-stream"


def test_output_is_shown_as_text_never_run_as_markup(gateway, admin, page):
    markup = '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script>'
    eval_id = submit(admin, f"print({markup!r})")["eval_id"]
    assert wait_done(admin, eval_id)["output"] == markup + "\n"
    signed_in(page, gateway.url)

    page.goto(f"{gateway.url}/console/#/evaluation/{eval_id}")

    expect(page.get_by_test_id("stdout-primary")).to_have_text(markup)
    expect(page.get_by_test_id("timeline")).to_contain_text("eval.created")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img, main script").count() == 0


def test_a_token_refused_mid_session_signs_the_operator_out(gateway, page):
    signed_in(page, gateway.url)
    # As when the gateway's OPERATOR_TOKEN is changed under an open console.
    page.evaluate("sessionStorage.setItem('crucible.operatorToken', 'a-revoked-token')")

    page.get_by_role("link", name="Migration").click()

    expect(page.get_by_role("alert")).to_have_text(re.compile("Signed out: wrong operator token"))
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_event_about_the_evaluation_shown_makes_the_page_read_it_again(gateway, admin, page):
    """With the page's clock held, no interval refresh can happen: a read that follows the
    event's short debounce is the event's doing."""
    eval_id = submit(admin, "print('followed')")["eval_id"]
    wait_done(admin, eval_id)
    event = f'{{"eval_id": "{eval_id}", "event": "eval.status_changed"}}'
    page.route(
        "**/api/events",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"id: 7\nevent: eval.status_changed\ndata: {event}\n\n",
        ),
    )
    # Held from the start: timers fire only as the test advances the clock.
    start = datetime.now(UTC)
    page.clock.install(time=start)
    page.clock.pause_at(start + timedelta(seconds=1))
    signed_in(page, gateway.url)
    with page.expect_request(f"**/api/eval/{eval_id}"):
        page.goto(f"{gateway.url}/console/#/evaluation/{eval_id}")
    expect(page.get_by_test_id("stdout-primary")).to_have_text("followed")

    # Well short of the page's 5 s interval, past the event's 400 ms debounce.
    with page.expect_request(f"**/api/eval/{eval_id}"):
        page.clock.run_for(1000)
