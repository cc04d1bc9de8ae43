"""Mutations of the history slice: dispatch syncs to the worker, track symbols."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from pocketquant.domain import SeriesKey, SymbolKey
from pocketquant.graphql.context import Info
from pocketquant.graphql.errors import BadUserInputError, UpstreamUnavailableError
from pocketquant.graphql.types import IntervalEnum, InvalidInput
from pocketquant.history import tracking
from pocketquant.history.graphql import inputs
from pocketquant.history.graphql.types import (
    SymbolTracked,
    SymbolType,
    SymbolUntracked,
    SyncBatchEnqueued,
    SyncEnqueued,
    SyncSymbolResult,
    SyncSymbolsResult,
    TrackSymbolResult,
    UntrackSymbolResult,
)
from pocketquant.tradingview.history import ProviderError


@strawberry.input
class SyncSymbolInput:
    exchange: str
    symbol: str
    interval: IntervalEnum
    bars: int | None = strawberry.field(default=None, description="Newest bars to fetch (1-5000, default 5000).")


@strawberry.input
class SymbolInput:
    exchange: str
    symbol: str


@strawberry.input
class SyncSymbolsInput:
    symbols: list[SymbolInput]
    intervals: list[IntervalEnum]
    bars: int | None = strawberry.field(default=None, description="Newest bars to fetch (1-5000, default 5000).")


@strawberry.input
class TrackSymbolInput:
    exchange: str
    symbol: str
    intervals: list[IntervalEnum] | None = strawberry.field(
        default=None, description="Intervals to keep synced (default: the server's DEFAULT_TRACK_INTERVALS)."
    )


def _invalid(exc: BadUserInputError) -> InvalidInput:
    return InvalidInput(message=str(exc), field=exc.field)


async def _take_sync_jobs(info: Info, count: int) -> None:
    """Charge ``count`` sync jobs to the client's rate limit (RATE_LIMITED past it)."""
    guard = info.context.guard
    if guard is not None:
        await guard.take_sync_jobs(info.context, count)


async def _require_known(info: Info, key: SymbolKey) -> None:
    try:
        unknown = await info.context.resources.symbols.unknown([key])
    except ProviderError as exc:
        raise UpstreamUnavailableError(f"cannot check {key.ticker} with TradingView now: {exc}") from exc
    if unknown:
        raise BadUserInputError(f"TradingView does not know {key.ticker}", field="symbol")


async def _enqueue(info: Info, series: SeriesKey, n_bars: int) -> SyncEnqueued:
    enqueued = await info.context.resources.dispatcher.enqueue(series, n_bars)
    return SyncEnqueued(
        job_id=strawberry.ID(enqueued.job_id),
        exchange=series.exchange,
        symbol=series.symbol,
        interval=IntervalEnum.from_domain(series.interval),
        deduplicated=enqueued.deduplicated,
    )


def _distinct_intervals(intervals: list[IntervalEnum]) -> list[IntervalEnum]:
    return list(dict.fromkeys(intervals))


@strawberry.type
class HistoryMutation:
    @strawberry.mutation(description="Sync one series from TradingView on the worker. Returns the job to follow.")
    async def sync_symbol(self, info: Info, input: SyncSymbolInput) -> SyncSymbolResult:
        try:
            key = inputs.symbol_key(input.exchange, input.symbol)
            n_bars = inputs.history_bars(input.bars, info.context.settings.sync_default_bars)
        except BadUserInputError as exc:
            return _invalid(exc)
        await _take_sync_jobs(info, 1)
        return await _enqueue(info, SeriesKey.of(key, input.interval.to_domain()), n_bars)

    @strawberry.mutation(
        description="Sync several symbols at several intervals. All inputs are checked before anything is queued."
    )
    async def sync_symbols(self, info: Info, input: SyncSymbolsInput) -> SyncSymbolsResult:
        settings = info.context.settings
        try:
            if not input.symbols:
                raise BadUserInputError("give at least one symbol", field="symbols")
            if len(input.symbols) > settings.sync_many_max_symbols:
                raise BadUserInputError(
                    f"at most {settings.sync_many_max_symbols} symbols per call, got {len(input.symbols)}",
                    field="symbols",
                )
            if not input.intervals:
                raise BadUserInputError("give at least one interval", field="intervals")
            keys = list(dict.fromkeys(inputs.symbol_key(s.exchange, s.symbol) for s in input.symbols))
            n_bars = inputs.history_bars(input.bars, settings.sync_default_bars)
            series = len(keys) * len(_distinct_intervals(input.intervals))
            if series > settings.sync_many_max_series:
                raise BadUserInputError(
                    f"at most {settings.sync_many_max_series} series (symbols x intervals) per call, got {series}",
                    field="intervals",
                )
        except BadUserInputError as exc:
            return _invalid(exc)
        await _take_sync_jobs(info, series)
        jobs = [
            await _enqueue(info, SeriesKey.of(key, interval.to_domain()), n_bars)
            for key in keys
            for interval in _distinct_intervals(input.intervals)
        ]
        return SyncBatchEnqueued(jobs=jobs)

    @strawberry.mutation(description="Keep a symbol synced on schedule, and sync it now.")
    async def track_symbol(self, info: Info, input: TrackSymbolInput) -> TrackSymbolResult:
        settings = info.context.settings
        try:
            key = inputs.symbol_key(input.exchange, input.symbol)
            if input.intervals is not None and not input.intervals:
                raise BadUserInputError("give at least one interval, or leave intervals out", field="intervals")
            await _require_known(info, key)
        except BadUserInputError as exc:
            return _invalid(exc)
        intervals = _distinct_intervals(
            input.intervals or [IntervalEnum.from_domain(i) for i in settings.default_track_intervals]
        )
        await _take_sync_jobs(info, len(intervals))
        record = await tracking.track(key, [i.to_domain() for i in intervals], datetime.now(UTC))
        jobs = [await _enqueue(info, SeriesKey.of(key, i.to_domain()), settings.sync_default_bars) for i in intervals]
        return SymbolTracked(symbol=SymbolType.from_document(record), jobs=jobs)

    @strawberry.mutation(description="Stop re-syncing a symbol on schedule. Its stored bars are kept.")
    async def untrack_symbol(self, exchange: str, symbol: str) -> UntrackSymbolResult:
        try:
            key = inputs.symbol_key(exchange, symbol)
        except BadUserInputError as exc:
            return _invalid(exc)
        untracked = await tracking.untrack(key, datetime.now(UTC))
        if untracked is None:
            return InvalidInput(message=f"{key.ticker} is not a known symbol", field="symbol")
        record, was_tracked = untracked
        return SymbolUntracked(symbol=SymbolType.from_document(record), was_tracked=was_tracked)
