"""`python -m crucible_worker.flower [flower options]`: Flower on Crucible's app, behind basic auth.

The credentials come from `FLOWER_BASIC_AUTH` (`user:password[,user2:password2]`), which Flower
itself reads as its `--basic-auth` option: they stay in the environment, out of the command line
that `ps` shows. A blank value is dropped rather than handed over (Flower would take it for one
empty credential and let nobody in); without credentials Flower is open, which this says loudly,
and which `ENVIRONMENT=production` refuses.

Flower asks for those credentials everywhere but on `/metrics`, which it serves to anyone (no
option of Flower's changes that: its handler lacks the check the others have), and which names
every task, queue and worker. `protect_metrics` gives `/metrics` the same check before Flower
starts, in this process; Prometheus scrapes it with the same credentials (`basic_auth` in
deploy/prometheus.yml). `/healthcheck` stays open for probes: it says only "OK".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from celery.bin.celery import celery
from flower import urls
from flower.views.monitor import Metrics
from tornado import web

from crucible_worker.config import Settings

BASIC_AUTH = "FLOWER_BASIC_AUTH"
OPEN_WARNING = (
    "FLOWER_BASIC_AUTH is not set: Flower is open to anyone who can reach its port "
    "(set FLOWER_BASIC_AUTH=user:password to close it)"
)

log = logging.getLogger(__name__)


def flower_environment(env: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The environment to run Flower with, and a warning when it will be open.

    Raises ValueError for a credential that is not `user:password`, and for an open Flower when
    `ENVIRONMENT=production`.
    """
    result = dict(env)
    value = result.pop(BASIC_AUTH, "").strip()
    if not value:
        if result.get("ENVIRONMENT") == "production":
            raise ValueError("FLOWER_BASIC_AUTH must be set when ENVIRONMENT=production")
        return result, OPEN_WARNING
    for credential in value.split(","):
        user, _, password = credential.partition(":")
        if not user.strip() or not password:
            raise ValueError(
                f"{BASIC_AUTH} must be user:password[,user2:password2]; "
                f"found an entry for user {user.strip()!r} without a password or a name"
            )
    result[BASIC_AUTH] = value
    return result, None


def flower_args(options: Sequence[str], *, task_events: bool = True) -> list[str]:
    """The `celery` command line that runs Flower on Crucible's app with `options`.

    Without task events (CELERY_TASK_EVENTS=false) Flower is told not to switch them on in the
    workers, which it otherwise does every few seconds: it then shows workers and queues only.
    """
    events = [] if task_events else ["--enable_events=False"]
    return ["-A", "crucible_worker.main:app", "flower", *events, *options]


class AuthenticatedMetrics(Metrics):
    """Flower's Prometheus text, behind the check of its other pages (basic auth or OAuth,
    whichever Flower was given; open only when Flower is)."""

    @web.authenticated
    async def get(self) -> None:
        await super().get()


def protect_metrics() -> None:
    """Serve `/metrics` with `AuthenticatedMetrics`; call before Flower starts."""
    for index, handler in enumerate(urls.handlers):
        if isinstance(handler, tuple) and handler[0] == r"/metrics":
            urls.handlers[index] = (r"/metrics", AuthenticatedMetrics)
            return
    raise RuntimeError("Flower serves no /metrics handler to protect: check its version")


def main(options: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s flower: %(message)s")
    try:
        env, warning = flower_environment(os.environ)
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from exc
    if warning:
        log.warning("%s", warning)
    # Flower runs in this process (so that /metrics can be protected) and reads its options
    # from this environment, FLOWER_BASIC_AUTH included.
    os.environ.clear()
    os.environ.update(env)
    protect_metrics()
    args = flower_args(
        sys.argv[1:] if options is None else options,
        task_events=Settings().celery_task_events,
    )
    celery.main(args=args, prog_name="celery", auto_envvar_prefix="CELERY")


if __name__ == "__main__":
    main()
