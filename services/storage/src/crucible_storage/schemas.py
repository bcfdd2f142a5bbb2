"""Wire models only storage answers with (its health). The shared ones are in crucible_contracts."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    status: str
    database: str
