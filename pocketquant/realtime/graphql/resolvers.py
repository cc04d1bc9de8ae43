"""Queries, mutations and subscriptions of the realtime slice."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import strawberry

from pocketquant.domain import InvalidSymbolError, SymbolKey
from pocketquant.graphql.context import Context, Info
from pocketquant.graphql.errors import BadUserInputError, UpstreamUnavailableError
from pocketquant.graphql.types import IntervalEnum, InvalidInput
from pocketquant.realtime import watchlist, wire
from pocketquant.realtime.graphql.types import LiveBar, LiveQuote, StreamStatus, SymbolError, WatchlistChanged
from pocketquant.realtime.hub import LatestQueue
from pocketquant.tradingview.history import ProviderError

WatchResult = Annotated[WatchlistChanged | InvalidInput, strawberry.union("WatchResult")]


def _tickers(tickers: list[str], limit: int) -> list[SymbolKey]:
    if not tickers:
        raise BadUserInputError("give at least one ticker", field="tickers")
    if len(tickers) > limit:
        raise BadUserInputError(f"at most {limit} tickers at once, got {len(tickers)}", field="tickers")
    keys = []
    for ticker in tickers:
        try:
            keys.append(SymbolKey.from_ticker(ticker))
        except InvalidSymbolError as exc:
            raise BadUserInputError(str(exc), field="tickers") from exc
    return list(dict.fromkeys(keys))


async def _require_watched(keys: list[SymbolKey]) -> None:
    missing = sorted(k.ticker for k in await watchlist.not_watched(keys))
    if missing:
        raise BadUserInputError(f"not watched: {', '.join(missing)}; call watchSymbols first", field="tickers")


async def _events(context: Context, queue: LatestQueue) -> AsyncIterator[dict[str, Any]]:
    """The listener's events; for a shared run, also records each on its tap (see
    ``realtime/tap.py``) and says it is listening."""
    tap = context.live_tap
    if tap is not None:
        tap.listening.set()
    while True:
        payload = await queue.get()
        if tap is not None:
            tap.emitted(payload)
        yield payload


@strawberry.type
class RealtimeQuery:
    @strawberry.field(description="Tickers the stream keeps live, in order.")
    async def watched_symbols(self) -> list[str]:
        return sorted(k.ticker for k in await watchlist.watched())

    @strawberry.field(description="The stream process as it last reported itself (every second).")
    async def stream_status(self, info: Info) -> StreamStatus:
        s = wire.read_report(await info.context.resources.redis.get(wire.STATUS_KEY))
        if s is None:
            return StreamStatus(
                running=False, connected=False, instance=None, watched_symbols=[], receiving_symbols=[],
                ticks_per_second=0.0,
                last_tick_age_seconds=None, reconnects=0, last_error=None, late_ticks=0, outside_session_ticks=0,
                symbol_errors=[],
                bars_closed=0, bars_persisted=0, persist_backlog=0, reported_at=None,
            )  # fmt: skip
        last_tick = s["last_tick_at"]
        # A leader reports every STREAM_STATUS_EVERY_SECONDS; one that has missed two and
        # a half reports is gone (its report lingers in Redis a while longer).
        period = info.context.settings.stream_status_every_seconds
        alive = time.time() - s["reported_at_epoch"] <= max(1.5, 2.5 * period)
        return StreamStatus(
            running=alive,
            connected=alive and s["connected"],
            instance=s["instance"],
            watched_symbols=list(s["watched"]),
            receiving_symbols=list(s.get("receiving", [])) if alive else [],
            ticks_per_second=s["ticks_per_second"],
            last_tick_age_seconds=max(0.0, time.time() - last_tick) if last_tick is not None else None,
            reconnects=s["reconnects"],
            last_error=s["last_error"],
            late_ticks=s["late_ticks"],
            outside_session_ticks=s.get("outside_session_ticks", 0),
            symbol_errors=[SymbolError(ticker=t, message=m) for t, m in sorted(s["symbol_errors"].items())],
            bars_closed=s["bars_closed"],
            bars_persisted=s["bars_persisted"],
            persist_backlog=s["persist_backlog"],
            reported_at=datetime.fromisoformat(s["updated_at"]),
        )


@strawberry.type
class RealtimeMutation:
    @strawberry.mutation(
        description="Stream these tickers live (EXCHANGE:SYMBOL). The stream picks changes up within seconds."
    )
    async def watch_symbols(self, info: Info, tickers: list[str]) -> WatchResult:
        settings = info.context.settings
        try:
            keys = _tickers(tickers, settings.max_symbols_per_subscription)
            watched = await watchlist.watched()  # read once, not once per ticker
            new = [k for k in keys if k not in watched]
            try:
                unknown = await info.context.resources.symbols.unknown(new)
            except ProviderError as exc:
                raise UpstreamUnavailableError(f"cannot check the symbols with TradingView now: {exc}") from exc
            if unknown:
                names = ", ".join(k.ticker for k in unknown)
                raise BadUserInputError(f"TradingView does not know {names}", field="tickers")
            added = await watchlist.watch(keys, settings.max_watched_symbols)
        except BadUserInputError as exc:
            return InvalidInput(message=str(exc), field=exc.field)
        except watchlist.WatchlistFullError as exc:
            return InvalidInput(message=str(exc), field="tickers")
        return WatchlistChanged(
            watched=sorted(k.ticker for k in await watchlist.watched()), changed=[k.ticker for k in added]
        )

    @strawberry.mutation(description="Stop streaming these tickers. Stored bars stay.")
    async def unwatch_symbols(self, info: Info, tickers: list[str]) -> WatchResult:
        try:
            keys = _tickers(tickers, info.context.settings.max_symbols_per_subscription)
        except BadUserInputError as exc:
            return InvalidInput(message=str(exc), field=exc.field)
        removed = await watchlist.unwatch(keys)
        return WatchlistChanged(
            watched=sorted(k.ticker for k in await watchlist.watched()), changed=[k.ticker for k in removed]
        )


@strawberry.type
class RealtimeSubscription:
    @strawberry.subscription(description="Quotes of watched tickers: the latest first, then every change.")
    async def live_quotes(self, info: Info, tickers: list[str]) -> AsyncGenerator[LiveQuote]:
        context = info.context
        settings = context.settings
        keys = _tickers(tickers, settings.max_symbols_per_subscription)
        await _require_watched(keys)
        with context.subscription_slot():
            listener = context.hub.listen(keys, quotes=True, intervals=(), capacity=settings.subscriber_queue_size)
            async with listener as queue:
                async for payload in _events(context, queue):
                    yield LiveQuote.from_payload(payload)

    @strawberry.subscription(
        description="One watched symbol's bar at one interval: the bar in progress first, then each update, "
        "and each bar's final version with `closed: true`."
    )
    async def live_bars(
        self, info: Info, exchange: str, symbol: str, interval: IntervalEnum
    ) -> AsyncGenerator[LiveBar]:
        context = info.context
        settings = context.settings
        try:
            key = SymbolKey.parse(exchange, symbol)
        except InvalidSymbolError as exc:
            raise BadUserInputError(str(exc), field=exc.field) from exc
        live = interval.to_domain()
        if live not in settings.live_intervals:
            names = ", ".join(IntervalEnum.from_domain(i).name for i in settings.live_intervals)
            raise BadUserInputError(f"{interval.name} is not aggregated live; use one of {names}", field="interval")
        await _require_watched([key])
        with context.subscription_slot():
            listener = context.hub.listen(
                [key], quotes=False, intervals=[live], capacity=settings.subscriber_queue_size
            )
            async with listener as queue:
                async for payload in _events(context, queue):
                    yield LiveBar.from_payload(payload)


__all__ = ["RealtimeMutation", "RealtimeQuery", "RealtimeSubscription"]
