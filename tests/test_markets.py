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

from pocketquant.domain import Bar, BarColumns, Interval, SeriesKey, SymbolKey
from pocketquant.resources import Resources
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import until, watching

BARS = """query($e: String!, $s: String!, $i: Interval!, $from: DateTime, $to: DateTime) {
  bars(exchange: $e, symbol: $s, interval: $i, from: $from, to: $to, first: 5000) {
    source bars { timestamp open high low close volume } } }"""


def _epoch(zone: str, text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp())


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def _stored(gql: GraphQLClient, key: SymbolKey, interval: Interval, start: int, end: int) -> list[Bar]:
    """The stored bars of that interval (not bars resampled from a shorter one)."""
    variables = {"e": key.exchange, "s": key.symbol, "i": interval.name, "from": _iso(start), "to": _iso(end)}
    page = (await gql.data(BARS, variables))["bars"]
    rows: list[dict[str, Any]] = page["bars"] if page["source"] == interval.name else []
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


GAPS = """query($i: Interval!) { gaps(exchange: "NASDAQ", symbol: "AAPL", interval: $i) {
  expectedBars storedBars missingBars gapCount oldestReachable
  gaps { firstMissing lastMissing missingBars reachable } } }"""
REPAIR = """mutation($i: Interval!) { repairGaps(exchange: "NASDAQ", symbol: "AAPL", interval: $i) {
  __typename ... on GapsRepairQueued { job { jobId } barsRequested repairableGaps
  outOfReach { firstMissing missingBars } } ... on InvalidInput { message } } }"""


async def _sync_at(gql: GraphQLClient, sim_clock: ManualClock, at: float, interval: str, bars: int) -> dict[str, Any]:
    sim_clock.now = at
    sync = f'mutation {{ syncSymbol(input: {{exchange: "NASDAQ", symbol: "AAPL", interval: {interval}, bars: {bars}}}) {{ ... on SyncEnqueued {{ jobId }} }} }}'
    return await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"])


async def test_gaps_follow_the_sessions_and_repair_fetches_them(
    gql: GraphQLClient, worker: Worker, sim_clock: ManualClock, simulator: TradingViewSimulator
) -> None:
    from tests.conftest import SIM_START

    instrument = simulator.market.get(SymbolKey("NASDAQ", "AAPL"))
    assert instrument is not None
    # Unknown sessions: a clear refusal, not a guess.
    errors = await gql.errors('{ gaps(exchange: "NASDAQ", symbol: "AAPL", interval: HOUR_1) { gapCount } }')
    assert "not known yet: sync it once first" in errors[0]["message"]

    # 50 hourly bars a week ago, 10 now: a hole between, and nights and a weekend that are not gaps.
    await _sync_at(gql, sim_clock, SIM_START - 7 * 86_400, "HOUR_1", 50)
    await _sync_at(gql, sim_clock, SIM_START, "HOUR_1", 10)
    stored_before = await _stored(gql, SymbolKey("NASDAQ", "AAPL"), Interval.HOUR_1, 0, int(SIM_START) + 3_600)
    served = simulator.market.bars_between(
        instrument, Interval.HOUR_1, stored_before[0].time, stored_before[-1].time + 1, int(SIM_START)
    )
    # The bar in progress a week ago was stored as it stood then: it counts as missing.
    forming_then = instrument.calendar.bar(Interval.HOUR_1, int(SIM_START) - 7 * 86_400)
    assert forming_then is not None
    hole = sorted({b.time for b in served if b.time not in {s.time for s in stored_before}} | {forming_then[0]})
    assert 0 < len(hole) < len(served)
    report = (await gql.data(GAPS, {"i": "HOUR_1"}))["gaps"]
    assert report["gapCount"] == 1
    assert report["missingBars"] == len(hole)
    # The bar in progress now (14:30) is neither missing nor counted.
    assert (report["expectedBars"], report["storedBars"]) == (len(served) - 1, len(stored_before) - 2)
    assert report["gaps"] == [
        {"firstMissing": _iso(hole[0]), "lastMissing": _iso(hole[-1]), "missingBars": len(hole), "reachable": True}
    ]
    status = '{ syncStatus(exchange: "NASDAQ", symbol: "AAPL", interval: HOUR_1) { gapCount missingBars } }'
    assert (await gql.data(status))["syncStatus"] == [{"gapCount": 1, "missingBars": len(hole)}]

    repair = (await gql.data(REPAIR, {"i": "HOUR_1"}))["repairGaps"]
    assert (repair["repairableGaps"], repair["outOfReach"]) == (1, [])
    await gql.wait_for_job(repair["job"]["jobId"])
    assert (await gql.data(GAPS, {"i": "HOUR_1"}))["gaps"]["gapCount"] == 0
    assert await _stored(gql, SymbolKey("NASDAQ", "AAPL"), Interval.HOUR_1, 0, int(SIM_START) + 3_600) == served
    assert (await gql.data(status))["syncStatus"] == [{"gapCount": 0, "missingBars": 0}]

    # 1m bars a month apart: most of the hole is older than TradingView's 5,000-bar reach.
    await _sync_at(gql, sim_clock, SIM_START - 31 * 86_400, "MINUTE_1", 10)
    await _sync_at(gql, sim_clock, SIM_START, "MINUTE_1", 10)
    before = (await gql.data(GAPS, {"i": "MINUTE_1"}))["gaps"]
    assert before["gapCount"] == 1
    assert before["gaps"][0]["reachable"] is False
    repair = (await gql.data(REPAIR, {"i": "MINUTE_1"}))["repairGaps"]
    assert repair["barsRequested"] == 5_000
    assert repair["outOfReach"][0]["missingBars"] == before["missingBars"]
    await gql.wait_for_job(repair["job"]["jobId"])
    after = (await gql.data(GAPS, {"i": "MINUTE_1"}))["gaps"]
    # What TradingView still serves was filled; the rest is reported, not hidden.
    assert after["gapCount"] == 1
    assert after["gaps"][0]["lastMissing"] < after["oldestReachable"]
    assert after["missingBars"] == before["missingBars"] - (5_000 - 10)


RESAMPLED = """query($e: String!, $s: String!, $i: Interval!, $first: Int, $after: String, $order: BarOrder, $from: DateTime) {
  bars(exchange: $e, symbol: $s, interval: $i, first: $first, after: $after, order: $order, from: $from) {
    source hasNextPage endCursor bars { timestamp open high low close volume } } }"""


async def _resampled(gql: GraphQLClient, key: SymbolKey, interval: Interval, **extra: Any) -> dict[str, Any]:
    variables = {"e": key.exchange, "s": key.symbol, "i": interval.name, "first": 5000} | extra
    page: dict[str, Any] = (await gql.data(RESAMPLED, variables))["bars"]
    page["bars"] = [Bar(r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in page["bars"]]
    return page


@pytest.mark.parametrize("ticker", ["NASDAQ:AAPL", "CME_MINI:ES1!", "BINANCE:BTCUSDT"])
async def test_intervals_not_stored_are_resampled_by_the_sessions(
    gql: GraphQLClient, worker: Worker, sim_clock: ManualClock, simulator: TradingViewSimulator, ticker: str
) -> None:
    key = SymbolKey.from_ticker(ticker)
    instrument = simulator.market.get(key)
    assert instrument is not None
    now = int(sim_clock.now)
    for interval, bars in (("HOUR_1", 400), ("DAY_1", 300)):
        sync = f'mutation {{ syncSymbol(input: {{exchange: "{key.exchange}", symbol: "{key.symbol}", interval: {interval}, bars: {bars}}}) {{ ... on SyncEnqueued {{ jobId }} }} }}'
        assert (await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"]))["result"]["ok"]
    for target, source in (
        (Interval.HOUR_2, "HOUR_1"),
        (Interval.HOUR_4, "HOUR_1"),
        (Interval.WEEK_1, "DAY_1"),
        (Interval.MONTH_1, "DAY_1"),
    ):
        page = await _resampled(gql, key, target)
        assert page["source"] == source
        made = page["bars"]
        # The first bar may begin before the stored source does; every other one is the
        # provider's own bar at that interval, to the value (the last one in progress).
        served = simulator.market.bars_between(instrument, target, made[1].time, now + 1, now)
        assert made[1:] == served, target
    stored = await _resampled(gql, key, Interval.HOUR_1)
    assert stored["source"] == "HOUR_1"  # a stored interval is served as stored

    # Pages of resampled bars walk the range exactly once, both ways.
    whole = (await _resampled(gql, key, Interval.HOUR_4))["bars"]
    for order in ("OLDEST_FIRST", "NEWEST_FIRST"):
        walked: list[Bar] = []
        after = None
        while True:
            page = await _resampled(gql, key, Interval.HOUR_4, first=7, after=after, order=order)
            walked += page["bars"]
            if not page["hasNextPage"]:
                break
            after = page["endCursor"]
        assert walked == (whole if order == "OLDEST_FIRST" else whole[::-1])
    since = whole[10].time
    ranged = await _resampled(gql, key, Interval.HOUR_4, **{"from": _iso(since)})
    assert ranged["bars"] == whole[10:]


async def test_pre_and_post_market_trades_are_quoted_but_go_into_no_bar(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    sim_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    """Policy: bars hold regular-session trades only, as TradingView's regular-session bars
    do. Extended-hours trades reach quote subscribers, marked with their session, and are
    counted (streamStatus.outsideSessionTicks); no extended-hours series is kept."""
    from tests.utils.live import Collector, session

    key = SymbolKey("NASDAQ", "AAPL")
    begin = _epoch("America/New_York", "2026-11-20 09:20")  # pre-market, ten minutes before the open
    sim_clock.now = stream_clock.now = begin
    await watching(gql, key)
    async with session(api_url) as s:
        quotes = Collector(s, 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { session time } }', {})
        await _play(simulator, sim_clock, begin, begin + 9 * 60)
        pre = await quotes.next(lambda q: q["session"] == "pre_market")
        assert pre["time"] > _iso(begin)

    async def counted() -> int:
        ticks: int = (await gql.data("{ streamStatus { outsideSessionTicks } }"))["streamStatus"]["outsideSessionTicks"]
        return ticks if ticks >= 9 * 2 else 0  # a pre-market trade every 30 s

    assert await until(counted)
    assert await _stored(gql, key, Interval.MINUTE_1, begin - 3600, begin + 3600) == []
    # The open's first trade starts the regular session's bars at 09:30 sharp.
    await _play(simulator, sim_clock, begin + 9 * 60, begin + 12 * 60)

    async def first_minute() -> list[Bar]:
        return await _stored(gql, key, Interval.MINUTE_1, begin - 3600, begin + 3600)

    stored = await until(first_minute)
    assert stored[0].time == _epoch("America/New_York", "2026-11-20 09:30")
    instrument = simulator.market.get(key)
    assert instrument is not None
    assert stored == simulator.market.bars_between(
        instrument, Interval.MINUTE_1, begin, stored[-1].time + 1, int(sim_clock.now)
    )


async def test_a_resampled_page_is_cached_under_its_source_until_the_source_changes(
    gql: GraphQLClient, worker: Worker, resources: Resources
) -> None:
    key = SymbolKey("NASDAQ", "AAPL")
    sync = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: HOUR_1, bars: 300}) { ... on SyncEnqueued { jobId } } }'
    assert (await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"]))["result"]["ok"]
    first = await _resampled(gql, key, Interval.HOUR_4, first=1, order="NEWEST_FIRST")
    hits = resources.bars.stats["hit"]
    assert await _resampled(gql, key, Interval.HOUR_4, first=1, order="NEWEST_FIRST") == first
    assert resources.bars.stats["hit"] == hits + 2  # the 4h series (none stored), then the page made from 1h

    source = SeriesKey("NASDAQ", "AAPL", Interval.HOUR_1)
    last = (await resources.store.read_page(source, start=None, end=None, limit=1, newest_first=True)).bars.bar(0)
    corrected = Bar(last.time, last.open, last.high + 1.0, last.low, last.high + 1.0, last.volume)
    await resources.bars.write(source, BarColumns.from_bars([corrected]))  # a correction of the newest hour
    newest = (await _resampled(gql, key, Interval.HOUR_4, first=1, order="NEWEST_FIRST"))["bars"][0]
    assert newest.time == first["bars"][0].time
    assert (
        (newest.close, newest.high)
        == (corrected.close, corrected.high)
        != (first["bars"][0].close, first["bars"][0].high)
    )
