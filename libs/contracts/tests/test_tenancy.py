"""The tenancy wire models: limits take no coerced values, keys are known by their SHA-256."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from crucible_contracts.tenancy import KeyCreate, Scope, TenantLimits, is_tenant, key_hash


@pytest.mark.parametrize(
    "body",
    [
        {"max_in_flight": "5"},
        {"max_in_flight": True},
        {"max_in_flight": 0},
        {"max_batch": 1.5},
        {"requests_per_second": "2"},
        {"requests_per_second": -1},
        {"burst": 3},
    ],
    ids=str,
)
def test_tenant_limits_refuse_coerced_or_out_of_range_values(body):
    with pytest.raises(ValidationError):
        TenantLimits.model_validate(body)


def test_tenant_limits_default_to_the_gateways_settings():
    assert TenantLimits.model_validate({"requests_per_second": 2}) == TenantLimits(
        requests_per_second=2.0
    )
    assert TenantLimits().model_dump() == {
        "requests_per_second": None,
        "max_in_flight": None,
        "max_batch": None,
    }


def test_a_new_key_submits_and_reads_unless_told_otherwise():
    assert KeyCreate().scopes == [Scope.SUBMIT, Scope.READ]
    assert KeyCreate.model_validate({"scopes": ["operator"]}).scopes == [Scope.OPERATOR]
    with pytest.raises(ValidationError):
        KeyCreate.model_validate({"scopes": []})
    with pytest.raises(ValidationError):
        KeyCreate.model_validate({"scopes": ["admin"]})


@pytest.mark.parametrize(
    ("name", "valid"),
    [("acme", True), ("a.b-c_1", True), ("Acme", False), ("", False), ("a" * 65, False)],
)
def test_tenant_names(name, valid):
    assert is_tenant(name) is valid


def test_a_key_is_known_by_its_sha256():
    assert key_hash("k") == hashlib.sha256(b"k").hexdigest()
