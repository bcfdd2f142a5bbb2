"""The Runner driven directly: a sandbox that cannot start is an `error` result, never an exception."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "broken",
    [
        {"shell_path": "/nonexistent/sh"},  # bwrap starts, cannot exec inside the sandbox
        {"prlimit_path": "/nonexistent/prlimit"},  # nothing can be spawned at all
        {"sandbox_ro_binds": []},  # an empty root: not even the interpreter is there
    ],
)
def test_a_sandbox_that_cannot_start_is_an_error_result(run, runner_for, broken):
    result = run("print('never')", runner=runner_for(**broken))
    assert result.status == "error"
    assert result.reason == "sandbox_failed"
    assert result.exit_code is None
    assert result.output == ""
    assert result.error


def test_a_program_printing_like_bwrap_is_still_its_own_failure(run):
    result = run("import sys\nprint('bwrap: execvp failed', file=sys.stderr)\nsys.exit(1)")
    assert (result.status, result.exit_code) == ("failed", 1)


@pytest.mark.parametrize("mode", ["bwrap", "unshare"])
def test_both_modes_give_the_same_result_for_the_same_program(run, runner_for, mode):
    code = (
        "import sys\nprint(sys.stdin.read().upper())\nprint('warn', file=sys.stderr)\nsys.exit(5)"
    )
    result = run(code, runner=runner_for(mode), stdin="abc")
    assert (result.status, result.exit_code, result.output, result.error) == (
        "failed",
        5,
        "ABC\n",
        "warn\n",
    )


@pytest.mark.parametrize(
    ("code", "output", "output_base64"),
    [
        ("print('a\\x00b')", "a\x00b\n", None),
        (
            "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00ok')",
            "\ufffd\ufffd\x00ok",
            "//4Ab2s=",
        ),
    ],
    ids=["nul", "invalid-utf8"],
)
def test_what_a_program_writes_comes_back_exactly(run, code, output, output_base64):
    result = run(f"{code}\nimport sys\nsys.stderr.buffer.write(b'\\x80')")
    assert (result.status, result.output, result.output_base64) == (
        "completed",
        output,
        output_base64,
    )
    assert (result.error, result.error_base64) == ("\ufffd", "gA==")
