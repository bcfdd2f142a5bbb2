"""Unit tests of the shadow comparison: normalisation rules, the outcome table, deadlines, the diff."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from crucible_contracts.models import (
    ComparisonOutcome,
    ComparisonView,
    EvaluationView,
    RunView,
)
from crucible_contracts.names import Backend, Role
from crucible_contracts.output import encode_stream
from crucible_contracts.status import TERMINAL, Status
from crucible_gateway.migration.comparison import (
    compare,
    due_comparison,
    is_overdue,
    missing,
    primary_run,
    shadow_deadline,
    shadow_run,
)
from crucible_gateway.migration.normalisation import (
    DEFAULT_RULES,
    MAX_PATTERN_CHARS,
    MAX_RULES,
    ComparisonRules,
    NormalisationRule,
    normalise,
)
from crucible_gateway.migration.side_by_side import (
    DIFF_MAX_LINE_CHARS,
    DIFF_MAX_LINES,
    side_by_side,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
RULES = ComparisonRules()
NON_TERMINAL = [Status.QUEUED, Status.RUNNING]


def run(
    role: Role = Role.PRIMARY,
    backend: Backend = Backend.LEGACY,
    status: Status = Status.COMPLETED,
    **fields,
) -> RunView:
    """A run that ended a second after it was created, unless told otherwise."""
    terminal = status.is_terminal()
    defaults = {
        "exit_code": 0 if status is Status.COMPLETED else None,
        "output": "",
        "error": "",
        "created_at": T0,
        "started_at": T0 + timedelta(milliseconds=250) if status is not Status.QUEUED else None,
        "completed_at": T0 + timedelta(seconds=1) if terminal else None,
    }
    return RunView(role=role, backend=backend, status=status, **{**defaults, **fields})


def shadow_of(primary: RunView, **fields) -> RunView:
    """The same run as a shadow on the other path, with `fields` changed."""
    data = primary.model_dump()
    data.update(role=Role.SHADOW, backend=primary.backend.other, **fields)
    return RunView(**data)


def evaluation(*runs: RunView, timeout: float = 30, **fields) -> EvaluationView:
    """An evaluation whose flattened fields are its primary run's (as storage shows it)."""
    primary = next((r for r in runs if r.role is Role.PRIMARY), run())
    flat = primary.model_dump(exclude={"role"})
    data = {
        "eval_id": "e" * 32,
        "language": "python",
        "code": "print(1)",
        "timeout": timeout,
        **flat,
        "runs": list(runs),
        **fields,
    }
    return EvaluationView(**data)


# --- rules: validation and round trip ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"name": "addr", "kind": "mask"}, "addr"),
        ({"name": "broken", "kind": "mask", "pattern": "(unclosed"}, "broken"),
        ({"name": "strip", "kind": "strip_trailing_whitespace", "pattern": "x"}, "strip"),
        ({"name": "long", "kind": "mask", "pattern": "a" * (MAX_PATTERN_CHARS + 1)}, "pattern"),
        ({"name": "", "kind": "mask", "pattern": "a"}, "name"),
        ({"name": "k", "kind": "uppercase"}, "kind"),
        ({"name": "f", "kind": "mask", "pattern": "a", "fields": ["output"]}, "fields"),
        ({"name": "f", "kind": "mask", "pattern": "a", "fields": []}, "fields"),
        ({"name": "x", "kind": "mask", "pattern": "a", "flags": "i"}, "flags"),
    ],
    ids=[
        "mask-without-pattern",
        "pattern-does-not-compile",
        "strip-with-pattern",
        "pattern-too-long",
        "empty-name",
        "unknown-kind",
        "unknown-field",
        "no-fields",
        "unknown-key",
    ],
)
def test_an_invalid_rule_is_refused_naming_the_rule_or_the_field(rule, words):
    with pytest.raises(ValidationError, match=words):
        NormalisationRule.model_validate(rule)


def test_too_many_rules_are_refused():
    rules = [{"name": f"r{i}", "kind": "mask", "pattern": "a"} for i in range(MAX_RULES + 1)]
    with pytest.raises(ValidationError, match="rules"):
        ComparisonRules.model_validate({"rules": rules})


def test_repeated_rule_names_are_refused():
    rules = [{"name": "same", "kind": "mask", "pattern": p} for p in ("a", "b")]
    with pytest.raises(ValidationError, match="same"):
        ComparisonRules.model_validate({"rules": rules})


@pytest.mark.parametrize(
    "settings",
    [{"rules_version": 0}, {"shadow_grace_seconds": 0}, {"shadow_grace_seconds": float("inf")}],
)
def test_rules_version_and_grace_out_of_range_are_refused(settings):
    with pytest.raises(ValidationError):
        ComparisonRules.model_validate(settings)


def test_the_defaults_are_the_default_rules():
    assert RULES.rules == list(DEFAULT_RULES)
    assert RULES.rules_version == 1
    assert RULES.shadow_grace_seconds == 120


@pytest.mark.parametrize(
    "rules",
    [
        ComparisonRules(),
        ComparisonRules(
            rules_version=7,
            shadow_grace_seconds=15.5,
            rules=[
                NormalisationRule(name="ids", kind="mask", pattern=r"id=\d+", fields=["stderr"]),
                NormalisationRule(name="ws", kind="strip_trailing_whitespace"),
            ],
        ),
        ComparisonRules(rules=[]),
    ],
    ids=["defaults", "custom", "no-rules"],
)
def test_rules_round_trip_through_the_json_settings_document(rules):
    stored = json.loads(json.dumps(rules.model_dump(mode="json")))
    assert ComparisonRules.model_validate(stored) == rules
    # The gateway re-validates its own python dump when it applies a change, too.
    assert ComparisonRules.model_validate(rules.model_dump()) == rules


# --- normalise ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a  \nb\t\n\n  \n", "a\nb"),
        ("crlf\r\nline \r\n", "crlf\nline"),
        ("<object object at 0x7f3a2c1b9e70>", "<object object at 0x<addr>>"),
        ("at 0X7F3A and 0xdeadBEEF", "at 0X7F3A and 0x<addr>"),
        ("10x5 grid", "10x5 grid"),
        ("/tmp/tmpa1b2c3d4", "<tmp>"),
        ("'/tmp/tmpa1b2/file.txt'", "'<tmp>'"),
        ('File "/var/tmp/x_1/main.py", line 3', 'File "<tmp>", line 3'),
        ("cd /tmp; ls", "cd <tmp>; ls"),
        ("/home/me/tmp/x /tmpfile", "/home/me/tmp/x /tmpfile"),
        ("2025-03-01 12:34:56.789012", "<time>"),
        ("2025-03-01T12:34:56.789012", "<time>"),
        ("2025-03-01T12:34:56+00:00", "<time>"),
        ("2025-03-01T12:34:56Z done", "<time> done"),
        ("at 2025-03-01T12:34 sharp", "at <time> sharp"),
        ("took 00:00:01.5 at 23:59:59", "took <time> at <time>"),
        ("date 2025-03-01 only", "date 2025-03-01 only"),
        ("ratio 12:34 and 1:2:3", "ratio 12:34 and 1:2:3"),
        ("12:34:56:78", "12:34:56:78"),
    ],
    ids=[
        "trailing-whitespace-and-blank-lines",
        "carriage-returns",
        "object-address",
        "lowercase-x-only",
        "not-an-address",
        "mkdtemp",
        "path-below-tmp-in-quotes",
        "var-tmp-in-traceback",
        "bare-tmp",
        "not-temporary",
        "datetime-now",
        "isoformat",
        "isoformat-with-zone",
        "zulu",
        "minutes-only",
        "times",
        "date-alone",
        "not-times",
        "too-many-parts",
    ],
)
def test_the_default_rules_mask_noise_and_keep_the_rest(text, expected):
    assert normalise(text, RULES, "stdout") == expected


PYTHON_NOISE = """
import datetime, tempfile
print(object())
print(datetime.datetime.now())
print(datetime.datetime.now().isoformat())
print(datetime.datetime.now(datetime.timezone.utc).isoformat())
print(tempfile.mkdtemp())
print("result:", sum(range(10)), "   ")
"""


def test_real_python_noise_is_equal_after_normalisation():
    outputs = [
        subprocess.run(
            [sys.executable, "-c", PYTHON_NOISE], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    first, second = (normalise(output, RULES, "stdout") for output in outputs)
    assert first == second
    assert first.splitlines() == [
        "<object object at 0x<addr>>",
        "<time>",
        "<time>",
        "<time>",
        "<tmp>",
        "result: 45",
    ]


def test_a_rule_applies_only_to_its_fields_and_rules_apply_in_order():
    rules = ComparisonRules(
        rules=[
            NormalisationRule(name="ids", kind="mask", pattern=r"id=\d+", fields=["stderr"]),
            NormalisationRule(name="masked", kind="mask", pattern="<masked>", replacement="X"),
        ]
    )
    assert normalise("id=42", rules, "stdout") == "id=42"
    assert normalise("id=42", rules, "stderr") == "X"


def test_a_replacement_is_literal_text():
    rules = ComparisonRules(
        rules=[NormalisationRule(name="n", kind="mask", pattern=r"(\d+)", replacement=r"\1\g<0>")]
    )
    assert normalise("a 12 b", rules, "stdout") == r"a \1\g<0> b"


def test_normalise_refuses_a_field_that_is_not_compared_as_text():
    with pytest.raises(ValueError, match="stdout, stderr"):
        normalise("x", RULES, "output")  # type: ignore[arg-type]


NOISY_TOKENS = st.sampled_from(
    [
        *"0123456789abcdefxXTZ:-.+/ \t\n\r<>'\"_",
        *("0x", "/tmp", "/var/tmp/", "2025-03-01T", "12:34:56", ".123456", "+00:00"),
        *("<addr>", "<time>", "<tmp>"),
    ]
)
noisy_text = st.lists(NOISY_TOKENS, max_size=40).map("".join)


@given(text=st.one_of(noisy_text, st.text(max_size=200)))
@example(text="0x0/tmp")  # a mask's replacement can make a boundary before /tmp...
@example(text="/tmp12:34:56")  # ...or after it: so temporary paths are masked last
def test_normalise_is_idempotent(text):
    for field in ("stdout", "stderr"):
        once = normalise(text, RULES, field)
        assert normalise(once, RULES, field) == once


# --- compare: the outcome table ----------------------------------------------------------------

PRIMARY = run(output="hello\n", error="")
ERROR = {"status": Status.ERROR, "exit_code": None, "reason": "executors unreachable"}


@pytest.mark.parametrize(
    ("primary", "shadow", "outcome", "differing", "normalised"),
    [
        (PRIMARY, shadow_of(PRIMARY), "match", [], []),
        (
            run(status=Status.FAILED, exit_code=1, error="Traceback\nZeroDivisionError"),
            shadow_of(run(status=Status.FAILED, exit_code=1, error="Traceback\nZeroDivisionError")),
            "match",
            [],
            [],
        ),
        (run(output=None), shadow_of(run(output="")), "match", [], []),
        (
            run(output="<object object at 0x7f01>\n"),
            shadow_of(run(output="<object object at 0x7f99>")),
            "match_after_normalisation",
            [],
            ["stdout"],
        ),
        (PRIMARY, shadow_of(PRIMARY, output="goodbye\n"), "mismatch", ["stdout"], []),
        (
            run(output="at 0x1 ", error="x"),
            shadow_of(run(output="at 0x2", error="y")),
            "mismatch",
            ["stderr"],
            ["stdout"],
        ),
        (
            PRIMARY,
            shadow_of(PRIMARY, status=Status.FAILED, exit_code=1),
            "mismatch",
            ["status", "exit_code"],
            [],
        ),
        (
            PRIMARY,
            shadow_of(PRIMARY, status=Status.TIMEOUT, exit_code=None, output=""),
            "mismatch",
            ["status", "exit_code", "stdout"],
            [],
        ),
        (
            run(**ERROR),
            shadow_of(PRIMARY),
            "primary_failed_only",
            ["status", "exit_code", "stdout"],
            [],
        ),
        (
            PRIMARY,
            shadow_of(PRIMARY, **ERROR, output="hello   "),
            "shadow_failed_only",
            ["status", "exit_code", "stdout"],
            ["stdout"],
        ),
        (run(**ERROR), shadow_of(run(**ERROR)), "both_failed", [], []),
        (
            run(**ERROR, error="worker lost"),
            shadow_of(run(**ERROR, error="no executor")),
            "both_failed",
            ["stderr"],
            [],
        ),
    ],
    ids=[
        "identical",
        "same-user-failure-is-agreement",
        "none-output-is-empty",
        "equal-after-normalisation",
        "stdout-differs",
        "stdout-normalised-stderr-differs",
        "exit-status-differs",
        "timeout-on-one-path",
        "primary-platform-error",
        "shadow-platform-error-raw-fields",
        "both-platform-errors",
        "both-errors-raw-difference",
    ],
)
def test_compare_outcome_table(primary, shadow, outcome, differing, normalised):
    record = compare(primary, shadow, RULES)
    assert record.outcome == ComparisonOutcome(outcome)
    assert record.differing_fields == differing
    assert record.details["normalised_fields"] == normalised


def test_the_details_name_each_runs_backend_status_and_durations():
    primary = run(runtime_ms=420.5)
    shadow = shadow_of(
        primary,
        status=Status.FAILED,
        exit_code=137,
        reason="memory",
        runtime_ms=None,
        started_at=None,
        completed_at=T0 + timedelta(seconds=3),
    )
    details = compare(primary, shadow, ComparisonRules(rules_version=4)).details
    assert details == {
        "primary": {
            "backend": "legacy",
            "status": "completed",
            "exit_code": 0,
            "reason": None,
            "runtime_ms": 420.5,
            "queue_wait_ms": 250.0,
            "duration_ms": 1000.0,
        },
        "shadow": {
            "backend": "celery",
            "status": "failed",
            "exit_code": 137,
            "reason": "memory",
            "runtime_ms": None,
            "queue_wait_ms": None,
            "duration_ms": 3000.0,
        },
        "rules_version": 4,
        "normalised_fields": [],
    }
    assert json.loads(json.dumps(details)) == details


@pytest.mark.parametrize("status", NON_TERMINAL)
@pytest.mark.parametrize("role", ["primary", "shadow"])
def test_compare_refuses_a_run_that_has_not_ended(status, role):
    ended, unfinished = PRIMARY, run(status=status)
    runs = (unfinished, shadow_of(ended)) if role == "primary" else (ended, shadow_of(unfinished))
    with pytest.raises(ValueError, match=f"{role} run has not ended"):
        compare(*runs, RULES)


printable = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
terminal_runs = st.builds(
    run,
    status=st.sampled_from(sorted(TERMINAL)),
    exit_code=st.none() | st.integers(-9, 255),
    output=st.none() | printable,
    error=st.none() | printable,
)


@given(primary=terminal_runs)
def test_a_run_compared_with_itself_is_a_match_unless_it_is_a_platform_error(primary):
    record = compare(primary, shadow_of(primary), RULES)
    expected = "both_failed" if primary.status is Status.ERROR else "match"
    assert record.outcome == ComparisonOutcome(expected)
    assert record.differing_fields == []


SWAPPED = {
    "primary_failed_only": "shadow_failed_only",
    "shadow_failed_only": "primary_failed_only",
}


@given(primary=terminal_runs, other=terminal_runs)
def test_swapping_the_roles_swaps_only_the_failed_side(primary, other):
    forward = compare(primary, shadow_of(other), RULES)
    backward = compare(other, shadow_of(primary), RULES)
    assert backward.outcome == SWAPPED.get(forward.outcome, forward.outcome)
    assert backward.differing_fields == forward.differing_fields


# --- deadlines and the sweep's decision --------------------------------------------------------


def test_the_shadow_deadline_is_the_time_limit_plus_the_grace():
    rules = ComparisonRules(shadow_grace_seconds=60)
    assert shadow_deadline(evaluation(timeout=30), rules) == T0 + timedelta(seconds=90)


@pytest.mark.parametrize(
    ("status", "after_deadline", "overdue"),
    [
        (Status.RUNNING, timedelta(microseconds=1), True),
        (Status.QUEUED, timedelta(hours=1), True),
        (Status.RUNNING, timedelta(0), False),
        (Status.QUEUED, -timedelta(seconds=1), False),
        (Status.COMPLETED, timedelta(hours=1), False),
        (Status.ERROR, timedelta(hours=1), False),
    ],
    ids=["just-past", "long-past", "at-the-deadline", "before", "ended", "ended-with-error"],
)
def test_is_overdue_only_when_not_ended_and_past_the_deadline(status, after_deadline, overdue):
    shadow = run(role=Role.SHADOW, backend=Backend.CELERY, status=status)
    now = T0 + timedelta(seconds=30 + 120) + after_deadline
    assert is_overdue(evaluation(timeout=30), shadow, RULES, now) is overdue


def test_missing_records_the_shadow_as_it_was():
    shadow = run(role=Role.SHADOW, backend=Backend.CELERY, status=Status.QUEUED)
    record = missing(PRIMARY, shadow, RULES)
    assert record.outcome is ComparisonOutcome.SHADOW_MISSING
    assert record.differing_fields == []
    assert record.details["shadow"]["status"] == "queued"
    assert record.details["shadow"]["duration_ms"] is None
    assert record.details["primary"]["duration_ms"] == 1000.0
    assert record.details["rules_version"] == 1


LATE = T0 + timedelta(seconds=30 + 120 + 1)
EARLY = T0 + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("runs", "now", "expected"),
    [
        ((PRIMARY,), LATE, None),
        ((run(status=Status.RUNNING), shadow_of(PRIMARY)), LATE, None),
        ((run(status=Status.QUEUED), shadow_of(run(status=Status.QUEUED))), LATE, None),
        ((PRIMARY, shadow_of(PRIMARY)), EARLY, "match"),
        ((PRIMARY, shadow_of(PRIMARY, output="other")), LATE, "mismatch"),
        ((PRIMARY, shadow_of(run(status=Status.RUNNING))), EARLY, None),
        ((PRIMARY, shadow_of(run(status=Status.RUNNING))), LATE, "shadow_missing"),
        ((run(**ERROR), shadow_of(run(status=Status.QUEUED))), LATE, "shadow_missing"),
    ],
    ids=[
        "no-shadow",
        "primary-running",
        "neither-started",
        "both-ended",
        "both-ended-late",
        "shadow-running-in-time",
        "shadow-overdue",
        "primary-error-shadow-overdue",
    ],
)
def test_due_comparison(runs, now, expected):
    record = due_comparison(evaluation(*runs, timeout=30), RULES, now)
    assert (record.outcome if record else None) == expected


def test_the_primary_run_falls_back_to_the_evaluations_flattened_fields():
    shadow = shadow_of(PRIMARY, output="hello\n")
    only_shadow = evaluation(shadow, output="hello\n")
    assert primary_run(only_shadow).role is Role.PRIMARY
    assert primary_run(only_shadow).backend is Backend.LEGACY
    assert shadow_run(only_shadow) == shadow
    assert due_comparison(only_shadow, RULES, EARLY).outcome is ComparisonOutcome.MATCH


# --- side by side ------------------------------------------------------------------------------


def recorded(record, *, eval_id: str = "e" * 32) -> ComparisonView:
    return ComparisonView(eval_id=eval_id, created_at=LATE, **record.model_dump())


def test_side_by_side_before_a_comparison_is_pending():
    shadow = shadow_of(run(status=Status.RUNNING))
    view = side_by_side(evaluation(PRIMARY, shadow), None, ComparisonRules(rules_version=3))
    assert view.outcome == "pending"
    assert view.recorded_at is None
    assert view.differing_fields == []
    assert view.rules_version == 3
    assert view.primary == PRIMARY
    assert view.shadow == shadow
    assert view.diff == {
        "stdout": "--- primary (legacy)\n+++ shadow (celery)\n@@ -1 +0,0 @@\n-hello"
    }


def test_side_by_side_shows_the_recorded_comparison_and_a_diff_of_what_differs():
    primary = run(output="a\nb\nc\n", error="warning: 0x1f\n")
    shadow = shadow_of(primary, output="a\nB\nc\n")
    record = compare(primary, shadow, RULES)
    view = side_by_side(evaluation(primary, shadow), recorded(record), ComparisonRules())
    assert view.outcome is ComparisonOutcome.MISMATCH
    assert view.differing_fields == ["stdout"]
    assert view.recorded_at == LATE
    assert set(view.diff) == {"stdout"}
    assert view.diff["stdout"].splitlines() == [
        "--- primary (legacy)",
        "+++ shadow (celery)",
        "@@ -1,3 +1,3 @@",
        " a",
        "-b",
        "+B",
        " c",
    ]
    assert json.loads(view.model_dump_json())["outcome"] == "mismatch"


def test_the_diff_shows_raw_noise_and_the_recorded_rules_version():
    primary = run(backend=Backend.CELERY, output="<object at 0x1>", error="x")
    shadow = shadow_of(primary, output="<object at 0x2>", error="y")
    record = compare(primary, shadow, RULES)
    view = side_by_side(
        evaluation(primary, shadow), recorded(record), ComparisonRules(rules_version=9)
    )
    assert view.normalised_fields == ["stdout"]
    assert view.rules_version == 1
    assert set(view.diff) == {"stdout", "stderr"}
    assert view.diff["stderr"].startswith("--- primary (celery)\n+++ shadow (legacy)\n")


def test_a_long_diff_is_cut_with_a_note():
    primary = run(output="\n".join(f"line {i}" for i in range(500)))
    shadow = shadow_of(primary, output="\n".join(f"LINE {i}" for i in range(500)))
    diff = side_by_side(evaluation(primary, shadow), None, RULES).diff["stdout"].splitlines()
    assert len(diff) == DIFF_MAX_LINES + 1
    assert diff[-1] == f"(diff cut at {DIFF_MAX_LINES} of 1003 lines)"


def test_a_long_line_is_clipped_in_the_diff():
    primary = run(output="x" * (DIFF_MAX_LINE_CHARS + 100))
    shadow = shadow_of(primary, output="y")
    diff = side_by_side(evaluation(primary, shadow), None, RULES).diff["stdout"]
    assert f"-{'x' * (DIFF_MAX_LINE_CHARS - 1)}… (101 more characters)" in diff.splitlines()


def test_outputs_that_differ_only_in_a_final_newline_say_so():
    primary = run(output="same\n")
    shadow = shadow_of(primary, output="same")
    diff = side_by_side(evaluation(primary, shadow), None, RULES).diff
    assert diff["stdout"].endswith("(the outputs differ only in line endings or a final newline)")


def _bytes_run(data: bytes, role: Role = Role.PRIMARY) -> RunView:
    """A run that printed `data`, carried as the executor carries it (text, base64 if not UTF-8)."""
    output, output_base64 = encode_stream(data)
    return run(role=role, output=output, output_base64=output_base64)


@pytest.mark.parametrize(
    ("ours", "theirs", "outcome"),
    [
        (b"\xff\xfe\x00ok", b"\xff\xfe\x00ok", "match"),
        (b"a\x00b\n", b"a\x00b\n", "match"),
        # Both read as U+FFFD in `output`; the bytes differ.
        (b"\xff\n", b"\xfe\n", "mismatch"),
        (b"a\x00b", b"a\x01b", "mismatch"),
        # U+FFFD printed as text is not the invalid byte it would stand for.
        ("\ufffd".encode(), b"\xff", "mismatch"),
        # Normalisation still applies around invalid bytes.
        (b"\xff at 0x1f\n", b"\xff at 0x2e", "match_after_normalisation"),
    ],
)
def test_outputs_are_compared_on_their_exact_bytes(ours, theirs, outcome):
    primary = _bytes_run(ours)
    shadow = _bytes_run(theirs, role=Role.SHADOW).model_copy(update={"backend": Backend.CELERY})
    assert compare(primary, shadow, RULES).outcome == outcome


def test_the_diff_spells_invalid_bytes_and_stays_json():
    primary, shadow = _bytes_run(b"ok\xff\n"), _bytes_run(b"ok\xfe\n", role=Role.SHADOW)
    view = side_by_side(evaluation(primary, shadow), None, RULES)
    assert view.diff["stdout"].splitlines()[-2:] == ["-ok\\xff", "+ok\\xfe"]
    assert json.loads(view.model_dump_json())["diff"]["stdout"] == view.diff["stdout"]


def test_side_by_side_without_a_shadow_run_has_no_diff():
    view = side_by_side(evaluation(PRIMARY), None, RULES)
    assert view.shadow is None
    assert view.diff == {}
