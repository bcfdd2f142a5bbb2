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

import functools
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerSecond
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


# KEYS[1]: the tenant's list of hit times, newest first. ARGV: now, window (s), limit.
# A hit is counted (pushed) only when the limit-th newest time has left the window; then the
# times still in the window are counted and the oldest of them is returned, for the reset.
_HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local start = now - expiry
local allowed = 0
local last = redis.call('LINDEX', KEYS[1], amount - 1)
if not last or tonumber(last) <= start then
    redis.call('LPUSH', KEYS[1], ARGV[1])
    redis.call('LTRIM', KEYS[1], 0, amount - 1)
    redis.call('EXPIRE', KEYS[1], expiry)
    allowed = 1
end
local count = 0
local oldest = false
for _, at in ipairs(redis.call('LRANGE', KEYS[1], 0, amount - 1)) do
    if tonumber(at) <= start then
        break
    end
    count = count + 1
    oldest = at
end
return {allowed, count, oldest}
"""


@functools.lru_cache(maxsize=1024)
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
        self._key_prefix = key_prefix
        self._redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._hit = self._redis.register_script(_HIT_SCRIPT)
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
        expiry = item.get_expiry()
        key = f"{self._key_prefix}:{tenant}:{item.amount}/{expiry}"
        now = time.time()
        try:
            allowed, count, oldest = await self._hit(
                keys=[key], args=[repr(now), expiry, item.amount]
            )
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
        # The oldest request in the window leaves it then: one more request may pass.
        reset = float(oldest) + expiry - now if oldest else float(expiry)
        return Decision(
            allowed=bool(allowed),
            limit=item.amount,
            remaining=max(0, item.amount - int(count)),
            reset=max(0.0, reset),
        )

    async def close(self) -> None:
        await self._redis.aclose()
