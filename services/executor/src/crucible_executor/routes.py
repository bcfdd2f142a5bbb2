"""HTTP adapters of the executor: each route calls one service function."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from crucible_contracts.ids import EvalId
from crucible_contracts.models import ExecuteRequest, ExecuteResult
from crucible_contracts.names import Role
from crucible_executor import service
from crucible_executor.service import Executor


def _executor(request: Request) -> Executor:
    return request.app.state.executor


ExecutorDep = Annotated[Executor, Depends(_executor)]

router = APIRouter()


@router.post("/execute")
async def execute(body: ExecuteRequest, executor: ExecutorDep) -> ExecuteResult:
    return await service.execute(request=body, executor=executor)


@router.post("/kill/{eval_id}")
async def kill(eval_id: EvalId, executor: ExecutorDep, role: Role | None = None) -> dict[str, bool]:
    """SIGKILL the runs of `eval_id` (only that `role`'s when given) and forget their results."""
    killed = await service.kill(eval_id=eval_id, role=role, executor=executor)
    return {"killed": killed.killed, "reaped": killed.reaped}


@router.get("/capacity")
async def capacity(executor: ExecutorDep) -> dict[str, Any]:
    return service.capacity(executor)


@router.get("/health")
async def health(executor: ExecutorDep) -> dict[str, Any]:
    return service.health(executor)
