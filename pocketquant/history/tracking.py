"""Tracked symbols: those the scheduled re-syncs keep up to date (their SymbolRecord)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pocketquant.domain import Interval, SymbolKey
from pocketquant.history.documents import SymbolRecord


class SymbolRecordVanishedError(RuntimeError):
    """A record written a moment ago is gone (someone deleted it meanwhile)."""


async def track(key: SymbolKey, intervals: Sequence[Interval], now: datetime) -> SymbolRecord:
    """Track ``key`` at ``intervals`` (replacing the ones it had); the first track sets
    ``tracked_at``, a re-track keeps the original date."""
    collection = SymbolRecord.get_pymongo_collection()
    await collection.update_one(
        {"exchange": key.exchange, "symbol": key.symbol},
        {"$set": {"tracked": True, "tracked_intervals": [i.value for i in intervals], "updated_at": now}},
        upsert=True,
    )
    await collection.update_one(
        {"exchange": key.exchange, "symbol": key.symbol, "tracked_at": None}, {"$set": {"tracked_at": now}}
    )
    return await record(key)


async def untrack(key: SymbolKey, now: datetime) -> tuple[SymbolRecord, bool] | None:
    """Stop tracking ``key``: its record and whether it was tracked, or None if the
    symbol is not known at all."""
    before = await SymbolRecord.get_pymongo_collection().find_one_and_update(
        {"exchange": key.exchange, "symbol": key.symbol},
        {"$set": {"tracked": False, "tracked_intervals": [], "tracked_at": None, "updated_at": now}},
    )
    if before is None:
        return None
    return await record(key), bool(before.get("tracked"))


async def record(key: SymbolKey) -> SymbolRecord:
    found = await SymbolRecord.find_one(SymbolRecord.exchange == key.exchange, SymbolRecord.symbol == key.symbol)
    if found is None:
        raise SymbolRecordVanishedError(f"symbol record {key} vanished")
    return found
