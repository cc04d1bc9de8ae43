"""Exactly one stream per deployment: a Redis lock with expiry and renewal.

The holder renews the lock well before it expires; if a renewal fails (the lock
expired or another process holds it) the holder stops its work at once. A process
that dies stops renewing, the lock expires, and a waiting process takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaderLock:
    def __init__(self, redis: Redis, key: str, ttl_seconds: float, owner: str | None = None) -> None:
        self._redis = redis
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.owner = owner or uuid.uuid4().hex

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._redis.eval(_RENEW, 1, self.key, self.owner, str(self.ttl_ms)))  # type: ignore[misc]

    async def release(self) -> None:
        await self._redis.eval(_RELEASE, 1, self.key, self.owner)  # type: ignore[misc]

    async def holder(self) -> str | None:
        value = await self._redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


async def run_as_leader(lock: LeaderLock, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Wait for the lock, run ``work`` while holding it, and go back to waiting if the
    lock is lost. Runs until cancelled; releases the lock on the way out."""
    period = lock.ttl_ms / 1000 / 3
    while True:
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            log.warning("leader lock unavailable: %s", exc)
            acquired = False
        if not acquired:
            await asyncio.sleep(period)
            continue
        log.info("stream leadership acquired (%s)", lock.owner)
        task = asyncio.create_task(work(), name="stream-leader-work")
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=period)
                if done:
                    break
                try:
                    still_leader = await lock.renew()
                except RedisError as exc:
                    log.warning("leader lock renewal failed: %s", exc)
                    still_leader = False
                if not still_leader:
                    log.error("stream leadership lost (%s): stopping", lock.owner)
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(RedisError):
                await lock.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("stream stopped with an error, will try again: %r", task.exception())
            await asyncio.sleep(period)
