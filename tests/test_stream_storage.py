"""What the stream stores: closed bars, kept through a failing store; partial bars and
empty tracked series filled from history."""

import asyncio
from typing import Any

from pocketquant.domain import Interval, SeriesKey
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime.stream import run_stream
from pocketquant.resources import Resources
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import (
    AAPL,
    T0,
    receiving_all,
    trade,
    until,
    watch,
    watching,
)


async def test_a_partial_bar_is_filled_in_from_history(
    gql: GraphQLClient,
    resources: Resources,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    sim_clock: ManualClock,
    simulator: TradingViewSimulator,
    worker: Any,
) -> None:
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    # History synced at 14:30:59 (its newest bar, 14:30, still in progress then); no
    # stream ran until one started inside the 14:36 minute.
    sim_clock.now = stream_clock.now = T0 - 7 * 60 - 1
    await resources.sync.sync(series, 5)
    sim_clock.now = stream_clock.now = T0 - 90
    simulator.quotes.clear()
    await watching(gql, AAPL)  # connected at 14:36:30: the 14:36 bar began before
    # It closes: partial, so not stored; history fills it and the gap before.
    sim_clock.now = T0 - 59
    await trade(simulator, stream_clock, [(T0 - 80, 99.0, 990.0), (T0 - 59, 100.0, 1_000.0)])

    async def filled() -> list[int]:
        page = await resources.store.read_page(series, start=T0 - 8 * 60, end=T0 - 2 * 60, limit=100)
        return page.bars.t if len(page.bars) == 7 else []

    assert await until(filled, within=20) == [T0 - 60 * k for k in range(8, 1, -1)]
    # As TradingView has them now: 14:30 too, which the first sync stored in progress.
    stored = (await resources.store.read_page(series, start=T0 - 8 * 60, end=T0 - 2 * 60, limit=100)).bars
    final = (await resources.provider.fetch(series, 10)).bars
    rows = [r for r in zip(final.t, final.o, final.h, final.l, final.c, final.v, strict=True) if r[0] < T0 - 60]
    assert list(zip(stored.t, stored.o, stored.h, stored.l, stored.c, stored.v, strict=True)) == rows[-7:]


async def test_closed_bars_survive_a_failing_store(
    gql: GraphQLClient, resources: Resources, stream_clock: ManualClock, simulator: TradingViewSimulator
) -> None:
    from pocketquant.history.store import BarStore

    class FlakyStore(BarStore):
        failures = 3

        async def write(self, series: SeriesKey, bars: Any, *, forming: int | None = None) -> Any:
            if FlakyStore.failures:
                FlakyStore.failures -= 1
                raise ConnectionError("MongoDB is down")
            return await super().write(series, bars, forming=forming)

    flaky = resources.with_store(FlakyStore(resources.settings.chunk_size))
    await watch(gql, AAPL)
    task = asyncio.create_task(run_stream(flaky, instance="flaky", clock=stream_clock))
    try:
        await until(lambda: receiving_all(gql, {"NASDAQ:AAPL"}))
        for t, price in [(T0 + 1, 1.0), (T0 + 61, 2.0), (T0 + 121, 3.0)]:
            stream_clock.now = t
            await simulator.push_quote(AAPL, lp=price, lp_time=t, volume=float(t))
        stream_clock.now = T0 + 181
        series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)

        async def stored() -> list[int]:
            page = await resources.store.read_page(series, start=None, end=None, limit=10)
            return page.bars.t if len(page.bars) == 3 else []

        assert await until(stored, within=20) == [T0, T0 + 60, T0 + 120]
        assert FlakyStore.failures == 0
    finally:
        await cancel_and_wait(task)


async def test_a_tracked_series_with_nothing_stored_is_filled_from_history(
    gql: GraphQLClient,
    resources: Resources,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    sim_clock: ManualClock,
    simulator: TradingViewSimulator,
    worker: Any,
) -> None:
    from datetime import UTC, datetime

    from pocketquant.history.documents import SymbolRecord

    # Tracked at 1m, but no bar of it was ever stored (every one so far was partial).
    await SymbolRecord(
        exchange="NASDAQ", symbol="AAPL", tracked=True, tracked_intervals=["1m"], updated_at=datetime.now(UTC)
    ).insert()
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    await watching(gql, AAPL)  # connected at 14:37:30: its 14:37 bar is partial
    sim_clock.now = T0 + 1
    await trade(simulator, stream_clock, [(T0 - 20, 99.0, 990.0), (T0 + 1, 100.0, 1_000.0)])

    async def filled() -> bool:  # the whole history, once the sync has written every chunk
        return (await resources.store.stats(series)).bar_count == resources.settings.sync_default_bars

    assert await until(filled, within=30)
