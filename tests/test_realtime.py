"""Live data as a front end meets it: graphql-transport-ws over a real socket to the
running API, fed by the stream process from the simulator's quote mode through Redis."""

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
import websockets
from gql.transport.exceptions import TransportQueryError
from websockets.typing import Subprotocol

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.domain import Interval, SeriesKey, SymbolKey
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import wire
from pocketquant.realtime.leader import LeaderLock
from pocketquant.realtime.stream import run_stream
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.conftest import SIM_START
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import (
    Collector,
    raw_subscriber,
    receiving_all,
    session,
    small_buffer_socket,
    status,
    until,
    watch,
    watching,
)

AAPL = SymbolKey("NASDAQ", "AAPL")
BTC = SymbolKey("BINANCE", "BTCUSDT")
T0 = int(SIM_START) + 30  # 14:38:00 UTC, a minute boundary

LIVE_BARS = """subscription($e: String!, $s: String!, $i: Interval!) {
  liveBars(exchange: $e, symbol: $s, interval: $i) { ticker interval timestamp open high low close volume ticks partial closed } }"""
LIVE_QUOTES = "subscription($t: [String!]!) { liveQuotes(tickers: $t) { ticker price time bid ask volume } }"
LIVE_QUOTES_SESSION = "subscription($t: [String!]!) { liveQuotes(tickers: $t) { ticker price session } }"


async def trade(
    simulator: TradingViewSimulator, clock: ManualClock, ticks: list[tuple[int, float, float]], key: SymbolKey = AAPL
) -> None:
    """Push trades (time, price, session volume), moving the stream's clock along."""
    for t, price, volume in ticks:
        clock.now = t
        await simulator.push_quote(key, lp=price, lp_time=t, volume=volume)


async def test_quotes_and_bars_stream_to_subscribers_and_completed_bars_are_stored(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await watching(gql, AAPL, BTC)
    async with session(api_url) as s:
        quotes = Collector(s, LIVE_QUOTES, {"t": ["NASDAQ:AAPL", "BINANCE:BTCUSDT"]})
        minute = Collector(s, LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"})
        hour = Collector(s, LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "HOUR_1"})
        # The latest quotes first. The opening quote of the connection is state, not a
        # trade: it makes no bar.
        assert {(await quotes.next())["ticker"] for _ in range(2)} == {"NASDAQ:AAPL", "BINANCE:BTCUSDT"}

        ticks = [
            (T0 + 1, 100.0, 1_000.0),
            (T0 + 20, 101.5, 1_010.0),
            (T0 + 40, 99.0, 1_030.0),
            (T0 + 59, 100.5, 1_035.0),
        ]
        await trade(simulator, stream_clock, ticks)
        await simulator.push_quote(AAPL, bid=100.4, ask=100.6)  # a quote-only update
        quote = await quotes.next(lambda q: q["ticker"] == "NASDAQ:AAPL" and q["bid"] == 100.4)
        assert (quote["price"], quote["ask"], quote["volume"]) == (100.5, 100.6, 1_035.0)

        live = await minute.next(lambda b: b["timestamp"] == T0 and b["close"] == 100.5)
        assert (live["open"], live["high"], live["low"], live["volume"], live["closed"]) == (
            100.0,
            101.5,
            99.0,
            1_035.0,
            False,
        )

        stream_clock.now = T0 + 60  # the minute ends: the clock closes the quiet bar
        final = await minute.next(lambda b: b["closed"])
        assert final == {
            "ticker": "NASDAQ:AAPL",
            "interval": "MINUTE_1",
            "timestamp": T0,
            "open": 100.0,
            "high": 101.5,
            "low": 99.0,
            "close": 100.5,
            "volume": 1_035.0,
            "ticks": 4,
            "partial": False,
            "closed": True,
        }
        hour_bar = await hour.next(lambda b: b["close"] == 100.5)
        # AAPL's hours open at :30 New York time, with its session: this one at 14:30 UTC.
        assert (hour_bar["timestamp"], hour_bar["partial"], hour_bar["closed"]) == (T0 - 8 * 60, True, False)

    # The completed bar is in the store, so the history query has it; the partial one is not.
    stored = await until(lambda: _stored_minutes(gql))
    assert stored == [{"timestamp": T0, "open": 100.0, "high": 101.5, "low": 99.0, "close": 100.5, "volume": 1_035.0}]

    async def persisted() -> bool:
        return bool((await status(gql))["barsPersisted"] == 1)

    await until(persisted)
    # No history is kept for this series, so its partial bar asked for none.
    assert (await gql.data('{ syncJob(id: "sync:NASDAQ:AAPL:1m") { state } }'))["syncJob"] is None


async def test_a_late_subscriber_gets_the_closed_bar_not_a_stale_one(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await watching(gql, AAPL)
    for t, price in [(T0 + 1, 10.0), (T0 + 30, 11.0), (T0 + 61, 12.0)]:  # the last one opens 14:39
        stream_clock.now = t
        await simulator.push_quote(AAPL, lp=price, lp_time=t, volume=float(t))
    await asyncio.sleep(0.3)
    async with session(api_url) as s:
        bars = Collector(s, LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"})
        first = await bars.next()
        assert (first["timestamp"], first["close"], first["closed"]) == (T0 + 60, 12.0, False)  # not 14:38
        stream_clock.now = T0 + 121  # 14:39 closes on the clock: no newer bar exists
        assert (await bars.next())["closed"] is True
    async with session(api_url) as s:
        late = await Collector(s, LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"}).next()
        assert (late["timestamp"], late["close"], late["closed"]) == (T0 + 60, 12.0, True)


async def _stored_minutes(gql: GraphQLClient) -> list[dict[str, Any]]:
    query = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_1) { bars { timestamp open high low close volume } } }'
    bars: list[dict[str, Any]] = (await gql.data(query))["bars"]["bars"]
    return bars


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


async def test_bad_input_fails_that_subscription_only(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    simulator: TradingViewSimulator,
    resources: Resources,
) -> None:
    await watching(gql, AAPL)
    async with session(api_url) as s:
        good = Collector(s, LIVE_QUOTES, {"t": ["NASDAQ:AAPL"]})
        await good.next()
        cases: list[tuple[str, dict[str, Any], str]] = [
            (LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_3"}, "MINUTE_3 is not aggregated live"),
            (LIVE_BARS, {"e": "NASDAQ", "s": "AA PL", "i": "MINUTE_1"}, "malformed symbol"),
            (LIVE_BARS, {"e": "NASDAQ", "s": "MSFT", "i": "MINUTE_1"}, "not watched: NASDAQ:MSFT"),
            (LIVE_QUOTES, {"t": ["NASDAQ:MSFT", "NASDAQ:AAPL", "NYSE:IBM"]}, "not watched: NASDAQ:MSFT, NYSE:IBM;"),
            (LIVE_QUOTES, {"t": [f"NASDAQ:S{i}" for i in range(51)]}, "at most 50 tickers"),
            (LIVE_QUOTES, {"t": ["NASDAQ"]}, "expected EXCHANGE:SYMBOL"),
        ]
        for document, variables, message in cases:
            error = await Collector(s, document, variables).failure()
            assert isinstance(error, TransportQueryError)
            assert message in str(error)
        await simulator.push_quote(AAPL, lp=123.0, lp_time=T0)
        assert (await good.next(lambda q: q["price"] == 123.0))["ticker"] == "NASDAQ:AAPL"
        assert good.error is None


async def test_subscriptions_per_connection_are_limited(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], resources: Resources
) -> None:
    await watch(gql, AAPL)
    limit = resources.settings.max_subscriptions_per_connection
    async with session(api_url) as s:
        open_ones = [Collector(s, LIVE_QUOTES, {"t": ["NASDAQ:AAPL"]}) for _ in range(limit)]
        for c in open_ones:
            await c.next()
        error = await Collector(s, LIVE_QUOTES, {"t": ["NASDAQ:AAPL"]}).failure()
        assert f"at most {limit} subscriptions per connection" in str(error)


async def test_an_abrupt_disconnect_leaves_nothing_behind(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    await watching(gql, AAPL, BTC)
    async with websockets.connect(
        api_url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for i, (document, variables) in enumerate(
            [
                (LIVE_QUOTES, {"t": ["NASDAQ:AAPL", "BINANCE:BTCUSDT"]}),
                (LIVE_BARS, {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"}),
                (LIVE_BARS, {"e": "BINANCE", "s": "BTCUSDT", "i": "HOUR_1"}),
            ]
        ):
            await ws.send(
                json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": document, "variables": variables}})
            )
        await ws.recv()

        async def all_three() -> dict[str, int] | None:
            live = await _live(api_url)
            return live if live["subscribers"] == 3 else None

        live = await until(all_three)  # each subscription is served once its group listens
        assert (live["groups"], live["listeners"]) == (3, 3)
        assert _subscription_tasks() != []  # the check below can see them
        for _ in range(50):  # updates pile up for a client that no longer reads
            await simulator.push_quote(AAPL, lp=1.0, lp_time=T0)
        ws.transport.abort()  # no close frame, no complete messages
    live = await until(lambda: _idle(api_url))
    assert (live["subscribers"], live["groups"], live["listeners"], live["channels"], live["pending_updates"]) == (
        0,
        0,
        0,
        0,
        0,
    )
    await asyncio.sleep(0.2)
    assert _subscription_tasks() == []


def _subscription_tasks() -> list[str]:
    """Tasks running Strawberry's websocket handling or our subscription resolvers (the
    stream's own tasks and the hub's one reader live on)."""
    leftovers = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = code.co_filename if code else ""
        if "strawberry" in where or "realtime/graphql" in where or "api/fanout" in where:
            leftovers.append(f"{task.get_name()}: {where}")
    return leftovers


async def _live(api_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        live: dict[str, Any] = (await http.get(api_url + "/health")).json()["live"]
        return live


async def _idle(api_url: str) -> dict[str, Any] | None:
    live = await _live(api_url)
    return live if live["subscribers"] == 0 and live["listeners"] == 0 else None


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


async def test_a_slow_consumer_does_not_delay_the_others(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    await watching(gql, AAPL)
    url = api_url.replace("http", "ws") + "/graphql"
    # A client that stops reading, on a small receive buffer: the server's sends to it really block.
    variables = {"t": ["NASDAQ:AAPL"]}
    slow = await raw_subscriber(
        url, "1", LIVE_QUOTES_SESSION, variables, sock=small_buffer_socket(api_url), max_queue=1
    )
    try:
        async with session(api_url) as s:
            fast = Collector(s, LIVE_QUOTES_SESSION, variables)
            await fast.next()
            padding = "x" * 20_000  # 300 updates: 6 MB for each subscriber, past any buffer on the way
            for i in range(1, 301):
                await simulator.push_quote(AAPL, lp=float(i), lp_time=T0, current_session=padding)
                # The fast subscriber gets every single update, in order, while the slow one is stuck.
                assert (await fast.next(within=5))["price"] == float(i)
            live = await _live(api_url)
            assert live["subscribers"] == 2
            assert live["pending_updates"] == 1  # the stuck one holds the newest update only, not 300
            assert live["updates_written"]["asgi"] > 0  # its full socket declined prepared frames
    finally:
        slow.transport.abort()


async def test_a_slow_consumer_that_reads_again_gets_the_newest_updates_in_order(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    await watching(gql, AAPL)
    await simulator.push_quote(AAPL, lp=0.0, lp_time=T0)
    url = api_url.replace("http", "ws") + "/graphql"
    variables = {"t": ["NASDAQ:AAPL"]}
    sock = small_buffer_socket(api_url)
    slow = await raw_subscriber(url, "slow", LIVE_QUOTES_SESSION, variables, sock=sock, max_queue=1)
    try:
        first = json.loads(await slow.recv())
        assert first["payload"]["data"]["liveQuotes"]["price"] == 0.0  # the snapshot
        # 24 MB while it does not read, 6x what the kernel buffers for a socket here
        # (tcp_wmem max 4 MB): the server's writes to it wait. (With 12 MB, every update
        # still got through in one run out of two.)
        padding = "x" * 40_000
        for i in range(1, 601):
            await simulator.push_quote(AAPL, lp=float(i), lp_time=T0, current_session=padding)

        async def parked() -> bool:
            # Every update reached the subscriber's group (it offered each one to the
            # member) and the member holds one: its write waits on the full socket and
            # the newest update waits behind it. (Reading before the last updates have
            # come through Redis let them all through in some runs.)
            live = await _live(api_url)
            return bool(sum(live["updates_written"].values()) >= 600 and live["pending_updates"] == 1)

        await until(parked, within=30)  # 24 MB through Redis: give a loaded machine time
        prices: list[float] = []
        async with asyncio.timeout(10):
            while not prices or prices[-1] != 600.0:
                message = json.loads(await slow.recv())
                assert (message["type"], message["id"]) == ("next", "slow"), message
                prices.append(message["payload"]["data"]["liveQuotes"]["price"])
        assert prices == sorted(set(prices))  # in order, none twice
        assert len(prices) < 600  # what it could not take in time was replaced by newer updates
        live = await _live(api_url)
        assert live["pending_updates"] == 0
        assert live["updates_written"]["asgi"] > 0
        await simulator.push_quote(AAPL, lp=601.0, lp_time=T0)  # and it is live again
        assert json.loads(await asyncio.wait_for(slow.recv(), 5))["payload"]["data"]["liveQuotes"]["price"] == 601.0
    finally:
        slow.transport.abort()


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
    import dataclasses

    from pocketquant.history.store import BarStore

    class FlakyStore(BarStore):
        failures = 3

        async def write(self, series: SeriesKey, bars: Any, *, forming: int | None = None) -> Any:
            if FlakyStore.failures:
                FlakyStore.failures -= 1
                raise ConnectionError("MongoDB is down")
            return await super().write(series, bars, forming=forming)

    flaky = dataclasses.replace(resources, store=FlakyStore(resources.settings.chunk_size))
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


async def test_identical_subscriptions_share_one_group(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    await watching(gql, AAPL)
    url = api_url.replace("http", "ws") + "/graphql"
    variables = {"e": "NASDAQ", "s": "AAPL", "i": "MINUTE_1"}

    async def member(op_id: str) -> Any:
        return await raw_subscriber(url, op_id, LIVE_BARS, variables)

    async def next_bar(ws: Any, where: Any = lambda b: True) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                message = json.loads(await ws.recv())
                assert message["type"] == "next", message
                bar: dict[str, Any] = message["payload"]["data"]["liveBars"]
                if where(bar):
                    return bar

    stream_clock.now = T0 + 1
    await simulator.push_quote(AAPL, lp=50.0, lp_time=T0 + 1, volume=1.0)
    members = [await member(f"op-{i}") for i in range(3)]
    try:
        assert [(await next_bar(ws))["close"] for ws in members] == [50.0] * 3  # the snapshot, to each
        live = await _live(api_url)
        assert (live["subscribers"], live["groups"], live["listeners"]) == (3, 1, 1)  # one execution path

        await members[0].send(json.dumps({"id": "op-0", "type": "complete"}))
        await simulator.push_quote(AAPL, lp=51.0, lp_time=T0 + 2, volume=2.0)
        assert [(await next_bar(ws, lambda b: b["close"] == 51.0))["high"] for ws in members[1:]] == [51.0, 51.0]
        assert (await _live(api_url))["subscribers"] == 2

        late = await member("late")
        members.append(late)
        first = await next_bar(late)
        assert (first["close"], first["high"], first["ticks"]) == (51.0, 51.0, 2)  # current state, not history
    finally:
        for ws in members:
            ws.transport.abort()
    assert await until(lambda: _idle(api_url)) is not None
    assert (await _live(api_url))["groups"] == 0


async def _prices(ws: Any, op_id: str, count: int) -> list[float]:
    """The next ``count`` live quote prices this subscriber receives (checked messages)."""
    prices: list[float] = []
    async with asyncio.timeout(10):
        while len(prices) < count:
            message = json.loads(await ws.recv())
            assert (message["type"], message["id"]) == ("next", op_id), message
            prices.append(message["payload"]["data"]["liveQuotes"]["price"])
    return prices


async def _fan_out_and_count(
    api_url: str, gql: GraphQLClient, simulator: TradingViewSimulator, **connect: Any
) -> dict[str, int]:
    """Three subscribers of one group (two share an operation id) get 20 updates, in
    order; returns how the API wrote them (``updates_written`` from /health)."""
    await watching(gql, AAPL)
    await simulator.push_quote(AAPL, lp=1.0, lp_time=T0)
    url = api_url.replace("http", "ws") + "/graphql"
    variables = {"t": ["NASDAQ:AAPL"]}
    ids = ["1", "1", "a-much-longer-operation-id-é"]
    members = [await raw_subscriber(url, op_id, LIVE_QUOTES, variables, **connect) for op_id in ids]
    try:
        for ws, op_id in zip(members, ids, strict=True):
            assert await _prices(ws, op_id, 1) == [1.0]  # the snapshot
        before = (await _live(api_url))["updates_written"]
        for i in range(2, 22):
            await simulator.push_quote(AAPL, lp=float(i), lp_time=T0)
        for ws, op_id in zip(members, ids, strict=True):
            assert await _prices(ws, op_id, 20) == [float(i) for i in range(2, 22)]
        after = (await _live(api_url))["updates_written"]
        counts = {path: after[path] - before[path] for path in after}
        counts["deflate"] = sum(e.name == "permessage-deflate" for e in members[0].protocol.extensions)
        return counts
    finally:
        for ws in members:
            ws.transport.abort()


async def test_grouped_updates_are_written_as_prepared_frames(
    gql: GraphQLClient, api_url: str, stream: asyncio.Task[None], simulator: TradingViewSimulator
) -> None:
    # The API's own server offers the prepared-frame extension: every update to every
    # member is one frame written as is (the clients above parsed each one).
    assert await _fan_out_and_count(api_url, gql, simulator) == {"prepared_frame": 60, "asgi": 0, "deflate": 0}


@pytest.mark.parametrize(
    ("server", "connect", "deflate"),
    [
        pytest.param({"ws": "websockets-sansio"}, {}, 0, id="server-without-the-extension"),
        pytest.param({"ws_per_message_deflate": True}, {"compression": "deflate"}, 1, id="permessage-deflate"),
    ],
)
async def test_without_prepared_frames_updates_go_through_asgi(
    settings: Settings,
    resources: Resources,
    stream: asyncio.Task[None],
    simulator: TradingViewSimulator,
    server: dict[str, Any],
    connect: dict[str, Any],
    deflate: int,
    admin_key: str,
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with (
        serve(create_app(settings, resources), **server) as url,
        httpx.AsyncClient(base_url=url, headers=headers) as http,
    ):
        counts = await _fan_out_and_count(url, GraphQLClient(http), simulator, **connect)
    assert counts == {"prepared_frame": 0, "asgi": 60, "deflate": deflate}


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


async def test_live_bars_of_a_stock_align_to_its_session(
    gql: GraphQLClient,
    api_url: str,
    stream: asyncio.Task[None],
    stream_clock: ManualClock,
    simulator: TradingViewSimulator,
) -> None:
    ibm = SymbolKey("NYSE", "IBM")  # symbol_resolved: 0930-1600, America/New_York
    await watching(gql, ibm)
    # Friday 2026-11-20, 09:38 New York (14:38 UTC): the hour bar began at 09:30 there.
    await trade(simulator, stream_clock, [(T0 + 1, 230.0, 10.0), (T0 + 30, 231.0, 20.0)], key=ibm)
    async with session(api_url) as s:
        hours = Collector(s, LIVE_BARS, {"e": "NYSE", "s": "IBM", "i": "HOUR_1"})
        bar = await hours.next(lambda b: b["close"] == 231.0)
        assert bar["timestamp"] == T0 - 8 * 60  # 14:30 UTC, not 14:00
        days = Collector(s, LIVE_BARS, {"e": "NYSE", "s": "IBM", "i": "DAY_1"})
        assert (await days.next())["timestamp"] == T0 - 8 * 60  # stamped at the open, as TradingView does
    # After the close (16:05 New York), a trade goes into no regular-session bar.
    after_close = T0 + 6 * 3600 + 27 * 60
    await trade(simulator, stream_clock, [(after_close, 240.0, 30.0)], key=ibm)

    async def counted() -> bool:
        result = await gql.data("{ streamStatus { outsideSessionTicks } }")
        return bool(result["streamStatus"]["outsideSessionTicks"] == 1)

    await until(counted)
