"""The watch list: which symbols the stream keeps live, with its cap held atomically."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from pocketquant.domain import SymbolKey
from pocketquant.realtime.documents import WatchedSymbol


class WatchlistFullError(Exception):
    pass


async def watched() -> set[SymbolKey]:
    docs = await WatchedSymbol.get_pymongo_collection().find({}, {"_id": 0, "exchange": 1, "symbol": 1}).to_list()
    return {SymbolKey(d["exchange"], d["symbol"]) for d in docs}


async def not_watched(keys: Sequence[SymbolKey]) -> list[SymbolKey]:
    """Those of ``keys`` that are not on the watch list. Reads only their entries: every
    live subscription asks, and the list holds up to MAX_WATCHED_SYMBOLS."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return []
    query = {"$or": [{"exchange": k.exchange, "symbol": k.symbol} for k in wanted]}
    docs = await WatchedSymbol.get_pymongo_collection().find(query, {"_id": 0, "exchange": 1, "symbol": 1}).to_list()
    found = {SymbolKey(d["exchange"], d["symbol"]) for d in docs}
    return [k for k in wanted if k not in found]


async def watch(keys: Sequence[SymbolKey], cap: int) -> list[SymbolKey]:
    """Add ``keys`` (all of them, or none: :class:`WatchlistFullError` past the cap);
    return those that were not watched yet.

    Each new symbol takes a free slot below ``cap``; the slot's unique index makes a
    concurrent watcher that picked the same slot fail and pick again, so the list never
    holds more than ``cap`` symbols, however many API processes add at once."""
    collection = WatchedSymbol.get_pymongo_collection()
    added: list[SymbolKey] = []

    async def current() -> tuple[set[SymbolKey], set[int | None]]:
        docs = await collection.find({}, {"exchange": 1, "symbol": 1, "slot": 1}).to_list()
        return {SymbolKey(d["exchange"], d["symbol"]) for d in docs}, {d.get("slot") for d in docs}

    try:
        watched, used = await current()  # read again only when another writer got in between
        for key in dict.fromkeys(keys):
            while key not in watched:
                free = next((slot for slot in range(cap) if slot not in used), None)
                if len(watched) >= cap or free is None:
                    raise WatchlistFullError(f"the watch list holds at most {cap} symbols")
                try:
                    await collection.insert_one(
                        {"exchange": key.exchange, "symbol": key.symbol, "slot": free, "added_at": datetime.now(UTC)}
                    )
                except DuplicateKeyError:
                    watched, used = await current()  # that slot (or this symbol) was taken meanwhile
                    continue
                watched.add(key)
                used.add(free)
                added.append(key)
    except BaseException:
        # All or nothing: take back what this call added.
        for key in added:
            await collection.delete_one({"exchange": key.exchange, "symbol": key.symbol})
        raise
    return added


async def unwatch(keys: Sequence[SymbolKey]) -> list[SymbolKey]:
    removed = []
    for key in dict.fromkeys(keys):
        result = await WatchedSymbol.get_pymongo_collection().delete_one(
            {"exchange": key.exchange, "symbol": key.symbol}
        )
        if result.deleted_count:
            removed.append(key)
    return removed
