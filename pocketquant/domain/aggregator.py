"""Ticks to bars at several intervals, for many symbols. Pure: no I/O, no clock.

Policy, stated once:

- Bars align to UTC boundaries (``Interval.floor``), or, for a symbol given a session
  calendar (``set_calendar``), to its sessions the way TradingView aligns them
  (``Calendar.bar``: 1h bars of a US stock at 09:30, 10:30 New York ...). A bar opens
  with its first tick.
- A tick of a symbol with a calendar that falls outside its sessions (pre- or
  post-market, a holiday) goes into no bar: regular-session bars hold regular-session
  trades only, as TradingView's do. It is counted (``outside_session_ticks``), and its
  volume is not carried into the next session's bars.
- Per-tick volume is the increase of TradingView's running session ``volume``. The first
  tick of a symbol has no previous total, so it adds nothing; a total lower than the
  previous one starts a new session, and the new total is the volume since then (never
  a negative volume).
- A bar closes when its interval has ended: at the first tick past its end, or when the
  injected clock (``on_time``) passes its end plus ``close_delay``, whichever comes
  first, so a quiet symbol's bar still closes on time. Closed bars go to the handler.
- A bar is complete only if the stream was receiving the symbol's trades from the bar's
  start to its end. The stream says when it starts receiving a symbol (``receiving``:
  on connecting, reconnecting, subscribing) and when it stops (``interrupted``: a lost
  connection). A bar that began before the stream was receiving, or was in progress
  when reception was interrupted, is ``partial``: its open, high, low and volume may miss
  trades. Without a ``receiving`` call, a symbol is received from its first tick on, so
  its first bar at each interval is partial.
- A tick older than the current (or last closed) bar of an interval is late for that
  interval: closed bars are final, so its price is not applied there; it is counted
  (``late_ticks``, per symbol and interval) and its volume still goes into the current
  bar (or the next one, between bars), so session volume is never lost. A tick is late for some intervals and on time
  for longer ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pocketquant.domain.intervals import Interval
from pocketquant.domain.sessions import Calendar
from pocketquant.domain.symbols import SymbolKey

DEFAULT_LIVE_INTERVALS = (
    Interval.MINUTE_1,
    Interval.MINUTE_5,
    Interval.MINUTE_15,
    Interval.HOUR_1,
    Interval.HOUR_4,
    Interval.DAY_1,
)


@dataclass(frozen=True, slots=True)
class LiveBar:
    """A bar of a live series: in progress (``closed=False``) or final."""

    key: SymbolKey
    interval: Interval
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    ticks: int
    partial: bool
    closed: bool


class _Slot:
    """The current bar of one symbol at one interval. ``end`` is where it closes;
    between bars ``start == end`` (the end of the last closed bar) and ``ticks == 0``."""

    __slots__ = (
        "carry",
        "close",
        "end",
        "high",
        "interval",
        "late",
        "low",
        "open",
        "start",
        "ticks",
        "volume",
    )

    def __init__(self, interval: Interval) -> None:
        self.interval = interval
        self.start = float("-inf")
        self.end = float("-inf")
        self.open = self.high = self.low = self.close = 0.0
        self.volume = 0.0
        self.ticks = 0
        self.late = 0
        self.carry = 0.0  # volume of late ticks that arrived between bars


class _Symbol:
    __slots__ = ("calendar", "hi", "key", "lo", "since", "slots", "total")

    def __init__(self, key: SymbolKey, intervals: Iterable[Interval], since: float | None) -> None:
        self.key = key
        self.slots = [_Slot(i) for i in intervals]
        self.total: float | None = None  # the session's running volume, last seen
        # Trades are received from this time on: bars that began earlier are partial.
        # None until the first tick or a `receiving` call says.
        self.since = since
        self.calendar: Calendar | None = None  # None: UTC alignment
        # Every slot has an open bar containing [lo, hi): a tick in there needs no
        # per-interval bound checks (the common case).
        self.lo = float("inf")
        self.hi = float("-inf")

    def rebound(self) -> None:
        if all(slot.ticks for slot in self.slots):
            self.lo = max(slot.start for slot in self.slots)
            self.hi = min(slot.end for slot in self.slots)
        else:
            self.lo, self.hi = float("inf"), float("-inf")


class BarAggregator:
    def __init__(
        self,
        intervals: Iterable[Interval] = DEFAULT_LIVE_INTERVALS,
        on_close: Callable[[LiveBar], None] | None = None,
        *,
        close_delay: float = 0.0,
    ) -> None:
        self.intervals = tuple(sorted(set(intervals), key=lambda i: i.nominal_seconds))
        if not self.intervals:
            raise ValueError("at least one interval is needed")
        self._on_close = on_close or (lambda bar: None)
        self._close_delay = close_delay
        self._symbols: dict[SymbolKey, _Symbol] = {}
        self.ticks = 0
        self.late_ticks = 0
        self.outside_session_ticks = 0

    def on_tick(self, key: SymbolKey, t: float, price: float, total_volume: float | None = None) -> None:
        """Apply one trade: ``t`` epoch seconds, ``total_volume`` the session's running
        volume after it (None when the instrument has no volume)."""
        sym = self._symbols.get(key)
        if sym is None:
            sym = self._symbols[key] = _Symbol(key, self.intervals, t)
        elif sym.since is None:
            sym.since = t
        delta = 0.0
        if total_volume is not None:
            previous = sym.total
            if previous is not None:
                delta = total_volume - previous if total_volume >= previous else total_volume
            sym.total = total_volume
        self.ticks += 1
        # The OHLC update below is written out twice on purpose (here and in the slow
        # path): a method call per interval would cost a quarter of the throughput.
        if sym.lo <= t < sym.hi:
            for slot in sym.slots:
                if price > slot.high:
                    slot.high = price
                elif price < slot.low:
                    slot.low = price
                slot.close = price
                slot.volume += delta
                slot.ticks += 1
            return
        calendar = sym.calendar
        if calendar is not None and not calendar.always and calendar.session_at(int(t)) is None:
            self.outside_session_ticks += 1
            return
        for slot in sym.slots:
            if t >= slot.end:
                self._roll(sym, slot, t, price, delta)
            elif t >= slot.start:
                if price > slot.high:
                    slot.high = price
                elif price < slot.low:
                    slot.low = price
                slot.close = price
                slot.volume += delta
                slot.ticks += 1
            else:
                slot.late += 1
                self.late_ticks += 1
                if slot.ticks:
                    slot.volume += delta
                else:
                    slot.carry += delta
        sym.rebound()

    def _roll(self, sym: _Symbol, slot: _Slot, t: float, price: float, delta: float) -> None:
        if slot.ticks:
            self._emit_close(sym, slot)
        bar = sym.calendar.bar(slot.interval, int(t)) if sym.calendar is not None else None
        if bar is None:  # UTC alignment (within a session, a calendar always has a bar)
            start = slot.interval.floor(int(t))
            bar = (start, slot.interval.next_start(start))
        slot.start, slot.end = bar
        slot.open = slot.high = slot.low = slot.close = price
        slot.volume = delta + slot.carry
        slot.carry = 0.0
        slot.ticks = 1

    def _emit_close(self, sym: _Symbol, slot: _Slot) -> None:
        bar = self._snapshot(sym, slot, closed=True)
        slot.start = slot.end
        slot.ticks = 0
        self._on_close(bar)

    def on_time(self, now: float) -> None:
        """Close every bar whose interval ended before ``now - close_delay``."""
        cutoff = now - self._close_delay
        for sym in self._symbols.values():
            if sym.hi > cutoff:
                continue  # nothing of this symbol ends before the cutoff
            for slot in sym.slots:
                if slot.ticks and slot.end <= cutoff:
                    self._emit_close(sym, slot)
            sym.rebound()

    @staticmethod
    def _snapshot(sym: _Symbol, slot: _Slot, *, closed: bool) -> LiveBar:
        return LiveBar(
            sym.key,
            slot.interval,
            int(slot.start),
            slot.open,
            slot.high,
            slot.low,
            slot.close,
            slot.volume,
            slot.ticks,
            sym.since is None or slot.start < sym.since,
            closed,
        )

    def current(self, key: SymbolKey) -> Iterator[LiveBar]:
        """The bars in progress of ``key``, shortest interval first."""
        sym = self._symbols.get(key)
        if sym is not None:
            for slot in sym.slots:
                if slot.ticks:
                    yield self._snapshot(sym, slot, closed=False)

    def receiving(self, key: SymbolKey, since: float, total_volume: float | None = None) -> None:
        """The stream receives every trade of ``key`` from ``since`` on (it has just
        connected or subscribed); ``total_volume`` is the session's running volume as of
        then (the snapshot's, which is state, not a trade): later ticks' volume counts
        from it. Bars that began before ``since`` stay or become partial."""
        sym = self._symbols.get(key)
        if sym is None:
            sym = self._symbols[key] = _Symbol(key, self.intervals, since)
        elif sym.since is None or sym.since == float("inf") or since > sym.since:
            sym.since = since
        if total_volume is not None:
            sym.total = total_volume

    def set_calendar(self, key: SymbolKey, calendar: Calendar | None) -> None:
        """Align ``key``'s bars to ``calendar``'s sessions from its next bar on (None:
        UTC). Bars in progress keep their bounds."""
        sym = self._symbols.get(key)
        if sym is None:
            sym = self._symbols[key] = _Symbol(key, self.intervals, None)
        sym.calendar = calendar

    def interrupted(self) -> None:
        """The stream stopped receiving (its connection was lost): every bar in progress
        may miss trades now, so each is partial; ``receiving`` says when it resumes."""
        for sym in self._symbols.values():
            sym.since = float("inf")
            sym.total = None  # trades (and volume) were missed: the next total is a new baseline

    def late_counts(self) -> dict[tuple[SymbolKey, Interval], int]:
        return {(s.key, slot.interval): slot.late for s in self._symbols.values() for slot in s.slots if slot.late}

    def forget(self, key: SymbolKey) -> None:
        """Drop a symbol (unwatched). Its bars in progress are discarded, not closed."""
        self._symbols.pop(key, None)
