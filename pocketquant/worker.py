"""The arq worker: builds a Worker whose start-up opens the clients and whose
shutdown closes them (or borrows already-open ones, in `pocketquant dev`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.exceptions import RedisError

from pocketquant import logs
from pocketquant.history.dispatch import JOB_OWNER_PREFIX, SYNC_FUNCTION, WORKER_ALIVE_PREFIX
from pocketquant.history.jobs import cron_jobs, sync_series
from pocketquant.infra.backoff import backoff_delay
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.resources import Resources, open_resources
from pocketquant.settings import Settings

log = logging.getLogger(__name__)


def build_worker(
    settings: Settings,
    *,
    resources: Resources | None = None,
    burst: bool = False,
    poll_delay: float = 0.5,
    handle_signals: bool = True,
) -> Worker:
    exit_stack = contextlib.AsyncExitStack()
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["resources"] = resources or await exit_stack.enter_async_context(open_resources(settings))
        ctx["worker_id"] = worker_id
        in_progress_ttl = settings.sync_job_timeout_seconds + 10  # what arq gives a running job's mark
        liveness = asyncio.create_task(_liveness(ctx["redis"], worker_id, in_progress_ttl), name="worker-liveness")
        exit_stack.push_async_callback(cancel_and_wait, liveness)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        with contextlib.suppress(RedisError):
            await ctx["redis"].delete(ALIVE_PREFIX + worker_id)
        await exit_stack.aclose()

    async def on_job_start(ctx: dict[str, Any]) -> None:
        logs.job_id.set(ctx["job_id"])  # the job's log lines carry its id (this runs in the job's task)
        # Which worker runs the job: if it dies, the others see it and run the job again.
        await ctx["redis"].set(_OWNER + ctx["job_id"], worker_id, ex=settings.sync_job_timeout_seconds + 10)

    async def on_job_end(ctx: dict[str, Any]) -> None:
        with contextlib.suppress(RedisError):
            await ctx["redis"].delete(_OWNER + ctx["job_id"])

    return Worker(
        functions=[func(sync_series, name=SYNC_FUNCTION, max_tries=settings.sync_max_tries)],
        cron_jobs=cron_jobs(settings),
        queue_name=settings.queue_name,
        redis_settings=RedisSettings.from_dsn(settings.required_redis_url()),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        on_job_start=on_job_start,
        on_job_end=on_job_end,
        burst=burst,
        poll_delay=poll_delay,
        handle_signals=handle_signals,
        job_timeout=settings.sync_job_timeout_seconds,
        keep_result=settings.sync_result_ttl_seconds,
        max_tries=settings.sync_max_tries,
        health_check_interval=settings.worker_health_check_seconds,
        timezone=UTC,
    )


# Liveness of workers and the owners of running jobs. arq marks a running job with a key
# that lives as long as the job's timeout (plus 10 s); a worker that dies leaves it
# behind and the job waits that long. Each worker says every 2 s that it is alive, and
# every 5 s looks for running jobs whose worker stopped saying so: it clears their mark,
# and the first worker to poll runs them again (a sync is idempotent, so a second run of
# a job whose worker was only slow writes nothing twice).
ALIVE_PREFIX = WORKER_ALIVE_PREFIX
_OWNER = JOB_OWNER_PREFIX
_ALIVE_EVERY = 2.0
_ALIVE_TTL = 6


async def _liveness(redis: Any, worker_id: str, in_progress_ttl: float) -> None:
    last_reap = 0.0
    while True:
        try:
            await redis.set(ALIVE_PREFIX + worker_id, "1", ex=_ALIVE_TTL)
            if time.monotonic() - last_reap >= 5:
                last_reap = time.monotonic()
                await reap_dead_workers_jobs(redis, in_progress_ttl)
        except RedisError as exc:
            log.warning("worker liveness not written: %s", exc)
        await asyncio.sleep(_ALIVE_EVERY)


async def reap_dead_workers_jobs(redis: Any, in_progress_ttl: float) -> list[str]:
    """Clear the running mark of sync jobs whose worker is gone; return their ids.

    A job's worker is gone when its liveness key expired, or when the job has been
    marked running for 10 s without an owner (its worker died between taking the job
    and starting it)."""
    from arq.constants import in_progress_key_prefix

    reaped = []
    async for key in redis.scan_iter(match=in_progress_key_prefix + "sync:*", count=500):
        job_id = key.decode().removeprefix(in_progress_key_prefix)
        owner = await redis.get(_OWNER + job_id)
        if owner is not None:
            if await redis.exists(ALIVE_PREFIX + owner.decode()):
                continue
            why = f"was running on worker {owner.decode()}, which is gone"
        else:
            marked_for = in_progress_ttl - await redis.pttl(key) / 1000
            if marked_for < 10:
                continue
            why = f"was taken {marked_for:.0f} s ago by a worker that never started it"
        await redis.delete(key, _OWNER + job_id)
        reaped.append(job_id)
        log.warning("job %s %s: it runs again", job_id, why)
    return reaped


class WorkerRunner:
    """An arq worker that outlives Redis outages.

    arq's worker stops when Redis cannot be reached (its poll loop raises). The runner
    then waits, with exponential backoff and jitter, and starts a new worker; jobs stay
    in Redis meanwhile (the queue is there again when Redis is). Meanwhile the API's
    /ready reports Redis as down. ``worker`` is the one running now.
    """

    def __init__(
        self, settings: Settings, *, resources: Resources | None = None, handle_signals: bool = True,
        poll_delay: float = 0.5,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._resources = resources
        self._handle_signals = handle_signals
        self._poll_delay = poll_delay
        self.worker: Worker | None = None
        self.restarts = 0

    async def run(self) -> None:
        """Run until cancelled (or stopped by a signal arq handles)."""
        failures = 0
        while True:
            self.worker = build_worker(
                self._settings,
                resources=self._resources,
                handle_signals=self._handle_signals,
                poll_delay=self._poll_delay,
            )
            started = time.monotonic()
            try:
                await self.worker.async_run()
                return
            except (RedisError, OSError) as exc:
                error: Exception = exc
            await _discard(self.worker)
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            delay = backoff_delay(failures, base=0.5, cap=30.0)
            self.restarts += 1
            log.warning("worker lost Redis (%s: %s); starting again in %.1f s", type(error).__name__, error, delay)
            await asyncio.sleep(delay)


async def _discard(worker: Worker) -> None:
    """Close what a worker that lost Redis still holds, as far as that can be done."""
    with contextlib.suppress(Exception):
        await worker.close()
    pool = getattr(worker, "_pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            await pool.aclose()


async def stop_worker(worker: Worker, run_task: asyncio.Task[None], grace_seconds: float = 10.0) -> None:
    """Stop a worker started with ``async_run()`` in a task of ours.

    Stops polling, lets in-flight jobs finish for up to ``grace_seconds``, cancels the
    rest (they stay queued and run again once their in-progress marker expires), then
    closes. arq's own ``close()`` cancels in-flight jobs and re-raises their
    cancellation, which would skip its shutdown hook.
    """
    run_task.cancel()
    try:
        await run_task
    except asyncio.CancelledError:
        pass
    except Exception:  # it had died already; shut down the rest regardless
        log.exception("the worker had stopped with an error")
    in_flight = [t for t in worker.tasks.values() if not t.done()]
    if in_flight:
        await asyncio.wait(in_flight, timeout=grace_seconds)
    for task in in_flight:
        task.cancel()
    await asyncio.gather(*in_flight, return_exceptions=True)
    worker.tasks = {job_id: t for job_id, t in worker.tasks.items() if not t.cancelled()}
    # arq's close() reports "shutdown on SIGUSR1" when it handles no signals itself,
    # whatever stopped it: say what happened instead.
    arq_log = logging.getLogger("arq.worker")
    level = arq_log.level
    arq_log.setLevel(logging.WARNING)
    try:
        await worker.close()
    finally:
        arq_log.setLevel(level)
    log.info(
        "worker stopped: %d jobs complete, %d failed, %d retried, %d cut off (they run again)",
        worker.jobs_complete,
        worker.jobs_failed,
        worker.jobs_retried,
        len(in_flight) - sum(t.done() and not t.cancelled() for t in in_flight),
    )
