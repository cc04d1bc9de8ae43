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
    return {SymbolKey(d.exchange, d.symbol) for d in await WatchedSymbol.find_all().to_list()}


async def watch(keys: Sequence[SymbolKey], cap: int) -> list[SymbolKey]:
    """Add ``keys`` (all of them, or none: :class:`WatchlistFullError` past the cap);
    return those that were not watched yet.

    Each new symbol takes a free slot below ``cap``; the slot's unique index makes a
    concurrent watcher that picked the same slot fail and pick again, so the list never
    holds more than ``cap`` symbols, however many API processes add at once."""
    collection = WatchedSymbol.get_pymongo_collection()
    added: list[SymbolKey] = []
    try:
        for key in dict.fromkeys(keys):
            while True:
                docs = await collection.find({}, {"exchange": 1, "symbol": 1, "slot": 1}).to_list()
                if any(d["exchange"] == key.exchange and d["symbol"] == key.symbol for d in docs):
                    break  # already watched
                used = {d.get("slot") for d in docs}
                free = [slot for slot in range(cap) if slot not in used]
                if len(docs) >= cap or not free:
                    raise WatchlistFullError(f"the watch list holds at most {cap} symbols")
                try:
                    await collection.insert_one(
                        {"exchange": key.exchange, "symbol": key.symbol, "slot": free[0], "added_at": datetime.now(UTC)}
                    )
                except DuplicateKeyError:
                    continue  # someone took that slot (or watched this symbol) meanwhile: look again
                added.append(key)
                break
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
