"""Bars of a longer interval made from stored bars of a shorter one, aligned the way
TradingView aligns that interval for the instrument (its session calendar).

A source interval can make a target when every source bar lies inside one target bar:
intraday bars aligned to the same session opens nest when the target's length is a
multiple of the source's (2h from 1h, 45m from 15m); any intraday or daily bar nests in a
day, week or month of its sessions; a week does not nest in a month. A resampled bar
holds the stored source bars of its period: if some are missing, so are their trades.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from pocketquant.domain.bars import Bar
from pocketquant.domain.intervals import Interval
from pocketquant.domain.sessions import Calendar


def nests(source: Interval, target: Interval) -> bool:
    """Every bar of ``source`` lies inside one bar of ``target``."""
    if source is target or source.nominal_seconds >= target.nominal_seconds:
        return False
    if target.is_intraday:
        return target.nominal_seconds % source.nominal_seconds == 0
    if target is Interval.MONTH_1:
        return source is not Interval.WEEK_1
    return True


def sources(target: Interval) -> list[Interval]:
    """The intervals ``target`` can be made from, longest (fewest bars to read) first."""
    return sorted((i for i in Interval if nests(i, target)), key=lambda i: -i.nominal_seconds)


def group_start(calendar: Calendar, target: Interval, t: int) -> int | None:
    """The opening time of the ``target`` bar that a bar opening at ``t`` belongs to."""
    bar = calendar.bar(target, t)
    return bar[0] if bar is not None else None


def resample(bars: Iterable[Bar], target: Interval, calendar: Calendar) -> list[Bar]:
    """Merge ``bars`` (oldest first) into bars of ``target``, oldest first. Bars outside
    every session (no target bar) are dropped."""
    out: list[Bar] = []
    key: int | None = None
    for bar in bars:
        start = group_start(calendar, target, bar.time)
        if start is None:
            continue
        if start != key:
            out.append(Bar(start, bar.open, bar.high, bar.low, bar.close, bar.volume))
            key = start
            continue
        last = out[-1]
        out[-1] = Bar(
            start, last.open, max(last.high, bar.high), min(last.low, bar.low), bar.close, last.volume + bar.volume
        )
    return out
