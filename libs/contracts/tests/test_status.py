"""The status table: what is terminal, what may follow what."""

import pytest

from crucible_contracts.status import TERMINAL, TRANSITIONS, Status, predecessors

LEGAL = [
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "error"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "timeout"),
    ("running", "cancelled"),
    ("running", "error"),
]


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_design_transitions_are_legal(old, new):
    assert Status(old).can_become(Status(new))


@pytest.mark.parametrize("old", sorted(TERMINAL))
@pytest.mark.parametrize("new", list(Status))
def test_nothing_leaves_a_terminal_status(old, new):
    assert not old.can_become(new)


def test_every_pair_not_in_the_design_is_illegal():
    legal = {(Status(a), Status(b)) for a, b in LEGAL}
    for old in Status:
        for new in Status:
            assert old.can_become(new) == ((old, new) in legal)


def test_terminal_statuses_are_exactly_the_ends():
    assert {s for s in Status if s.is_terminal()} == {
        Status.COMPLETED,
        Status.FAILED,
        Status.TIMEOUT,
        Status.CANCELLED,
        Status.ERROR,
    }
    assert not Status.QUEUED.is_terminal()
    assert not Status.RUNNING.is_terminal()


def test_predecessors_invert_the_table():
    assert predecessors(Status.RUNNING) == {Status.QUEUED}
    assert predecessors(Status.CANCELLED) == {Status.QUEUED, Status.RUNNING}
    assert predecessors(Status.COMPLETED) == {Status.RUNNING}
    assert predecessors(Status.QUEUED) == frozenset()
    assert set(TRANSITIONS) == set(Status)
