"""Per-tenant request rate limits shared by every gateway replica: a moving window in the state Redis.

A tenant allowed `per_second` requests per second may spend `per_second * window` of them at once
(its burst, `window` being RATE_LIMIT_WINDOW_SECONDS) and then `per_second` on average over any
window. The counting is the `limits` library's moving window (a list of hit times per tenant in
Redis, trimmed by a Lua script), so every replica that shares the Redis shares the limit.

A rate of 0 (or less) means no limit. When Redis cannot be reached the limiter fails open: the
request passes unchecked, a warning is logged (at most once per `quiet_seconds`) and
`crucible_gateway_rate_limit_unchecked_total` counts it; for `quiet_seconds` after a failure
Redis is not asked at all, so that an outage costs one slow request per replica, not one each.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from crucible_gateway.metrics import RATE_LIMIT_UNCHECKED, RATE_LIMITED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What one request's hit found: whether it may pass, the window's limit, the requests left
    in it, and the seconds until the oldest request in the window leaves it (one more may pass
    then; a full window's length when the tenant has no request in it)."""

    allowed: bool
    limit: int
    remaining: int
    reset: float

    def headers(self) -> dict[str, str]:
        """The IETF `RateLimit-*` headers (draft-ietf-httpapi-ratelimit-headers), and
        `Retry-After` on a refusal; seconds are rounded up so that a client waiting them is let in."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset)))
        return headers


def rate_item(per_second: float, window_seconds: int) -> RateLimitItem | None:
    """The moving window that enforces `per_second`: `per_second * window_seconds` requests per
    `window_seconds`, the window stretched to one request's worth for rates below one per window
    (0.2/s → 1 per 5 s). None when `per_second` is 0 or less (no limit)."""
    if per_second <= 0:
        return None
    seconds = max(window_seconds, math.ceil(1 / per_second))
    amount = max(1, math.floor(per_second * seconds))
    return RateLimitItemPerSecond(amount, seconds)


class RateLimiter:
    """Hits a tenant's window in Redis and says whether its request may pass (see the module)."""

    def __init__(
        self,
        redis_url: str,
        *,
        window_seconds: int,
        key_prefix: str,
        timeout: float = 0.5,
        quiet_seconds: float = 5.0,
    ) -> None:
        self.window_seconds = window_seconds
        self._storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=key_prefix,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._quiet_seconds = quiet_seconds
        self._unchecked_until = 0.0

    async def hit(self, tenant: str, per_second: float) -> Decision | None:
        """Count one request of `tenant` against `per_second`; the decision, or None when no
        limit applies (rate 0) or Redis could not be asked (fail-open, counted and logged)."""
        item = rate_item(per_second, self.window_seconds)
        if item is None:
            return None
        if time.monotonic() < self._unchecked_until:
            RATE_LIMIT_UNCHECKED.inc()
            return None
        try:
            allowed = await self._limiter.hit(item, tenant)
            stats = await self._limiter.get_window_stats(item, tenant)
        except (RedisError, OSError) as exc:
            self._unchecked_until = time.monotonic() + self._quiet_seconds
            RATE_LIMIT_UNCHECKED.inc()
            log.warning(
                "rate limits unchecked for %.0f s: the state Redis failed (%r)",
                self._quiet_seconds,
                exc,
            )
            return None
        if not allowed:
            RATE_LIMITED.labels(tenant).inc()
        # The oldest request in the window leaves it at reset_time: one more request may pass then.
        reset = max(0.0, stats.reset_time - time.time())
        return Decision(
            allowed=allowed, limit=item.amount, remaining=max(0, stats.remaining), reset=reset
        )
