"""Session calendars: bars aligned the way TradingView aligns them, in the exchange's time
zone, on both sides of a daylight saving switch. Expected times are written out by hand
from the conventions in TradingView's own answers (US stocks' 1h bars at 09:30, 10:30 New
York; NSE daily bars at 09:15 Kolkata; CME futures opening the evening before)."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from pocketquant.domain import Interval
from pocketquant.domain.gaps import Gap, bars_since, expected_bars, find_gaps
from pocketquant.domain.sessions import Calendar, InvalidSessionError

NASDAQ = Calendar.parse("0930-1600", "America/New_York", frozenset({date(2026, 11, 26)}))  # Thanksgiving
NSE = Calendar.parse("0915-1530", "Asia/Kolkata")
CME = Calendar.parse("1700-1600:23456", "America/Chicago")  # Sunday evening .. Friday
CRYPTO = Calendar.parse("24x7", "Etc/UTC")
TOKYO = Calendar.parse("0900-1130,1230-1500", "Asia/Tokyo")


def at(zone: str, text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp())


def ny(text: str) -> int:
    return at("America/New_York", text)


@pytest.mark.parametrize(
    ("calendar", "interval", "moment", "start", "end"),
    [
        # US stock, winter (EST, UTC-5) and summer (EDT, UTC-4): the same local times.
        (NASDAQ, Interval.HOUR_1, ny("2026-11-20 09:31"), ny("2026-11-20 09:30"), ny("2026-11-20 10:30")),
        (NASDAQ, Interval.HOUR_1, ny("2026-11-20 15:45"), ny("2026-11-20 15:30"), ny("2026-11-20 16:00")),  # shorter
        (NASDAQ, Interval.HOUR_1, ny("2026-07-15 11:00"), ny("2026-07-15 10:30"), ny("2026-07-15 11:30")),
        (NASDAQ, Interval.HOUR_4, ny("2026-11-20 14:00"), ny("2026-11-20 13:30"), ny("2026-11-20 16:00")),
        (NASDAQ, Interval.MINUTE_15, ny("2026-11-20 09:44"), ny("2026-11-20 09:30"), ny("2026-11-20 09:45")),
        (NASDAQ, Interval.DAY_1, ny("2026-11-20 12:00"), ny("2026-11-20 09:30"), ny("2026-11-20 16:00")),
        (NASDAQ, Interval.DAY_1, ny("2026-03-09 12:00"), ny("2026-03-09 09:30"), ny("2026-03-09 16:00")),  # after DST
        (NASDAQ, Interval.WEEK_1, ny("2026-11-27 10:00"), ny("2026-11-23 09:30"), ny("2026-11-27 16:00")),
        # NSE: daily bars at the session open, 09:15 Kolkata.
        (NSE, Interval.DAY_1, at("Asia/Kolkata", "2026-11-20 13:00"), at("Asia/Kolkata", "2026-11-20 09:15"),
         at("Asia/Kolkata", "2026-11-20 15:30")),
        (NSE, Interval.HOUR_1, at("Asia/Kolkata", "2026-11-20 10:20"), at("Asia/Kolkata", "2026-11-20 10:15"),
         at("Asia/Kolkata", "2026-11-20 11:15")),
        # CME: the Monday session opens Sunday 17:00 Chicago; its daily bar is Monday's.
        (CME, Interval.HOUR_1, at("America/Chicago", "2026-11-22 17:30"), at("America/Chicago", "2026-11-22 17:00"),
         at("America/Chicago", "2026-11-22 18:00")),
        (CME, Interval.DAY_1, at("America/Chicago", "2026-11-22 20:00"), at("America/Chicago", "2026-11-22 17:00"),
         at("America/Chicago", "2026-11-23 16:00")),
        (CME, Interval.DAY_1, at("America/Chicago", "2026-11-23 09:00"), at("America/Chicago", "2026-11-22 17:00"),
         at("America/Chicago", "2026-11-23 16:00")),
        # Tokyo's lunch break: the afternoon session aligns to its own open.
        (TOKYO, Interval.HOUR_1, at("Asia/Tokyo", "2026-11-20 13:00"), at("Asia/Tokyo", "2026-11-20 12:30"),
         at("Asia/Tokyo", "2026-11-20 13:30")),
        (TOKYO, Interval.HOUR_1, at("Asia/Tokyo", "2026-11-20 11:20"), at("Asia/Tokyo", "2026-11-20 11:00"),
         at("Asia/Tokyo", "2026-11-20 11:30")),
        # 24x7: UTC alignment, as before.
        (CRYPTO, Interval.HOUR_4, at("UTC", "2026-11-21 14:37"), at("UTC", "2026-11-21 12:00"), at("UTC", "2026-11-21 16:00")),
        (CRYPTO, Interval.DAY_1, at("UTC", "2026-11-22 14:37"), at("UTC", "2026-11-22 00:00"), at("UTC", "2026-11-23 00:00")),
    ],
)  # fmt: skip
def test_bars_align_to_the_session(calendar: Calendar, interval: Interval, moment: int, start: int, end: int) -> None:
    assert calendar.bar(interval, moment) == (start, end)


def test_the_same_local_bar_moves_in_utc_across_a_dst_switch() -> None:
    before = NASDAQ.bar(Interval.HOUR_1, ny("2026-03-06 09:45"))  # Friday, EST
    after = NASDAQ.bar(Interval.HOUR_1, ny("2026-03-09 09:45"))  # Monday, EDT
    assert before is not None
    assert after is not None
    assert datetime.fromtimestamp(before[0], ZoneInfo("UTC")).strftime("%H:%M") == "14:30"
    assert datetime.fromtimestamp(after[0], ZoneInfo("UTC")).strftime("%H:%M") == "13:30"


@pytest.mark.parametrize(
    ("calendar", "moment"),
    [
        (NASDAQ, ny("2026-11-20 09:29")),  # pre-market
        (NASDAQ, ny("2026-11-20 16:00")),  # the close itself
        (NASDAQ, ny("2026-11-21 12:00")),  # Saturday
        (NASDAQ, ny("2026-11-26 12:00")),  # Thanksgiving
        (CME, at("America/Chicago", "2026-11-23 16:30")),  # the daily break
        (CME, at("America/Chicago", "2026-11-21 12:00")),  # Saturday
        (CME, at("America/Chicago", "2026-11-20 17:30")),  # Friday evening: no Saturday session
        (TOKYO, at("Asia/Tokyo", "2026-11-20 12:00")),  # lunch
    ],
)
def test_no_bar_while_the_market_is_closed(calendar: Calendar, moment: int) -> None:
    assert calendar.bar(Interval.MINUTE_1, moment) is None
    assert calendar.session_at(moment) is None


@pytest.mark.parametrize(
    ("session", "timezone"),
    [("0930-1600:89", "America/New_York"), ("9:30-16:00", "America/New_York"), ("0930-1600", "Mars/Olympus")],
)
def test_malformed_sessions_are_refused(session: str, timezone: str) -> None:
    with pytest.raises(InvalidSessionError):
        Calendar.parse(session, timezone)


def test_the_aggregator_aligns_a_stock_to_its_session_and_skips_extended_hours() -> None:
    from pocketquant.domain import SymbolKey
    from pocketquant.domain.aggregator import BarAggregator, LiveBar

    key = SymbolKey("NASDAQ", "AAPL")
    closed: list[LiveBar] = []
    agg = BarAggregator([Interval.HOUR_1, Interval.DAY_1], closed.append)
    agg.set_calendar(key, NASDAQ)
    agg.receiving(key, ny("2026-03-06 08:00"), total_volume=0.0)  # Friday, before the open
    trades = [
        ("2026-03-06 09:00", 99.0, 50.0),  # pre-market: in no regular-session bar
        ("2026-03-06 09:31", 100.0, 60.0),
        ("2026-03-06 10:29", 101.0, 70.0),
        ("2026-03-06 10:31", 102.0, 75.0),
        ("2026-03-06 15:59", 103.0, 90.0),
        ("2026-03-06 16:05", 104.0, 95.0),  # after the close
    ]
    for moment, price, volume in trades:
        agg.on_tick(key, ny(moment), price, volume)
    agg.on_time(ny("2026-03-06 16:10"))
    hours = [(b.start, b.open, b.close, b.volume) for b in closed if b.interval is Interval.HOUR_1]
    assert hours == [
        (ny("2026-03-06 09:30"), 100.0, 101.0, 20.0),  # from the pre-market total (50): its trades are not in it
        (ny("2026-03-06 10:30"), 102.0, 102.0, 5.0),
        (ny("2026-03-06 15:30"), 103.0, 103.0, 15.0),
    ]
    day = [b for b in closed if b.interval is Interval.DAY_1]
    assert [(b.start, b.open, b.close) for b in day] == [(ny("2026-03-06 09:30"), 100.0, 103.0)]
    assert agg.outside_session_ticks == 2
    # Monday, after the switch to daylight saving time: the same local hours.
    agg.on_tick(key, ny("2026-03-09 09:45"), 105.0, 10.0)
    agg.on_time(ny("2026-03-09 10:31"))
    assert closed[-1].start == ny("2026-03-09 09:30")
    assert datetime.fromtimestamp(closed[-1].start, ZoneInfo("UTC")).strftime("%H:%M") == "13:30"


# -- Gaps: measured against the calendar, not the wall clock ----------------------------


def test_expected_bars_skip_nights_weekends_and_holidays() -> None:
    # Wednesday 2026-11-25 15:00 to Monday 2026-11-30 10:00 New York: Thanksgiving (26th)
    # is closed, Friday trades, the weekend does not.
    hours = list(expected_bars(NASDAQ, Interval.HOUR_1, ny("2026-11-25 15:00"), ny("2026-11-30 10:00")))
    friday = [ny(f"2026-11-27 {h}") for h in ("09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30")]
    assert hours == [ny("2026-11-25 15:30"), *friday, ny("2026-11-30 09:30")]
    days = list(expected_bars(NASDAQ, Interval.DAY_1, ny("2026-11-23 00:00"), ny("2026-11-30 00:00")))
    assert days == [ny(f"2026-11-{d} 09:30") for d in (23, 24, 25, 27)]
    # 24x7: every UTC hour.
    assert (
        len(list(expected_bars(CRYPTO, Interval.HOUR_1, at("UTC", "2026-11-21 00:00"), at("UTC", "2026-11-22 00:00"))))
        == 24
    )
    # A stock's minutes: 390 a day.
    assert bars_since(NASDAQ, Interval.MINUTE_1, ny("2026-11-27 09:30"), ny("2026-11-27 15:59"), 10_000) == 390
    assert bars_since(NASDAQ, Interval.MINUTE_1, ny("2026-11-20 09:30"), ny("2026-11-27 15:59"), 1_000) == 1_001


def test_gaps_are_runs_of_expected_bars_not_stored() -> None:
    expected = [1, 2, 3, 4, 5, 6, 7, 8]
    assert find_gaps(expected, [1, 2, 5, 8]) == [Gap(3, 4, 2), Gap(6, 7, 2)]
    assert find_gaps(expected, expected) == []
    assert find_gaps(expected, []) == [Gap(1, 8, 8)]
    assert find_gaps(iter(expected), [0, 2, 9]) == [
        Gap(1, 1, 1),
        Gap(3, 8, 6),
    ]  # stored bars off the calendar are ignored


def test_a_calendars_fingerprint_changes_with_its_sessions() -> None:
    nyse = Calendar.parse("0930-1600", "America/New_York")
    assert nyse.fingerprint() == Calendar.parse("0930-1600", "America/New_York").fingerprint()
    others = [
        Calendar.parse("0930-1600", "Europe/London"),
        Calendar.parse("0930-1300", "America/New_York"),
        Calendar.parse("0930-1600:2345", "America/New_York"),
        Calendar.parse("0930-1600", "America/New_York", frozenset({date(2026, 11, 26)})),
        Calendar.parse("24x7", "America/New_York"),
    ]
    assert len({nyse.fingerprint(), *(c.fingerprint() for c in others)}) == 1 + len(others)
