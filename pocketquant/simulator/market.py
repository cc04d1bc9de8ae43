"""Deterministic simulated instruments and bars for the local TradingView server.

A bar's values depend only on (instrument, interval, bar time) and on the clock for
the bar still in progress, so re-fetching the same range returns the same bars, and a
later fetch corrects the newest bar the way TradingView does. Pure code: no I/O.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from pocketquant.domain import Bar, Interval, SymbolKey


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str
    symbol: str
    description: str
    type: str
    currency_code: str
    timezone: str
    base_price: float
    decimals: int
    has_volume: bool = True
    # What symbol_resolved says. Bars and ticks do not follow it yet: every instrument
    # trades around the clock here for now.
    session: str = "24x7"

    @property
    def key(self) -> SymbolKey:
        return SymbolKey(self.exchange, self.symbol)

    def resolved(self) -> dict[str, object]:
        """The metadata of a ``symbol_resolved`` answer."""
        return {
            "name": self.symbol,
            "full_name": self.key.ticker,
            "pro_name": self.key.ticker,
            "description": self.description,
            "exchange": self.exchange,
            "listed_exchange": self.exchange,
            "type": self.type,
            "currency_code": self.currency_code,
            "timezone": self.timezone,
            "session": self.session,
            "pricescale": 10**self.decimals,
            "minmov": 1,
            "has_intraday": True,
        }


# Non-ASCII descriptions on purpose: frame lengths count UTF-16 units, and the
# emoji counts two of them.
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("NASDAQ", "AAPL", "Apple Inc.", "stock", "USD", "America/New_York", 190.0, 2),
    Instrument("NASDAQ", "MSFT", "Microsoft Corporation", "stock", "USD", "America/New_York", 410.0, 2),
    Instrument("BINANCE", "BTCUSDT", "Bitcoin / TetherUS", "spot", "USDT", "Etc/UTC", 64000.0, 2),
    Instrument("BINANCE", "ETHUSDT", "Ethereum / TetherUS", "spot", "USDT", "Etc/UTC", 3100.0, 2),
    Instrument("BINANCE", "DOGEUSDT", "Dogecoin 🐕 / TetherUS", "spot", "USDT", "Etc/UTC", 0.16, 5),
    Instrument("KRX", "005930", "삼성전자", "stock", "KRW", "Asia/Seoul", 71000.0, 0),
    Instrument("TSE", "7203", "トヨタ自動車", "stock", "JPY", "Asia/Tokyo", 2900.0, 1),
    Instrument("MOEX", "SBER", "Сбербанк России", "stock", "RUB", "Europe/Moscow", 300.0, 2),
    Instrument("FX", "EURUSD", "Euro / U.S. Dollar", "forex", "USD", "Etc/UTC", 1.08, 5, has_volume=False),
    Instrument("CME_MINI", "ES1!", "E-mini S&P 500 Futures", "futures", "USD", "America/Chicago", 5200.0, 2),
    Instrument(
        "NYSE",
        "IBM",
        "International Business Machines",
        "stock",
        "USD",
        "America/New_York",
        230.0,
        2,
        session="0930-1600",
    ),
)


def _unit(seed: int, t: int, salt: int) -> float:
    """A deterministic number in [0, 1) for (seed, t, salt): splitmix64."""
    x = (seed * 0x9E3779B97F4A7C15 + t * 0xBF58476D1CE4E5B9 + salt) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x / 2**64


class SimulatedMarket:
    """Instruments and their deterministic prices and bars."""

    def __init__(self, instruments: tuple[Instrument, ...] = DEFAULT_INSTRUMENTS) -> None:
        self._instruments = {i.key: i for i in instruments}

    @property
    def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    def get(self, key: SymbolKey) -> Instrument | None:
        return self._instruments.get(key)

    def price(self, instrument: Instrument, t: int) -> float:
        """A smooth, deterministic price path with a little noise."""
        seed = zlib.crc32(instrument.key.ticker.encode())
        phase = seed % 1000 / 1000 * 2 * math.pi
        log_move = (
            0.12 * math.sin(2 * math.pi * t / (86_400 * 41) + phase)
            + 0.04 * math.sin(2 * math.pi * t / (86_400 * 3.7) + 2 * phase)
            + 0.006 * math.sin(2 * math.pi * t / 5_400 + 3 * phase)
            + 0.002 * (_unit(seed, t, 1) - 0.5)
        )
        return round(instrument.base_price * math.exp(log_move), instrument.decimals)

    def bar(self, instrument: Instrument, interval: Interval, start: int, now: int) -> Bar:
        """The bar opening at ``start``; if it is still in progress at ``now``, its
        close is the price at ``now``."""
        seed = zlib.crc32(instrument.key.ticker.encode()) ^ zlib.crc32(interval.value.encode())
        end = interval.next_start(start)
        open_ = self.price(instrument, start)
        close = self.price(instrument, min(end, now))
        scale = 10**instrument.decimals
        high = max(open_, close, math.ceil(max(open_, close) * (1 + 0.004 * _unit(seed, start, 2)) * scale) / scale)
        low = min(open_, close, math.floor(min(open_, close) * (1 - 0.004 * _unit(seed, start, 3)) * scale) / scale)
        volume = 0.0
        if instrument.has_volume:
            elapsed = min(1.0, (now - start) / max(1, end - start))
            volume = float(round((500 + 9500 * _unit(seed, start, 4)) * interval.nominal_seconds / 60 * elapsed))
        return Bar(start, open_, high, low, close, volume)

    def history(self, instrument: Instrument, interval: Interval, n_bars: int, now: int) -> list[Bar]:
        """The newest ``n_bars`` bars up to the one in progress at ``now``, oldest first."""
        starts: list[int] = []
        start = interval.floor(now)
        while len(starts) < n_bars:
            starts.append(start)
            start = interval.floor(start - 1)
        return [self.bar(instrument, interval, s, now) for s in reversed(starts)]
