"""The two paths an evaluation can take (legacy queue-service, Celery broker), held by backend.

`routing` decides which backend an evaluation takes; `Paths[backend]` is the `Path` (see `base`)
that hands it over, withdraws it, says whether it still holds it, reports its depth and answers a
ping, whichever path it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from crucible_contracts.names import Backend, task_id_for
from crucible_gateway.paths.adapters import CeleryPath, LegacyPath
from crucible_gateway.paths.base import Holding, Path

__all__ = ["CeleryPath", "Holding", "LegacyPath", "Path", "Paths", "task_id_for"]


class Paths:
    """One `Path` per backend: `paths[backend]`, `paths.other(backend)`, and iteration in
    `Backend` order (legacy, then Celery)."""

    def __init__(self, *paths: Path) -> None:
        by_backend = {path.backend: path for path in paths}
        if len(by_backend) != len(paths) or set(by_backend) != set(Backend):
            found = [str(path.backend) for path in paths]
            raise ValueError(f"Paths needs exactly one path per backend, got {found}")
        self._by_backend = by_backend

    def __getitem__(self, backend: Backend) -> Path:
        return self._by_backend[Backend(backend)]

    def other(self, backend: Backend) -> Path:
        """The path that is not `backend`'s."""
        return self[Backend(backend).other]

    def __iter__(self) -> Iterator[Path]:
        return (self._by_backend[backend] for backend in Backend)

    def __len__(self) -> int:
        return len(self._by_backend)

    def close(self) -> None:
        for path in self:
            path.close()
