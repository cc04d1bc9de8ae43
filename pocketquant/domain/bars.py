"""OHLCV bars as value objects and as columns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# The newest bars TradingView serves of one series (a free account): no history request
# can reach further back. Syncs, repairs and the simulator are bounded by it.
PROVIDER_MAX_BARS = 5_000


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``time`` is the bar's open time in epoch seconds (UTC)."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class InvalidBarsError(ValueError):
    """Bars that must not be stored: unordered, duplicated or not finite."""


@dataclass(slots=True)
class BarColumns:
    """Bars as parallel arrays, oldest first: the layout of chunks and of UDF /history."""

    t: list[int] = field(default_factory=list)
    o: list[float] = field(default_factory=list)
    h: list[float] = field(default_factory=list)
    l: list[float] = field(default_factory=list)  # noqa: E741 - the UDF column name
    c: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    @classmethod
    def from_bars(cls, bars: Iterable[Bar]) -> BarColumns:
        cols = cls()
        for bar in bars:
            cols.append(bar)
        return cols

    def append(self, bar: Bar) -> None:
        self.t.append(bar.time)
        self.o.append(bar.open)
        self.h.append(bar.high)
        self.l.append(bar.low)
        self.c.append(bar.close)
        self.v.append(bar.volume)

    def __len__(self) -> int:
        return len(self.t)

    def __iter__(self) -> Iterator[Bar]:
        return map(Bar, self.t, self.o, self.h, self.l, self.c, self.v)

    def bar(self, i: int) -> Bar:
        return Bar(self.t[i], self.o[i], self.h[i], self.l[i], self.c[i], self.v[i])

    def validate(self) -> None:
        """Raise :class:`InvalidBarsError` unless times strictly increase and every
        price and volume is a finite number with low <= open, close <= high."""
        lengths = {len(self.t), len(self.o), len(self.h), len(self.l), len(self.c), len(self.v)}
        if len(lengths) != 1:
            raise InvalidBarsError(f"column lengths differ: {sorted(lengths)}")
        previous: int | None = None
        for bar in self:
            if previous is not None and bar.time <= previous:
                raise InvalidBarsError(f"bar times not strictly increasing at {bar.time}")
            previous = bar.time
            values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            if not all(math.isfinite(x) for x in values):
                raise InvalidBarsError(f"non-finite value in bar at {bar.time}")
            if bar.volume < 0:
                raise InvalidBarsError(f"negative volume in bar at {bar.time}")
            if not (bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high):
                raise InvalidBarsError(f"inconsistent OHLC in bar at {bar.time}")

    def checked(self) -> CheckedBars:
        """These bars, validated (raises :class:`InvalidBarsError`), as a type that says
        so: whoever receives them need not validate them again. The columns are shared,
        not copied: do not change them afterwards."""
        if isinstance(self, CheckedBars):
            return self
        self.validate()
        return CheckedBars(self.t, self.o, self.h, self.l, self.c, self.v)


@dataclass(slots=True)
class CheckedBars(BarColumns):
    """Bars that passed :meth:`BarColumns.validate` (made by :meth:`BarColumns.checked`)."""
