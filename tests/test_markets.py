"""Real markets: live bars and history bars of one series agree, for instruments that
trade in sessions (a US stock, a CME futures contract) and around the clock (a crypto
pair), on both sides of the US daylight saving switch (2026-03-08).

The simulator serves history and live trades from one tape, in each instrument's
session, so a bar the stream builds from the trades it received must be the bar the
history sync fetches for the same period: same time, same values, one bar."""

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from arq.worker import Worker

from pocketquant.domain import Bar, Interval, SymbolKey
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import until, watching

BARS = """query($e: String!, $s: String!, $i: Interval!, $from: DateTime, $to: DateTime) {
  bars(exchange: $e, symbol: $s, interval: $i, from: $from, to: $to, first: 5000) {
    bars { timestamp open high low close volume } } }"""


def _epoch(zone: str, text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp())


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def _stored(gql: GraphQLClient, key: SymbolKey, interval: Interval, start: int, end: int) -> list[Bar]:
    variables = {"e": key.exchange, "s": key.symbol, "i": interval.name, "from": _iso(start), "to": _iso(end)}
    rows: list[dict[str, Any]] = (await gql.data(BARS, variables))["bars"]["bars"]
    return [Bar(r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows]


async def _play(simulator: TradingViewSimulator, sim_clock: ManualClock, start: int, end: int) -> None:
    """Let the market trade from ``start`` to ``end``, a minute of trades per message.
    The stream's own clock stays behind: the trades themselves close its bars."""
    for t in range(start, end + 1, 60):
        sim_clock.now = t
        await simulator.play(t)
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("ticker", "zone", "hour"),
    [
        ("NASDAQ:AAPL", "America/New_York", "10:30"),  # hours from the 09:30 open
        ("CME_MINI:ES1!", "America/Chicago", "10:00"),  # hours from the 17:00 open
        ("BINANCE:BTCUSDT", "UTC", "15:00"),  # 24x7: UTC hours
    ],
)
@pytest.mark.parametrize("day", ["2026-03-06", "2026-03-09"])  # a Friday before, a Monday after the switch
async def test_a_live_bar_and_the_history_bar_of_its_period_are_one_bar(
    gql: GraphQLClient,
    worker: Worker,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    sim_clock: ManualClock,
    simulator: TradingViewSimulator,
    ticker: str,
    zone: str,
    hour: str,
    day: str,
) -> None:
    key = SymbolKey.from_ticker(ticker)
    instrument = simulator.market.get(key)
    assert instrument is not None
    start = _epoch(zone, f"{day} {hour}")
    end = start + 3600
    begin = start - 30  # the stream joins half a minute before the hour
    sim_clock.now = stream_clock.now = begin
    await watching(gql, key)
    await _play(simulator, sim_clock, begin, end + 60)  # the first trade past the hour closes its bar

    expected = simulator.market.bars_between(instrument, Interval.HOUR_1, start, end, int(sim_clock.now))
    assert [b.time for b in expected] == [start]  # the hour is aligned the way the instrument's session is

    async def live_stored() -> list[Bar]:
        return await _stored(gql, key, Interval.HOUR_1, start - 3600, end)

    # The stream received the whole hour, so it stored it, and exactly as the provider has it.
    assert await until(live_stored, within=20) == expected

    # The history sync of the same series fetches that bar at the same time: still one bar.
    sync = f'mutation {{ syncSymbol(input: {{exchange: "{key.exchange}", symbol: "{key.symbol}", interval: HOUR_1, bars: 30}}) {{ ... on SyncEnqueued {{ jobId }} }} }}'
    job = await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"])
    assert job["result"]["ok"] is True
    after = await _stored(gql, key, Interval.HOUR_1, start - 10 * 3600, end + 3600)
    served = simulator.market.bars_between(
        instrument, Interval.HOUR_1, start - 10 * 3600, end + 3601, int(sim_clock.now)
    )
    assert after == served
    assert len({b.time for b in after}) == len(after)
