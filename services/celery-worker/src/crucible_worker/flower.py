"""`python -m crucible_worker.flower [flower options]`: Flower on Crucible's app, behind basic auth.

The credentials come from `FLOWER_BASIC_AUTH` (`user:password[,user2:password2]`), which Flower
itself reads as its `--basic-auth` option: they stay in the environment, out of the command line
that `ps` shows. A blank value is dropped rather than handed over (Flower would take it for one
empty credential and let nobody in); without credentials Flower is open, which this says loudly,
and which `ENVIRONMENT=production` refuses.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

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


def flower_argv(options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "crucible_worker.main:app", "flower", *options]


def main(options: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s flower: %(message)s")
    try:
        env, warning = flower_environment(os.environ)
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from exc
    if warning:
        log.warning("%s", warning)
    argv = flower_argv(sys.argv[1:] if options is None else options)
    os.execvpe(argv[0], argv, env)  # noqa: S606 -- Flower replaces this process


if __name__ == "__main__":
    main()
