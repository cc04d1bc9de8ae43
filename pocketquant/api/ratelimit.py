"""Per-client token buckets in Redis, shared by every API replica.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request
takes ``cost`` tokens or is refused with the time until enough are back. The check and
the take are one Lua script, so concurrent requests on several replicas cannot
overdraw a bucket. Time comes from the Redis server, so replicas' clocks do not matter.

If Redis cannot be reached the request is let through and the failure is logged (at
most every 30 s): reads keep working through a Redis outage, and mutations fail on
their own for want of the queue.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketquant.settings import Settings

log = logging.getLogger(__name__)

_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    rate: float  # tokens per second; 0 turns the limit off
    burst: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self.queries = Bucket("queries", settings.rate_limit_queries_per_second, settings.rate_limit_queries_burst)
        self.mutations = Bucket(
            "mutations", settings.rate_limit_mutations_per_second, settings.rate_limit_mutations_burst
        )
        self.sync_jobs = Bucket(
            "sync_jobs", settings.rate_limit_sync_jobs_per_minute / 60, settings.rate_limit_sync_jobs_burst
        )
        self._last_warning = 0.0

    async def take(self, bucket: Bucket, client: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``client``'s ``bucket``."""
        if bucket.rate <= 0:
            return Decision(True)
        if cost > bucket.burst:  # could never be allowed: say so instead of a wait
            return Decision(False, float("inf"))
        key = f"pocketquant:ratelimit:{bucket.name}:{client}"
        try:
            wait = float(await self._redis.eval(_TAKE, 1, key, str(bucket.rate), str(bucket.burst), str(cost)))  # type: ignore[misc]
        except RedisError as exc:
            now = time.monotonic()
            if now - self._last_warning > 30:
                self._last_warning = now
                log.warning("rate limiter unavailable, requests are not limited meanwhile: %s", exc)
            return Decision(True)
        return Decision(wait <= 0, wait)
