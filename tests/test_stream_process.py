"""The stream process: reconnects, the watch list, symbol errors, and one leader at a time."""

import asyncio
import contextlib
from typing import Any

from pocketquant.domain import Interval, SeriesKey
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import wire
from pocketquant.realtime.leader import LeaderLock
from pocketquant.realtime.stream import run_stream
from pocketquant.resources import Resources
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import (
    AAPL,
    T0,
    status,
    trade,
    until,
    watch,
    watching,
)


async def test_reconnect_resubscribes_and_a_bar_across_the_drop_is_partial(
    gql: GraphQLClient,
    resources: Resources,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await watching(gql, AAPL)
    script = [(T0 + 5, 10.0, 100.0), (T0 + 30, 11.0, 110.0)]
    after_drop = [(T0 + 50, 9.0, 120.0), (T0 + 70, 12.0, 150.0), (T0 + 110, 12.5, 160.0), (T0 + 130, 13.0, 170.0)]
    await trade(simulator, stream_clock, script)
    await asyncio.sleep(0.2)
    assert await simulator.drop_connections() == 1
    await until(lambda: _reconnected(gql))
    await trade(simulator, stream_clock, after_drop)
    stream_clock.now = T0 + 180
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)

    async def stored() -> list[Any]:
        page = await resources.store.read_page(series, start=None, end=None, limit=100)
        return list(page.bars) if len(page.bars) >= 2 else []

    bars = await until(stored)
    await asyncio.sleep(0.3)  # nothing else arrives
    # The 14:38 bar lost whatever traded while the connection was down: partial, not
    # stored (a history sync fills it where history is kept). The bars that began after
    # the reconnect are complete, each trade counted once, the volume from the
    # reconnect's snapshot on.
    assert [(b.time, b.open, b.high, b.low, b.close, b.volume) for b in await stored()] == [
        (T0 + 60, 12.0, 12.5, 12.0, 12.5, 40.0),
        (T0 + 120, 13.0, 13.0, 13.0, 13.0, 10.0),
    ]
    assert len(bars) == 2


async def _reconnected(gql: GraphQLClient) -> bool:
    s = await status(gql)
    return s["reconnects"] >= 1 and "NASDAQ:AAPL" in s["receivingSymbols"]


async def test_watchlist_survives_and_bad_watch_input(gql: GraphQLClient) -> None:
    mutation = "mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename ... on WatchlistChanged { watched changed } ... on InvalidInput { message field } } }"
    assert (await gql.data(mutation, {"t": ["nasdaq:aapl", "NASDAQ:AAPL"]}))["watchSymbols"] == {
        "__typename": "WatchlistChanged",
        "watched": ["NASDAQ:AAPL"],
        "changed": ["NASDAQ:AAPL"],
    }
    again = (await gql.data(mutation, {"t": ["NASDAQ:AAPL"]}))["watchSymbols"]
    assert again["changed"] == []
    bad = (await gql.data(mutation, {"t": ["NASDAQ:AAPL", "junk"]}))["watchSymbols"]
    assert bad["__typename"] == "InvalidInput"
    assert bad["field"] == "tickers"
    assert (await gql.data("{ watchedSymbols }"))["watchedSymbols"] == ["NASDAQ:AAPL"]
    unwatch = 'mutation { unwatchSymbols(tickers: ["NASDAQ:AAPL", "NASDAQ:MSFT"]) { ... on WatchlistChanged { watched changed } } }'
    assert (await gql.data(unwatch))["unwatchSymbols"] == {"watched": [], "changed": ["NASDAQ:AAPL"]}


async def test_symbol_errors_are_reported_and_others_keep_streaming(
    gql: GraphQLClient, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    from datetime import UTC, datetime

    from pocketquant.realtime.documents import WatchedSymbol

    await watch(gql, AAPL)
    # watchSymbols refuses unknown symbols; one that TradingView stops knowing later
    # (a delisting) stays on the list until someone unwatches it.
    await WatchedSymbol(exchange="NASDAQ", symbol="NOPE", added_at=datetime.now(UTC), slot=99).insert()

    async def reported() -> dict[str, Any] | None:
        s = await status(gql)
        return s if s["symbolErrors"] and s["connected"] else None

    s = await until(reported)
    assert s["symbolErrors"] == [{"ticker": "NASDAQ:NOPE", "message": "invalid symbol"}]
    await simulator.push_quote(AAPL, lp=5.0, lp_time=T0)
    assert (await until(lambda: _ticking(gql)))["lastTickAgeSeconds"] is not None


async def _ticking(gql: GraphQLClient) -> dict[str, Any] | None:
    s = await status(gql)
    return s if s["ticksPerSecond"] > 0 else None


async def test_exactly_one_stream_and_takeover(
    gql: GraphQLClient, resources: Resources, simulator: TradingViewSimulator, stream_clock: ManualClock
) -> None:
    await watch(gql, AAPL)
    sessions_before = simulator.stats.commands.count("quote_create_session")
    first = asyncio.create_task(run_stream(resources, instance="first", clock=stream_clock))
    await until(lambda: _instance(gql, "first"))
    second = asyncio.create_task(run_stream(resources, instance="second", clock=stream_clock))
    await asyncio.sleep(1.0)  # a whole lock TTL: the second must still wait
    assert simulator.stats.commands.count("quote_create_session") == sessions_before + 1  # one quote session
    assert (await status(gql))["instance"] == "first"

    first.cancel()  # the leader goes away; the waiting one takes over
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await until(lambda: _instance(gql, "second"))
    await cancel_and_wait(second)


async def _instance(gql: GraphQLClient, name: str) -> bool:
    """Is stream ``name`` leading, connected and receiving NASDAQ:AAPL?"""
    s = await status(gql)
    return bool(s["running"]) and s["instance"] == name and "NASDAQ:AAPL" in s["receivingSymbols"]


async def test_a_dead_leaders_lock_expires(resources: Resources) -> None:
    dead = LeaderLock(resources.redis, wire.LEADER_KEY, ttl_seconds=0.3, owner="dead")
    assert await dead.acquire()  # acquired, then never renewed: the process died
    successor = LeaderLock(resources.redis, wire.LEADER_KEY, ttl_seconds=0.3, owner="successor")
    assert not await successor.acquire()
    await asyncio.sleep(0.4)
    assert await successor.acquire()
    assert not await dead.renew()  # a zombie cannot renew what it lost
    assert await successor.holder() == "successor"


async def test_a_takeover_stores_no_bar_the_new_leader_did_not_see_from_its_start(
    gql: GraphQLClient, resources: Resources, stream_clock: ManualClock, simulator: TradingViewSimulator
) -> None:
    await watch(gql, AAPL)
    first = asyncio.create_task(run_stream(resources, instance="first", clock=stream_clock))
    await until(lambda: _instance(gql, "first"))
    await trade(simulator, stream_clock, [(T0 + 5, 10.0, 100.0), (T0 + 50, 11.0, 110.0), (T0 + 61, 12.0, 120.0)])
    await asyncio.sleep(0.2)
    stream_clock.now = T0 + 70
    first.cancel()  # the leader goes away inside 14:39
    with contextlib.suppress(asyncio.CancelledError):
        await first
    second = asyncio.create_task(run_stream(resources, instance="second", clock=stream_clock))
    try:
        stream_clock.now = T0 + 75
        await until(lambda: _instance(gql, "second"))
        # Its first quote carries the 14:39:01 trade: state, not a new trade.
        await trade(simulator, stream_clock, [(T0 + 80, 13.0, 130.0), (T0 + 100, 14.0, 140.0)])
        stream_clock.now = T0 + 125
        await trade(simulator, stream_clock, [(T0 + 125, 15.0, 150.0)])
        stream_clock.now = T0 + 181
        series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)

        async def stored() -> list[Any]:
            page = await resources.store.read_page(series, start=None, end=None, limit=100)
            return [(b.time, b.open, b.close, b.volume) for b in page.bars] if len(page.bars) >= 2 else []

        # 14:38 whole (the first leader saw it from its start), 14:40 whole (the second
        # did); 14:39, which neither saw whole, is not stored.
        assert await until(stored) == [(T0, 10.0, 11.0, 110.0), (T0 + 120, 15.0, 15.0, 10.0)]
    finally:
        await cancel_and_wait(second)


async def test_an_unreadable_stream_report_reads_as_no_stream(gql: GraphQLClient, resources: Resources) -> None:
    # A report this version cannot read (a half-written one, or an incompatible
    # stream's) is no report: not an internal error for every streamStatus query.
    await resources.redis.set(wire.STATUS_KEY, '{"instance": 3, "connected": "yes"}', px=60_000)
    result = (await gql.data("{ streamStatus { running connected instance } }"))["streamStatus"]
    assert result == {"running": False, "connected": False, "instance": None}
