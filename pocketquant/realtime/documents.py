"""Beanie documents of the realtime slice."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from beanie import Document
from pymongo import ASCENDING, IndexModel


class WatchedSymbol(Document):
    """A symbol the stream keeps a live quote subscription for. Survives restarts."""

    exchange: str
    symbol: str
    added_at: datetime

    class Settings:
        name = "watched_symbols"
        indexes: ClassVar = [
            IndexModel([("exchange", ASCENDING), ("symbol", ASCENDING)], unique=True, name="watched_key"),
        ]


REALTIME_DOCUMENTS: list[type[Document]] = [WatchedSymbol]
