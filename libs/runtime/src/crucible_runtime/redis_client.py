"""Redis clients for request paths: fail fast when Redis is down instead of retrying with backoff.

redis-py's default retries a failed command with exponential backoff (about 4 s before it gives
up on a dead server). On a path that answers a client, or in the loop that keeps the migration
settings fresh, that turns an outage into hanging requests; one immediate retry is enough to get
past a pooled connection that went stale while Redis restarted.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def fail_fast_redis(url: str, *, timeout: float, retries: int = 1) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
    )
