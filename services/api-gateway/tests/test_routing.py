"""Unit tests of the routing decision: table cases and properties (deterministic, monotonic, fair)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crucible_contracts.ids import new_eval_id
from crucible_contracts.names import Backend
from crucible_gateway.migration.models import MigrationMode, MigrationSettings
from crucible_gateway.paths.routing import (
    bucket,
    choose_backend,
    fallback_for,
    shadow_backend,
)

keys = st.text(min_size=1, max_size=80)
shares = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_bucket_is_the_first_64_bits_of_sha256_scaled_to_the_unit_interval():
    expected = int.from_bytes(hashlib.sha256(b"user-42").digest()[:8], "big") / 2**64
    assert bucket("user-42") == expected


@pytest.mark.parametrize(
    ("migration", "expected"),
    [
        (MigrationSettings(celery_enabled=False, celery_percentage=1.0), Backend.LEGACY),
        (
            MigrationSettings(celery_enabled=True, celery_percentage=1.0, force_legacy=True),
            Backend.LEGACY,
        ),
        (MigrationSettings(celery_enabled=True, celery_percentage=0.0), Backend.LEGACY),
        (MigrationSettings(celery_enabled=True, celery_percentage=1.0), Backend.CELERY),
    ],
    ids=["disabled", "forced-legacy", "zero-percent", "full-percent"],
)
def test_choose_backend_table(migration, expected):
    for _ in range(50):
        assert choose_backend(eval_id=new_eval_id(), migration=migration) is expected


def test_the_routing_key_decides_instead_of_the_eval_id_when_given():
    migration = MigrationSettings(celery_enabled=True, celery_percentage=0.5)
    expected = Backend.CELERY if bucket("tenant-7") < 0.5 else Backend.LEGACY
    chosen = {
        choose_backend(eval_id=new_eval_id(), routing_key="tenant-7", migration=migration)
        for _ in range(50)
    }
    assert chosen == {expected}


@pytest.mark.parametrize(
    ("chosen", "migration", "expected"),
    [
        (
            Backend.CELERY,
            MigrationSettings(celery_enabled=True, celery_percentage=1),
            Backend.LEGACY,
        ),
        (Backend.LEGACY, MigrationSettings(celery_enabled=True), Backend.CELERY),
        (Backend.LEGACY, MigrationSettings(celery_enabled=False), None),
        (Backend.LEGACY, MigrationSettings(celery_enabled=True, force_legacy=True), None),
    ],
    ids=["celery-falls-back-to-legacy", "legacy-to-celery", "not-to-disabled", "not-when-forced"],
)
def test_fallback_goes_to_legacy_always_and_to_celery_only_while_it_is_enabled(
    chosen, migration, expected
):
    assert fallback_for(chosen, migration=migration) == expected


@given(key=keys)
def test_bucket_is_deterministic_and_in_the_unit_interval(key):
    assert 0.0 <= bucket(key) < 1.0
    assert bucket(key) == bucket(str(key))


@given(key=keys, low=shares, high=shares)
def test_raising_the_percentage_only_moves_evaluations_to_celery(key, low, high):
    low, high = min(low, high), max(low, high)
    before = choose_backend(
        eval_id=key, migration=MigrationSettings(celery_enabled=True, celery_percentage=low)
    )
    after = choose_backend(
        eval_id=key, migration=MigrationSettings(celery_enabled=True, celery_percentage=high)
    )
    assert not (before is Backend.CELERY and after is Backend.LEGACY)


@settings(max_examples=25, deadline=None)
@given(percentage=shares)
def test_the_celery_share_over_ten_thousand_ids_is_close_to_the_percentage(percentage):
    migration = MigrationSettings(celery_enabled=True, celery_percentage=percentage)
    ids = [f"{i:032x}" for i in range(10_000)]
    celery = sum(choose_backend(eval_id=i, migration=migration) is Backend.CELERY for i in ids)
    assert abs(celery / len(ids) - percentage) < 0.03


def test_the_celery_share_of_real_eval_ids_is_close_to_half_at_fifty_percent():
    migration = MigrationSettings(celery_enabled=True, celery_percentage=0.5)
    ids = [new_eval_id() for _ in range(10_000)]
    celery = sum(choose_backend(eval_id=i, migration=migration) is Backend.CELERY for i in ids)
    assert abs(celery / len(ids) - 0.5) < 0.03


@pytest.mark.parametrize("percentage", [-0.01, 1.01, 50])
def test_a_percentage_outside_zero_to_one_is_refused(percentage):
    with pytest.raises(ValueError, match="celery_percentage"):
        MigrationSettings(celery_percentage=percentage)


def _shadowing(share: float, **overrides) -> MigrationSettings:
    fields = {
        "celery_enabled": True,
        "celery_percentage": 0.5,
        "mode": MigrationMode.SHADOW,
        "shadow_percentage": share,
        **overrides,
    }
    return MigrationSettings(**fields)


@pytest.mark.parametrize(
    "migration",
    [
        _shadowing(1.0, mode=MigrationMode.SPLIT),
        _shadowing(1.0, celery_enabled=False),
        _shadowing(1.0, force_legacy=True),
        _shadowing(0.0),
    ],
    ids=["split-mode", "celery-disabled", "legacy-forced", "zero-share"],
)
def test_no_shadow_run_unless_shadow_mode_with_celery_on_and_a_share(migration):
    ids = [f"{i:032x}" for i in range(200)]
    assert {
        shadow_backend(eval_id=i, primary=Backend.LEGACY, migration=migration) for i in ids
    } == {None}


@pytest.mark.parametrize("primary", list(Backend))
def test_the_shadow_runs_on_the_path_the_primary_did_not_take(primary):
    assert (
        shadow_backend(eval_id="a" * 32, primary=primary, migration=_shadowing(1.0))
        is primary.other
    )


@given(key=keys, low=shares, high=shares)
def test_raising_the_shadow_share_only_adds_shadowed_evaluations(key, low, high):
    low, high = min(low, high), max(low, high)
    before = shadow_backend(eval_id=key, primary=Backend.LEGACY, migration=_shadowing(low))
    after = shadow_backend(eval_id=key, primary=Backend.LEGACY, migration=_shadowing(high))
    assert not (before is not None and after is None)


def test_which_evaluations_are_shadowed_does_not_follow_the_split():
    """Salted buckets: at 50 % split and 50 % shadow, both paths' primaries get shadowed."""
    migration = _shadowing(0.5)
    ids = [f"{i:032x}" for i in range(4000)]
    shadowed = {
        choose_backend(eval_id=i, migration=migration)
        for i in ids
        if shadow_backend(eval_id=i, primary=Backend.LEGACY, migration=migration) is not None
    }
    assert shadowed == {Backend.LEGACY, Backend.CELERY}
    share = sum(
        shadow_backend(eval_id=i, primary=Backend.LEGACY, migration=migration) is not None
        for i in ids
    ) / len(ids)
    assert abs(share - 0.5) < 0.04


def test_a_routing_key_keeps_the_shadow_decision_with_the_key():
    migration = _shadowing(0.3)
    decisions = {
        shadow_backend(
            eval_id=new_eval_id(), primary=Backend.LEGACY, routing_key="user-7", migration=migration
        )
        for _ in range(50)
    }
    assert len(decisions) == 1
