"""What the gateway asks of a path (`Path`), and what a path says about a run it was given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from crucible_contracts.models import EvalTask
from crucible_contracts.names import Backend, Role


@dataclass(frozen=True)
class Holding:
    """Whether a path may still deliver a run it was given (`held`), in words for logs and
    reasons (`detail`, e.g. "the legacy queue still holds it (processing)")."""

    held: bool
    detail: str


class Path(Protocol):
    """One way to run an evaluation. Every failure to reach or use it raises a CrucibleError
    (Unavailable, Busy, ...); the gateway never asks which path it holds."""

    @property
    def backend(self) -> Backend:
        """The backend this path is, as recorded on a run."""
        ...

    @property
    def dependency(self) -> str:
        """The name of what the path needs reachable, as `/api/status` reports it."""
        ...

    @property
    def may_redispatch(self) -> bool:
        """Whether a run this path lost may be submitted to it again. Both may: a second copy
        of a run reaches the executor that has the first (one executor order per run), which
        joins that run or hands back its result, and storage keeps the first result recorded."""
        ...

    def submit(self, task: EvalTask) -> None:
        """Hand `task` over; raises when the path did not take it (Conflict when it holds that
        run already)."""
        ...

    async def submit_async(self, task: EvalTask) -> None:
        """`submit` for a caller on the event loop (the submit route), same outcomes."""
        ...

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Keep a still-waiting run from starting. NotFound or Conflict when it is not waiting
        there (any more); the consumer still skips it, since storage says cancelled."""
        ...

    def holds(self, eval_id: str, role: Role) -> Holding:
        """Whether the path may still deliver this run (it waits or runs there). Raises
        Unavailable when the path cannot be asked."""
        ...

    def works_on(self, eval_id: str, role: Role) -> Holding:
        """Whether the path shows that a consumer still works on this `running` run, or will
        deliver it again by itself. Raises Unavailable when the path cannot be asked."""
        ...

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """What waits on the path, as `/api/queue-status` reports it."""
        ...

    def ping(self, *, timeout: float) -> None:
        """Returns when the path is reachable, raises Unavailable when not."""
        ...

    def close(self) -> None: ...
