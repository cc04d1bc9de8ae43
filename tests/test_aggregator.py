"""The aggregator against independent computations, bar by bar, for every interval."""

import random
from dataclasses import dataclass, field

import pandas as pd
import pytest

from pocketquant.domain import Interval, SymbolKey
from pocketquant.domain.aggregator import DEFAULT_LIVE_INTERVALS, BarAggregator, LiveBar

KEY = SymbolKey("BINANCE", "BTCUSDT")
START = 1_795_185_450  # 2026-11-20 14:37:30 UTC: mid-bar for every default interval


@dataclass
class Stream:
    times: list[int] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)


def random_stream(n: int, seed: int, late_every: int = 0) -> Stream:
    """Ticks over ~2 days: a random walk, a running volume with session resets, and
    (optionally) some ticks stamped minutes in the past."""
    rng = random.Random(seed)
    s = Stream()
    t, price, total = START, 100.0, 5_000.0
    for i in range(n):
        t += rng.choice((0, 0, 1, 2, 3, 7, 20, 45, 130))
        price = round(max(1.0, price + rng.gauss(0, 0.25)), 2)
        total = rng.uniform(0, 50) if rng.random() < 0.002 else total + rng.randint(0, 40)
        stamp = t - rng.randint(61, 4_000) if late_every and i % late_every == late_every - 1 else t
        s.times.append(stamp)
        s.prices.append(price)
        s.totals.append(total)
    return s


def run(stream: Stream) -> tuple[BarAggregator, list[LiveBar]]:
    closed: list[LiveBar] = []
    agg = BarAggregator(DEFAULT_LIVE_INTERVALS, closed.append)
    for t, p, v in zip(stream.times, stream.prices, stream.totals, strict=True):
        agg.on_tick(KEY, t, p, v)
    agg.on_time(max(stream.times) + 86_400 * 2)  # the clock closes the last bars
    return agg, closed


def deltas(totals: list[float]) -> list[float]:
    out, previous = [], None
    for v in totals:
        out.append(0.0 if previous is None else (v - previous if v >= previous else v))
        previous = v
    return out


PANDAS_RULE = {
    Interval.MINUTE_1: "1min",
    Interval.MINUTE_5: "5min",
    Interval.MINUTE_15: "15min",
    Interval.HOUR_1: "1h",
    Interval.HOUR_4: "4h",
    Interval.DAY_1: "1D",
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_order_stream_matches_pandas_resample(seed: int) -> None:
    stream = random_stream(40_000, seed)
    agg, closed = run(stream)
    frame = pd.DataFrame(
        {"price": stream.prices, "volume": deltas(stream.totals)},
        index=pd.to_datetime(stream.times, unit="s"),  # naive UTC: daily bins at 00:00 UTC
    )
    for interval in DEFAULT_LIVE_INTERVALS:
        grouped = frame.resample(PANDAS_RULE[interval], origin="epoch")
        expected = pd.DataFrame(
            {
                "open": grouped["price"].first(),
                "high": grouped["price"].max(),
                "low": grouped["price"].min(),
                "close": grouped["price"].last(),
                "volume": grouped["volume"].sum(),
                "ticks": grouped["price"].count(),
            }
        )
        expected = expected[expected["ticks"] > 0]
        bars = [b for b in closed if b.interval is interval]
        assert len(bars) == len(expected) > 1
        for bar, (stamp, row) in zip(bars, expected.iterrows(), strict=True):
            assert bar.start == int(pd.Timestamp(stamp).timestamp())  # type: ignore[arg-type]
            assert (bar.open, bar.high, bar.low, bar.close, bar.ticks) == (
                row.open,
                row.high,
                row.low,
                row.close,
                row.ticks,
            )
            assert bar.volume == pytest.approx(row.volume)
            assert bar.closed
        assert [b.partial for b in bars] == [True] + [False] * (len(bars) - 1)
    assert agg.late_ticks == 0


def reference(
    stream: Stream, interval: Interval
) -> tuple[list[tuple[int, float, float, float, float, float, int]], int]:
    """A plain loop implementing the stated late-tick policy: floor every tick."""
    bars: list[list[float]] = []
    late = 0
    carry = 0.0
    current_start: int | None = None
    for t, p, d in zip(stream.times, stream.prices, deltas(stream.totals), strict=True):
        start = interval.floor(t)
        if current_start is not None and start < current_start:
            late += 1
            bars[-1][5] += d
        elif start == current_start:
            bar = bars[-1]
            bar[2], bar[3], bar[4] = max(bar[2], p), min(bar[3], p), p
            bar[5] += d
            bar[6] += 1
        else:
            bars.append([start, p, p, p, p, d + carry, 1])
            carry = 0.0
            current_start = start
    return [(int(b[0]), b[1], b[2], b[3], b[4], b[5], int(b[6])) for b in bars], late


@pytest.mark.parametrize("seed", [4, 5])
def test_late_ticks_follow_the_policy_and_are_counted(seed: int) -> None:
    stream = random_stream(30_000, seed, late_every=97)
    agg, closed = run(stream)
    total_late = 0
    for interval in DEFAULT_LIVE_INTERVALS:
        want, late = reference(stream, interval)
        got = [(b.start, b.open, b.high, b.low, b.close, b.volume, b.ticks) for b in closed if b.interval is interval]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g[:5] == w[:5]
            assert g[6] == w[6]
            assert g[5] == pytest.approx(w[5])
        assert agg.late_counts().get((KEY, interval), 0) == late
        total_late += late
    assert agg.late_ticks == total_late > 0
    # Volume is never lost: every interval's bars add up to the same session volume.
    assert sum(b.volume for b in closed if b.interval is Interval.MINUTE_1) == pytest.approx(sum(deltas(stream.totals)))


def test_quiet_symbol_closes_on_the_clock() -> None:
    closed: list[LiveBar] = []
    agg = BarAggregator([Interval.MINUTE_1, Interval.HOUR_1], closed.append)
    agg.on_tick(KEY, START, 10.0, 100.0)  # 14:37:30
    agg.on_time(START + 29)  # 14:37:59: still open
    assert closed == []
    assert [b.interval for b in agg.current(KEY)] == [Interval.MINUTE_1, Interval.HOUR_1]
    agg.on_time(START + 30)  # 14:38:00 exactly: the minute bar closes without a tick
    assert [(b.interval, b.start, b.closed, b.partial) for b in closed] == [(Interval.MINUTE_1, START - 30, True, True)]
    agg.on_tick(KEY, START + 40, 11.0, 130.0)
    agg.on_time(START + 90)
    assert [(b.start, b.open, b.close, b.volume, b.partial) for b in closed[1:]] == [
        (START + 30, 11.0, 11.0, 30.0, False)
    ]
    assert [b.interval for b in agg.current(KEY)] == [Interval.HOUR_1]


def test_session_reset_is_not_negative_volume() -> None:
    closed: list[LiveBar] = []
    agg = BarAggregator([Interval.MINUTE_1], closed.append)
    for t, total in [(START, 1_000.0), (START + 1, 1_500.0), (START + 2, 20.0), (START + 3, 25.0)]:
        agg.on_tick(KEY, t, 5.0, total)
    (bar,) = agg.current(KEY)
    assert bar.volume == 500.0 + 20.0 + 5.0


def test_close_delay_waits_for_stragglers() -> None:
    closed: list[LiveBar] = []
    agg = BarAggregator([Interval.MINUTE_1], closed.append, close_delay=2.0)
    agg.on_tick(KEY, START, 10.0)
    agg.on_time(START + 31)
    agg.on_tick(KEY, START + 29, 12.0)  # stamped in the old minute, arrived 1 s after it ended
    agg.on_time(START + 32)
    assert [(b.high, b.close, b.ticks) for b in closed] == [(12.0, 12.0, 2)]
    assert agg.late_ticks == 0


def test_symbols_are_independent_and_forgettable() -> None:
    other = SymbolKey("NASDAQ", "AAPL")
    agg = BarAggregator([Interval.MINUTE_1])
    agg.on_tick(KEY, START, 1.0)
    agg.on_tick(other, START, 2.0)
    agg.forget(KEY)
    assert list(agg.current(KEY)) == []
    assert [b.open for b in agg.current(other)] == [2.0]


def test_bars_are_complete_only_when_received_from_their_start() -> None:
    key = SymbolKey("NASDAQ", "AAPL")
    closed: list[LiveBar] = []
    agg = BarAggregator([Interval.MINUTE_1], closed.append)
    minute = 1_795_185_420  # 14:37:00
    # Connected at 14:37:20; the snapshot's lp_time is from 14:35: state, not a trade.
    agg.receiving(key, minute + 20, total_volume=1_000.0)
    agg.on_tick(key, minute + 30, 10.0, 1_010.0)
    agg.on_tick(key, minute + 70, 11.0, 1_030.0)  # 14:38 began while receiving
    agg.on_tick(key, minute + 100, 12.0, 1_031.0)
    agg.interrupted()  # the connection drops at 14:38:45 ...
    agg.receiving(key, minute + 110, total_volume=1_050.0)  # ... and is back at 14:38:50
    agg.on_tick(key, minute + 115, 13.0, 1_052.0)
    agg.on_tick(key, minute + 125, 14.0, 1_060.0)  # 14:39, received from its start
    agg.on_time(minute + 181)
    assert [(b.start - minute, b.partial, b.volume, b.ticks) for b in closed] == [
        (0, True, 10.0, 1),  # began before the connection
        (60, True, 23.0, 3),  # interrupted: the trades while disconnected are missing
        (120, False, 8.0, 1),
    ]
