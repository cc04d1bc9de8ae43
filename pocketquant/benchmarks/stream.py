"""Stream process throughput: simulator quote frames for many watched symbols, through
the real stream (parse, merge, aggregate, publish to Redis), at as high a rate as it
takes.

The simulator runs as a separate process (``firehose``) that sends every symbol a trade
in each websocket message, as fast as its connection drains; the stream runs in this
process on asyncio's loop, so its CPU time is this process's. Alongside, each stage is
timed alone on the same frames (parse, aggregate, publish), and the baseline is parsing
alone: the floor any stream must pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass

from pocketquant.benchmarks.harness import embedded_services, helper_process, services_settings
from pocketquant.domain import SymbolKey
from pocketquant.domain.aggregator import BarAggregator
from pocketquant.simulator.market import Instrument, SimulatedMarket
from pocketquant.tradingview import protocol

EXCHANGE = "BENCH"


def instruments(n: int) -> tuple[Instrument, ...]:
    return tuple(
        Instrument(EXCHANGE, f"S{i:03}", f"bench {i}", "spot", "USD", "Etc/UTC", 100.0 + i, 2) for i in range(n)
    )


@dataclass
class StreamResult:
    symbols: int
    seconds: float
    ticks: int
    published: int
    merged: int
    cpu_seconds: float
    parse_us: float  # per tick, alone
    aggregate_us: float
    publish_us: float
    baseline_ticks_per_second: float  # parsing alone

    @property
    def ticks_per_second(self) -> float:
        return self.ticks / self.seconds

    @property
    def cpu_us_per_tick(self) -> float:
        return self.cpu_seconds / max(1, self.ticks) * 1e6


def _frames(keys: list[SymbolKey], t: int, rng: random.Random) -> str:
    """One websocket message: a trade for every symbol (how the firehose sends them)."""
    return protocol.encode_many(
        *(
            ("qsd", ["qs_bench", {"n": k.ticker, "s": "ok", "v": {"lp": round(100 + rng.random(), 2), "lp_time": t,
                                                               "volume": float(i + t)}}])
            for i, k in enumerate(keys)
        )
    )  # fmt: skip


async def run_stream_bench(symbols: int = 500, seconds: float = 10.0) -> StreamResult:
    from pocketquant.infra.embedded import free_port
    from pocketquant.realtime import watchlist
    from pocketquant.realtime.stream import StreamService
    from pocketquant.resources import open_resources

    keys = [i.key for i in instruments(symbols)]
    port = free_port()
    async with (
        helper_process("pocketquant.benchmarks.stream", "firehose", str(port), str(symbols)),
        embedded_services() as (mongo_url, redis_url),
    ):
        settings = services_settings(mongo_url, redis_url, port).model_copy(
            update={"max_watched_symbols": max(symbols, 500), "watchlist_refresh_seconds": 0.2}
        )
        async with open_resources(settings) as resources:
            await watchlist.watch(keys, settings.max_watched_symbols)
            service = StreamService(resources, "bench")
            task = asyncio.create_task(service.run())
            try:
                async with asyncio.timeout(60):
                    while len(service.client.receiving) < symbols:  # noqa: ASYNC110 - polled state
                        await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # warmed up
                ticks0, published0 = service.aggregator.ticks, service.updates_published
                merged0 = service.updates_merged
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(seconds)
                ticks, published = service.aggregator.ticks - ticks0, service.updates_published - published0
                merged = service.updates_merged - merged0
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            parse, aggregate, publish, baseline = await _stages(resources, keys)
    return StreamResult(symbols, wall, ticks, published, merged, cpu, parse, aggregate, publish, baseline)


async def _stages(resources: object, keys: list[SymbolKey]) -> tuple[float, float, float, float]:
    """Each stage alone, in microseconds per tick, on the same kind of frames; and the
    baseline's ticks/s (parsing alone)."""
    from pocketquant.realtime import wire
    from pocketquant.resources import Resources

    assert isinstance(resources, Resources)
    rng = random.Random(1)
    messages = [_frames(keys, 1_800_000_000 + i, rng) for i in range(20)]
    n = len(messages) * len(keys)
    started = time.perf_counter()
    for message in messages:
        protocol.parse_message(message)
    parse = (time.perf_counter() - started) / n * 1e6
    aggregator = BarAggregator()
    updates = [(k, 1_800_000_000 + i, 100.0 + rng.random(), float(i)) for i in range(20) for k in keys]
    started = time.perf_counter()
    for key, t, price, volume in updates:
        aggregator.on_tick(key, t, price, volume)
        list(aggregator.current(key))
    aggregate = (time.perf_counter() - started) / n * 1e6
    state = {"lp": 100.5, "lp_time": 1_800_000_000, "volume": 10.0, "bid": 100.4, "ask": 100.6}
    bars = {k: list(aggregator.current(k)) for k in keys}
    started = time.perf_counter()
    for i in range(20):
        async with resources.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                parts = [json.dumps(wire.bar_payload(b, i), separators=(",", ":")) for b in bars[key]]
                quote = json.dumps(wire.quote_payload(key, state, i), separators=(",", ":"))
                pipe.publish(wire.channel(key), f'{{"quote":{quote},"bars":[{",".join(parts)}]}}')
            await pipe.execute()
    publish = (time.perf_counter() - started) / n * 1e6
    return parse, aggregate, publish, 1e6 / parse


async def _firehose(port: int, symbols: int) -> None:
    """Serve the simulator on ``port`` and, once a client quotes every symbol, send each
    a trade per message, as fast as the connection drains."""
    from pocketquant.simulator import TradingViewSimulator

    market = SimulatedMarket(instruments(symbols))
    keys = [i.key for i in market.instruments]
    rng = random.Random(7)
    async with TradingViewSimulator(market, port=port) as sim:
        print("ready", flush=True)
        while len(sim.quoted()) < symbols:  # noqa: ASYNC110 - polled state
            await asyncio.sleep(0.05)
        volume = 0.0
        while True:
            t = int(time.time())  # many trades a second share their second, as on TradingView
            volume += 1
            updates = [(k, {"lp": round(100 + rng.random(), 2), "lp_time": t, "volume": volume}) for k in keys]
            await sim.push_quotes(updates)


if __name__ == "__main__":
    if sys.argv[1:2] == ["firehose"]:
        asyncio.run(_firehose(int(sys.argv[2]), int(sys.argv[3])))
