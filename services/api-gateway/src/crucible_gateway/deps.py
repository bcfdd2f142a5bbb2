"""FastAPI dependencies: the clients and settings created once in create_app, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crucible_contracts.clients import StorageClient
from crucible_contracts.limits import Limits
from crucible_gateway.config import Settings
from crucible_gateway.routing import MigrationSettings
from crucible_gateway.service import Paths


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> StorageClient:
    return request.app.state.storage


def get_paths(request: Request) -> Paths:
    return request.app.state.paths


def get_migration(request: Request) -> MigrationSettings:
    return request.app.state.migration_source.current()


def get_limits(request: Request) -> Limits:
    return request.app.state.limits


def get_languages(request: Request) -> tuple[str, ...]:
    return request.app.state.settings.languages


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[StorageClient, Depends(get_storage)]
PathsDep = Annotated[Paths, Depends(get_paths)]
MigrationDep = Annotated[MigrationSettings, Depends(get_migration)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
LanguagesDep = Annotated[tuple[str, ...], Depends(get_languages)]
