"""BarService: the one way bars are read and written.

Writes go to the store (bars validated once, see ``CheckedBars``), then invalidate the
series' cached pages when anything changed. If the invalidation fails (Redis down), the
series stays marked in this process and its next write invalidates even if that write
changes nothing: the job or stream batch that failed is retried, its retry finds the bars
already stored, and the cache must still not keep serving the old pages (the cache's TTL
bounds how stale a page can be if the process dies first).

Reads: the Redis cache first, MongoDB on a miss, and one read per page at a time.

Concurrent misses of the same page (a burst of clients opening the same chart, or
every client at once after a write invalidated a series) share one MongoDB read and
one encoding: the first reader reads, the others wait for its page. Measured with 200
clients over 50 series: without this, the first second sent ~200 reads of 50 pages to
MongoDB one behind the other, and the slowest client waited ~2 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from redis.exceptions import RedisError

from pocketquant.domain import Bar, BarColumns, Interval, SeriesKey
from pocketquant.domain.resample import group_start, resample, sources
from pocketquant.domain.sessions import Calendar, InvalidSessionError
from pocketquant.history.cache import BarCache, EncodedPage, PageQuery
from pocketquant.history.documents import stored_calendar
from pocketquant.history.store import BarPage as StoredPage
from pocketquant.history.store import BarStore, WriteResult

log = logging.getLogger(__name__)


class BarService:
    def __init__(self, store: BarStore, cache: BarCache) -> None:
        self._store = store
        self._cache = cache
        self._inflight: dict[tuple[SeriesKey, PageQuery], asyncio.Future[EncodedPage]] = {}
        self._stale: set[SeriesKey] = set()  # written, cache not invalidated yet
        # Pages by where they came from: the cache, another reader's read, MongoDB.
        self.stats = {"hit": 0, "shared": 0, "miss": 0}

    async def write(self, series: SeriesKey, bars: BarColumns, *, forming: int | None = None) -> WriteResult:
        """Merge ``bars`` into the stored series (see ``BarStore.write``), then drop its
        cached pages. Raises RedisError if they could not be dropped (after the bars were
        stored: a retry of the same write is cheap and drops them)."""
        result = await self._store.write(series, bars, forming=forming)
        if result.changed or series in self._stale:
            self._stale.add(series)
            await self._cache.invalidate(series)
            self._stale.discard(series)
        return result

    async def page(
        self, series: SeriesKey, query: PageQuery, load: Callable[[], Awaitable[StoredPage]] | None = None
    ) -> EncodedPage:
        """A page of ``series``: cached, or read by ``load`` (default: the stored bars
        ``query`` asks for) and cached under the series' generation."""
        cache_key: str | None = None
        try:
            cache_key, cached = await self._cache.get(series, query)
            if cached is not None:
                self.stats["hit"] += 1
                return cached
        except RedisError as exc:
            log.warning("bar cache unavailable, reading MongoDB directly: %s", exc)
        flight = (series, query)
        while (pending := self._inflight.get(flight)) is not None:
            try:
                page = await asyncio.shield(pending)
                self.stats["shared"] += 1
                return page
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this reader was cancelled
                # The first reader was (its client left): read again.
        future: asyncio.Future[EncodedPage] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        self.stats["miss"] += 1
        try:
            if load is not None:
                stored = await load()
            else:
                stored = await self._store.read_page(
                    series, start=query.start, end=query.end, limit=query.limit, newest_first=query.newest_first
                )
            page = EncodedPage.encode(stored)
            future.set_result(page)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: the waiters, if any, raise it themselves
            raise
        finally:
            del self._inflight[flight]
        if cache_key is not None:
            try:
                await self._cache.put(cache_key, page)
            except RedisError as exc:
                log.warning("bar cache unavailable, page not cached: %s", exc)
        return page


@dataclass(frozen=True, slots=True)
class ServedPage:
    page: EncodedPage
    source: Interval  # the stored interval the bars come from (the asked one, or a shorter one resampled)


class SeriesReader:
    """Pages of a series as stored, or, for an interval not stored at all, resampled on
    read from the longest stored interval that nests in it (``domain/resample.py``),
    aligned to the symbol's sessions (known once it was synced or streamed; until then
    nothing is resampled). A resampled page is cached like a stored one, under its source
    series (so a write to the source drops it) and the sessions it was aligned to."""

    _SOURCE_PAGE = 5_000

    def __init__(self, store: BarStore, bars: BarService) -> None:
        self._store = store
        self._bars = bars

    async def page(self, series: SeriesKey, query: PageQuery) -> ServedPage:
        page = await self._bars.page(series, query)
        if page.count:
            return ServedPage(page, series.interval)
        stored = await self._store.stored_intervals(series.symbol_key)
        if series.interval not in stored:
            calendar = await _calendar(series)
            for source in sources(series.interval):
                if calendar is not None and source in stored:
                    made = replace(query, shape=f"{series.interval.value}@{calendar.fingerprint()}")

                    async def load(source: Interval = source, calendar: Calendar = calendar) -> StoredPage:
                        bars, has_more = await self._resampled(series, source, query, calendar)
                        return StoredPage(BarColumns.from_bars(bars), has_more)

                    page = await self._bars.page(SeriesKey.of(series.symbol_key, source), made, load)
                    return ServedPage(page, source)
        return ServedPage(page, series.interval)

    async def _resampled(
        self, series: SeriesKey, source: Interval, query: PageQuery, calendar: Calendar
    ) -> tuple[list[Bar], bool]:
        """Up to ``query.limit`` bars of ``series`` made from ``source``, and whether more follow."""
        target = series.interval
        lo, hi, newest_first = query.start, query.end, query.newest_first
        src = SeriesKey.of(series.symbol_key, source)
        start, end = lo, hi
        if newest_first:
            start = None
            if hi is not None and (newest := calendar.bar(target, hi)) is not None:
                end = newest[1] - 1  # all of the bar opening at or before `to`
        else:
            end = None  # the last bar may run past `to`
        collected: list[Bar] = []
        groups = 0
        key: int | None = None
        while True:
            page = await self._store.read_page(
                src, start=start, end=end, limit=self._SOURCE_PAGE, newest_first=newest_first
            )
            for bar in page.bars:
                opens = group_start(calendar, target, bar.time)
                if opens is None:
                    continue
                past = (lo is not None and opens < lo) if newest_first else (hi is not None and opens > hi)
                if past:
                    return _merged(collected, target, calendar, newest_first), False
                if (lo is not None and opens < lo) or (hi is not None and opens > hi):
                    continue
                if opens != key:
                    groups += 1
                    key = opens
                    if groups > query.limit:
                        return _merged(collected, target, calendar, newest_first), True
                collected.append(bar)
            if not page.has_more or not len(page.bars):
                return _merged(collected, target, calendar, newest_first), False
            if newest_first:
                end = page.bars.t[-1] - 1
            else:
                start = page.bars.t[-1] + 1


async def _calendar(series: SeriesKey) -> Calendar | None:
    """The symbol's sessions, if known and understood: without them a resampled bar could
    not be aligned the way TradingView aligns it, so nothing is resampled."""
    try:
        return await stored_calendar(series.exchange, series.symbol)
    except InvalidSessionError:
        return None


def _merged(bars: list[Bar], target: Interval, calendar: Calendar, newest_first: bool) -> list[Bar]:
    if newest_first:
        return list(reversed(resample(reversed(bars), target, calendar)))
    return resample(bars, target, calendar)
