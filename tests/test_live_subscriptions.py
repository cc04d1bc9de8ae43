"""Live data as a front end meets it: graphql-transport-ws over a real socket to the
running API, fed by the stream process from the simulator's quote mode through Redis."""

import asyncio
import json
from typing import Any

import websockets
from gql.transport.exceptions import TransportQueryError
from websockets.typing import Subprotocol

from pocketquant.domain import SymbolKey
from pocketquant.resources import Resources
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import (
    AAPL,
    LIVE_BARS,
    LIVE_QUOTES,
    T0,
    Collector,
    idle,
    live_state,
    raw_subscriber,
    session,
    small_buffer_socket,
    status,
    trade,
    until,
    watch,
    watching,
)

BTC = SymbolKey("BINANCE", "BTCUSDT")


LIVE_QUOTES_SESSION = "subscription($t: [String!]!) { liveQuotes(tickers: $t) { ticker price session } }"


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
            live = await live_state(api_url)
            return live if live["subscribers"] == 3 else None

        live = await until(all_three)  # each subscription is served once its group listens
        assert (live["groups"], live["listeners"]) == (3, 3)
        assert _subscription_tasks() != []  # the check below can see them
        for _ in range(50):  # updates pile up for a client that no longer reads
            await simulator.push_quote(AAPL, lp=1.0, lp_time=T0)
        ws.transport.abort()  # no close frame, no complete messages
    live = await until(lambda: idle(api_url))
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
            live = await live_state(api_url)
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
            live = await live_state(api_url)
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
        live = await live_state(api_url)
        assert live["pending_updates"] == 0
        assert live["updates_written"]["asgi"] > 0
        await simulator.push_quote(AAPL, lp=601.0, lp_time=T0)  # and it is live again
        assert json.loads(await asyncio.wait_for(slow.recv(), 5))["payload"]["data"]["liveQuotes"]["price"] == 601.0
    finally:
        slow.transport.abort()


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
