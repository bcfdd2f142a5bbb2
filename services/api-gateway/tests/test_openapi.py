"""The public API keeps the shape DESIGN.md fixes, whatever the internal models nest."""

from __future__ import annotations

from crucible_gateway.config import Settings
from crucible_gateway.main import create_app

PROGRAM_FIELDS = {"code", "language", "timeout", "stdin"}


def test_the_program_fields_stay_flat_in_the_submitted_and_the_read_evaluation():
    schemas = create_app(Settings()).openapi()["components"]["schemas"]

    for name in ("EvalRequest", "EvaluationView"):
        assert set(schemas[name]["properties"]) >= PROGRAM_FIELDS, name
        assert "program" not in schemas[name]["properties"], name
    assert "Program" not in schemas
