"""Bar intervals: canonical names, TradingView resolution codes and UTC alignment.

Pure code: no I/O, no clock. Times are epoch seconds (UTC).
"""

from __future__ import annotations

import calendar
import enum
from datetime import UTC, datetime

_DAY = 86_400
# 1970-01-01 was a Thursday; weekly bars open on Monday 00:00 UTC.
_MONDAY_OFFSET = 3 * _DAY


class Interval(enum.Enum):
    """Every interval tvdatafeed offers. Values are the canonical short forms."""

    MINUTE_1 = "1m"
    MINUTE_3 = "3m"
    MINUTE_5 = "5m"
    MINUTE_15 = "15m"
    MINUTE_30 = "30m"
    MINUTE_45 = "45m"
    HOUR_1 = "1h"
    HOUR_2 = "2h"
    HOUR_3 = "3h"
    HOUR_4 = "4h"
    DAY_1 = "1d"
    WEEK_1 = "1W"
    MONTH_1 = "1M"

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Accept the canonical form (``1m``), the enum name (``MINUTE_1``) or a
        TradingView resolution (``1``, ``60``, ``1D``)."""
        cleaned = text.strip()
        for interval in cls:
            if cleaned in (interval.value, interval.name, interval.tv_resolution):
                return interval
        if cleaned in _ALIASES:
            return _ALIASES[cleaned]
        names = ", ".join(i.value for i in cls)
        raise ValueError(f"unknown interval {text!r}; expected one of {names}")

    @property
    def tv_resolution(self) -> str:
        """The resolution code of TradingView's chart protocol."""
        return _TV_RESOLUTION[self]

    @property
    def is_intraday(self) -> bool:
        return self in _SECONDS and _SECONDS[self] < _DAY

    @property
    def nominal_seconds(self) -> int:
        """Length of a bar; for calendar intervals the shortest one (a 28-day month)."""
        return _SECONDS.get(self) or (7 * _DAY if self is Interval.WEEK_1 else 28 * _DAY)

    def floor(self, ts: int) -> int:
        """Start of the bar that contains ``ts``, aligned to UTC boundaries."""
        if self is Interval.MONTH_1:
            moment = datetime.fromtimestamp(ts, UTC)
            return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0))
        if self is Interval.WEEK_1:
            return ts - (ts + _MONDAY_OFFSET) % (7 * _DAY)
        step = _SECONDS[self]
        return ts - ts % step

    def next_start(self, ts: int) -> int:
        """Start of the bar after the one containing ``ts``."""
        start = self.floor(ts)
        if self is Interval.MONTH_1:
            moment = datetime.fromtimestamp(start, UTC)
            year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
            return calendar.timegm((year, month, 1, 0, 0, 0))
        return start + self.nominal_seconds


_SECONDS: dict[Interval, int] = {
    Interval.MINUTE_1: 60,
    Interval.MINUTE_3: 180,
    Interval.MINUTE_5: 300,
    Interval.MINUTE_15: 900,
    Interval.MINUTE_30: 1800,
    Interval.MINUTE_45: 2700,
    Interval.HOUR_1: 3600,
    Interval.HOUR_2: 7200,
    Interval.HOUR_3: 10_800,
    Interval.HOUR_4: 14_400,
    Interval.DAY_1: _DAY,
}

_TV_RESOLUTION: dict[Interval, str] = {
    Interval.MINUTE_1: "1",
    Interval.MINUTE_3: "3",
    Interval.MINUTE_5: "5",
    Interval.MINUTE_15: "15",
    Interval.MINUTE_30: "30",
    Interval.MINUTE_45: "45",
    Interval.HOUR_1: "60",
    Interval.HOUR_2: "120",
    Interval.HOUR_3: "180",
    Interval.HOUR_4: "240",
    Interval.DAY_1: "1D",
    Interval.WEEK_1: "1W",
    Interval.MONTH_1: "1M",
}

# tvdatafeed sends hours as "1H".."4H"; TradingView accepts both spellings.
_ALIASES: dict[str, Interval] = {
    "1H": Interval.HOUR_1,
    "2H": Interval.HOUR_2,
    "3H": Interval.HOUR_3,
    "4H": Interval.HOUR_4,
    "D": Interval.DAY_1,
    "W": Interval.WEEK_1,
    "M": Interval.MONTH_1,
}
