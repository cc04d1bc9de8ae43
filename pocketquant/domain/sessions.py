"""Trading sessions: when an instrument trades, and where its bars begin.

TradingView describes an instrument's hours in ``symbol_resolved`` with a ``timezone``
(IANA) and a ``session``: ``0930-1600`` (US stocks), ``0915-1530`` (NSE), several ranges
``0930-1130,1300-1500``, an overnight range ``1700-1600`` (CME futures: the trading day
opens the evening before), ``24x7`` (crypto). A ``:23456`` suffix lists the trading days
(1 = Sunday ... 7 = Saturday); without it they are Monday to Friday.

TradingView aligns the bars of such instruments to the session, in the exchange's time
zone, not to UTC: 1h bars of a US stock open at 09:30, 10:30, ... 15:30 New York time
(the last one shorter); a daily bar is stamped at the session's open (so its UTC time
moves with daylight saving time); a weekly bar at the week's first open. 24x7
instruments keep UTC alignment (:meth:`Interval.floor`).

Pure code: no I/O, no clock. Times are epoch seconds (UTC).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pocketquant.domain.intervals import Interval

_RANGE = re.compile(r"(\d{2})(\d{2})-(\d{2})(\d{2})")
_DAY = 86_400
_WEEKDAYS = frozenset({1, 2, 3, 4, 5})  # ISO: Monday .. Friday


class InvalidSessionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Calendar:
    """An instrument's sessions. ``ranges`` are (open, close) minutes after midnight in
    ``timezone``; a close at or before its open runs overnight from the previous day."""

    timezone: str
    ranges: tuple[tuple[int, int], ...]
    days: frozenset[int]  # ISO weekdays (1 = Monday) of trading days
    holidays: frozenset[date] = frozenset()
    always: bool = False  # 24x7

    def fingerprint(self) -> str:
        """A short digest that differs when the sessions differ (a cache key part)."""
        raw = repr((self.timezone, self.ranges, sorted(self.days), sorted(self.holidays), self.always))
        return hashlib.blake2s(raw.encode(), digest_size=8).hexdigest()

    @classmethod
    def parse(cls, session: str, timezone: str, holidays: frozenset[date] = frozenset()) -> Calendar:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidSessionError(f"unknown time zone {timezone!r}") from exc
        spec = session.strip()
        if spec.lower() in ("24x7", "0000-0000:1234567"):
            return cls(timezone, ((0, 0),), frozenset(range(1, 8)), holidays, always=True)
        ranges_part, _, days_part = spec.partition(":")
        days = _WEEKDAYS
        if days_part:
            if not days_part.isdigit() or not set(days_part) <= set("1234567"):
                raise InvalidSessionError(f"malformed session days in {session!r}")
            days = frozenset((int(d) + 5) % 7 + 1 for d in days_part)  # TradingView 1 = Sunday -> ISO 7
        ranges = []
        for part in ranges_part.split(","):
            match = _RANGE.fullmatch(part.strip())
            if match is None:
                raise InvalidSessionError(f"malformed session {session!r}: expected HHMM-HHMM[,HHMM-HHMM][:days]")
            oh, om, ch, cm = (int(g) for g in match.groups())
            if oh > 24 or ch > 24 or om > 59 or cm > 59:
                raise InvalidSessionError(f"malformed session {session!r}")
            ranges.append((oh * 60 + om, ch * 60 + cm))
        return cls(timezone, tuple(ranges), days, holidays)

    # -- sessions -------------------------------------------------------------------

    def sessions(self, day: date) -> list[tuple[int, int]]:
        """The (open, close) epoch seconds of trading day ``day``'s sessions, in order;
        none on a day without trading. A 24x7 instrument's day is the UTC day."""
        if self.always:
            start = int(datetime.combine(day, time(), UTC).timestamp())
            return [(start, start + _DAY)]
        return _sessions(self, day)

    def trading_day(self, t: int) -> date | None:
        """The trading day whose sessions contain ``t``; None while the market is closed."""
        found = self._session_day(t)
        return None if found is None else found[2]

    def _trading_day(self, t: int) -> date:
        """The trading day ``t`` can belong to: its local date, or the next one for the
        evening part of an overnight session."""
        local = datetime.fromtimestamp(t, ZoneInfo(self.timezone))
        day = local.date()
        minute = local.hour * 60 + local.minute
        if any(close <= open_ and minute >= open_ for open_, close in self.ranges):
            return day + timedelta(days=1)
        return day

    def session_at(self, t: int) -> tuple[int, int] | None:
        """The session ``t`` falls in, or None while the market is closed."""
        found = self._session_day(t)
        return None if found is None else (found[0], found[1])

    def _session_day(self, t: int) -> tuple[int, int, date] | None:
        if self.always:
            return (t - t % _DAY, t - t % _DAY + _DAY, datetime.fromtimestamp(t, UTC).date())
        day = self._trading_day(t)
        for candidate in (day, day - timedelta(days=1)):
            for open_, close in self.sessions(candidate):
                if open_ <= t < close:
                    return (open_, close, candidate)
        return None

    # -- bars -----------------------------------------------------------------------

    def bar(self, interval: Interval, t: int) -> tuple[int, int] | None:
        """(start, end) of the bar of ``interval`` that ``t`` falls in, aligned as
        TradingView aligns it; None while the market is closed (for 24x7, UTC bars)."""
        if self.always:
            start = interval.floor(t)
            return start, interval.next_start(start)
        found = self._session_day(t)
        if found is None:
            return None
        open_, close, day = found
        if interval.is_intraday:
            step = interval.nominal_seconds
            start = open_ + (t - open_) // step * step
            return start, min(start + step, close)
        if interval is Interval.DAY_1:
            spans = self.sessions(day)
            return spans[0][0], spans[-1][1]
        if interval is Interval.WEEK_1:
            first = day - timedelta(days=day.isoweekday() - 1)
            days = [first + timedelta(days=i) for i in range(7)]
        else:  # MONTH_1
            first = day.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
            days = [first + timedelta(days=i) for i in range((following - first).days)]
        spans = [s for d in days for s in self.sessions(d)]
        return spans[0][0], spans[-1][1]


def parse_holidays(dates: str | None) -> frozenset[date]:
    """TradingView's ``session_holidays``: comma-separated ``YYYYMMDD`` dates."""
    days = set()
    for part in (dates or "").split(","):
        text = part.strip()
        if not text:
            continue
        try:
            days.add(datetime.strptime(text, "%Y%m%d").date())
        except ValueError as exc:
            raise InvalidSessionError(f"malformed holiday {text!r}: expected YYYYMMDD") from exc
    return frozenset(days)


@lru_cache(maxsize=8_192)
def _sessions(calendar: Calendar, day: date) -> list[tuple[int, int]]:
    if day.isoweekday() not in calendar.days or day in calendar.holidays:
        return []
    zone = ZoneInfo(calendar.timezone)
    spans = []
    for open_, close in calendar.ranges:
        open_day = day - timedelta(days=1) if close <= open_ else day
        # Wall-clock arithmetic in the exchange's zone: a DST switch moves the UTC times.
        start = datetime.combine(open_day, time(), zone) + timedelta(minutes=open_)
        end = datetime.combine(day, time(), zone) + timedelta(minutes=close)
        spans.append((int(start.astimezone(UTC).timestamp()), int(end.astimezone(UTC).timestamp())))
    return sorted(spans)
