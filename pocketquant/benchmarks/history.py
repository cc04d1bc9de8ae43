"""Storage and GraphQL reads of one symbol's history, each beside its baseline.

Everything runs embedded (mongoeco on a SQLite file, a local Redis, the simulator, the
API on uvicorn), so the figures are comparable between machines only as ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from pocketquant.benchmarks.harness import Row, embedded_stack
from pocketquant.domain import Interval, SeriesKey
from pocketquant.history.documents import BarChunk
from pocketquant.resources import Resources


async def _timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


def _ms(samples: list[float]) -> str:
    p50, low, high = (x * 1e3 for x in (statistics.median(samples), min(samples), max(samples)))
    return f"p50 {p50:.1f} ms (min {low:.1f}, max {high:.1f}, n={len(samples)})"


async def run(runs: int = 5, requests: int = 60) -> list[Row]:
    rows: list[Row] = []
    async with embedded_stack() as (resources, url):
        rows += await _storage(resources, runs)
        rows += await _graphql(resources, url, requests)
    return rows


async def _storage(resources: Resources, runs: int) -> list[Row]:
    store, provider = resources.store, resources.provider
    tickers = [("NASDAQ", "AAPL"), ("NASDAQ", "MSFT"), ("CME_MINI", "ES1!"), ("MOEX", "SBER"), ("TSE", "7203")]
    series = [SeriesKey(ex, sym, Interval.MINUTE_1) for ex, sym in tickers[:runs]]
    fetched = [await provider.fetch(s, 5_000) for s in series]
    first, again, chunk_writes = [], [], []
    for key, history in zip(series, fetched, strict=True):
        start = time.perf_counter()
        await store.write(key, history.bars)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = await store.write(key, history.bars)
        again.append(time.perf_counter() - start)
        chunk_writes.append(result.chunks_written)
    syncs = await _timed(lambda: resources.sync.sync(series[0], 5_000), runs)
    chunks = await BarChunk.find(BarChunk.symbol == series[0].symbol).count()
    return [
        Row("store 5,000 new 1m bars (one symbol, SQLite-backed mongoeco)", _ms(first), "< 1 s"),
        Row("re-write the same 5,000 bars", _ms(again) + f"; chunk writes: {sum(chunk_writes)}", "< 0.3 s, 0 writes"),
        Row("full re-sync (tvdatafeed fetch from the simulator + merge)", _ms(syncs), ""),
        Row("chunks holding 5,000 1m bars", str(chunks), ""),
    ]


async def _graphql(resources: Resources, url: str, requests: int) -> list[Row]:
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    page_args = 'exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_1, first: 1000'
    columnar = f"{{ bars({page_args}) {{ count columns {{ t o h l c v }} }} }}"
    objects = f"{{ bars({page_args}) {{ count bars {{ time timestamp open high low close volume }} }} }}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def post(query: str) -> None:
            response = await http.post("/graphql", json={"query": query})
            body = response.json()
            if "errors" in body:
                raise RuntimeError(body["errors"])

        async def cold(query: str) -> None:
            await resources.cache.invalidate(series)
            await post(query)

        for query in (columnar, objects, "{ __typename }"):  # warm up connections and parsers
            await post(query)
        floor = await _timed(lambda: post("{ __typename }"), requests)
        col_cold = await _timed(lambda: cold(columnar), requests)
        col_hot = await _timed(lambda: post(columnar), requests)
        obj_cold = await _timed(lambda: cold(objects), requests)
        obj_hot = await _timed(lambda: post(objects), requests)
    return [
        Row("baseline: `{ __typename }` over HTTP", _ms(floor)),
        Row("1,000 bars, columnar, cold (cache invalidated each time)", _ms(col_cold), "p50 < 100 ms"),
        Row("1,000 bars, columnar, from the Redis cache", _ms(col_hot), "p50 < 15 ms"),
        Row("1,000 bars, objects, cold", _ms(obj_cold)),
        Row("1,000 bars, objects, from the Redis cache", _ms(obj_hot)),
    ]
