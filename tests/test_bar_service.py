"""BarService: bars written through it are validated once, and its cached pages never
outlive a write, even when dropping them failed the first time."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

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


async def _following(cache: BarCache, state: bool = True) -> None:
    for _ in range(200):
        if cache.following is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"cache.following never became {state}")


async def test_a_following_process_serves_hits_without_redis_and_sees_other_processes_writes(
    resources: Resources,
) -> None:
    query = PageQuery(None, None, 3, False)
    other = Redis.from_url(resources.settings.required_redis_url())  # the writer's own connection
    api = BarCache(resources.redis, 3600)
    reader, writer = BarService(resources.store, api), BarService(resources.store, BarCache(other, 3600))
    try:
        async with api.watching():
            await _following(api)
            await writer.write(SERIES, make_bars(3))
            first = (await reader.page(SERIES, query)).decode()
            reads = api.stats["generation_reads"]
            for _ in range(20):
                assert (await reader.page(SERIES, query)).decode() == first
            assert api.stats["generation_reads"] == reads  # hits asked Redis nothing

            await writer.write(SERIES, make_bars(3, seed=9))  # another process stores new values
            for _ in range(100):  # its message arrives within milliseconds
                if (await reader.page(SERIES, query)).decode() != first:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the other process's write was never seen")
            newer = (await reader.page(SERIES, query)).decode()
            await reader.write(SERIES, make_bars(3, seed=4))  # this process's own write...
            assert (await reader.page(SERIES, query)).decode() != newer  # ...is seen at once
        assert not api.following
    finally:
        await other.aclose()


async def test_overlapping_watches_share_one_subscription(resources: Resources) -> None:
    """Two apps on the same resources (tests, `pocketquant dev`): the first one to stop
    does not stop the other's."""
    api = BarCache(resources.redis, 3600)
    first = api.watching()
    await first.__aenter__()
    async with api.watching():
        await _following(api)
        await first.__aexit__(None, None, None)
        await asyncio.sleep(0.05)
        assert api.following
    assert not api.following


@contextlib.asynccontextmanager
async def _followed(resources: Resources) -> AsyncIterator[tuple[BarCache, BarService]]:
    """A cache following generations and a service on it, with three bars written."""
    api = BarCache(resources.redis, 3600)
    service = BarService(resources.store, api)
    async with api.watching():
        await _following(api)
        await service.write(SERIES, make_bars(3))
        yield api, service


async def test_generations_are_not_trusted_while_the_subscription_is_down(resources: Resources) -> None:
    query = PageQuery(None, None, 3, False)
    async with _followed(resources) as (api, service):
        first = (await service.page(SERIES, query)).decode()
        await resources.redis.client_kill_filter(_type="pubsub")  # messages from now on are lost...
        await _following(api, False)
        # ...so a write announced while the subscription is down (here: a generation
        # set without a message) is found by asking Redis.
        await resources.redis.set(f"pocketquant:bars:gen:{SERIES}", "set-while-down")
        reads = api.stats["generation_reads"]
        await service.page(SERIES, query)
        assert api.stats["generation_reads"] == reads + 1
        await _following(api)  # subscribed again
        assert (await service.page(SERIES, query)).decode() == first  # same bars, re-read once


async def test_a_generation_is_trusted_for_a_bounded_time(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost message (here: a generation changed without one) is noticed within
    GENERATION_TRUST seconds."""
    from pocketquant.history import cache as cache_module

    monkeypatch.setattr(cache_module, "GENERATION_TRUST", 0.3)
    query = PageQuery(None, None, 3, False)
    async with _followed(resources) as (api, service):
        await service.page(SERIES, query)
        key, _ = await api.get(SERIES, query)
        await resources.redis.set(f"pocketquant:bars:gen:{SERIES}", "changed-silently")
        assert (await api.get(SERIES, query))[0] == key  # within the bound: still trusted
        await asyncio.sleep(0.35)
        assert "changed-silently" in (await api.get(SERIES, query))[0]


class _HeldGets:
    """A Redis client whose GET answers are held until released (a slow round trip)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._redis, name)

    async def get(self, key: str) -> object:
        value = await self._redis.get(key)
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        return value


async def test_a_generation_read_while_it_changed_is_not_kept(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketquant.history import cache as cache_module

    monkeypatch.setattr(cache_module, "GENERATION_TRUST", 0.5)
    query = PageQuery(None, None, 3, False)
    held = _HeldGets(resources.redis)
    api = BarCache(held, 3600)  # type: ignore[arg-type]
    reader, writer = BarService(resources.store, api), BarService(resources.store, BarCache(resources.redis, 3600))
    async with api.watching():
        await _following(api)
        await writer.write(SERIES, make_bars(3))
        old = (await reader.page(SERIES, query)).decode()  # cached under the first generation
        await asyncio.sleep(0.55)  # no longer trusted: the next read asks Redis
        held.hold = asyncio.Event()
        reading = asyncio.create_task(reader.page(SERIES, query))
        await held.held.wait()  # the reader has the first generation in hand...
        await writer.write(SERIES, make_bars(3, seed=9))  # ...when another process writes
        await asyncio.sleep(0.1)  # and its message arrives
        held.hold.set()
        assert (await reading).decode() == old  # read as of before the write: fine
        held.hold = None
        assert (await reader.page(SERIES, query)).decode().c == make_bars(3, seed=9).c  # not kept


async def test_a_malformed_message_on_the_channel_changes_nothing(resources: Resources) -> None:
    from pocketquant.history.cache import GENERATIONS_CHANNEL

    query = PageQuery(None, None, 3, False)
    async with _followed(resources) as (api, service):
        first = (await service.page(SERIES, query)).decode()
        await resources.redis.publish(GENERATIONS_CHANNEL, b"\xff\xfe not a series")
        await asyncio.sleep(0.1)
        assert api.following
        assert (await service.page(SERIES, query)).decode() == first
