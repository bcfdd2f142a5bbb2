"""Comparison normalisation rules: rewrites that remove noise from outputs before they are compared."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crucible_contracts.limits import INT32_MAX, MAX_WINDOW_SECONDS

MAX_RULES = 50
MAX_PATTERN_CHARS = 500
MAX_REPLACEMENT_CHARS = 200

OutputField = Literal["stdout", "stderr"]
OUTPUT_FIELDS: tuple[OutputField, ...] = ("stdout", "stderr")


class NormalisationRule(BaseModel):
    """One rewrite applied to an output before comparing: it removes noise that says nothing
    about the path (addresses, temporary paths, times), so that only real differences count.

    `mask` replaces every match of `pattern` by `replacement`, taken literally (no group
    references, so a replacement can never fail at comparison time).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["strip_trailing_whitespace", "mask"]
    pattern: str | None = Field(default=None, max_length=MAX_PATTERN_CHARS)
    replacement: str = Field(default="<masked>", max_length=MAX_REPLACEMENT_CHARS)
    fields: list[OutputField] = Field(default_factory=lambda: list(OUTPUT_FIELDS), min_length=1)

    @model_validator(mode="after")
    def _pattern_fits_kind(self) -> NormalisationRule:
        if self.kind == "mask":
            if not self.pattern:
                raise ValueError(f"rule {self.name!r}: a mask needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"rule {self.name!r}: pattern does not compile: {exc}") from exc
        elif self.pattern is not None:
            raise ValueError(f"rule {self.name!r}: {self.kind} takes no pattern")
        return self

    def apply(self, text: str) -> str:
        if self.kind == "strip_trailing_whitespace":
            return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
        # re caches compiled patterns; a rule set is at most MAX_RULES of them.
        return re.compile(self.pattern or "").sub(lambda _: self.replacement, text)


# The order keeps normalise idempotent: temporary paths go last, because the other masks'
# replacements can turn the character next to a `/tmp` into a boundary (as in `0x1f/tmp`).
DEFAULT_RULES: tuple[NormalisationRule, ...] = (
    NormalisationRule(name="trailing_whitespace", kind="strip_trailing_whitespace"),
    NormalisationRule(
        name="hex_addresses", kind="mask", pattern=r"\b0x[0-9a-fA-F]+\b", replacement="0x<addr>"
    ),
    NormalisationRule(
        name="timestamps",
        kind="mask",
        # ISO-8601 date-times (T or space, optional seconds, fraction and zone), or HH:MM:SS(.f).
        pattern=(
            r"(?<![\d:])(?:\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
            r"(?:Z|[+-]\d{2}(?::?\d{2})?)?|\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?![\d:])"
        ),
        replacement="<time>",
    ),
    NormalisationRule(
        name="temporary_paths",
        kind="mask",
        # /tmp, /var/tmp and anything below them, up to a quote, space, colon or bracket.
        pattern=r"(?<![\w./-])(?:/var)?/tmp\b(?:/[\w.@%+=~-]*)*",
        replacement="<tmp>",
    ),
)


class ComparisonRules(BaseModel):
    """The comparison settings stored in the migration document; `rules_version` is recorded
    with every comparison so that a comparison always names the rules that judged it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rules_version: int = Field(default=1, ge=1, le=INT32_MAX)
    rules: list[NormalisationRule] = Field(
        default_factory=lambda: list(DEFAULT_RULES), max_length=MAX_RULES
    )
    shadow_grace_seconds: float = Field(
        default=120, gt=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False
    )

    @field_validator("rules")
    @classmethod
    def _names_are_unique(cls, rules: list[NormalisationRule]) -> list[NormalisationRule]:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(repeated)}")
        return rules


def normalise(text: str, rules: ComparisonRules, field: OutputField) -> str:
    """`text` after every rule that applies to `field`, in the order the rules are listed."""
    if field not in OUTPUT_FIELDS:
        raise ValueError(f"field must be one of {', '.join(OUTPUT_FIELDS)}, got {field!r}")
    for rule in rules.rules:
        if field in rule.fields:
            text = rule.apply(text)
    return text
