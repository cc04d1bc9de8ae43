"""Simulated instruments, trading on their real sessions, from one trade tape.

Every instrument trades only within its TradingView session (``session`` and
``timezone`` as ``symbol_resolved`` gives them, weekends and a few holidays off). Its
prices come from one deterministic tape, built top down so that every view of it
agrees:

- a trading day's bar comes from a smooth price path (its open at the session's open,
  its close at the session's close);
- the day is split into its 1h bars (aligned to each session's open, the way
  TradingView aligns them), each hour into its 1m bars, each minute into trades every
  ``TRADE_SPACING`` seconds; every split keeps the parent's open, high, low, close and
  volume exactly;
- every other interval is those bars grouped the way :meth:`Calendar.bar` groups them.

So the history served at any interval equals the live trades aggregated, a 2h bar
equals its two 1h bars, and re-fetching a range gives the same bars; the bar in
progress holds the trades up to ``now`` only, so a later fetch corrects it the way
TradingView does. US stocks also trade before and after their session: those trades
are on the tape (marked ``pre_market`` / ``post_market``) but in no bar.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from pocketquant.domain import Bar, Interval, SymbolKey
from pocketquant.domain.sessions import Calendar

TRADE_SPACING = 5  # seconds between two trades of the tape
_EXTENDED_SPACING = 30  # seconds between two pre- or post-market trades
_DAY_LEVEL, _HOUR_LEVEL, _MINUTE_LEVEL = 1, 2, 3
LISTED = date(2000, 1, 3)  # the oldest trading day of every simulated instrument
_HOUR = 3_600
_MINUTE = 60

# A few real closures: enough that calendars and gap checks meet holidays.
US_HOLIDAYS = frozenset(
    date.fromisoformat(d)
    for d in (
        "2025-11-27", "2025-12-25", "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25",
        "2026-06-19", "2026-07-03", "2026-09-07", "2026-11-26", "2026-12-25", "2027-01-01",
    )
)  # fmt: skip
NSE_HOLIDAYS = frozenset(date.fromisoformat(d) for d in ("2026-01-26", "2026-03-03", "2026-10-02", "2026-11-09"))
CME_HOLIDAYS = frozenset(date.fromisoformat(d) for d in ("2025-12-25", "2026-01-01", "2026-11-26", "2026-12-25"))


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str
    symbol: str
    description: str
    type: str
    currency_code: str
    timezone: str
    base_price: float
    decimals: int
    has_volume: bool = True
    session: str = "24x7"  # TradingView's session string (see domain/sessions.py)
    holidays: frozenset[date] = frozenset()
    extended: str = ""  # pre- and post-market hours (same notation), traded but in no bar

    @property
    def key(self) -> SymbolKey:
        return SymbolKey(self.exchange, self.symbol)

    @property
    def calendar(self) -> Calendar:
        return _calendar(self.session, self.timezone, self.holidays)

    def resolved(self) -> dict[str, object]:
        """The metadata of a ``symbol_resolved`` answer."""
        return {
            "name": self.symbol,
            "full_name": self.key.ticker,
            "pro_name": self.key.ticker,
            "description": self.description,
            "exchange": self.exchange,
            "listed_exchange": self.exchange,
            "type": self.type,
            "currency_code": self.currency_code,
            "timezone": self.timezone,
            "session": self.session,
            "session_holidays": ",".join(sorted(d.strftime("%Y%m%d") for d in self.holidays)),
            "pricescale": 10**self.decimals,
            "minmov": 1,
            "has_intraday": True,
        }


@lru_cache(maxsize=256)
def _calendar(session: str, timezone: str, holidays: frozenset[date]) -> Calendar:
    return Calendar.parse(session, timezone, holidays)


_US = "America/New_York"
# Non-ASCII descriptions on purpose: frame lengths count UTF-16 units, and the
# emoji counts two of them.
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("NASDAQ", "AAPL", "Apple Inc.", "stock", "USD", _US, 190.0, 2, session="0930-1600",
               holidays=US_HOLIDAYS, extended="0400-0930,1600-2000"),
    Instrument("NASDAQ", "MSFT", "Microsoft Corporation", "stock", "USD", _US, 410.0, 2, session="0930-1600",
               holidays=US_HOLIDAYS, extended="0400-0930,1600-2000"),
    Instrument("NYSE", "IBM", "International Business Machines", "stock", "USD", _US, 230.0, 2, session="0930-1600",
               holidays=US_HOLIDAYS),
    Instrument("BINANCE", "BTCUSDT", "Bitcoin / TetherUS", "spot", "USDT", "Etc/UTC", 64000.0, 2),
    Instrument("BINANCE", "ETHUSDT", "Ethereum / TetherUS", "spot", "USDT", "Etc/UTC", 3100.0, 2),
    Instrument("BINANCE", "DOGEUSDT", "Dogecoin 🐕 / TetherUS", "spot", "USDT", "Etc/UTC", 0.16, 5),
    Instrument("NSE", "RELIANCE", "रिलायंस इंडस्ट्रीज़", "stock", "INR", "Asia/Kolkata", 1300.0, 2,
               session="0915-1530", holidays=NSE_HOLIDAYS),
    Instrument("KRX", "005930", "삼성전자", "stock", "KRW", "Asia/Seoul", 71000.0, 0, session="0900-1530"),
    Instrument("TSE", "7203", "トヨタ自動車", "stock", "JPY", "Asia/Tokyo", 2900.0, 1,
               session="0900-1130,1230-1530"),
    Instrument("MOEX", "SBER", "Сбербанк России", "stock", "RUB", "Europe/Moscow", 300.0, 2, session="0950-1850"),
    # FX trades 24 hours from Sunday 17:00 New York to Friday 17:00.
    Instrument("FX", "EURUSD", "Euro / U.S. Dollar", "forex", "USD", _US, 1.08, 5, has_volume=False,
               session="1700-1700:23456"),
    # CME equity futures: Sunday 17:00 to Friday 16:00 Chicago, with a daily break at 16:00.
    Instrument("CME_MINI", "ES1!", "E-mini S&P 500 Futures", "futures", "USD", "America/Chicago", 5200.0, 2,
               session="1700-1600:23456", holidays=CME_HOLIDAYS),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade of the tape: ``volume`` is its own; ``total`` the session's running
    volume after it (what TradingView's quote ``volume`` says)."""

    time: int
    price: float
    volume: float
    total: float
    session: str  # TradingView's current_session: market, pre_market or post_market


@dataclass(frozen=True, slots=True)
class _Node:
    """A bar of the tape's hierarchy with its end (days, hours, minutes, trades)."""

    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def bar(self) -> Bar:
        return Bar(self.start, self.open, self.high, self.low, self.close, self.volume)


def _unit(seed: int, t: int, salt: int) -> float:
    """A deterministic number in [0, 1) for (seed, t, salt): splitmix64."""
    x = (seed * 0x9E3779B97F4A7C15 + t * 0xBF58476D1CE4E5B9 + salt) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x / 2**64


def _merge(nodes: list[_Node], end: int | None = None) -> _Node:
    return _Node(
        nodes[0].start,
        nodes[-1].end if end is None else end,
        nodes[0].open,
        max(n.high for n in nodes),
        min(n.low for n in nodes),
        nodes[-1].close,
        sum(n.volume for n in nodes),
    )


class SimulatedMarket:
    """Instruments and their deterministic tape, trades and bars."""

    def __init__(self, instruments: tuple[Instrument, ...] = DEFAULT_INSTRUMENTS) -> None:
        self._instruments = {i.key: i for i in instruments}

    @property
    def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    def get(self, key: SymbolKey) -> Instrument | None:
        return self._instruments.get(key)

    # -- the tape, top down -----------------------------------------------------------

    @staticmethod
    def price(instrument: Instrument, t: int) -> float:
        """The smooth price path trading days open and close on."""
        seed = zlib.crc32(instrument.key.ticker.encode())
        phase = seed % 1000 / 1000 * 2 * math.pi
        log_move = (
            0.12 * math.sin(2 * math.pi * t / (86_400 * 41) + phase)
            + 0.04 * math.sin(2 * math.pi * t / (86_400 * 3.7) + 2 * phase)
            + 0.006 * math.sin(2 * math.pi * t / 5_400 + 3 * phase)
        )
        return round(instrument.base_price * math.exp(log_move), instrument.decimals)

    def _until(self, instrument: Instrument, node: _Node, level: int, now: int) -> _Node | None:
        """``node`` (a day, hour, minute: ``level`` 1, 2, 3) as it stands at ``now``:
        whole if it has ended, its trades up to ``now`` if it is in progress, None if it
        has not begun."""
        if node.end <= now:
            return node
        if node.start > now:
            return None
        if level == _DAY_LEVEL:
            children = _hours(instrument, node)
        elif level == _HOUR_LEVEL:
            children = _minutes(instrument, node)
        else:
            children = tuple(t for t in _trades(instrument, node) if t.start <= now)
            return _merge(list(children), node.end) if children else None
        parts = [p for c in children if (p := self._until(instrument, c, level + 1, now)) is not None]
        return _merge(parts, node.end) if parts else None

    def _day_nodes(self, instrument: Instrument, level: int, day: _Node, now: int) -> list[_Node]:
        """The day's hours or minutes (``level``) up to ``now``."""
        hours = [h for h in _hours(instrument, day) if h.start <= now]
        if level == _HOUR_LEVEL:
            return [n for h in hours if (n := self._until(instrument, h, _HOUR_LEVEL, now)) is not None]
        return [
            n
            for h in hours
            for m in _minutes(instrument, h)
            if m.start <= now and (n := self._until(instrument, m, _MINUTE_LEVEL, now)) is not None
        ]

    # -- bars ---------------------------------------------------------------------------

    def bars_of_day(self, instrument: Instrument, interval: Interval, day: date, now: int) -> list[Bar]:
        """Trading day ``day``'s bars of an intraday ``interval`` up to ``now``."""
        node = _day(instrument, day)
        if node is None or node.start > now:
            return []
        if interval is Interval.MINUTE_1:
            return [n.bar() for n in self._day_nodes(instrument, _MINUTE_LEVEL, node, now)]
        level = _HOUR_LEVEL if interval.nominal_seconds % _HOUR == 0 else _MINUTE_LEVEL
        return [b.bar() for b in _group(instrument.calendar, interval, self._day_nodes(instrument, level, node, now))]

    def _days_until(self, instrument: Instrument, now: int) -> Iterator[_Node]:
        """Trading days' bars as they stand at ``now``, newest first."""
        for day in _days_back(datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)):
            node = _day(instrument, day)
            if node is not None and node.start <= now:
                part = self._until(instrument, node, _DAY_LEVEL, now)
                if part is not None:
                    yield part

    def history(self, instrument: Instrument, interval: Interval, n_bars: int, now: int) -> list[Bar]:
        """The newest ``n_bars`` bars up to the one in progress at ``now``, oldest first
        (fewer if the instrument was listed later)."""
        calendar = instrument.calendar
        if interval.is_intraday:
            bars: list[Bar] = []
            for day in _days_back(datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)):
                bars[:0] = self.bars_of_day(instrument, interval, day, now)
                if len(bars) >= n_bars:
                    break
            return bars[-n_bars:]
        nodes: list[_Node] = []
        periods: set[tuple[int, int] | None] = set()
        for node in self._days_until(instrument, now):
            periods.add(calendar.bar(interval, node.start))
            if len(periods) > n_bars:
                break
            nodes.append(node)
        nodes.reverse()
        if interval is Interval.DAY_1:
            return [n.bar() for n in nodes]
        return [b.bar() for b in _group(calendar, interval, nodes)][-n_bars:]

    def bars_between(self, instrument: Instrument, interval: Interval, start: int, end: int, now: int) -> list[Bar]:
        """The bars of ``interval`` opening in [start, end), as they stand at ``now``."""
        if interval.is_intraday:
            bars = []
            day = datetime.fromtimestamp(start, UTC).date() - timedelta(days=1)
            last = datetime.fromtimestamp(min(end, now), UTC).date() + timedelta(days=1)
            while day <= last:
                bars += self.bars_of_day(instrument, interval, day, now)
                day += timedelta(days=1)
        else:
            days = (datetime.fromtimestamp(now, UTC) - datetime.fromtimestamp(start, UTC)).days + 40
            bars = self.history(instrument, interval, max(days, 1), now)
        return [b for b in bars if start <= b.time < end]

    # -- trades and quotes --------------------------------------------------------------

    def trades(self, instrument: Instrument, after: int, until: int) -> Iterator[Trade]:
        """The tape's trades at times in (after, until], in order: regular-session
        trades every ``TRADE_SPACING`` seconds, extended-hours ones every 30 s."""
        calendar = instrument.calendar
        t = after + 1
        while t <= until:
            minute = t - t % _MINUTE
            if calendar.session_at(t) is not None:
                for trade in self._minute_trades(instrument, minute):
                    if after < trade.time <= until:
                        yield trade
                t = minute + _MINUTE
                continue
            session = self.session_name(instrument, t)
            if session != "out_of_session":
                step = t + (-t % _EXTENDED_SPACING)
                if step > until:
                    return
                if self.session_name(instrument, step) != session:
                    t = step  # the session changed on the way: look again from there
                    continue
                yield Trade(step, self.price(instrument, step), 0.0, self._total(instrument, step), session)
                t = step + 1
                continue
            t = minute + _MINUTE

    def _minute_trades(self, instrument: Instrument, minute_start: int) -> list[Trade]:
        """The trades of the regular-session minute opening at ``minute_start``, with the
        session's running volume."""
        day = instrument.calendar.trading_day(minute_start)
        node = None if day is None else _day(instrument, day)
        if node is None:
            return []
        total = 0.0
        for hour in _hours(instrument, node):
            if hour.end <= minute_start:
                total += hour.volume
                continue
            for minute in _minutes(instrument, hour):
                if minute.start < minute_start:
                    total += minute.volume
                    continue
                trades = []
                for trade in _trades(instrument, minute):
                    total += trade.volume
                    trades.append(Trade(trade.start, trade.close, trade.volume, total, "market"))
                return trades
        return []

    def _total(self, instrument: Instrument, t: int) -> float:
        """The running volume of the last regular session that opened at or before ``t``."""
        return next((n.volume for n in self._days_until(instrument, t)), 0.0)

    def last_trade(self, instrument: Instrument, now: int) -> Trade:
        """The last regular-session trade at or before ``now`` (what a quote shows)."""
        if instrument.calendar.session_at(now) is not None:
            done = [t for t in self._minute_trades(instrument, now - now % _MINUTE) if t.time <= now]
            if done:
                return done[-1]
        for node in self._days_until(instrument, now):
            last = node.end - TRADE_SPACING if node.end <= now else now - now % TRADE_SPACING
            return Trade(last, node.close, 0.0, node.volume, "market")
        return Trade(now, self.price(instrument, now), 0.0, 0.0, "market")

    def session_name(self, instrument: Instrument, t: int) -> str:
        """TradingView's ``current_session`` at ``t``."""
        if instrument.calendar.session_at(t) is not None:
            return "market"
        if instrument.extended:
            extended = _calendar(instrument.extended, instrument.timezone, instrument.holidays)
            if extended.session_at(t) is not None:
                hour = datetime.fromtimestamp(t, ZoneInfo(instrument.timezone)).hour
                return "pre_market" if hour < 12 else "post_market"
        return "out_of_session"


def _days_back(newest: date) -> Iterator[date]:
    day = newest
    while day >= LISTED:
        yield day
        day -= timedelta(days=1)


def _group(calendar: Calendar, interval: Interval, nodes: list[_Node]) -> list[_Node]:
    """Nodes (in time order) grouped into bars of ``interval`` as ``calendar`` aligns them."""
    groups: list[list[_Node]] = []
    bounds: list[tuple[int, int]] = []
    for node in nodes:
        bar = calendar.bar(interval, node.start)
        if bar is None:
            continue
        if bounds and bounds[-1] == bar:
            groups[-1].append(node)
        else:
            bounds.append(bar)
            groups.append([node])
    return [_merge(group, bar[1]) for group, bar in zip(groups, bounds, strict=True)]


# -- the splits (cached: a day's hours, an hour's minutes, a minute's trades) ---------------


def forget_splits() -> None:
    """Drop the cached splits (a process that made many tapes and needs them no more:
    5,000 bars of 50 symbols keep ~100,000 nodes, which the garbage collector's full
    passes would otherwise walk)."""
    for cached in (_day, _hours, _minutes, _trades):
        cached.cache_clear()


def _seed(instrument: Instrument, level: int) -> int:
    return zlib.crc32(instrument.key.ticker.encode()) ^ (level * 0x5BD1E995)


@lru_cache(maxsize=65_536)
def _day(instrument: Instrument, day: date) -> _Node | None:
    if day < LISTED:
        return None
    spans = instrument.calendar.sessions(day)
    if not spans:
        return None
    start, end = spans[0][0], spans[-1][1]
    seed = _seed(instrument, 1)
    open_ = SimulatedMarket.price(instrument, start)
    close = SimulatedMarket.price(instrument, end)
    scale = 10**instrument.decimals
    high = math.ceil(max(open_, close) * (1 + 0.002 + 0.012 * _unit(seed, start, 2)) * scale) / scale
    low = math.floor(min(open_, close) * (1 - 0.002 - 0.012 * _unit(seed, start, 3)) * scale) / scale
    minutes = sum(e - s for s, e in spans) // _MINUTE
    volume = float(round((500 + 9500 * _unit(seed, start, 4)) * minutes)) if instrument.has_volume else 0.0
    return _Node(start, end, open_, high, low, close, volume)


@lru_cache(maxsize=65_536)
def _hours(instrument: Instrument, day: _Node) -> tuple[_Node, ...]:
    spans = instrument.calendar.sessions(instrument.calendar.trading_day(day.start) or date.min)
    bounds = [(s, min(s + _HOUR, e)) for open_, e in spans for s in range(open_, e, _HOUR)]
    return _split(instrument, day, bounds, 2)


@lru_cache(maxsize=65_536)
def _minutes(instrument: Instrument, hour: _Node) -> tuple[_Node, ...]:
    return _split(instrument, hour, [(s, s + _MINUTE) for s in range(hour.start, hour.end, _MINUTE)], 3)


@lru_cache(maxsize=65_536)
def _trades(instrument: Instrument, minute: _Node) -> tuple[_Node, ...]:
    """A minute's trades: the first at its open, the last at its close, one at its high
    and one at its low in between."""
    starts = range(minute.start, minute.end, TRADE_SPACING)
    k = len(starts)
    seed = _seed(instrument, 4)
    u = [_unit(seed, minute.start, i) for i in range(k + 2)]
    at_high = 1 + int(u[k] * (k - 2))
    at_low = 1 + (at_high + int(u[k + 1] * (k - 3))) % (k - 2)
    scale = 10**instrument.decimals
    prices = []
    for i in range(k):
        if i == 0:
            price = minute.open
        elif i == k - 1:
            price = minute.close
        elif i == at_high:
            price = minute.high
        elif i == at_low:
            price = minute.low
        else:
            price = round((minute.low + (minute.high - minute.low) * u[i]) * scale) / scale
        prices.append(price)
    volumes = _split_volume(minute.volume, [1.0 + u[(i + 3) % k] for i in range(k)])
    return tuple(_Node(s, s + TRADE_SPACING, p, p, p, p, v) for s, p, v in zip(starts, prices, volumes, strict=True))


def _split(instrument: Instrument, parent: _Node, bounds: list[tuple[int, int]], level: int) -> tuple[_Node, ...]:
    """``parent`` cut into bars over ``bounds`` whose merge is ``parent`` exactly."""
    k = len(bounds)
    if k == 1:
        return (_Node(bounds[0][0], bounds[0][1], parent.open, parent.high, parent.low, parent.close, parent.volume),)
    seed = _seed(instrument, level)
    scale = 10**instrument.decimals
    lo, hi = parent.low, parent.high
    span = hi - lo

    def u(i: int, salt: int) -> float:
        return _unit(seed, bounds[i][0], salt)

    # A path from the open to the close: child i opens at points[i] and closes at points[i + 1].
    points = [parent.open]
    for i in range(1, k):
        drift = parent.open + (parent.close - parent.open) * i / k
        value = min(hi, max(lo, drift + span * 0.6 * (u(i, 5) - 0.5)))
        points.append(round(value * scale) / scale)
    points.append(parent.close)
    at_high = int(u(0, 6) * k)
    at_low = (at_high + 1 + int(u(0, 7) * (k - 1))) % k
    volumes = _split_volume(parent.volume, [(e - s) * (0.5 + u(i, 8)) for i, (s, e) in enumerate(bounds)])
    children = []
    for i, (s, e) in enumerate(bounds):
        o, c = points[i], points[i + 1]
        top = max(o, c)
        bottom = min(o, c)
        high = hi if i == at_high else min(hi, math.ceil((top + (hi - top) * 0.3 * u(i, 9)) * scale) / scale)
        low = lo if i == at_low else max(lo, math.floor((bottom - (bottom - lo) * 0.3 * u(i, 10)) * scale) / scale)
        children.append(_Node(s, e, o, max(high, top), min(low, bottom), c, volumes[i]))
    return tuple(children)


def _split_volume(volume: float, weights: list[float]) -> list[float]:
    """Whole-number parts of ``volume`` in proportion to ``weights``, summing to it exactly."""
    total = int(volume)
    weight = sum(weights)
    parts = [int(total * w / weight) for w in weights]
    for i in range(total - sum(parts)):
        parts[i % len(parts)] += 1
    return [float(p) for p in parts]
