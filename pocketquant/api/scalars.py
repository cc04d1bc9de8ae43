"""Custom GraphQL scalars."""

from __future__ import annotations

from typing import NewType

import strawberry

from pocketquant.api.errors import BadUserInputError


def _parse_epoch(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadUserInputError(f"expected epoch seconds as an integer, got {value!r}")
    return value


# GraphQL's Int is 32-bit and would overflow in 2038; this one is not.
EpochSeconds = strawberry.scalar(
    NewType("EpochSeconds", int),
    name="EpochSeconds",
    description="Seconds since 1970-01-01T00:00:00Z (UTC), as an integer; the time unit of TradingView's UDF.",
    serialize=int,
    parse_value=_parse_epoch,
)
