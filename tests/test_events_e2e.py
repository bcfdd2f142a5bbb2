"""Live events over Server-Sent Events, over the whole suite: an evaluation's stream ends with
its result on both paths (and in shadow mode), Last-Event-ID resumes without a gap or a repeat,
tenants and scopes, filters, listeners released, and (on a suite of its own) a state Redis, where
storage appends the events, that goes away and comes back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import redis
from httpx_sse import EventSource
from prometheus_client.parser import text_string_to_metric_families

from crucible_contracts.ids import new_eval_id
from crucible_contracts.names import EVENTS_STREAM
from crucible_runtime.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e

ACME_KEY = "acme-events-key-0123456789abcdef"
GLOBEX_KEY = "globex-events-key-0123456789abcdef"
OPERATOR_TOKEN = "ops-token-for-the-events-tests"
OPERATOR = {"X-Operator-Token": OPERATOR_TOKEN}
# Long enough that a client connects while it runs.
SLEEPER = "import time\ntime.sleep(1.5)\nprint('slept')"
NOTICES = {"gap", "closed"}


@dataclass(frozen=True)
class Message:
    id: str
    event: str
    data: str

    @property
    def json(self) -> dict:
        return json.loads(self.data)


def sse_messages(response: httpx.Response, *, deadline: float) -> Iterator[Message]:
    """The messages of an SSE response as they arrive (httpx-sse's parser; comments, i.e.
    pings, are not messages); fails once `deadline` (time.monotonic) has passed."""
    for sse in EventSource(response).iter_sse():
        assert time.monotonic() < deadline, "the stream did not say what the test waits for"
        # httpx-sse also hands over the blank line after a ping comment once an id has been
        # seen; the SSE format dispatches no message with an empty data buffer.
        if sse.data:
            yield Message(sse.id, sse.event, sse.data)


@pytest.fixture(scope="module")
def gateways(suite):
    """Gateways of one module: one per path, one in shadow mode; keys of two tenants."""
    common = {
        "API_KEYS": f"acme:{ACME_KEY},globex:{GLOBEX_KEY}",
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "CELERY_ENABLED": "true",
        "EVENTS_PING_SECONDS": "1",
    }
    started = {
        "legacy": suite.gateway(**common, CELERY_PERCENTAGE="0"),
        "celery": suite.gateway(**common, CELERY_PERCENTAGE="1"),
        "shadow": suite.gateway(**common, CELERY_PERCENTAGE="0", MIGRATION_MODE="shadow"),
    }
    yield started
    for gateway in started.values():
        gateway.stop()


@pytest.fixture
def http() -> Iterator:
    """http(gateway, headers): a client of a gateway; closed after the test."""
    made: list[httpx.Client] = []

    def make(gateway, headers: dict | None = None) -> httpx.Client:
        made.append(httpx.Client(base_url=gateway.url, headers=headers or {}, timeout=30))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def stream_redis(suite) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(suite.state_redis.url, decode_responses=True)
    yield client
    client.close()


def head(stream_redis: redis.Redis) -> str:
    """The id of the events stream's last entry now: a Last-Event-ID from before what follows."""
    last = stream_redis.xrevrange(EVENTS_STREAM, count=1)
    return last[0][0] if last else "0-0"


def submit(client: httpx.Client, code: str = SLEEPER) -> str:
    answer = client.post("/api/eval", json={"code": code})
    assert answer.status_code == 202, answer.text
    return answer.json()["eval_id"]


@contextmanager
def follow(client: httpx.Client, path: str, *, after: str | None = None, **params):
    headers = {"Last-Event-ID": after} if after is not None else {}
    with client.stream("GET", path, headers=headers, params=params) as response:
        yield response


def read_to_end(client: httpx.Client, eval_id: str, *, after: str | None = None) -> list[Message]:
    """Every message of the evaluation's stream, until the server closes it."""
    with follow(client, f"/api/eval/{eval_id}/events", after=after) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_messages(response, deadline=time.monotonic() + 60))


def stream_position(message: Message) -> tuple[int, int]:
    ms, seq = message.id.split("-")
    return int(ms), int(seq)


def listeners(client: httpx.Client, stream: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "crucible_gateway_event_listeners" and sample.labels == {
                "stream": stream
            }:
                return sample.value
    return 0.0


def assert_ends_with_the_result(messages: list[Message], eval_id: str, output: str) -> None:
    last = messages[-1]
    assert last.event == "eval.status_changed"
    event = last.json
    assert (event["eval_id"], event["role"], event["status"]) == (eval_id, "primary", "completed")
    assert event["evaluation"]["status"] == "completed"
    assert event["evaluation"]["output"] == output
    # Only the last one carries the evaluation.
    assert all(message.json.get("evaluation") is None for message in messages[:-1])


# --- an evaluation's stream ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["legacy", "celery"])
def test_an_evaluations_stream_ends_with_its_result_on_either_path(gateways, http, path):
    client = http(gateways[path], {"X-API-Key": ACME_KEY})
    eval_id = submit(client)

    messages = read_to_end(client, eval_id)

    assert_ends_with_the_result(messages, eval_id, "slept\n")
    assert messages[-1].json["evaluation"]["backend"] == path
    assert {message.json["eval_id"] for message in messages} == {eval_id}
    assert all(message.event == message.json["event"] for message in messages)
    # Ids are stream positions, in order.
    positions = [stream_position(message) for message in messages]
    assert positions == sorted(positions)


def test_a_finished_evaluation_gets_its_final_event_at_once(gateways, http):
    client = http(gateways["celery"], {"X-API-Key": ACME_KEY})
    eval_id = submit(client, "print('done')")
    read_to_end(client, eval_id)

    again = read_to_end(client, eval_id)

    assert len(again) == 1
    assert_ends_with_the_result(again, eval_id, "done\n")
    stream_position(again[0])


def test_a_shadow_runs_events_are_in_the_stream_with_their_role(gateways, http, stream_redis):
    client = http(gateways["shadow"], {"X-API-Key": ACME_KEY})
    before = head(stream_redis)
    eval_id = submit(client)

    messages = read_to_end(client, eval_id, after=before)

    assert_ends_with_the_result(messages, eval_id, "slept\n")
    created = [(m.json["role"], m.json["backend"]) for m in messages if m.event == "eval.created"]
    assert created == [("primary", "legacy"), ("shadow", "celery")]


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    gateways, http, stream_redis
):
    client = http(gateways["legacy"], {"X-API-Key": ACME_KEY})
    before = head(stream_redis)
    eval_id = submit(client)

    with follow(client, f"/api/eval/{eval_id}/events", after=before) as response:
        first = next(sse_messages(response, deadline=time.monotonic() + 60))
    rest = read_to_end(client, eval_id, after=first.id)
    whole = read_to_end(client, eval_id, after=before)

    assert [first, *rest] == whole
    assert len({message.id for message in whole}) == len(whole)
    assert [m.json["status"] for m in whole] == ["queued", "running", "completed"]
    assert_ends_with_the_result(whole, eval_id, "slept\n")


def test_a_resume_older_than_the_stream_falls_back_to_the_stored_timeline(
    gateways, http, stream_redis
):
    client = http(gateways["legacy"], {"X-API-Key": ACME_KEY})
    before = head(stream_redis)
    eval_id = submit(client, "print('old')")
    read_to_end(client, eval_id)
    # Everything up to now is trimmed away, as a long absence would see it.
    stream_redis.xtrim(EVENTS_STREAM, maxlen=0, approximate=False)

    messages = read_to_end(client, eval_id, after=before)

    assert [m.json["status"] for m in messages] == ["queued", "running", "completed"]
    assert_ends_with_the_result(messages, eval_id, "old\n")


# --- tenants and scopes ------------------------------------------------------------------------------


def test_another_tenants_evaluation_answers_404_like_an_unknown_one(gateways, http):
    gateway = gateways["celery"]
    acme = http(gateway, {"X-API-Key": ACME_KEY})
    globex = http(gateway, {"Authorization": f"Bearer {GLOBEX_KEY}"})
    eval_id = submit(acme, "print(1)")
    unknown = new_eval_id()

    foreign = globex.get(f"/api/eval/{eval_id}/events")
    missing = globex.get(f"/api/eval/{unknown}/events")
    malformed = globex.get("/api/eval/not-an-id/events")

    assert foreign.status_code == missing.status_code == malformed.status_code == 404
    assert foreign.text.replace(eval_id, "?") == missing.text.replace(unknown, "?")
    # The owner follows it; listeners refused with a 404 hold no place.
    assert_ends_with_the_result(read_to_end(acme, eval_id), eval_id, "1\n")
    wait_for(lambda: listeners(acme, "evaluation") == 0, what="no listener left")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": ACME_KEY}, 403),
        ({"Authorization": f"Bearer {ACME_KEY}"}, 403),
        ({"X-Operator-Token": "not-the-token"}, 401),
    ],
)
def test_the_stream_of_every_event_needs_the_operator_scope(gateways, http, headers, status):
    answer = http(gateways["legacy"], headers).get("/api/events")
    assert answer.status_code == status, answer.text


# --- the operators' stream ----------------------------------------------------------------------------


def test_the_operators_stream_relays_live_events_with_their_headers_auth(gateways, http):
    gateway = gateways["celery"]
    operator, acme = http(gateway, OPERATOR), http(gateway, {"X-API-Key": ACME_KEY})
    with follow(operator, "/api/events") as response:
        assert response.status_code == 200
        wait_for(lambda: listeners(acme, "all") >= 1, what="the listener to be registered")
        eval_id = submit(acme, "print(2)")
        seen = []
        for message in sse_messages(response, deadline=time.monotonic() + 60):
            if message.json["eval_id"] == eval_id:
                seen.append(message)
                if message.json.get("evaluation") is not None:
                    break
    assert [m.json["status"] for m in seen] == ["queued", "running", "completed"]
    assert seen[-1].json["evaluation"]["output"] == "2\n"


def test_filters_keep_only_the_events_they_name(gateways, http, stream_redis):
    legacy = http(gateways["legacy"], {"X-API-Key": ACME_KEY})
    celery = http(gateways["celery"], {"X-API-Key": ACME_KEY})
    operator = http(gateways["legacy"], OPERATOR)
    before = head(stream_redis)
    on_legacy = submit(legacy, "print('l')")
    read_to_end(legacy, on_legacy)
    on_celery = submit(celery, "print('c')")
    read_to_end(celery, on_celery)

    wanted = {"backend": "celery", "role": "primary", "event": "eval.status_changed"}
    with follow(operator, "/api/events", after=before, **wanted) as response:
        assert response.status_code == 200
        seen = []
        for message in sse_messages(response, deadline=time.monotonic() + 60):
            seen.append(message)
            if message.json["eval_id"] == on_celery and message.json["status"] == "completed":
                break

    assert all(
        (m.json["backend"], m.json["role"], m.event) == ("celery", "primary", "eval.status_changed")
        for m in seen
    )
    ours = [m.json["status"] for m in seen if m.json["eval_id"] == on_celery]
    assert ours == ["running", "completed"]
    assert on_legacy not in {m.json["eval_id"] for m in seen}
    with follow(operator, "/api/events", after=before, status="completed") as response:
        for message in sse_messages(response, deadline=time.monotonic() + 60):
            assert message.json["status"] == "completed"
            if message.json["eval_id"] == on_celery:
                break


@pytest.mark.parametrize(
    "params",
    [{"backend": "nope"}, {"status": "done"}, {"event": "eval.deleted"}, {"role": "tertiary"}],
)
def test_a_bad_filter_is_a_422_that_names_it(gateways, http, params):
    answer = http(gateways["legacy"], OPERATOR).get("/api/events", params=params)
    assert answer.status_code == 422
    assert next(iter(params)) in answer.text


@pytest.mark.parametrize("path", ["/api/events", "/api/eval/{eval_id}/events"])
@pytest.mark.parametrize(
    "last_event_id", ["abc", "1-2-3", "-1-0", "1733300000000", "99999999999999999999999-0"]
)
def test_a_malformed_last_event_id_is_a_400(gateways, http, path, last_event_id):
    client = http(gateways["legacy"], OPERATOR)
    answer = client.get(
        path.format(eval_id=new_eval_id()), headers={"Last-Event-ID": last_event_id}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "malformed_request"
    assert "Last-Event-ID" in answer.json()["error"]["message"]


def test_a_resume_older_than_the_stream_says_so_in_a_gap_notice(gateways, http, stream_redis):
    operator = http(gateways["legacy"], OPERATOR)
    acme = http(gateways["legacy"], {"X-API-Key": ACME_KEY})
    read_to_end(acme, submit(acme, "print(3)"))
    stream_redis.xtrim(EVENTS_STREAM, maxlen=0, approximate=False)
    eval_id = submit(acme, "print(4)")
    read_to_end(acme, eval_id)

    with follow(operator, "/api/events", after="1-0") as response:
        messages = sse_messages(response, deadline=time.monotonic() + 60)
        gap = next(messages)
        after_gap = [next(messages)]
        while after_gap[-1].json["eval_id"] != eval_id:
            after_gap.append(next(messages))

    assert (gap.event, gap.id, gap.json["reason"]) == ("gap", "1-0", "trimmed")
    assert after_gap[-1].json["status"] == "queued"


def test_an_id_the_stream_never_made_is_a_gap_too(gateways, http):
    """As after Redis was emptied: the client's id lies past everything the stream made."""
    operator = http(gateways["legacy"], OPERATOR)
    with follow(operator, "/api/events", after="99999999999999-0") as response:
        gap = next(sse_messages(response, deadline=time.monotonic() + 30))
    assert (gap.event, gap.id, gap.json["reason"]) == ("gap", "99999999999999-0", "reset")


# --- listeners --------------------------------------------------------------------------------------


def test_a_listener_that_disconnects_mid_stream_is_released(gateways, http):
    gateway = gateways["legacy"]
    acme = http(gateway, {"X-API-Key": ACME_KEY})
    eval_id = submit(acme, "import time\ntime.sleep(20)")
    operator = http(gateway, OPERATOR)

    with follow(acme, f"/api/eval/{eval_id}/events"), follow(operator, "/api/events"):
        wait_for(lambda: listeners(acme, "evaluation") == 1, what="the evaluation's listener")
        wait_for(lambda: listeners(acme, "all") == 1, what="the operators' listener")

    wait_for(lambda: listeners(acme, "evaluation") == 0, what="the evaluation's listener freed")
    wait_for(lambda: listeners(acme, "all") == 0, what="the operators' listener freed")
    operator.post(f"/api/eval/{eval_id}/cancel")  # frees the executor (409 if it ended)


def test_past_the_listener_cap_a_client_gets_503_with_retry_after(suite, http):
    gateway = suite.gateway(OPERATOR_TOKEN=OPERATOR_TOKEN, EVENTS_MAX_LISTENERS="1")
    operator = http(gateway, OPERATOR)
    with follow(operator, "/api/events") as first:
        assert first.status_code == 200
        refused = operator.get("/api/events")
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1

    def place_is_free() -> bool:
        with follow(operator, "/api/events", after="") as answer:
            return answer.status_code == 200

    wait_for(place_is_free, what="the place to be free again")


# --- the state Redis goes away (a suite of the module's own) -----------------------------------------


def test_a_state_redis_outage_neither_hangs_the_gateway_nor_stops_the_streams(own_suite, http):
    gateway = own_suite.gateway(OPERATOR_TOKEN=OPERATOR_TOKEN, EVENTS_PING_SECONDS="1")
    state = own_suite.state_redis
    client = http(gateway, OPERATOR)
    finished = submit(client, "print('before')")
    read_to_end(client, finished)
    # Ends while Redis is down: its end is committed but cannot be published.
    running = submit(client, "import time\ntime.sleep(4)\nprint('meanwhile')")
    with (
        follow(client, "/api/events") as live,
        follow(client, f"/api/eval/{running}/events") as following,
    ):
        assert live.status_code == following.status_code == 200
        wait_for(lambda: listeners(client, "evaluation") == 1, what="the evaluation's listener")
        state.stop()

        assert client.get("/health").status_code == 200
        # Storage is the truth: a finished evaluation's stream still ends with its result.
        assert_ends_with_the_result(read_to_end(client, finished), finished, "before\n")
        # A resume the gateway cannot serve now says so.
        with follow(client, "/api/events", after="1-0") as resumed:
            gap = next(sse_messages(resumed, deadline=time.monotonic() + 30))
        assert (gap.event, gap.json["reason"]) == ("gap", "unavailable")
        wait_for(
            lambda: client.get(f"/api/eval/{running}").json()["status"] == "completed",
            what="the running evaluation to end while Redis is down",
        )

        own_suite.starter.restart(state)
        wait_for(lambda: redis.Redis.from_url(state.url).ping(), what="the state Redis")
        # Once the gateway reads again, it asks storage, which says the evaluation ended.
        followed = list(sse_messages(following, deadline=time.monotonic() + 60))
        eval_id = wait_for(
            lambda: (
                (r := client.post("/api/eval", json={"code": "print('after')"}))
                and r.status_code == 202
                and r.json()["eval_id"]
            ),
            what="a submission to be accepted again",
        )
        statuses = []
        for message in sse_messages(live, deadline=time.monotonic() + 60):
            if message.json["eval_id"] == eval_id:
                statuses.append(message.json["status"])
                if message.json["evaluation"] is not None:
                    break

    assert_ends_with_the_result(followed, running, "meanwhile\n")
    # The stream opened before the outage relays the events of one submitted after it.
    assert statuses == ["queued", "running", "completed"]
