"""arq jobs of the history slice: sync one series, and the scheduled re-syncs."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry
from arq.cron import CronJob, cron
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from pocketquant.domain import PROVIDER_MAX_BARS, Interval, SeriesKey
from pocketquant.history.documents import StoredSyncState, SymbolRecord, SyncStatus
from pocketquant.history.gaps import GapCheckError
from pocketquant.history.service import SyncJobResult
from pocketquant.history.store import ChunkConflictError
from pocketquant.infra.backoff import backoff_delay
from pocketquant.metrics import JobOutcome, record_sync_job
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.tradingview.history import ProviderError, SymbolNotFoundError

log = logging.getLogger(__name__)


def _resources(ctx: dict[str, Any]) -> Resources:
    resources: Resources = ctx["resources"]
    return resources


def retry_delay(settings: Settings, job_try: int) -> float:
    """Exponential backoff with full jitter, capped at ten minutes."""
    return backoff_delay(job_try, base=settings.sync_retry_base_seconds, cap=600.0)


async def sync_series(ctx: dict[str, Any], exchange: str, symbol: str, interval: str, n_bars: int) -> SyncJobResult:
    """Sync one series. Transient failures (provider unreachable, MongoDB or Redis
    errors) are retried with backoff; the final outcome is the job's result."""
    resources = _resources(ctx)
    started = time.monotonic()
    outcome = JobOutcome.FAILED
    try:
        result = await _sync_series(ctx, resources, SeriesKey(exchange, symbol, Interval.parse(interval)), n_bars)
        outcome = JobOutcome.OK if result["ok"] else JobOutcome.FAILED
        return result
    except Retry:
        outcome = JobOutcome.RETRIED
        raise
    finally:
        try:
            await record_sync_job(resources.redis, outcome, time.monotonic() - started)
        except RedisError as exc:  # a metric is not worth failing the job for
            log.warning("sync job metrics not recorded: %s", exc)


async def _sync_series(ctx: dict[str, Any], resources: Resources, series: SeriesKey, n_bars: int) -> SyncJobResult:
    settings = resources.settings
    job_try: int = ctx.get("job_try", 1)
    try:
        outcome = await resources.sync.sync(series, n_bars, job_id=ctx.get("job_id"))
    except ProviderError as exc:
        if exc.transient and job_try < settings.sync_max_tries:
            raise Retry(defer=retry_delay(settings, job_try)) from exc
        return {"ok": False, "attempts": job_try, "error": str(exc), "error_kind": exc.kind}
    except (PyMongoError, RedisError, ChunkConflictError) as exc:
        if job_try < settings.sync_max_tries:
            log.warning("sync %s attempt %d failed, will retry: %s", series, job_try, exc)
            raise Retry(defer=retry_delay(settings, job_try)) from exc
        raise
    return outcome.result(job_try)


async def _resync_tracked(ctx: dict[str, Any], intraday: bool) -> int:
    """Enqueue a sync of every tracked series of the kind, except those whose last sync
    found the symbol unknown to TradingView: re-asking would fail the same way (a new
    `trackSymbol` or `syncSymbol` tries it again)."""
    resources = _resources(ctx)
    count = 0
    unknown = {
        (s.exchange, s.symbol, s.interval)
        for s in await SyncStatus.find(
            {"state": StoredSyncState.FAILED.value, "last_error_kind": SymbolNotFoundError.kind}
        ).to_list()
    }
    async for record in SymbolRecord.find(SymbolRecord.tracked == True):  # noqa: E712 - a query, not a test
        for value in record.tracked_intervals:
            interval = Interval.parse(value)
            if interval.is_intraday != intraday:
                continue
            if (record.exchange, record.symbol, interval.value) in unknown:
                log.info(
                    "scheduled re-sync skips %s:%s@%s: unknown to TradingView", record.exchange, record.symbol, value
                )
                continue
            series = SeriesKey(record.exchange, record.symbol, interval)
            await resources.dispatcher.enqueue(series, await _bars_needed(resources, series))
            count += 1
    log.info("scheduled re-sync (%s): %d series enqueued", "intraday" if intraday else "daily", count)
    return count


async def _bars_needed(resources: Resources, series: SeriesKey) -> int:
    """What a re-sync of ``series`` fetches: back to its oldest gap within TradingView's
    reach, or its newest stored bar (all there is if nothing is stored, or its sessions
    are unknown). Gaps beyond the reach are logged: no sync can fill them."""
    try:
        plan = await resources.gaps.plan(series)
    except GapCheckError:
        return resources.settings.sync_default_bars
    if plan.out_of_reach:
        missing = sum(g.missing for g in plan.out_of_reach)
        log.warning(
            "%s: %d gaps (%d bars) are older than TradingView's %d-bar reach and cannot be filled",
            series, len(plan.out_of_reach), missing, PROVIDER_MAX_BARS,
        )  # fmt: skip
    return plan.n_bars


async def resync_intraday(ctx: dict[str, Any]) -> int:
    return await _resync_tracked(ctx, intraday=True)


async def resync_daily(ctx: dict[str, Any]) -> int:
    """Daily, weekly and monthly bars, each weekday evening."""
    return await _resync_tracked(ctx, intraday=False)


def cron_jobs(settings: Settings) -> list[CronJob]:
    return [
        cron(resync_intraday, name="resync-intraday", hour=settings.intraday_resync_hours, minute=0),
        cron(
            resync_daily,
            name="resync-daily",
            weekday={0, 1, 2, 3, 4},
            hour=settings.daily_resync_hour_utc,
            minute=settings.daily_resync_minute,
        ),
    ]
