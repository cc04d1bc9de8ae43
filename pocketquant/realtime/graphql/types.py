"""GraphQL types of the realtime slice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry

from pocketquant.graphql.scalars import EpochSeconds
from pocketquant.graphql.types import IntervalEnum


def _time(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@strawberry.type(description="The latest quote of a symbol. Fields TradingView has not sent yet are null.")
class LiveQuote:
    ticker: str
    price: float | None
    time: datetime | None = strawberry.field(description="Time of the last trade (`lp_time`).")
    change: float | None
    change_percent: float | None
    bid: float | None
    ask: float | None
    volume: float | None = strawberry.field(description="Volume of the session so far.")
    session: str | None = strawberry.field(description="market, pre_market, post_market or out_of_session.")

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> LiveQuote:
        return cls(
            ticker=p["ticker"], price=p["price"], time=_time(p["time"]), change=p["change"],
            change_percent=p["change_percent"], bid=p["bid"], ask=p["ask"], volume=p["volume"], session=p["session"],
        )  # fmt: skip


@strawberry.type(description="A live bar: in progress (`closed: false`), or final (`closed: true`).")
class LiveBar:
    ticker: str
    interval: IntervalEnum
    time: datetime = strawberry.field(description="The bar's open time.")
    timestamp: EpochSeconds
    open: float
    high: float
    low: float
    close: float
    volume: float
    ticks: int = strawberry.field(description="Trades aggregated into the bar.")
    partial: bool = strawberry.field(
        description="The stream started during this bar: open, high, low and volume may miss earlier trades. "
        "Partial bars are not stored."
    )
    closed: bool

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> LiveBar:
        return cls(
            ticker=p["ticker"], interval=IntervalEnum(p["interval"]), time=datetime.fromtimestamp(p["start"], UTC),
            timestamp=EpochSeconds(p["start"]), open=p["open"], high=p["high"], low=p["low"], close=p["close"],
            volume=p["volume"], ticks=p["ticks"], partial=p["partial"], closed=p["closed"],
        )  # fmt: skip


@strawberry.type(description="A refusal of one symbol by TradingView.")
class SymbolError:
    ticker: str
    message: str


@strawberry.type(description="The stream process, as it last reported itself.")
class StreamStatus:
    running: bool = strawberry.field(description="A stream process reported within the last few seconds.")
    connected: bool = strawberry.field(description="Its TradingView connection is open.")
    instance: str | None
    watched_symbols: list[str]
    receiving_symbols: list[str] = strawberry.field(
        description="Watched symbols whose quotes arrive now (their first quote on the current connection came)."
    )
    ticks_per_second: float = strawberry.field(description="Over the last 10 seconds.")
    last_tick_age_seconds: float | None
    reconnects: int
    last_error: str | None
    late_ticks: int = strawberry.field(description="Ticks older than the bar in progress (see the aggregator policy).")
    outside_session_ticks: int = strawberry.field(
        description="Trades outside their symbol's regular session (pre/post-market): in no bar."
    )
    symbol_errors: list[SymbolError]
    bars_closed: int
    bars_persisted: int
    persist_backlog: int
    reported_at: datetime | None


@strawberry.type(description="The watch list after the change.")
class WatchlistChanged:
    watched: list[str]
    changed: list[str] = strawberry.field(description="Tickers added (watch) or removed (unwatch) by this call.")
