"""Missing bars, measured against an instrument's session calendar (not wall-clock time:
a US stock has no bars at night, on weekends or on holidays, and none are missing then).

Pure code: no I/O, no clock. Times are epoch seconds (UTC).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pocketquant.domain.intervals import Interval
from pocketquant.domain.sessions import Calendar


@dataclass(frozen=True, slots=True)
class Gap:
    """Consecutive expected bars that are not stored: ``first`` and ``last`` are the
    opening times of the first and last missing bar."""

    first: int
    last: int
    missing: int


def expected_bars(calendar: Calendar, interval: Interval, start: int, end: int) -> Iterator[int]:
    """Opening times of the bars of ``interval`` the calendar has in [start, end), in order."""
    if calendar.always:
        t = interval.floor(start)
        if t < start:
            t = interval.next_start(t)
        while t < end:
            yield t
            t = interval.next_start(t)
        return
    day = datetime.fromtimestamp(start, UTC).date() - timedelta(days=1)
    last_day = datetime.fromtimestamp(end, UTC).date() + timedelta(days=1)
    previous = -1
    while day <= last_day:
        spans = calendar.sessions(day)
        day += timedelta(days=1)
        if not spans:
            continue
        if interval.is_intraday:
            step = interval.nominal_seconds
            starts: list[int] = [s for open_, close in spans for s in range(open_, close, step)]
        elif interval is Interval.DAY_1:
            starts = [spans[0][0]]
        else:
            bar = calendar.bar(interval, spans[0][0])
            starts = [bar[0]] if bar is not None else []
        for t in starts:
            if start <= t < end and t > previous:
                previous = t
                yield t


def find_gaps(expected: Iterator[int] | Sequence[int], stored: Sequence[int]) -> list[Gap]:
    """The runs of ``expected`` times (increasing) missing from ``stored`` (increasing)."""
    gaps: list[Gap] = []
    i = 0
    run: list[int] = []
    for t in expected:
        while i < len(stored) and stored[i] < t:
            i += 1
        if i < len(stored) and stored[i] == t:
            if run:
                gaps.append(Gap(run[0], run[-1], len(run)))
                run = []
            continue
        run.append(t)
    if run:
        gaps.append(Gap(run[0], run[-1], len(run)))
    return gaps


def bars_since(calendar: Calendar, interval: Interval, since: int, now: int, limit: int) -> int:
    """How many bars open from ``since`` up to the one in progress at ``now`` (included):
    the ``n_bars`` a history request needs to reach back to ``since``. Counting stops
    past ``limit`` (the answer is then ``limit + 1``)."""
    count = 0
    for _ in expected_bars(calendar, interval, since, now + 1):
        count += 1
        if count > limit:
            break
    return count
