"""LatestQueue: bounded, newest per key, closes never replaced."""

import asyncio

from pocketquant.domain import Interval
from pocketquant.realtime.hub import LatestQueue, Listener


def bar(seq: int, start: int, close: float, closed: bool = False) -> dict[str, object]:
    return {
        "seq": seq,
        "ticker": "X:Y",
        "interval": "1m",
        "start": start,
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": close,
        "volume": 1.0,
        "ticks": 1,
        "partial": False,
        "closed": closed,
    }


async def test_keeps_the_newest_per_key_and_drops_older_sequences() -> None:
    q = LatestQueue(capacity=10)
    q.put("a", {"seq": 1, "v": 1})
    q.put("b", {"seq": 2, "v": 2})
    q.put("a", {"seq": 3, "v": 3})
    q.put("a", {"seq": 2, "v": "stale"})  # older than what it has: ignored
    assert [await q.get(), await q.get()] == [{"seq": 2, "v": 2}, {"seq": 3, "v": 3}]  # re-inserted last
    q.put("a", {"seq": 3, "v": "same again"})
    assert len(q) == 0


async def test_bounded_memory_drops_the_oldest() -> None:
    q = LatestQueue(capacity=8)
    for i in range(1_000):
        q.put(("closed", i), {"seq": i})
    assert len(q) == 8
    assert q.dropped == 992
    assert (await q.get())["seq"] == 992
    assert len(q._seen) <= 32  # a long-lived subscription's bookkeeping stays bounded too


async def test_a_close_supersedes_its_pending_update_and_is_not_replaced() -> None:
    listener = Listener(frozenset(), quotes=False, intervals=frozenset({Interval.MINUTE_1}), queue=LatestQueue(16))
    listener.offer({"quote": None, "bars": [bar(1, 60, 1.0)]})
    listener.offer({"quote": None, "bars": [bar(2, 60, 1.5, closed=True)]})
    listener.offer({"quote": None, "bars": [bar(3, 120, 2.0)]})
    listener.offer({"quote": None, "bars": [bar(4, 120, 2.5)]})
    got = [await listener.queue.get(), await listener.queue.get()]
    assert [(b["start"], b["close"], b["closed"]) for b in got] == [(60, 1.5, True), (120, 2.5, False)]
    assert len(listener.queue) == 0


async def test_get_waits_for_a_put() -> None:
    q = LatestQueue(4)
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.put("k", {"seq": 1})
    assert await asyncio.wait_for(waiter, 1) == {"seq": 1}


async def test_the_stream_lock_works_on_the_embedded_fakeredis_fallback() -> None:
    """`pocketquant dev` without a redis-server runs on fakeredis: the lock's Lua must work."""
    import redis.asyncio

    from pocketquant.infra.embedded import _fakeredis_server
    from pocketquant.realtime.leader import LeaderLock

    async with _fakeredis_server() as url:
        client = redis.asyncio.Redis.from_url(url)
        try:
            lock = LeaderLock(client, "lock", ttl_seconds=5, owner="a")
            assert await lock.acquire()
            assert await lock.renew()
            await lock.release()
            assert await lock.holder() is None
        finally:
            await client.aclose()


async def test_a_deeper_queue_keeps_a_burst_whole_and_bounds_a_longer_one() -> None:
    q = LatestQueue(capacity=1_000, depth=64)
    for i in range(1, 21):
        q.put("quote", {"seq": i})
    q.put("other", {"seq": 100})
    assert [(await q.get())["seq"] for _ in range(21)] == [*range(1, 21), 100]  # every update, in order
    for i in range(200, 300):
        q.put("quote", {"seq": i})
    assert len(q) == 64  # the newest 64 of the 100
    assert [(await q.get())["seq"] for _ in range(64)] == list(range(236, 300))
