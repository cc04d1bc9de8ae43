"""SyncService: fetch a series from the provider, write it through the bar service
(which drops the cached pages when bars changed), record the outcome in SyncStatus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Required, TypedDict

from pocketquant.domain import SeriesKey
from pocketquant.history.bars import BarService
from pocketquant.history.documents import StoredSyncState, SymbolRecord, SyncStatus
from pocketquant.history.gaps import GapCheckError, GapFinder
from pocketquant.history.store import BarStore, WriteResult
from pocketquant.tradingview.history import ProviderError, SymbolMetadata, TradingViewHistory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    series: SeriesKey
    bars_fetched: int
    write: WriteResult
    bar_count: int
    first_bar: int | None
    last_bar: int | None

    def result(self, attempts: int) -> SyncJobResult:
        """The arq job result of a sync that succeeded."""
        return {
            "ok": True,
            "attempts": attempts,
            "bars_fetched": self.bars_fetched,
            "bars_inserted": self.write.bars_inserted,
            "bars_updated": self.write.bars_updated,
            "bars_unchanged": self.write.bars_unchanged,
            "chunks_written": self.write.chunks_written,
            "bar_count": self.bar_count,
            "first_bar": self.first_bar,
            "last_bar": self.last_bar,
        }


class SyncJobResult(TypedDict, total=False):
    """What a sync job returns (kept by arq as the job's result): ``ok`` and
    ``attempts`` always; the counts when it succeeded, the error when it failed."""

    ok: Required[bool]
    attempts: Required[int]
    bars_fetched: int
    bars_inserted: int
    bars_updated: int
    bars_unchanged: int
    chunks_written: int
    bar_count: int
    first_bar: int | None
    last_bar: int | None
    error: str
    error_kind: str


def _status_key(series: SeriesKey) -> dict[str, str]:
    return {"exchange": series.exchange, "symbol": series.symbol, "interval": series.interval.value}


def _ts(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


class SyncService:
    def __init__(
        self,
        provider: TradingViewHistory,
        store: BarStore,
        bars: BarService,
        gaps: GapFinder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._provider = provider
        self._store = store
        self._bars = bars
        self._gaps = gaps
        self._clock = clock

    async def sync(self, series: SeriesKey, n_bars: int, job_id: str | None = None) -> SyncOutcome:
        """Sync ``n_bars`` newest bars. A provider error is recorded in the sync
        status and re-raised; nothing is written to the bars in that case."""
        status = SyncStatus.get_pymongo_collection()
        await status.update_one(
            _status_key(series),
            {"$set": {"state": StoredSyncState.RUNNING.value, "last_job_id": job_id, "last_attempt_at": self._clock()}},
            upsert=True,
        )
        try:
            fetched = await self._provider.fetch(series, n_bars)
        except ProviderError as exc:
            log.warning("sync %s failed: %s", series, exc)
            await status.update_one(
                _status_key(series),
                {
                    "$set": {
                        "state": StoredSyncState.FAILED.value,
                        "last_error": str(exc),
                        "last_error_kind": exc.kind,
                        "last_error_at": self._clock(),
                    }
                },
            )
            raise
        write = await self._bars.write(series, fetched.bars, forming=fetched.forming)
        await self._remember_symbol(series, fetched.metadata)
        stats = await self._store.stats(series)
        gap_count = missing = None
        try:
            report = await self._gaps.report(series, stats.first, stats.last)
            gap_count, missing = len(report.gaps), report.missing
        except GapCheckError as exc:
            log.info("gaps of %s not counted: %s", series, exc)
        await status.update_one(
            _status_key(series),
            {
                "$set": {
                    "state": StoredSyncState.SUCCEEDED.value,
                    "last_success_at": self._clock(),
                    "bar_count": stats.bar_count,
                    "first_bar_at": _ts(stats.first),
                    "last_bar_at": _ts(stats.last),
                    "last_bars_fetched": len(fetched.bars),
                    "last_bars_inserted": write.bars_inserted,
                    "last_bars_updated": write.bars_updated,
                    "last_chunks_written": write.chunks_written,
                    "gap_count": gap_count,
                    "missing_bars": missing,
                }
            },
        )
        log.info(
            "synced %s: %d fetched, %d new, %d updated, %d chunks written",
            series,
            len(fetched.bars),
            write.bars_inserted,
            write.bars_updated,
            write.chunks_written,
        )
        return SyncOutcome(series, len(fetched.bars), write, stats.bar_count, stats.first, stats.last)

    async def _remember_symbol(self, series: SeriesKey, metadata: SymbolMetadata | None) -> None:
        fields: dict[str, Any] = {"updated_at": self._clock()}
        if metadata is not None:
            fields |= {
                "description": metadata.description,
                "type": metadata.type,
                "currency": metadata.currency,
                "timezone": metadata.timezone,
                "session": metadata.session,
                "holidays": metadata.holidays,
                "pricescale": metadata.pricescale,
            }
        await SymbolRecord.get_pymongo_collection().update_one(
            {"exchange": series.exchange, "symbol": series.symbol},
            {"$set": fields, "$setOnInsert": {"tracked": False, "tracked_intervals": []}},
            upsert=True,
        )
