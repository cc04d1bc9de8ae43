"""Gaps: the bars a stored series lacks, by its instrument's session calendar, and the
history request that fetches them back.

TradingView serves the newest 5,000 bars of a series and no more (``PROVIDER_MAX_BARS``):
a gap that opens further back than that cannot be repaired from it, and the report
says so instead of pretending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pocketquant.domain import PROVIDER_MAX_BARS, SeriesKey
from pocketquant.domain.gaps import Gap, bars_since, expected_bars, find_gaps
from pocketquant.domain.sessions import Calendar, InvalidSessionError
from pocketquant.history.documents import stored_calendar
from pocketquant.history.store import BarStore

MAX_CHECKED_BARS = 500_000  # expected bars one check may walk (about 5 years of a stock's 1m bars)


class GapCheckError(ValueError):
    """The gaps of a series cannot be checked as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class GapReport:
    series: SeriesKey
    start: int | None  # the range checked, [start, end); None when nothing is stored
    end: int | None
    expected: int
    stored: int
    gaps: list[Gap]
    reach: int | None  # the oldest bar TradingView still serves (its newest 5,000)

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    def reachable(self, gap: Gap) -> bool:
        """Every bar of ``gap`` is within TradingView's reach."""
        return self.reach is not None and gap.first >= self.reach

    def within_reach(self, gap: Gap) -> bool:
        """Some bars of ``gap`` (its newest) are within TradingView's reach."""
        return self.reach is not None and gap.last >= self.reach


@dataclass(frozen=True, slots=True)
class RepairPlan:
    n_bars: int
    repairable: list[Gap]  # gaps a sync of n_bars fills, wholly or (across the reach's edge) in part
    out_of_reach: list[Gap]  # gaps not wholly within reach


class GapFinder:
    def __init__(self, store: BarStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.clock = clock  # the provider's now: where its 5,000-bar reach ends

    @staticmethod
    async def calendar(series: SeriesKey) -> Calendar:
        try:
            calendar = await stored_calendar(series.exchange, series.symbol)
        except InvalidSessionError as exc:
            raise GapCheckError(
                f"the trading sessions of {series.symbol_key.ticker} are not understood: {exc}"
            ) from exc
        if calendar is None:
            raise GapCheckError(
                f"the trading sessions of {series.symbol_key.ticker} are not known yet: sync it once first"
            )
        return calendar

    async def report(self, series: SeriesKey, start: int | None = None, end: int | None = None) -> GapReport:
        """Missing bars of ``series`` opening in [start, end] (default: its stored range,
        first to newest bar: holes, not the time since the newest; the bar in progress
        at ``now`` is never missing, a bar stored while forming whose time is over is)."""
        calendar = await self.calendar(series)
        if start is None or end is None:
            stats = await self._store.stats(series)
            start = stats.first if start is None else start
            end = stats.last if end is None else end
        return await self._report(series, calendar, start, end)

    async def _report(self, series: SeriesKey, calendar: Calendar, start: int | None, end: int | None) -> GapReport:
        now = int(self.clock())
        if start is None or end is None:
            return GapReport(series, None, None, 0, 0, [], _reach(calendar, series, now))
        in_progress = calendar.bar(series.interval, now)
        stop = min(end + 1, in_progress[0] if in_progress is not None else now + 1)
        expected: list[int] = []
        for t in expected_bars(calendar, series.interval, start, stop):
            expected.append(t)
            if len(expected) > MAX_CHECKED_BARS:
                raise GapCheckError(
                    f"the range holds more than {MAX_CHECKED_BARS:,} {series.interval.value} bars: check a shorter one"
                )
        stored = await self._store.final_times(series, start, stop)
        gaps = find_gaps(expected, stored)
        return GapReport(series, start, stop, len(expected), len(stored), gaps, _reach(calendar, series, now))

    async def plan(self, series: SeriesKey) -> RepairPlan:
        """The history request that fetches every missing bar of ``series`` within
        TradingView's reach (a gap across its edge: the newer part), and whatever closed
        since its newest stored bar."""
        calendar = await self.calendar(series)
        stats = await self._store.stats(series)
        report = await self._report(series, calendar, stats.first, stats.last)
        repairable = [g for g in report.gaps if report.within_reach(g)]
        out_of_reach = [g for g in report.gaps if not report.reachable(g)]
        newest = stats.last
        firsts = [max(g.first, report.reach or g.first) for g in repairable]
        oldest_needed = min(firsts + ([newest] if newest is not None else []), default=None)
        if oldest_needed is None:
            return RepairPlan(PROVIDER_MAX_BARS, repairable, out_of_reach)  # nothing stored: all there is
        n_bars = bars_since(calendar, series.interval, oldest_needed, int(self.clock()), PROVIDER_MAX_BARS)
        return RepairPlan(min(n_bars, PROVIDER_MAX_BARS), repairable, out_of_reach)


def _reach(calendar: Calendar, series: SeriesKey, now: int) -> int | None:
    """The opening time of the oldest of the newest ``PROVIDER_MAX_BARS`` bars at ``now``."""
    longest = 60 * 365 * 86_400
    span = min(PROVIDER_MAX_BARS * series.interval.nominal_seconds, longest)
    while True:
        bars = list(expected_bars(calendar, series.interval, now - span, now + 1))
        if len(bars) >= PROVIDER_MAX_BARS:
            return bars[-PROVIDER_MAX_BARS]
        if span >= longest:
            return bars[0] if bars else None
        span *= 2
