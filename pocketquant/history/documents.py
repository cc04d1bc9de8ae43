"""Beanie documents of the history slice. Storage shapes only: GraphQL types and
domain objects are separate and converted at the edges."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from pocketquant.domain.sessions import Calendar, parse_holidays


class SymbolRecord(Document):
    """A symbol we know of: synced at least once, or tracked for scheduled re-syncs."""

    exchange: str
    symbol: str
    description: str | None = None
    type: str | None = None
    currency: str | None = None
    timezone: str | None = None
    session: str | None = None  # TradingView's, e.g. "0930-1600" (in ``timezone``) or "24x7"
    holidays: str | None = None  # TradingView's session_holidays, "YYYYMMDD,YYYYMMDD"
    pricescale: int | None = None
    tracked: bool = False
    tracked_intervals: list[str] = Field(default_factory=list)
    tracked_at: datetime | None = None
    updated_at: datetime

    def calendar(self) -> Calendar | None:
        """The symbol's session calendar, if TradingView has told us its sessions
        (raises InvalidSessionError if they cannot be read)."""
        if not self.session or not self.timezone:
            return None
        return Calendar.parse(self.session, self.timezone, parse_holidays(self.holidays))

    class Settings:
        name = "symbols"
        indexes: ClassVar = [
            IndexModel([("exchange", ASCENDING), ("symbol", ASCENDING)], unique=True, name="symbol_key"),
            IndexModel([("tracked", ASCENDING), ("exchange", ASCENDING), ("symbol", ASCENDING)], name="tracked"),
        ]


class BarChunk(Document):
    """Up to ``chunk_size`` consecutive bars of one series, as columns.

    ``start`` is the chunk's aligned start time (epoch seconds); ``first``/``last`` are
    the times of its oldest and newest bar; ``version`` guards concurrent writers.
    Columns are packed little-endian arrays (see ``history/codec.py``): ``t`` int64
    epoch seconds, ``o h l c v`` float64, ``n`` entries each, oldest first.
    ``forming`` lists the times of bars stored while still in progress (a sync's newest
    bar): partial values, which any final bar of that time replaces.
    """

    exchange: str
    symbol: str
    interval: str
    start: int
    first: int
    last: int
    n: int
    version: int = 1
    forming: list[int] = Field(default_factory=list)
    t: bytes
    o: bytes
    h: bytes
    l: bytes  # noqa: E741 - the UDF column name
    c: bytes
    v: bytes

    class Settings:
        name = "bar_chunks"
        indexes: ClassVar = [
            IndexModel(
                [("exchange", ASCENDING), ("symbol", ASCENDING), ("interval", ASCENDING), ("start", ASCENDING)],
                unique=True,
                name="chunk_key",
            ),
        ]


class StoredSyncState(StrEnum):
    """A sync's state as stored (GraphQL's SyncState adds INTERRUPTED, which is read
    from the workers' liveness, not stored)."""

    NEVER = "never"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SyncStatus(Document):
    """The outcome of syncs of one (exchange, symbol, interval)."""

    exchange: str
    symbol: str
    interval: str
    state: StoredSyncState = StoredSyncState.NEVER
    last_job_id: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    bar_count: int = 0
    first_bar_at: datetime | None = None
    last_bar_at: datetime | None = None
    last_bars_fetched: int = 0
    last_bars_inserted: int = 0
    last_bars_updated: int = 0
    last_chunks_written: int = 0
    # Holes in the stored range by the session calendar, as of the last sync (None:
    # sessions unknown, or the check failed).
    gap_count: int | None = None
    missing_bars: int | None = None

    class Settings:
        name = "sync_status"
        indexes: ClassVar = [
            IndexModel(
                [("exchange", ASCENDING), ("symbol", ASCENDING), ("interval", ASCENDING)],
                unique=True,
                name="status_key",
            ),
        ]


async def stored_calendar(exchange: str, symbol: str) -> Calendar | None:
    """The sessions kept with a symbol: None if not known yet (raises
    InvalidSessionError if they cannot be read)."""
    record = await SymbolRecord.find_one({"exchange": exchange, "symbol": symbol})
    return record.calendar() if record is not None else None


DOCUMENT_MODELS: list[type[Document]] = [SymbolRecord, BarChunk, SyncStatus]
