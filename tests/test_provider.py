"""tvdatafeed, through our provider, against the local TradingView server."""

from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from pocketquant.domain import Interval, SeriesKey, SymbolKey
from pocketquant.simulator import Fault, TradingViewSimulator
from pocketquant.tradingview import protocol
from pocketquant.tradingview.history import (
    EmptyHistoryError,
    InvalidHistoryError,
    ProviderError,
    ProviderUnavailableError,
    SeriesError,
    SymbolNotFoundError,
    TradingViewHistory,
)
from tests.conftest import SIM_START


@pytest.fixture
async def provider(simulator: TradingViewSimulator) -> AsyncIterator[TradingViewHistory]:
    async with httpx.AsyncClient() as http:
        yield TradingViewHistory(
            websocket_url=simulator.websocket_url, search_url=simulator.search_url, http=http, timeout=5
        )


@pytest.mark.parametrize(
    "interval", [Interval.MINUTE_1, Interval.HOUR_4, Interval.DAY_1, Interval.WEEK_1, Interval.MONTH_1]
)
async def test_fetch_returns_exactly_the_served_bars_in_utc(
    provider: TradingViewHistory, simulator: TradingViewSimulator, non_utc_timezone: str, interval: Interval
) -> None:
    instrument = simulator.market.get(SymbolKey("NASDAQ", "AAPL"))
    assert instrument is not None
    expected = simulator.market.history(instrument, interval, 300, int(SIM_START))
    fetched = await provider.fetch(SeriesKey("NASDAQ", "AAPL", interval), 300)
    assert list(fetched.bars) == expected
    # Epoch seconds whatever the process's time zone, aligned to the session (09:30 New York).
    in_progress = instrument.calendar.bar(interval, int(SIM_START))
    assert in_progress is not None
    assert fetched.bars.t[-1] == in_progress[0]
    assert fetched.metadata is not None
    assert fetched.metadata.description == "Apple Inc."
    assert fetched.metadata.timezone == "America/New_York"


async def test_non_ascii_metadata_and_missing_volume(provider: TradingViewHistory) -> None:
    samsung = await provider.fetch(SeriesKey("KRX", "005930", Interval.DAY_1), 10)
    assert samsung.metadata is not None
    assert samsung.metadata.description == "삼성전자"
    doge = await provider.fetch(SeriesKey("BINANCE", "DOGEUSDT", Interval.HOUR_1), 10)
    assert doge.metadata is not None
    assert doge.metadata.description == "Dogecoin 🐕 / TetherUS"
    eurusd = await provider.fetch(SeriesKey("FX", "EURUSD", Interval.HOUR_1), 10)
    assert len(eurusd.bars) == 10
    assert set(eurusd.bars.v) == {0.0}


async def test_more_than_the_cap_returns_the_cap(provider: TradingViewHistory) -> None:
    with pytest.raises(ValueError, match="between 1 and 5000"):
        await provider.fetch(SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1), 5_001)
    fetched = await provider.fetch(SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1), 5_000)
    assert len(fetched.bars) == 5_000


@pytest.mark.parametrize(
    ("fault", "error", "transient", "message"),
    [
        (Fault.SERIES_ERROR, SeriesError, False, "refused the series"),
        (Fault.EMPTY, EmptyHistoryError, False, "no bars"),
        (Fault.DROP, ProviderUnavailableError, True, "connection"),
        (Fault.CRITICAL, ProviderUnavailableError, True, "critical_error"),
        (Fault.CORRUPT, InvalidHistoryError, False, "inconsistent OHLC"),
    ],
)
async def test_provider_failures_become_specific_errors(
    provider: TradingViewHistory,
    simulator: TradingViewSimulator,
    fault: Fault,
    error: type[ProviderError],
    transient: bool,
    message: str,
) -> None:
    simulator.faults[SymbolKey("NASDAQ", "MSFT")] = fault
    with pytest.raises(error, match=message) as info:
        await provider.fetch(SeriesKey("NASDAQ", "MSFT", Interval.DAY_1), 10)
    assert info.value.transient is transient


async def test_unknown_symbol_is_symbol_not_found(provider: TradingViewHistory) -> None:
    with pytest.raises(SymbolNotFoundError, match="does not know NASDAQ:NOPE"):
        await provider.fetch(SeriesKey("NASDAQ", "NOPE", Interval.DAY_1), 10)


async def test_unreachable_server_is_transient() -> None:
    async with httpx.AsyncClient() as http:
        dead = TradingViewHistory(
            websocket_url="ws://127.0.0.1:9/socket.io/websocket", search_url="http://127.0.0.1:9/", http=http, timeout=2
        )
        with pytest.raises(ProviderUnavailableError, match="cannot reach TradingView") as info:
            await dead.fetch(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 10)
        assert info.value.transient
        with pytest.raises(ProviderUnavailableError, match="symbol search failed"):
            await dead.search("AAPL", None, 5)


async def test_heartbeats_are_echoed_during_a_slow_answer(simulator_server: TradingViewSimulator) -> None:
    """The simulator drops a client that does not echo heartbeats; a slow series
    answer outlives the timeout, so the fetch only succeeds if we echo."""
    async with (
        TradingViewSimulator(
            heartbeat_interval=0.05, heartbeat_timeout=0.3, series_delay=1.0, clock=lambda: SIM_START
        ) as strict,
        httpx.AsyncClient() as http,
    ):
        provider = TradingViewHistory(
            websocket_url=strict.websocket_url, search_url=strict.search_url, http=http, timeout=5
        )
        fetched = await provider.fetch(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 5)
        assert len(fetched.bars) == 5
        assert strict.stats.heartbeat_disconnects == 0

        # Control: a client that never echoes is disconnected.
        async with websockets.connect(strict.websocket_url) as raw:
            await raw.send(protocol.encode("set_auth_token", ["unauthorized_user_token"]))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await raw.recv()
        assert strict.stats.heartbeat_disconnects == 1


async def test_search_strips_highlights(provider: TradingViewHistory) -> None:
    matches = await provider.search("btc", None, 10)
    assert [(m.exchange, m.symbol, m.description) for m in matches] == [("BINANCE", "BTCUSDT", "Bitcoin / TetherUS")]
    assert [m.symbol for m in await provider.search("a", "NASDAQ", 1)] == ["AAPL"]
