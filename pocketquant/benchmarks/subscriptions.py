"""Many distinct subscriptions on one API process: N connections each holding 10
different ``liveQuotes``/``liveBars`` subscriptions over 500 symbols, updates published to
Redis as the stream does (one per symbol in turn), the time from publishing to the client
measured in separate client processes.

Connection ``i`` holds symbols ``(10 i + j) mod 500`` for j in 0..9, quotes or 1m bars
alternating so that each symbol has as many quote as bar subscribers. With 1,000
connections every symbol has 20 subscriptions, so 500 updates a second make 10,000
deliveries a second. The baseline: a plain ``websockets`` server sending the same
updates to the same connections (what writing the bytes costs, without GraphQL).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection, broadcast, serve

from pocketquant.domain import SymbolKey
from pocketquant.realtime import wire

SYMBOLS = 500
PER_CONNECTION = 10


def key_of(n: int) -> SymbolKey:
    return SymbolKey("BENCH", f"S{n % SYMBOLS:03}")


def _holds(i: int) -> list[tuple[int, bool]]:
    """Connection ``i``'s (symbol, is_quote) subscriptions."""
    return [
        ((PER_CONNECTION * i + j) % SYMBOLS, (i // (SYMBOLS // PER_CONNECTION) + j) % 2 == 0)
        for j in range(PER_CONNECTION)
    ]


def queries_for(i: int) -> list[str]:
    out = []
    for n, quote in _holds(i):
        key = key_of(n)
        if quote:
            out.append(f'subscription {{ liveQuotes(tickers: ["{key.ticker}"]) {{ ticker price time volume }} }}')
        else:
            out.append(
                f'subscription {{ liveBars(exchange: "{key.exchange}", symbol: "{key.symbol}", interval: MINUTE_1) '
                "{ ticker timestamp close volume closed } }"
            )
    return out


@dataclass
class SubscriptionsResult:
    name: str
    subscriptions: int
    deliveries_per_second: float
    p50_ms: float
    p99_ms: float
    received: int
    expected: int
    start_rss_mb: float  # the benchmark process (API + publisher) before the clients connected
    subscribed_rss_mb: float  # once every subscription was made
    peak_rss_mb: float

    @property
    def kb_per_subscription(self) -> float:
        return (self.subscribed_rss_mb - self.start_rss_mb) * 1024 / self.subscriptions


def _message(n: int) -> str:
    """One update of symbol ``n``: a quote and its 1m bar, both carrying the publish time."""
    key, now = key_of(n), time.time()
    start = int(now) - int(now) % 60
    quote = {"seq": time.time_ns(), "ticker": key.ticker, "price": now, "time": int(now), "change": None,
             "change_percent": None, "bid": None, "ask": None, "volume": 1.0, "session": "market"}  # fmt: skip
    bar = {"seq": time.time_ns(), "ticker": key.ticker, "interval": "1m", "start": start, "open": 100.0,
           "high": now, "low": 100.0, "close": now, "volume": 1.0, "ticks": 1, "partial": False,
           "closed": False}  # fmt: skip
    return json.dumps({"quote": quote, "bars": [bar]})


async def _measure(
    name: str,
    url: str,
    mode: str,
    publish: Callable[[int], Awaitable[None]],
    connections: int,
    rate: float,
    duration: float,
) -> SubscriptionsResult:
    from pocketquant.benchmarks.live import clients, drive, latencies_of, rss_mb

    start = rss_mb(os.getpid())
    async with clients(url, connections, mode, duration + 2) as procs:
        subscribed = rss_mb(os.getpid())
        peak = await drive(publish, rate, duration, os.getpid())
        latencies = await latencies_of(procs)
    ordered = sorted(latencies) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    held = Counter(n for i in range(connections) for n, _ in _holds(i))
    return SubscriptionsResult(
        name=name,
        subscriptions=connections * PER_CONNECTION,
        deliveries_per_second=len(latencies) / duration,
        p50_ms=statistics.median(ordered),
        p99_ms=p99,
        received=len(latencies),
        expected=sum(held[i % SYMBOLS] for i in range(int(rate * duration))),
        start_rss_mb=start,
        subscribed_rss_mb=subscribed,
        peak_rss_mb=peak,
    )


async def _graphql(connections: int, rate: float, duration: float) -> SubscriptionsResult:
    from pocketquant.benchmarks.harness import embedded_stack
    from pocketquant.realtime import watchlist

    async with embedded_stack() as (resources, url):
        keys = [key_of(n) for n in range(SYMBOLS)]
        await watchlist.watch(keys, resources.settings.max_watched_symbols)

        async def publish(i: int) -> None:
            key = key_of(i)
            await resources.redis.publish(wire.channel(key), _message(i))

        name = f"GraphQL, {connections} connections x {PER_CONNECTION} subscriptions over {SYMBOLS} symbols"
        return await _measure(
            name, url.replace("http", "ws") + "/graphql", "many", publish, connections, rate, duration
        )


async def _baseline(connections: int, rate: float, duration: float) -> SubscriptionsResult:
    holders: dict[int, list[ServerConnection]] = {n: [] for n in range(SYMBOLS)}

    async def handler(ws: ServerConnection) -> None:
        index = int(await ws.recv())  # the client's connection number: what it holds
        for n, _ in _holds(index):
            holders[n].append(ws)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]

        async def publish(i: int) -> None:
            update = json.loads(_message(i))
            data = json.dumps({"id": "1", "type": "next", "payload": {"data": {"liveQuotes": update["quote"]}}})
            broadcast(holders[i % SYMBOLS], data)

        name = f"baseline: websockets.broadcast of the same updates to the same {connections} connections"
        return await _measure(name, f"ws://127.0.0.1:{port}", "raw", publish, connections, rate, duration)


async def run_subscriptions(
    connections: int = 1_000, rate: float = 500.0, duration: float = 10.0
) -> list[SubscriptionsResult]:
    """The baseline first, in a process that holds nothing else yet (its memory figures
    are its own), then the API."""
    baseline = await _baseline(connections, rate, duration)
    graphql = await _graphql(connections, rate, duration)
    return [graphql, baseline]
