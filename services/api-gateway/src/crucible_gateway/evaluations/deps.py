"""The evaluations domain's dependencies: the evaluation a route works on (or 404), and what a
submission needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from crucible_contracts.limits import Limits
from crucible_contracts.models import EvaluationView
from crucible_gateway.deps import AsyncStorageDep, PrincipalDep, StorageDep
from crucible_gateway.evaluations import service
from crucible_gateway.evaluations.service import Quota
from crucible_gateway.migration.models import MigrationSettings
from crucible_gateway.paths import Paths
from crucible_gateway.tenancy.principal import Principal
from crucible_runtime.async_clients import AsyncStorageClient


async def get_evaluation_json(
    eval_id: str, storage: AsyncStorageDep, principal: PrincipalDep
) -> bytes:
    """The evaluation `eval_id` as storage's JSON; NotFound (404) for unknown and malformed ids,
    and for another tenant's, exactly alike."""
    return await service.evaluation_json(
        eval_id=eval_id, storage=storage, tenant=principal.read_scope
    )


EvaluationJsonDep = Annotated[bytes, Depends(get_evaluation_json)]


async def get_evaluation(evaluation: EvaluationJsonDep) -> EvaluationView:
    """The evaluation `eval_id`, parsed; the same 404s as `get_evaluation_json`."""
    return EvaluationView.model_validate_json(evaluation)


EvaluationDep = Annotated[EvaluationView, Depends(get_evaluation)]


@dataclass(frozen=True)
class CancelTarget:
    evaluation: EvaluationView
    terminate: bool
    # The tenant the cancel is scoped to at storage too (None: an operator's, unscoped).
    tenant: str | None = None


def get_cancel_target(
    eval_id: str, storage: StorageDep, principal: PrincipalDep, terminate: bool = False
) -> CancelTarget:
    """The evaluation to cancel and the `?terminate=` flag.

    `terminate` is a parameter of this dependency, not of the route, so that FastAPI validates it
    before the evaluation is looked up: a malformed flag stays a 422 whatever the eval_id, as it
    was before the lookup moved into a dependency.
    """
    evaluation = service.get_evaluation(
        eval_id=eval_id, storage=storage, tenant=principal.read_scope
    )
    return CancelTarget(evaluation=evaluation, terminate=terminate, tenant=principal.read_scope)


CancelTargetDep = Annotated[CancelTarget, Depends(get_cancel_target)]


def quota_of(principal: Principal, *, default_cap: int) -> Quota:
    """The caller's tenant and its in-flight cap: its own limit, else TENANT_MAX_IN_FLIGHT."""
    return Quota(
        tenant=principal.tenant, max_in_flight=principal.limits.max_in_flight or default_cap
    )


def tenant_limits(limits: Limits, principal: Principal) -> Limits:
    """The input limits, with the caller's tenant's own batch limit when it has one."""
    if principal.limits.max_batch is None:
        return limits
    return limits.model_copy(update={"max_batch": principal.limits.max_batch})


@dataclass(frozen=True)
class Submitting:
    """Everything a submission needs besides its body, for the caller's tenant."""

    storage: AsyncStorageClient
    paths: Paths
    migration: MigrationSettings
    limits: Limits
    languages: tuple[str, ...]
    quota: Quota


async def get_submitting(request: Request, principal: PrincipalDep) -> Submitting:
    """One dependency instead of six: FastAPI's cost per dependency is a good share of a
    submission's own."""
    state = request.app.state
    return Submitting(
        storage=state.async_storage,
        paths=state.paths,
        migration=state.migration_source.current(),
        limits=tenant_limits(state.limits, principal),
        languages=state.settings.languages,
        quota=quota_of(principal, default_cap=state.tenant_max_in_flight),
    )


SubmittingDep = Annotated[Submitting, Depends(get_submitting)]
