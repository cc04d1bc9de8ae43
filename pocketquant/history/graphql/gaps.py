"""Gaps of stored series (by the instrument's sessions) and their repair, in GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry

from pocketquant.domain import PROVIDER_MAX_BARS, SeriesKey
from pocketquant.domain.gaps import Gap
from pocketquant.graphql.context import Info
from pocketquant.graphql.errors import BadUserInputError
from pocketquant.graphql.types import IntervalEnum, InvalidInput
from pocketquant.history.gaps import GapCheckError
from pocketquant.history.graphql import inputs
from pocketquant.history.graphql.mutations import _enqueue, _invalid, _take_sync_jobs
from pocketquant.history.graphql.types import SyncEnqueued

MAX_GAPS_LISTED = 1_000


def _time(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@strawberry.type(name="Gap", description="Consecutive bars the session calendar expects that are not stored.")
class GapType:
    first_missing: datetime = strawberry.field(description="Opening time of the first missing bar.")
    last_missing: datetime = strawberry.field(description="Opening time of the last missing bar.")
    missing_bars: int
    reachable: bool = strawberry.field(
        description=f"TradingView serves the newest {PROVIDER_MAX_BARS:,} bars of a series only: false when this gap "
        "is older, so no sync can fill it."
    )

    @classmethod
    def of(cls, gap: Gap, *, reachable: bool) -> GapType:
        return cls(
            first_missing=_time(gap.first), last_missing=_time(gap.last), missing_bars=gap.missing, reachable=reachable
        )


@strawberry.type(description="Missing bars of one series over a range, by the symbol's trading sessions.")
class GapReportType:
    exchange: str
    symbol: str
    interval: IntervalEnum
    checked_from: datetime | None = strawberry.field(description="Start of the range checked (null: nothing stored).")
    checked_to: datetime | None = strawberry.field(description="End of the range checked (exclusive).")
    expected_bars: int = strawberry.field(description="Bars the sessions hold in the range.")
    stored_bars: int
    missing_bars: int
    gap_count: int
    gaps: list[GapType] = strawberry.field(description=f"The gaps, oldest first (at most `first`, {MAX_GAPS_LISTED}).")
    oldest_reachable: datetime | None = strawberry.field(
        description=f"The oldest bar TradingView still serves: the {PROVIDER_MAX_BARS:,}th newest."
    )


@strawberry.type(description="A sync that fetches the missing bars back was put on the queue (or none was needed).")
class GapsRepairQueued:
    job: SyncEnqueued | None = strawberry.field(description="Null when nothing reachable is missing.")
    bars_requested: int
    repairable_gaps: int
    out_of_reach: list[GapType] = strawberry.field(
        description=f"Gaps older than TradingView's {PROVIDER_MAX_BARS:,}-bar reach: no sync can fill them."
    )


RepairGapsResult = Annotated[GapsRepairQueued | InvalidInput, strawberry.union("RepairGapsResult")]


def _range(from_: datetime | None, to: datetime | None) -> tuple[int | None, int | None]:
    return inputs.time_range(from_, to)


@strawberry.type
class GapsQuery:
    @strawberry.field(
        description="Bars missing from a stored series, by the symbol's trading sessions (nights, weekends and "
        "holidays are not gaps). Default range: its first to its newest stored bar."
    )
    async def gaps(
        self,
        info: Info,
        exchange: str,
        symbol: str,
        interval: IntervalEnum,
        from_: Annotated[
            datetime | None,
            strawberry.argument(name="from", description="Start (inclusive). ISO 8601; no offset means UTC."),
        ] = None,
        to: Annotated[datetime | None, strawberry.argument(description="End (inclusive).")] = None,
        first: Annotated[int, strawberry.argument(description=f"Gaps to list (1-{MAX_GAPS_LISTED}).")] = 100,
    ) -> GapReportType:
        key = inputs.symbol_key(exchange, symbol)
        limit = inputs.bounded(first, 1, MAX_GAPS_LISTED, "first")
        lo, hi = _range(from_, to)
        series = SeriesKey.of(key, interval.to_domain())
        try:
            report = await info.context.resources.gaps.report(series, lo, hi)
        except GapCheckError as exc:
            raise BadUserInputError(str(exc), field="symbol") from exc
        return GapReportType(
            exchange=key.exchange,
            symbol=key.symbol,
            interval=interval,
            checked_from=_time(report.start) if report.start is not None else None,
            checked_to=_time(report.end) if report.end is not None else None,
            expected_bars=report.expected,
            stored_bars=report.stored,
            missing_bars=report.missing,
            gap_count=len(report.gaps),
            gaps=[GapType.of(g, reachable=report.reachable(g)) for g in report.gaps[:limit]],
            oldest_reachable=_time(report.reach) if report.reach is not None else None,
        )


@strawberry.type
class GapsMutation:
    @strawberry.mutation(
        description=f"Fetch a series' missing bars back from TradingView on the worker: one sync reaching back to the "
        f"oldest reachable gap (and through the newest bars). Gaps older than its {PROVIDER_MAX_BARS:,}-bar reach are "
        "listed, not fetched."
    )
    async def repair_gaps(self, info: Info, exchange: str, symbol: str, interval: IntervalEnum) -> RepairGapsResult:
        try:
            key = inputs.symbol_key(exchange, symbol)
            series = SeriesKey.of(key, interval.to_domain())
            try:
                plan = await info.context.resources.gaps.plan(series)
            except GapCheckError as exc:
                raise BadUserInputError(str(exc), field="symbol") from exc
        except BadUserInputError as exc:
            return _invalid(exc)
        out_of_reach = [GapType.of(g, reachable=False) for g in plan.out_of_reach[:MAX_GAPS_LISTED]]
        if not plan.repairable:
            return GapsRepairQueued(job=None, bars_requested=0, repairable_gaps=0, out_of_reach=out_of_reach)
        await _take_sync_jobs(info, 1)
        job = await _enqueue(info, series, plan.n_bars)
        return GapsRepairQueued(
            job=job, bars_requested=plan.n_bars, repairable_gaps=len(plan.repairable), out_of_reach=out_of_reach
        )
