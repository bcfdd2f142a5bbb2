"""Wire models storage adds beside crucible_contracts: the comparison of a primary and a shadow run.

They belong in crucible_contracts.models once the gateway reads them (see README).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from crucible_contracts.models import Wire


class ComparisonRecord(Wire):
    """`PUT /evaluations/{eval_id}/comparison` body: what the comparer found."""

    outcome: str = Field(min_length=1, max_length=32, description="e.g. match | mismatch")
    differing_fields: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class ComparisonView(BaseModel):
    eval_id: str
    outcome: str
    differing_fields: list[str]
    details: dict[str, Any]
    created_at: datetime


class Health(BaseModel):
    status: str
    database: str
