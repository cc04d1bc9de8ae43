"""The stream's publisher on a real Redis: every update in order normally; under
overload a symbol's queued quotes merge into its newest, closed bars always go out."""

import asyncio
import json
from typing import Any

from pocketquant.domain import Interval, SymbolKey
from pocketquant.domain.aggregator import LiveBar
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import stream as stream_module
from pocketquant.realtime import wire
from pocketquant.realtime.stream import StreamService, _Pending
from pocketquant.resources import Resources

KEYS = [SymbolKey("BINANCE", s) for s in ("BTCUSDT", "ETHUSDT", "DOGEUSDT")]


async def _published(resources: Resources, items: list[_Pending], expected: int) -> list[tuple[str, Any]]:
    """Queue ``items`` at once, run the publisher, and collect ``expected`` messages."""
    pubsub = resources.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*(wire.channel(k) for k in KEYS))
    service = StreamService(resources, "publisher-test")
    for item in items:
        service._outbox_put(item)
    task = asyncio.create_task(service._publish_loop())
    got: list[tuple[str, Any]] = []
    try:
        async with asyncio.timeout(10):
            while len(got) < expected:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    got.append((message["channel"].decode(), json.loads(message["data"])))
        assert await pubsub.get_message(timeout=0.3) is None  # nothing more
    finally:
        await cancel_and_wait(task)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    return got


def _quote(key: SymbolKey, price: float) -> _Pending:
    return _Pending(key, {"lp": price, "lp_time": 1_800_000_000, "volume": price}, (), False)


async def test_every_update_goes_out_in_order(resources: Resources) -> None:
    items = [_quote(KEYS[i % 3], float(i)) for i in range(30)]
    got = await _published(resources, items, 30)
    assert [m["quote"]["price"] for _, m in got] == [float(i) for i in range(30)]


async def test_under_overload_quotes_merge_and_closed_bars_do_not(resources: Resources) -> None:
    closed = LiveBar(KEYS[0], Interval.MINUTE_1, 1_800_000_000, 1.0, 2.0, 0.5, 1.5, 10.0, 3, False, True)
    items = [_quote(KEYS[i % 3], float(i)) for i in range(stream_module._MERGE_ABOVE + 200)]
    items.insert(500, _Pending(KEYS[0], None, (closed,), False))
    got = await _published(resources, items, 4)
    quotes = {channel: m["quote"]["price"] for channel, m in got if m["quote"] is not None}
    newest = {wire.channel(k): max(float(i) for i in range(len(items) - 1) if i % 3 == n) for n, k in enumerate(KEYS)}
    assert quotes == newest  # each symbol's newest quote, once
    bars = [b for _, m in got for b in m["bars"]]
    assert [(b["start"], b["closed"]) for b in bars] == [(1_800_000_000, True)]  # the closed bar went out
    snapshot: Any = await resources.redis.hget(wire.snapshot_key(KEYS[1]), "quote")  # type: ignore[misc]
    assert snapshot is not None
    assert json.loads(snapshot)["price"] == newest[wire.channel(KEYS[1])]
