"""The quote client against the simulator's quote mode."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pocketquant.domain import SymbolKey
from pocketquant.simulator import TradingViewSimulator
from pocketquant.tradingview.quotes import QuoteClient, QuoteUpdate
from tests.conftest import SIM_START

AAPL, BTC, ETH, NOPE = (
    SymbolKey("NASDAQ", "AAPL"),
    SymbolKey("BINANCE", "BTCUSDT"),
    SymbolKey("BINANCE", "ETHUSDT"),
    SymbolKey("NASDAQ", "NOPE"),
)


class Feed:
    def __init__(self, sim: TradingViewSimulator) -> None:
        self.updates: asyncio.Queue[QuoteUpdate] = asyncio.Queue()
        self.connected = asyncio.Event()

        async def on_update(update: QuoteUpdate) -> None:
            await self.updates.put(update)

        async def on_connected() -> None:
            self.connected.set()

        self.client = QuoteClient(sim.websocket_url, on_update, on_connected=on_connected, backoff_base=0.05)

    async def next(self, key: SymbolKey | None = None) -> QuoteUpdate:
        async with asyncio.timeout(5):
            while True:
                update = await self.updates.get()
                if key is None or update.key == key:
                    return update


@pytest.fixture
async def strict_sim() -> AsyncIterator[TradingViewSimulator]:
    async with TradingViewSimulator(clock=lambda: SIM_START, heartbeat_interval=0.05, heartbeat_timeout=0.3) as sim:
        yield sim


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[Feed]:
    task = asyncio.create_task(feed.client.run())
    try:
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_snapshot_then_partial_updates_merge(strict_sim: TradingViewSimulator) -> None:
    feed = Feed(strict_sim)
    await feed.client.set_watched([AAPL, NOPE, BTC])
    async with running(feed):
        first = {(await feed.next()).key for _ in range(2)}
        assert first == {AAPL, BTC}
        assert "NASDAQ:NOPE" in feed.client.stats.symbol_errors  # reported, the others stream
        snapshot = strict_sim.quote(AAPL)
        assert snapshot is not None
        await strict_sim.push_quote(AAPL, bid=1.0, ask=2.0)
        quote_only = await feed.next(AAPL)
        assert quote_only.changed == {"bid", "ask"}
        assert not quote_only.is_trade
        assert quote_only.state["lp"] == snapshot["lp"]  # merged with what came before
        await strict_sim.push_quotes(
            [(AAPL, {"lp": 201.5, "lp_time": SIM_START + 1, "volume": 10.0}), (BTC, {"lp": 65_000.0})]
        )  # two frames, one message
        trade = await feed.next(AAPL)
        assert trade.is_trade
        assert (trade.state["lp"], trade.state["bid"], trade.state["description"]) == (201.5, 1.0, "Apple Inc.")
        assert (await feed.next(BTC)).state["lp"] == 65_000.0


async def test_resolve_string_names_are_normalised(strict_sim: TradingViewSimulator) -> None:
    strict_sim.resolve_names = True
    feed = Feed(strict_sim)
    await feed.client.set_watched([ETH])
    async with running(feed):
        assert (await feed.next()).key == ETH


async def test_add_and_remove_on_a_live_connection(strict_sim: TradingViewSimulator) -> None:
    feed = Feed(strict_sim)
    await feed.client.set_watched([AAPL])
    async with running(feed):
        await feed.next(AAPL)
        await feed.client.set_watched([AAPL, ETH])
        assert (await feed.next(ETH)).key == ETH
        await feed.client.set_watched([ETH])
        await asyncio.sleep(0.1)
        await strict_sim.push_quote(AAPL, lp=1.0)
        await strict_sim.push_quote(ETH, lp=2.0)
        assert (await feed.next()).key == ETH  # nothing of AAPL any more
        assert feed.client.stats.connects == 1


async def test_heartbeats_keep_the_connection(strict_sim: TradingViewSimulator) -> None:
    feed = Feed(strict_sim)
    await feed.client.set_watched([AAPL])
    async with running(feed):
        await feed.next(AAPL)
        await asyncio.sleep(1.0)  # 20 heartbeats; an unanswered one drops us after 0.3 s
        assert strict_sim.stats.heartbeat_disconnects == 0
        assert feed.client.stats.connects == 1


async def test_reconnect_resubscribes_everything(strict_sim: TradingViewSimulator) -> None:
    feed = Feed(strict_sim)
    await feed.client.set_watched([AAPL, BTC])
    async with running(feed):
        await feed.connected.wait()
        for _ in range(2):
            await feed.next()
        feed.connected.clear()
        assert await strict_sim.drop_connections() == 1
        async with asyncio.timeout(5):
            await feed.connected.wait()
        again = {(await feed.next()).key for _ in range(2)}  # fresh snapshots of both
        assert again == {AAPL, BTC}
        assert feed.client.stats.reconnects >= 1
        assert feed.client.stats.connects == 2
        assert "ConnectionClosed" in (feed.client.stats.last_error or "")
