"""Redis cache of bar pages, invalidated by generation.

Each series has a generation counter; cache keys include it. A write that changes a
series bumps the counter (after the MongoDB write), so every cached page of that
series is orphaned at once and expires by TTL. A reader racing a writer can at worst
store a page under the old generation, which nobody reads again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from redis.asyncio import Redis

from pocketquant.domain import BarColumns, SeriesKey
from pocketquant.history.store import BarPage

_PREFIX = "pocketquant:bars"


@dataclass(frozen=True, slots=True)
class PageQuery:
    start: int | None
    end: int | None
    limit: int
    newest_first: bool

    def digest(self) -> str:
        raw = f"{self.start}|{self.end}|{self.limit}|{int(self.newest_first)}"
        return hashlib.blake2s(raw.encode(), digest_size=8).hexdigest()


class BarCache:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @staticmethod
    def _generation_key(series: SeriesKey) -> str:
        return f"{_PREFIX}:gen:{series}"

    async def _page_key(self, series: SeriesKey, query: PageQuery) -> str:
        generation = await self._redis.get(self._generation_key(series))
        gen = int(generation) if generation is not None else 0
        return f"{_PREFIX}:page:{series}:{gen}:{query.digest()}"

    async def get(self, series: SeriesKey, query: PageQuery) -> tuple[str, BarPage | None]:
        """Return the cache key for this query under the current generation, and the
        cached page if there is one."""
        key = await self._page_key(series, query)
        raw = await self._redis.get(key)
        if raw is None:
            return key, None
        data = json.loads(raw)
        cols = BarColumns(data["t"], data["o"], data["h"], data["l"], data["c"], data["v"])
        return key, BarPage(cols, bool(data["more"]))

    async def put(self, key: str, page: BarPage) -> None:
        b = page.bars
        payload = json.dumps({"t": b.t, "o": b.o, "h": b.h, "l": b.l, "c": b.c, "v": b.v, "more": page.has_more})
        await self._redis.set(key, payload, ex=self._ttl)

    async def invalidate(self, series: SeriesKey) -> None:
        await self._redis.incr(self._generation_key(series))
