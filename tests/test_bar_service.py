"""BarService: bars written through it are validated once, and its cached pages never
outlive a write, even when dropping them failed the first time."""

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketquant.domain import Bar, BarColumns, InvalidBarsError
from pocketquant.history.bars import BarService
from pocketquant.history.cache import BarCache, PageQuery
from pocketquant.resources import Resources
from tests.test_store import SERIES, make_bars

NEWEST = PageQuery(None, None, 10, True)


async def test_a_retried_write_drops_the_pages_a_failed_invalidation_left(resources: Resources) -> None:
    redis = Redis.from_url(resources.settings.required_redis_url(), socket_timeout=0.3)
    service = BarService(resources.store, BarCache(redis, 3600))
    try:
        await service.write(SERIES, make_bars(100))
        before = (await service.page(SERIES, NEWEST)).decode()
        assert (await service.page(SERIES, NEWEST)).decode() == before  # cached now
        corrected = make_bars(100, seed=2)

        await resources.redis.client_pause(1500, all=False)  # Redis stops taking writes for 1.5 s
        with pytest.raises(RedisError):
            await service.write(SERIES, corrected)  # stored, but the cached pages could not be dropped
        await asyncio.sleep(1.6)
        assert (await service.page(SERIES, NEWEST)).decode() == before  # still the old page

        retry = await service.write(SERIES, corrected)  # what the job or the stream does next
        assert retry.chunks_written == 0  # nothing left to store...
        page = (await service.page(SERIES, NEWEST)).decode()
        assert page.c[0] == corrected.c[-1] != before.c[0]  # ...and the stale page is gone
    finally:
        await redis.aclose()


async def test_bars_are_validated_once_on_their_way_in(resources: Resources) -> None:
    bad = BarColumns.from_bars([Bar(60, 1.0, 0.5, 2.0, 1.0, 1.0)])  # high below low
    with pytest.raises(InvalidBarsError):
        await resources.bars.write(SERIES, bad)
    checked = make_bars(3).checked()
    assert checked.checked() is checked  # what a provider validated is not validated again
    assert (await resources.bars.write(SERIES, checked)).bars_inserted == 3


async def test_a_page_kept_in_one_process_is_dropped_by_a_write_in_another(resources: Resources) -> None:
    query = PageQuery(None, None, 3, False)
    api_a, api_b = (BarCache(resources.redis, 3600) for _ in range(2))  # two API processes
    reader = BarService(resources.store, api_a)
    writer = BarService(resources.store, api_b)
    await writer.write(SERIES, make_bars(3))
    first = (await reader.page(SERIES, query)).decode()
    assert (await api_a.get(SERIES, query))[1] is not None  # kept (in Redis and in process A)
    await writer.write(SERIES, make_bars(3, seed=9))  # process B stores new values
    assert (await api_a.get(SERIES, query))[1] is None  # A's copy is of an old generation
    assert (await reader.page(SERIES, query)).decode() != first
    # Redis lost its data (restarted without persistence): generations never repeat,
    # so nothing A kept can pass for current.
    await resources.redis.delete(f"pocketquant:bars:gen:{SERIES}")
    assert (await api_a.get(SERIES, query))[1] is None
