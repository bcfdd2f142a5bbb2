"""End to end on PostgreSQL: what a program prints and what a client sends come back byte for byte,
NUL and invalid UTF-8 included, on either path."""

from __future__ import annotations

import base64

import httpx
import pytest

pytestmark = pytest.mark.e2e

PATHS = ["legacy", "celery"]


@pytest.fixture(scope="module", params=PATHS)
def gateway(request, suite):
    """A gateway that sends every evaluation down one path; yields (gateway, backend)."""
    percentage = "1.0" if request.param == "celery" else "0"
    started = suite.gateway(CELERY_ENABLED="true", CELERY_PERCENTAGE=percentage)
    yield started, request.param
    started.stop()


@pytest.fixture
def client(gateway, client_for):
    started, backend = gateway
    return client_for(started), backend


def _run(client, code: str, **fields) -> dict:
    http, backend = client
    view = http.wait_done(http.submit(code, **fields)["eval_id"])
    assert view["backend"] == backend
    return view


def test_a_program_that_prints_nul_completes_with_its_output(client):
    view = _run(client, "print('a\\x00b')")
    assert (view["status"], view["output"], view["output_base64"]) == (
        "completed",
        "a\x00b\n",
        None,
    )


def test_invalid_utf8_output_completes_and_its_exact_bytes_come_back(client):
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00ok')\nsys.stderr.buffer.write(b'\\x80')"
    view = _run(client, code)
    assert view["status"] == "completed", view
    assert view["output"] == "\ufffd\ufffd\x00ok"
    assert base64.b64decode(view["output_base64"]) == b"\xff\xfe\x00ok"
    assert (view["error"], base64.b64decode(view["error_base64"])) == ("\ufffd", b"\x80")


def test_stdin_with_nul_reaches_the_program_and_is_stored(client):
    view = _run(client, "import sys\nsys.stdout.write(sys.stdin.read()[::-1])", stdin="a\x00b")
    assert (view["status"], view["output"], view["stdin"]) == ("completed", "b\x00a", "a\x00b")


def test_code_with_nul_is_accepted_and_stored_as_sent(client):
    code = "print(1)\n# \x00"
    view = _run(client, code)
    assert view["code"] == code
    # What an interpreter makes of NUL in its source is its business (Python 3.12 refuses it,
    # older ones read up to it): a program's outcome either way, never the platform's `error`.
    assert view["status"] in ("completed", "failed"), view


def test_the_shared_suite_stores_on_postgresql(suite):
    assert httpx.get(f"{suite.storage.url}/health").json()["database"] == "postgresql"
