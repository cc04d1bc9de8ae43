"""What the stream publishes in Redis and the API relays: channel and key names, and
the JSON of quotes and bars. Both sides use only this module to agree."""

from __future__ import annotations

import logging
from typing import Any, NotRequired, TypedDict

from pydantic import TypeAdapter, ValidationError

from pocketquant.domain import SymbolKey
from pocketquant.domain.aggregator import LiveBar

log = logging.getLogger(__name__)

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


class QuotePayload(TypedDict):
    seq: int
    ticker: str
    price: float | None
    time: int | None
    change: float | None
    change_percent: float | None
    bid: float | None
    ask: float | None
    volume: float | None
    session: str | None


class BarPayload(TypedDict):
    seq: int
    ticker: str
    interval: str
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    ticks: int
    partial: bool
    closed: bool


class StreamReport(TypedDict):
    """What the stream leader writes to STATUS_KEY every STREAM_STATUS_EVERY_SECONDS
    (read by ``streamStatus`` and ``/metrics``). Fields added later are NotRequired, so a
    reader understands the report of an older stream."""

    instance: str
    connected: bool
    watched: list[str]
    receiving: NotRequired[list[str]]
    ticks_per_second: float
    last_tick_at: float | None
    reconnects: int
    last_error: str | None
    late_ticks: int
    outside_session_ticks: NotRequired[int]
    symbol_errors: dict[str, str]
    bars_closed: int
    bars_persisted: int
    updates_published: NotRequired[int]
    updates_merged: NotRequired[int]
    updates_dropped: NotRequired[int]
    persist_backlog: int
    updated_at: str  # ISO 8601, the market clock's time of the report
    reported_at_epoch: float  # wall clock: readers judge from it whether the stream is alive


_REPORT = TypeAdapter(StreamReport)


def read_report(raw: bytes | str | None) -> StreamReport | None:
    """The stream leader's report, checked; None if there is none or it is not one
    (logged: a report this version cannot read is no report)."""
    if raw is None:
        return None
    try:
        return _REPORT.validate_json(raw)
    except ValidationError as exc:
        log.warning("unreadable stream report ignored: %s", exc.errors()[:3])
        return None


def quote_payload(key: SymbolKey, state: dict[str, Any], seq: int) -> QuotePayload:
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


def bar_payload(bar: LiveBar, seq: int) -> BarPayload:
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
