"""The evaluations domain's dependencies: the evaluation a route works on, or 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from crucible_contracts.limits import Limits
from crucible_contracts.models import EvaluationView
from crucible_gateway.deps import AsyncStorageDep, LimitsDep, PrincipalDep, StorageDep
from crucible_gateway.evaluations import service
from crucible_gateway.evaluations.service import Quota


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


async def get_quota(request: Request, principal: PrincipalDep) -> Quota:
    """The caller's tenant and its in-flight cap: its own limit, else TENANT_MAX_IN_FLIGHT."""
    cap = principal.limits.max_in_flight or request.app.state.tenant_max_in_flight
    return Quota(tenant=principal.tenant, max_in_flight=cap)


async def get_tenant_limits(limits: LimitsDep, principal: PrincipalDep) -> Limits:
    """The input limits, with the caller's tenant's own batch limit when it has one."""
    if principal.limits.max_batch is None:
        return limits
    return limits.model_copy(update={"max_batch": principal.limits.max_batch})


QuotaDep = Annotated[Quota, Depends(get_quota)]
TenantLimitsDep = Annotated[Limits, Depends(get_tenant_limits)]
