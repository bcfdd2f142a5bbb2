"""The language table (languages.toml): how to run a program of each language, as data."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Language:
    """One row of languages.toml. `available` is true when its interpreter can be executed."""

    name: str
    file: str
    argv: tuple[str, ...]
    # The least memory_mb the runtime starts in; a request asking for less is refused (422).
    min_memory_mb: int = 0

    @property
    def binary(self) -> str:
        return self.argv[0]

    @property
    def available(self) -> bool:
        return os.access(self.binary, os.X_OK)

    def command(self, *, memory_mb: int) -> list[str]:
        """The argv that runs the program file, with the placeholders filled in."""
        return [part.format(file=self.file, memory_mb=memory_mb) for part in self.argv]


def parse_languages(text: str) -> dict[str, Language]:
    table = tomllib.loads(text)
    return {
        name: Language(
            name=name,
            file=row["file"],
            argv=tuple(row["argv"]),
            min_memory_mb=row.get("min_memory_mb", 0),
        )
        for name, row in table.items()
    }


def load_languages() -> dict[str, Language]:
    """Every language of the packaged table, available or not."""
    text = resources.files("crucible_executor").joinpath("languages.toml").read_text()
    return parse_languages(text)
