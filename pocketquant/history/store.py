"""BarStore: bars in chunks (the bucket pattern), merged and written idempotently.

A write reads the chunks it touches, merges the incoming bars (incoming wins), and
writes back only the chunks whose content changed, so re-writing identical bars costs
reads only. Each chunk carries a version; a writer that lost a race re-reads and
re-merges, so concurrent writers (a sync and the live stream) never lose bars.

A bar still forming when written (a history sync's newest bar, fetched mid-period) is
listed in its chunk's ``forming`` times: it never replaces a final bar of that time,
so a sync that fetched a minute half-way and wrote late cannot overwrite the whole
minute the stream stored meanwhile. Any later write of that time replaces it.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from pocketquant.domain import BarColumns, Interval, SeriesKey, SymbolKey
from pocketquant.history.codec import pack_times, pack_values, unpack_times, unpack_values
from pocketquant.history.documents import BarChunk

_COLUMNS = ("t", "o", "h", "l", "c", "v")
_VALUES = _COLUMNS[1:]


def _decode(doc: Mapping[str, Any]) -> BarColumns:
    return BarColumns(unpack_times(doc["t"]), *(unpack_values(doc[name]) for name in _VALUES))


_MAX_CONFLICT_RETRIES = 8


class ChunkConflictError(RuntimeError):
    """A chunk kept changing under us; the write did not happen."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    bars_inserted: int = 0
    bars_updated: int = 0
    bars_unchanged: int = 0
    chunks_written: int = 0

    @property
    def changed(self) -> bool:
        return self.chunks_written > 0


@dataclass(frozen=True, slots=True)
class SeriesStats:
    bar_count: int
    first: int | None
    last: int | None


@dataclass(frozen=True, slots=True)
class BarPage:
    bars: BarColumns
    has_more: bool


class BarStore:
    def __init__(self, chunk_size: int) -> None:
        self._chunk_size = chunk_size

    @property
    def _collection(self) -> AsyncCollection[dict[str, Any]]:
        collection: AsyncCollection[dict[str, Any]] = BarChunk.get_pymongo_collection()
        return collection

    def chunk_start(self, series: SeriesKey, t: int) -> int:
        span = self._chunk_size * series.interval.nominal_seconds
        return t - t % span

    @staticmethod
    def _key(series: SeriesKey) -> dict[str, Any]:
        return {"exchange": series.exchange, "symbol": series.symbol, "interval": series.interval.value}

    async def write(self, series: SeriesKey, bars: BarColumns, *, forming: int | None = None) -> WriteResult:
        """Merge ``bars`` (strictly increasing times) into the stored series; ``forming``
        is the time of one of them that was still in progress (its values are partial).
        Bars not validated yet (not :class:`CheckedBars`) are validated here."""
        bars = bars.checked()
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(bars.t):
            groups.setdefault(self.chunk_start(series, t), []).append(i)
        if not groups:
            return WriteResult()
        key = self._key(series)
        existing = {doc["start"]: doc async for doc in self._collection.find({**key, "start": {"$in": sorted(groups)}})}
        totals = [0, 0, 0, 0]
        for start, rows in groups.items():
            incoming = {bars.t[i]: (bars.o[i], bars.h[i], bars.l[i], bars.c[i], bars.v[i]) for i in rows}
            inserted, updated, unchanged, written = await self._write_chunk(
                key, start, existing.get(start), incoming, forming if forming in incoming else None
            )
            totals[0] += inserted
            totals[1] += updated
            totals[2] += unchanged
            totals[3] += written
        return WriteResult(*totals)

    async def _write_chunk(
        self,
        key: dict[str, Any],
        start: int,
        doc: Mapping[str, Any] | None,
        incoming: dict[int, tuple[float, float, float, float, float]],
        forming: int | None,
    ) -> tuple[int, int, int, int]:
        for _ in range(_MAX_CONFLICT_RETRIES):
            merged: dict[int, tuple[float, float, float, float, float]] = {}
            was_forming: frozenset[int] = frozenset()
            if doc is not None:
                old_bars = _decode(doc)
                rows = zip(old_bars.o, old_bars.h, old_bars.l, old_bars.c, old_bars.v, strict=True)
                merged = dict(zip(old_bars.t, rows, strict=True))
                was_forming = frozenset(doc.get("forming") or ())
            now_forming = set(was_forming)
            inserted = updated = unchanged = 0
            for t, row in incoming.items():
                old = merged.get(t)
                if t == forming:
                    if old is not None and t not in was_forming:
                        unchanged += 1  # a final bar stays: this one was fetched before its end
                        continue
                    now_forming.add(t)
                else:
                    now_forming.discard(t)  # final now
                if old is None:
                    inserted += 1
                elif old != row:
                    updated += 1
                else:
                    unchanged += 1
                    continue
                merged[t] = row
            if inserted == 0 and updated == 0 and now_forming == was_forming:
                return 0, 0, unchanged, 0
            times = sorted(merged)
            fields: dict[str, Any] = {
                "t": pack_times(times),
                "first": times[0],
                "last": times[-1],
                "n": len(times),
                "forming": sorted(now_forming),
            }
            for j, name in enumerate(_VALUES):
                fields[name] = pack_values([merged[t][j] for t in times])
            if doc is None:
                try:
                    await self._collection.insert_one({**key, "start": start, "version": 1, **fields})
                    return inserted, updated, unchanged, 1
                except DuplicateKeyError:
                    pass  # another writer created it first: merge into theirs
            else:
                result = await self._collection.update_one(
                    {"_id": doc["_id"], "version": doc["version"]},
                    {"$set": fields, "$inc": {"version": 1}},
                )
                if result.matched_count == 1:
                    return inserted, updated, unchanged, 1
            doc = await self._collection.find_one({**key, "start": start})
        raise ChunkConflictError(f"chunk {key} @ {start} changed {_MAX_CONFLICT_RETRIES} times during one write")

    async def read_page(
        self,
        series: SeriesKey,
        *,
        start: int | None,
        end: int | None,
        limit: int,
        newest_first: bool = False,
    ) -> BarPage:
        """Up to ``limit`` bars with ``start <= t <= end``, in the asked order, and
        whether more bars lie beyond them in that order."""
        lo = start if start is not None else -(2**62)
        hi = end if end is not None else 2**62
        if lo > hi:
            return BarPage(BarColumns(), False)
        query: dict[str, Any] = {**self._key(series), "start": {"$lte": hi}, "last": {"$gte": lo}}
        if start is not None:
            query["start"]["$gte"] = self.chunk_start(series, lo)
        projection = dict.fromkeys(_COLUMNS, 1) | {"_id": 0}
        wanted = limit + 1  # one more tells whether there is a next page
        # Ask for about as many chunks as the page needs in the first batch, not more:
        # each one costs a decode.
        batch = min(100, wanted // self._chunk_size + 2)
        cursor = self._collection.find(query, projection).sort("start", -1 if newest_first else 1).batch_size(batch)
        out = BarColumns()
        async for doc in cursor:
            chunk = _decode(doc)
            i = bisect.bisect_left(chunk.t, lo)
            j = bisect.bisect_right(chunk.t, hi)
            need = wanted - len(out)
            if newest_first:
                a = max(i, j - need)
                for name in _COLUMNS:
                    getattr(out, name).extend(reversed(getattr(chunk, name)[a:j]))
            else:
                b = min(j, i + need)
                for name in _COLUMNS:
                    getattr(out, name).extend(getattr(chunk, name)[i:b])
            if len(out) >= wanted:
                break
        await cursor.close()
        has_more = len(out) > limit
        if has_more:
            for name in _COLUMNS:
                del getattr(out, name)[limit:]
        return BarPage(out, has_more)

    async def final_times(self, series: SeriesKey, start: int, end: int) -> list[int]:
        """The opening times of the stored final bars with ``start <= t < end``, in order
        (the time column only: what a gap check needs). A bar stored while forming is
        left out: it may lack trades, so it is as good as missing."""
        query = {**self._key(series), "start": {"$gte": self.chunk_start(series, start), "$lt": end}}
        query["last"] = {"$gte": start}
        out: list[int] = []
        async for doc in self._collection.find(query, {"t": 1, "forming": 1, "_id": 0}).sort("start", 1):
            times = unpack_times(doc["t"])
            out.extend(
                t
                for t in times[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]
                if t not in set(doc.get("forming") or ())
            )
        return out

    async def stored_intervals(self, key: SymbolKey) -> set[Interval]:
        """The intervals of ``key`` with bars stored."""
        values = await self._collection.distinct("interval", {"exchange": key.exchange, "symbol": key.symbol})
        return {Interval(v) for v in values}

    async def stats(self, series: SeriesKey) -> SeriesStats:
        pipeline: list[dict[str, Any]] = [
            {"$match": self._key(series)},
            {"$group": {"_id": None, "n": {"$sum": "$n"}, "first": {"$min": "$first"}, "last": {"$max": "$last"}}},
        ]
        cursor = await self._collection.aggregate(pipeline)
        rows = await cursor.to_list()
        if not rows:
            return SeriesStats(0, None, None)
        return SeriesStats(int(rows[0]["n"]), rows[0]["first"], rows[0]["last"])
