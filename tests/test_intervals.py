from datetime import UTC, datetime

import pytest

from pocketquant.domain import Interval
from pocketquant.graphql.types import IntervalEnum


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("interval", "moment", "start", "next_start"),
    [
        (Interval.MINUTE_1, "2026-11-20 14:37:30", "2026-11-20 14:37:00", "2026-11-20 14:38:00"),
        (Interval.MINUTE_3, "2026-11-20 14:37:30", "2026-11-20 14:36:00", "2026-11-20 14:39:00"),
        (Interval.MINUTE_45, "2026-11-20 14:37:30", "2026-11-20 14:15:00", "2026-11-20 15:00:00"),
        (Interval.HOUR_1, "2026-11-20 14:37:30", "2026-11-20 14:00:00", "2026-11-20 15:00:00"),
        (Interval.HOUR_3, "2026-11-20 14:37:30", "2026-11-20 12:00:00", "2026-11-20 15:00:00"),
        (Interval.HOUR_4, "2026-11-20 14:37:30", "2026-11-20 12:00:00", "2026-11-20 16:00:00"),
        (Interval.DAY_1, "2026-11-20 14:37:30", "2026-11-20 00:00:00", "2026-11-21 00:00:00"),
        (Interval.WEEK_1, "2026-11-20 14:37:30", "2026-11-16 00:00:00", "2026-11-23 00:00:00"),  # Monday
        (Interval.WEEK_1, "2026-11-16 00:00:00", "2026-11-16 00:00:00", "2026-11-23 00:00:00"),
        (Interval.MONTH_1, "2026-11-20 14:37:30", "2026-11-01 00:00:00", "2026-12-01 00:00:00"),
        (Interval.MONTH_1, "2026-12-31 23:59:59", "2026-12-01 00:00:00", "2027-01-01 00:00:00"),
        (Interval.MONTH_1, "2028-02-29 12:00:00", "2028-02-01 00:00:00", "2028-03-01 00:00:00"),
    ],
)
def test_floor_and_next_start_align_to_utc(interval: Interval, moment: str, start: str, next_start: str) -> None:
    assert interval.floor(ts(moment)) == ts(start)
    assert interval.next_start(ts(moment)) == ts(next_start)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", Interval.MINUTE_1),
        ("MINUTE_1", Interval.MINUTE_1),
        ("60", Interval.HOUR_1),
        ("1H", Interval.HOUR_1),
        ("240", Interval.HOUR_4),
        ("1D", Interval.DAY_1),
        ("1d", Interval.DAY_1),
        ("1W", Interval.WEEK_1),
        ("1M", Interval.MONTH_1),
    ],
)
def test_parse_accepts_canonical_names_and_tradingview_codes(text: str, expected: Interval) -> None:
    assert Interval.parse(text) is expected


@pytest.mark.parametrize("text", ["", "2m", "1y", "minute", "1mm"])
def test_parse_rejects_unknown_intervals_with_the_valid_ones(text: str) -> None:
    with pytest.raises(ValueError, match="expected one of 1m, 3m"):
        Interval.parse(text)


def test_graphql_enum_covers_every_interval() -> None:
    assert [(i.name, i.value) for i in Interval] == [(g.name, str(g.value)) for g in IntervalEnum]
    assert all(g.to_domain() is Interval[g.name] for g in IntervalEnum)
