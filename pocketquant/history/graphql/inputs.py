"""Validation of GraphQL arguments into domain values, with errors that name the field."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from pocketquant.domain import PROVIDER_MAX_BARS, InvalidSymbolError, SymbolKey
from pocketquant.graphql.errors import BadUserInputError


def symbol_key(exchange: str, symbol: str) -> SymbolKey:
    try:
        return SymbolKey.parse(exchange, symbol)
    except InvalidSymbolError as exc:
        raise BadUserInputError(str(exc), field=exc.field) from exc


def bounded(value: int, low: int, high: int, field: str) -> int:
    if not low <= value <= high:
        raise BadUserInputError(f"{field} must be between {low} and {high}, got {value}", field=field)
    return value


def history_bars(value: int | None, default: int) -> int:
    return bounded(default if value is None else value, 1, PROVIDER_MAX_BARS, "bars")


def epoch(moment: datetime | None) -> int | None:
    """ISO 8601 input to epoch seconds; a time without an offset is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def time_range(start: datetime | None, end: datetime | None) -> tuple[int | None, int | None]:
    lo, hi = epoch(start), epoch(end)
    if lo is not None and hi is not None and hi < lo:
        raise BadUserInputError(f"`to` ({end}) is before `from` ({start})", field="to")
    return lo, hi


_CURSOR_PREFIX = "bars:v1:"
# ASCII digits only (``str.isdigit`` and ``int`` also take other scripts' digits), and
# short enough to stay far inside int64: BSON and MongoDB compare 64-bit integers.
_CURSOR = re.compile(r"bars:v1:(asc|desc):(-?[0-9]{1,15})")
_MAX_CURSOR_LENGTH = 64


def encode_cursor(t: int, newest_first: bool) -> str:
    raw = f"{_CURSOR_PREFIX}{'desc' if newest_first else 'asc'}:{t}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, newest_first: bool) -> int:
    """The time of the last bar already returned."""
    malformed = BadUserInputError("malformed cursor: pass `endCursor` from a previous page", field="after")
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise malformed from exc
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise malformed
    if (match[1] == "desc") != newest_first:
        raise BadUserInputError("this cursor was made for the other `order`", field="after")
    return int(match[2])
