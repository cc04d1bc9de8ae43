"""The arq worker: builds a Worker whose start-up opens the clients and whose
shutdown closes them (or borrows already-open ones, in `pocketquant dev`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from pocketquant.history.dispatch import SYNC_FUNCTION
from pocketquant.history.jobs import cron_jobs, sync_series
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

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["resources"] = resources or await exit_stack.enter_async_context(open_resources(settings))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await exit_stack.aclose()

    return Worker(
        functions=[func(sync_series, name=SYNC_FUNCTION, max_tries=settings.sync_max_tries)],
        cron_jobs=cron_jobs(settings),
        queue_name=settings.queue_name,
        redis_settings=RedisSettings.from_dsn(settings.required_redis_url()),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        poll_delay=poll_delay,
        handle_signals=handle_signals,
        job_timeout=settings.sync_job_timeout_seconds,
        keep_result=settings.sync_result_ttl_seconds,
        max_tries=settings.sync_max_tries,
        health_check_interval=settings.worker_health_check_seconds,
        timezone=UTC,
    )


def health_check_key(settings: Settings) -> str:
    """Where arq's worker writes its periodic health report (see arq.constants)."""
    from arq.constants import health_check_key_suffix

    return settings.queue_name + health_check_key_suffix


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
    await worker.close()
