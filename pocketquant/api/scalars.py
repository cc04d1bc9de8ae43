"""Custom GraphQL scalars, registered in the schema's ``scalar_map``."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from pocketquant.api.errors import BadUserInputError

# GraphQL's Int is 32-bit and would overflow in 2038; this one is not.
EpochSeconds = NewType("EpochSeconds", int)


def _parse_epoch(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadUserInputError(f"expected epoch seconds as an integer, got {value!r}")
    return value


SCALAR_MAP: dict[object, ScalarDefinition] = {
    EpochSeconds: strawberry.scalar(
        name="EpochSeconds",
        description="Seconds since 1970-01-01T00:00:00Z (UTC), as an integer; the time unit of TradingView's UDF.",
        serialize=int,
        parse_value=_parse_epoch,
    ),
}
