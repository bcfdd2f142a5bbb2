"""The evaluations domain's dependencies: the evaluation a route works on, or 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from crucible_contracts.models import EvaluationView
from crucible_gateway.deps import StorageDep
from crucible_gateway.evaluations import service


def get_evaluation(eval_id: str, storage: StorageDep) -> EvaluationView:
    """The evaluation `eval_id` as storage has it; NotFound (404) for unknown and malformed ids."""
    return service.get_evaluation(eval_id=eval_id, storage=storage)


EvaluationDep = Annotated[EvaluationView, Depends(get_evaluation)]


@dataclass(frozen=True)
class CancelTarget:
    evaluation: EvaluationView
    terminate: bool


def get_cancel_target(eval_id: str, storage: StorageDep, terminate: bool = False) -> CancelTarget:
    """The evaluation to cancel and the `?terminate=` flag.

    `terminate` is a parameter of this dependency, not of the route, so that FastAPI validates it
    before the evaluation is looked up: a malformed flag stays a 422 whatever the eval_id, as it
    was before the lookup moved into a dependency.
    """
    return CancelTarget(
        evaluation=service.get_evaluation(eval_id=eval_id, storage=storage), terminate=terminate
    )


CancelTargetDep = Annotated[CancelTarget, Depends(get_cancel_target)]
