"""What the gateway asks of a path (`Path`), and the id a run's task has on either path."""

from __future__ import annotations

from typing import Any, Protocol

from crucible_contracts.models import EvalTask
from crucible_contracts.names import Backend, Role


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

    def submit(self, task: EvalTask) -> None:
        """Hand `task` over; raises when the path did not take it."""
        ...

    def withdraw(self, eval_id: str, role: Role) -> None:
        """Keep a still-waiting run from starting. NotFound or Conflict when it is not waiting
        there (any more); the consumer still skips it, since storage says cancelled."""
        ...

    def depth(self, *, timeout: float) -> dict[str, Any]:
        """What waits on the path, as `/api/queue-status` reports it."""
        ...

    def ping(self, *, timeout: float) -> None:
        """Returns when the path is reachable, raises Unavailable when not."""
        ...

    def close(self) -> None: ...
