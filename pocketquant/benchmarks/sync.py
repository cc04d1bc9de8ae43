"""History at scale: N symbols x 5,000 1m bars synced through a real arq worker from the
simulator, on embedded services (mongoeco in its own process, a local redis-server).

The simulator runs in a process of its own (as TradingView is elsewhere); the worker runs
in this process with arq's default concurrency (10 jobs at a time), tvdatafeed's fetches in
threads. The baseline is the same fetches without storing: what the answers alone cost.

mongoeco's SQLite engine (what `pocketquant dev` keeps its data in) reads and decodes
every document of a collection on each insert (its ``_id`` check) and on each update's
planning, so the wall time there grows with the square of the bars stored; its memory
engine does not, and shows what the service's own work costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass

from pocketquant.benchmarks.harness import Engine, embedded_services, helper_process, services_settings
from pocketquant.domain import PROVIDER_MAX_BARS, Interval, SeriesKey
from pocketquant.simulator.market import Instrument, SimulatedMarket


@dataclass
class SyncResult:
    engine: Engine
    symbols: int
    bars: int
    seconds: float
    fetch_only_seconds: float
    stored: int

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.seconds


async def run_sync_bench(symbols: int = 100, engine: Engine = Engine.sqlite) -> SyncResult:
    from arq.jobs import Job, JobStatus

    from pocketquant.infra.embedded import free_port
    from pocketquant.infra.tasks import cancel_and_wait
    from pocketquant.resources import open_resources
    from pocketquant.worker import build_worker, stop_worker

    series = [SeriesKey(i.exchange, i.symbol, Interval.MINUTE_1) for i in _instruments(symbols)]
    port = free_port()
    async with (
        helper_process("pocketquant.benchmarks.sync", "simulator", str(port), str(symbols)),
        embedded_services(engine) as (mongo_url, redis_url),
    ):
        settings = services_settings(mongo_url, redis_url, port)
        async with open_resources(settings) as resources:
            started = time.perf_counter()
            await asyncio.gather(*(resources.provider.fetch(s, PROVIDER_MAX_BARS) for s in series[:10]))
            fetch_only = (time.perf_counter() - started) * len(series) / 10
            worker = build_worker(settings, resources=resources, poll_delay=0.05, handle_signals=False)
            task = asyncio.create_task(worker.async_run())
            try:
                started = time.perf_counter()
                jobs = [await resources.dispatcher.enqueue(s, PROVIDER_MAX_BARS) for s in series]
                pending = {j.job_id for j in jobs}
                while pending:
                    await asyncio.sleep(0.1)
                    for job_id in list(pending):
                        job = Job(job_id, resources.redis, _queue_name=settings.queue_name)
                        if await job.status() is JobStatus.complete:
                            pending.discard(job_id)
                wall = time.perf_counter() - started
            finally:
                with contextlib.suppress(Exception):
                    await stop_worker(worker, task)
                await cancel_and_wait(task)
            stored = sum([(await resources.store.stats(s)).bar_count for s in series])
    return SyncResult(engine, symbols, symbols * PROVIDER_MAX_BARS, wall, fetch_only, stored)


def _instruments(n: int) -> tuple[Instrument, ...]:
    return tuple(
        Instrument("BENCH", f"S{i:03}", f"bench {i}", "spot", "USD", "Etc/UTC", 100.0 + i, 2) for i in range(n)
    )


async def _serve(port: int, symbols: int) -> None:
    from pocketquant.simulator import TradingViewSimulator

    async with TradingViewSimulator(SimulatedMarket(_instruments(symbols)), port=port):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["simulator"]:
        asyncio.run(_serve(int(sys.argv[2]), int(sys.argv[3])))
