"""Beanie documents of the realtime slice."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from beanie import Document
from pymongo import ASCENDING, IndexModel


class WatchedSymbol(Document):
    """A symbol the stream keeps a live quote subscription for. Survives restarts.

    ``slot`` (0 to MAX_WATCHED_SYMBOLS - 1, unique) is what holds the cap: the database
    refuses a second symbol in the same slot, so concurrent watchers on any number of
    API processes cannot take the list past the cap."""

    exchange: str
    symbol: str
    added_at: datetime
    slot: int | None = None  # None only for symbols watched before slots existed

    class Settings:
        name = "watched_symbols"
        indexes: ClassVar = [
            IndexModel([("exchange", ASCENDING), ("symbol", ASCENDING)], unique=True, name="watched_key"),
            IndexModel([("slot", ASCENDING)], unique=True, sparse=True, name="watched_slot"),
        ]


REALTIME_DOCUMENTS: list[type[Document]] = [WatchedSymbol]
