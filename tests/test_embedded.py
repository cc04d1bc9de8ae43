"""`pocketquant dev` without a redis-server runs on fakeredis's TCP server: the queue,
the worker and the cache must work there too."""

import asyncio
import contextlib
import uuid

from arq.jobs import Job

from pocketquant.domain import Interval, SeriesKey
from pocketquant.infra.embedded import _fakeredis_server
from pocketquant.resources import open_resources
from pocketquant.settings import Settings
from pocketquant.worker import build_worker, stop_worker


async def test_worker_consumes_a_sync_on_the_fakeredis_fallback(settings: Settings) -> None:
    async with _fakeredis_server() as url:
        fallback = settings.model_copy(update={"redis_url": url, "mongodb_database": f"test_{uuid.uuid4().hex[:12]}"})
        async with open_resources(fallback) as resources:
            worker = build_worker(fallback, resources=resources, poll_delay=0.02, handle_signals=False)
            task = asyncio.create_task(worker.async_run())
            try:
                enqueued = await resources.dispatcher.enqueue(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 30)
                job = Job(enqueued.job_id, resources.redis, _queue_name=fallback.queue_name)
                result = await job.result(timeout=20, poll_delay=0.05)
                assert result["bar_count"] == 30
            finally:
                await stop_worker(worker, task)
                with contextlib.suppress(Exception):
                    await resources.mongo.drop_database(fallback.mongodb_database)


def test_printed_urls_hide_passwords() -> None:
    from pocketquant.infra.devfiles import mask_url

    assert mask_url("redis://:s3cret@cache.internal:6379/0") == "redis://:****@cache.internal:6379/0"
    assert mask_url("mongodb://app:s3cret@db:27017/?replicaSet=rs0") == "mongodb://app:****@db:27017/?replicaSet=rs0"
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_json_log_lines_carry_the_request_or_job() -> None:
    import json
    import logging

    from pocketquant.logs import JsonFormatter, job_id, request_id

    formatter = JsonFormatter()
    record = logging.LogRecord("pocketquant.x", logging.INFO, __file__, 1, "synced %s", ("NASDAQ:AAPL@1d",), None)
    record.request_id, record.job_id = None, "sync:NASDAQ:AAPL:1d"
    event = json.loads(formatter.format(record))
    assert event["message"] == "synced NASDAQ:AAPL@1d"
    assert event["job_id"] == "sync:NASDAQ:AAPL:1d"
    assert "request_id" not in event
    assert request_id.get() is None
    assert job_id.get() is None
