"""Enqueue sync jobs on arq with one job id per (exchange, symbol, interval).

arq refuses a job id while either the job or its kept result exists. A queued or
running sync of a series therefore absorbs a second request (deduplicated), while a
finished one must not block the next sync: its kept result is cleared first. The
durable record of every run is SyncStatus in MongoDB.
"""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix, job_key_prefix, result_key_prefix

from pocketquant.domain import Interval, SeriesKey

SYNC_FUNCTION = "sync_series"

# Worker liveness (written by the workers, read by them and by the API): each worker sets
# WORKER_ALIVE_PREFIX + its id every 2 s (6 s TTL), and JOB_OWNER_PREFIX + job id names the
# worker running a job.
WORKER_ALIVE_PREFIX = "pocketquant:worker:alive:"
JOB_OWNER_PREFIX = "pocketquant:worker:job-owner:"


def health_check_key(queue_name: str) -> str:
    """Where arq's workers on ``queue_name`` write their periodic health report."""
    return queue_name + health_check_key_suffix


def sync_job_id(series: SeriesKey) -> str:
    return f"sync:{series.exchange}:{series.symbol}:{series.interval.value}"


def parse_sync_job_id(job_id: str) -> SeriesKey | None:
    parts = job_id.split(":")
    if len(parts) != 4 or parts[0] != "sync":
        return None
    try:
        return SeriesKey(parts[1], parts[2], Interval.parse(parts[3]))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    deduplicated: bool


class SyncDispatcher:
    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self._queue = queue_name

    async def enqueue(self, series: SeriesKey, n_bars: int) -> Enqueued:
        job_id = sync_job_id(series)
        for _ in range(3):
            if not await self._pool.exists(job_key_prefix + job_id):
                await self._pool.delete(result_key_prefix + job_id)
            job = await self._pool.enqueue_job(
                SYNC_FUNCTION,
                series.exchange,
                series.symbol,
                series.interval.value,
                n_bars,
                _job_id=job_id,
                _queue_name=self._queue,
            )
            if job is not None:
                return Enqueued(job_id, deduplicated=False)
            if await self._pool.exists(job_key_prefix + job_id):
                return Enqueued(job_id, deduplicated=True)
            # The previous run finished between our check and the enqueue: try again.
        return Enqueued(job_id, deduplicated=True)
