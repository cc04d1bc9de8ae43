"""Symbol identity: a validated (exchange, symbol) pair with a canonical string form."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pocketquant.domain.intervals import Interval

_EXCHANGE = re.compile(r"^[A-Z0-9_]{1,32}$")
# Tickers such as BRK.B, ES1!, BTC-PERP, M&M, 005930.
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._!&\-]{0,47}$")
# A resolve string carries a little JSON around the ticker; anything longer is not one.
MAX_TICKER_LENGTH = 256
# Input is quoted back in errors only up to this length.
_ECHO = 40


def quoted(text: str) -> str:
    """``text`` as an error message may show it: short input verbatim, long input cut."""
    if len(text) <= _ECHO:
        return repr(text)
    return f"{text[:_ECHO]!r}... ({len(text):,} characters)"


class InvalidSymbolError(ValueError):
    """The exchange or symbol text is not a well-formed TradingView identifier."""

    def __init__(self, message: str, field: str = "symbol") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True, order=True)
class SymbolKey:
    exchange: str
    symbol: str

    @classmethod
    def parse(cls, exchange: str, symbol: str) -> SymbolKey:
        """Validate and normalise (upper-case) an exchange and a symbol. Only ASCII is
        accepted: upper-casing would fold other letters into ASCII ones (``ı`` into ``I``)."""
        ex, sym = exchange.strip(), symbol.strip()
        if not (ex.isascii() and _EXCHANGE.fullmatch(ex := ex.upper())):
            raise InvalidSymbolError(
                f"malformed exchange {quoted(exchange)}: use 1-32 ASCII letters, digits or '_' (e.g. NASDAQ)",
                "exchange",
            )
        if not (sym.isascii() and _SYMBOL.fullmatch(sym := sym.upper())):
            raise InvalidSymbolError(
                f"malformed symbol {quoted(symbol)}: use 1-48 ASCII letters, digits or . _ ! & - (e.g. AAPL)"
            )
        return cls(ex, sym)

    @classmethod
    def from_ticker(cls, ticker: str) -> SymbolKey:
        """Parse ``EXCHANGE:SYMBOL`` or a TradingView resolve string
        (``={"symbol":"COINBASE:LRCUSD","adjustment":"splits"}``)."""
        text = ticker.strip()
        if len(text) > MAX_TICKER_LENGTH:
            raise InvalidSymbolError(
                f"malformed ticker {quoted(ticker)}: at most {MAX_TICKER_LENGTH} characters", "ticker"
            )
        if text.startswith("="):
            try:
                resolved = json.loads(text[1:])
            except (json.JSONDecodeError, RecursionError) as exc:
                raise InvalidSymbolError(f"malformed resolve string {quoted(ticker)}", "ticker") from exc
            text = str(resolved.get("symbol", "")) if isinstance(resolved, dict) else ""
        exchange, sep, symbol = text.partition(":")
        if not sep:
            raise InvalidSymbolError(f"malformed ticker {quoted(ticker)}: expected EXCHANGE:SYMBOL", "ticker")
        return cls.parse(exchange, symbol)

    @property
    def ticker(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def __str__(self) -> str:
        return self.ticker


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """One bar series: a symbol at an interval."""

    exchange: str
    symbol: str
    interval: Interval

    @classmethod
    def of(cls, key: SymbolKey, interval: Interval) -> SeriesKey:
        return cls(key.exchange, key.symbol, interval)

    @property
    def symbol_key(self) -> SymbolKey:
        return SymbolKey(self.exchange, self.symbol)

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}@{self.interval.value}"
