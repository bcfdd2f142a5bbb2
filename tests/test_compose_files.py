"""docker-compose.yml, its overrides and the Dockerfiles agree with each other and with the services.

A fast check of `make test`, without a container engine: the images are built and the suite is run
by `make compose-smoke` (tests/compose_smoke.py).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
STANDINS = yaml.safe_load((ROOT / "deploy/compose/standins.yml").read_text())["services"]
# Registry images without a stand-in, left out where they cannot be pulled (docs/deploy.md).
WITHOUT_STANDIN = {"grafana"}
# Which service's Settings each Crucible container runs with.
SETTINGS = {
    "storage": "crucible_storage.config",
    "executor-1": "crucible_executor.config",
    "executor-2": "crucible_executor.config",
    "executor-3": "crucible_executor.config",
    "queue-service": "crucible_queue.config",
    "queue-worker": "crucible_queue.config",
    "celery-worker": "crucible_worker.config",
    "flower": "crucible_worker.config",
    "gateway": "crucible_gateway.config",
}
# What the wheelhouse script writes into the build context before any build.
GENERATED = ".compose/wheels/"


def _built() -> dict[str, dict]:
    return {name: service for name, service in SERVICES.items() if "build" in service}


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _dockerfile(service: dict) -> Path:
    build = service["build"]
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def _port(name: str, service: dict) -> str | None:
    """The port a Crucible container listens on: its command's --port, PORT, or its image's."""
    command = service.get("command") or []
    if "--port" in command:
        return str(command[command.index("--port") + 1])
    for argument in command:
        if argument.startswith("--port="):
            return argument.split("=", 1)[1]
    if "PORT" in _environment(service):
        return _environment(service)["PORT"]
    if "build" not in service:
        return {"redis": "6379", "celery-redis": "6379", "postgres": "5432"}.get(name)
    return re.findall(r"^EXPOSE (\d+)", _dockerfile(service).read_text(), re.M)[0]


def test_the_set_of_services_is_the_suite_of_the_design():
    assert set(SETTINGS) <= set(SERVICES)
    assert {"redis", "celery-redis", "postgres", "prometheus"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(_built()))
def test_every_built_service_has_its_dockerfile_and_what_it_copies(name):
    dockerfile = _dockerfile(SERVICES[name])
    text = dockerfile.read_text()

    assert dockerfile.is_file()
    assert "HEALTHCHECK" in text, f"{dockerfile} has no HEALTHCHECK"
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        generated = source.startswith(GENERATED)
        assert generated or (ROOT / source).exists(), f"{dockerfile} copies missing {source}"


def test_the_build_context_lets_in_only_what_the_dockerfiles_copy():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!.compose/wheels", "!deploy/images"]
    dockerfiles = [_dockerfile(s) for s in SERVICES.values() if "build" in s]
    dockerfiles += [ROOT / s["build"]["dockerfile"] for s in STANDINS.values()]
    for dockerfile in dockerfiles:
        for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile.read_text(), re.M):
            assert source.startswith((GENERATED, "deploy/images/")), (dockerfile, source)


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if "build" not in s and n not in WITHOUT_STANDIN)
)
def test_every_registry_image_has_a_local_stand_in(name):
    standin = STANDINS[name]
    assert standin["image"].startswith("localhost/crucible-standin-")
    assert (ROOT / standin["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_that_defaults_to_this_host_is_set_for_the_container(name):
    # A default of 127.0.0.1/localhost is right for `make run`, and wrong in a container.
    settings = importlib.import_module(SETTINGS[name]).Settings
    environment = {key.upper() for key in _environment(SERVICES[name])}
    for field_name, field in settings.model_fields.items():
        local = isinstance(field.default, str) and re.search(
            r"127\.0\.0\.1|localhost", field.default
        )
        env_name = str(field.validation_alias or field_name).upper()
        if local and env_name != "BIND_HOST":
            assert env_name in environment, f"{name} leaves {env_name} at {field.default}"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_service_url_names_a_compose_service_on_its_port(name):
    for key, value in _environment(SERVICES[name]).items():
        if not key.endswith("_URL") or (key == "DATABASE_URL" and value.startswith("sqlite")):
            continue
        for url in value.split(","):
            parts = urlsplit(url)
            assert parts.hostname in SERVICES, f"{name}: {key} points at {parts.hostname}"
            target = SERVICES[parts.hostname]
            assert str(parts.port) == _port(parts.hostname, target), f"{name}: {key}={url}"


def test_each_executor_has_its_own_sandbox_uid_range_and_no_extra_privileges():
    executors = {n: s for n, s in SERVICES.items() if n.startswith("executor-")}
    bases = [_environment(s)["SANDBOX_UID_BASE"] for s in executors.values()]
    assert len(set(bases)) == len(bases) == 3
    for service in executors.values():
        assert not service.get("privileged")
        assert "SYS_ADMIN" not in service.get("cap_add", [])
        profile = next(o for o in service["security_opt"] if o.startswith("seccomp="))
        assert (ROOT / profile.removeprefix("seccomp=")).is_file()
