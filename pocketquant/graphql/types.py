"""GraphQL types every slice uses."""

from __future__ import annotations

import enum

import strawberry

from pocketquant.domain import Interval


@strawberry.enum(
    name="Interval",
    description="Bar interval. Bars align to the instrument's trading sessions as TradingView aligns them "
    "(24x7 instruments: UTC boundaries).",
)
class IntervalEnum(enum.Enum):
    MINUTE_1 = strawberry.enum_value("1m", description="1 minute")
    MINUTE_3 = strawberry.enum_value("3m", description="3 minutes")
    MINUTE_5 = strawberry.enum_value("5m", description="5 minutes")
    MINUTE_15 = strawberry.enum_value("15m", description="15 minutes")
    MINUTE_30 = strawberry.enum_value("30m", description="30 minutes")
    MINUTE_45 = strawberry.enum_value("45m", description="45 minutes")
    HOUR_1 = strawberry.enum_value("1h", description="1 hour")
    HOUR_2 = strawberry.enum_value("2h", description="2 hours")
    HOUR_3 = strawberry.enum_value("3h", description="3 hours")
    HOUR_4 = strawberry.enum_value("4h", description="4 hours")
    DAY_1 = strawberry.enum_value("1d", description="1 day")
    WEEK_1 = strawberry.enum_value("1W", description="1 week, opening on Monday")
    MONTH_1 = strawberry.enum_value("1M", description="1 calendar month")

    def to_domain(self) -> Interval:
        return Interval(self.value)

    @classmethod
    def from_domain(cls, interval: Interval) -> IntervalEnum:
        return cls(interval.value)


@strawberry.type(description="The input was rejected; nothing was changed.")
class InvalidInput:
    message: str
    field: str | None = None
