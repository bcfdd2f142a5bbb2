"""The settings base every service's `Settings` extends: environment-driven, refusing unsafe secrets."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

UNSAFE_SECRETS = frozenset({"changeme", "change-me", "secret", "password", "admin"})


class ServiceSettings(BaseSettings):
    """Fields here are read by every service; each service adds its own.

    `environment=production` makes a missing or well-known `INTERNAL_API_KEY` a start-up error.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    environment: str = "local"
    log_level: str = "INFO"
    internal_api_key: str | None = None

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> Self:
        if self.environment == "production":
            key = self.internal_api_key or ""
            if len(key) < 16 or key.lower() in UNSAFE_SECRETS:
                raise ValueError(
                    "INTERNAL_API_KEY must be set to a secret of at least 16 characters "
                    "when ENVIRONMENT=production"
                )
        return self


def split_urls(value: str) -> list[str]:
    """A comma-separated URL list from the environment, trailing slashes removed, blanks dropped."""
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
