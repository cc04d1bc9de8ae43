"""What the stream publishes in Redis and the API relays: channel and key names, and
the JSON of quotes and bars. Both sides use only this module to agree."""

from __future__ import annotations

from typing import Any

from pocketquant.domain import SymbolKey
from pocketquant.domain.aggregator import LiveBar

PREFIX = "pocketquant:live"
STATUS_KEY = "pocketquant:stream:status"
LEADER_KEY = "pocketquant:stream:leader"
ALIVE_PREFIX = "pocketquant:stream:alive:"  # + instance (host:pid), every stream process


def channel(key: SymbolKey) -> str:
    """Pub/sub channel of one symbol: quotes, in-progress bars and closed bars."""
    return f"{PREFIX}:{key.ticker}"


def snapshot_key(key: SymbolKey) -> str:
    """Hash with the latest quote (field ``quote``) and the current bar per interval
    (fields ``bar:1m`` ...), for subscribers that connect between updates."""
    return f"{PREFIX}:snapshot:{key.ticker}"


def key_of_channel(name: str) -> SymbolKey:
    return SymbolKey.from_ticker(name.removeprefix(PREFIX + ":"))


def quote_payload(key: SymbolKey, state: dict[str, Any], seq: int) -> dict[str, Any]:
    def number(name: str) -> float | None:
        value = state.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    lp_time = state.get("lp_time")
    return {
        "seq": seq,
        "ticker": key.ticker,
        "price": number("lp"),
        "time": int(lp_time) if isinstance(lp_time, int | float) else None,
        "change": number("ch"),
        "change_percent": number("chp"),
        "bid": number("bid"),
        "ask": number("ask"),
        "volume": number("volume"),
        "session": state.get("current_session") if isinstance(state.get("current_session"), str) else None,
    }


def bar_payload(bar: LiveBar, seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "ticker": bar.key.ticker,
        "interval": bar.interval.value,
        "start": bar.start,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "ticks": bar.ticks,
        "partial": bar.partial,
        "closed": bar.closed,
    }
