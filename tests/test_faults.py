"""Faults on real processes: a stream leader stopped with SIGTERM beside a standby, a
store that fails while a stream stops, a stale stream status."""

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pocketquant.domain import BarColumns, Interval, SeriesKey, SymbolKey
from pocketquant.infra.tasks import cancel_and_wait
from pocketquant.realtime import watchlist, wire
from pocketquant.realtime.stream import StreamService
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.utils.clock import ManualClock
from tests.utils.graphql import GraphQLClient
from tests.utils.live import until

CLI = Path(sys.executable).parent / "pocketquant"
AAPL = SymbolKey("NASDAQ", "AAPL")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return os.environ | {
        "MONGODB_URL": settings.required_mongodb_url(),
        "MONGODB_DATABASE": settings.mongodb_database,
        "REDIS_URL": settings.required_redis_url(),
        "TRADINGVIEW_WEBSOCKET_URL": settings.tradingview_websocket_url,
        "TRADINGVIEW_SEARCH_URL": settings.tradingview_search_url,
        "STREAM_LOCK_TTL_SECONDS": "10",
        **extra,
    }


@contextlib.asynccontextmanager
async def stream_process(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "stream", env=_env(settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _leader(resources: Resources) -> str | None:
    """The streaming instance, once it receives NASDAQ:AAPL."""
    raw = await resources.redis.get(wire.STATUS_KEY)
    if raw is None:
        return None
    status: dict[str, Any] = json.loads(raw)
    return str(status["instance"]) if AAPL.ticker in status.get("receiving", []) else None


async def health(settings: Settings, process: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(CLI),
        "health",
        process,
        env=_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_sigterm_hands_the_stream_over_at_once(settings: Settings, resources: Resources) -> None:
    await watchlist.watch([AAPL], 10)
    code, out = await health(settings, "stream")  # the container health check, before any stream runs
    assert code == 1
    assert "unhealthy: no stream" in out
    async with stream_process(settings) as first, stream_process(settings) as second:
        leader = await until(lambda: _leader(resources), within=20)
        assert (await health(settings, "stream"))[0] == 0
        old, standby = (first, second) if leader.endswith(f":{first.pid}") else (second, first)
        await asyncio.sleep(1.0)
        assert await _leader(resources) == leader  # the other one waits
        stopped_at = time.monotonic()
        old.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(old.communicate(), 15)
        exited = time.monotonic() - stopped_at

        async def taken_over() -> bool:
            return (await _leader(resources)) == f"{os.uname().nodename}:{standby.pid}"

        await until(taken_over, within=15)
        takeover = time.monotonic() - stopped_at
        text = output.decode()
        assert old.returncode == 0, text
        assert "Traceback" not in text, text
        assert "stream stopped" in text
        assert exited < 5, exited
        # The lock was released, not left to expire (10 s): the standby, which looks for
        # it every third of the TTL, took over within one look.
        assert takeover < 10 * 2 / 3, takeover
        print(f"SIGTERM: leader exited in {exited:.2f} s, standby streaming after {takeover:.2f} s")


async def test_a_stopping_stream_stores_the_bars_that_closed(
    resources: Resources, stream_clock: ManualClock, simulator: TradingViewSimulator
) -> None:
    from pocketquant.history.store import BarStore

    class DownStore(BarStore):
        up = False
        refused = 0

        async def write(self, series: SeriesKey, bars: BarColumns, *, forming: int | None = None) -> Any:
            if not DownStore.up:
                DownStore.refused += 1
                raise ConnectionError("MongoDB is down")
            return await super().write(series, bars, forming=forming)

    store = DownStore(resources.settings.chunk_size)
    service = StreamService(resources.with_store(store), "stopping", clock=stream_clock)
    await watchlist.watch([AAPL], 10)
    task = asyncio.create_task(service.run())
    await until(lambda: _connected(service))
    t0 = int(stream_clock.now) // 60 * 60 + 60
    for t, price in [(t0 + 1, 1.0), (t0 + 61, 2.0)]:  # the first closes
        stream_clock.now = t
        await simulator.push_quote(AAPL, lp=price, lp_time=t, volume=float(t))
    await until(lambda: _closed(service))
    task.cancel()  # stop (SIGTERM) while MongoDB is down ...
    await asyncio.sleep(0.3)
    DownStore.up = True  # ... and back within the grace period
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)
    page = await resources.store.read_page(
        SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1), start=None, end=None, limit=10
    )
    assert page.bars.t == [t0]
    assert DownStore.refused >= 1  # the stream did write to the store that was down


async def _connected(service: StreamService) -> bool:
    return service.client.stats.connected


async def _closed(service: StreamService) -> bool:
    return service.bars_closed >= 1


@pytest.fixture
def stream_clock() -> ManualClock:
    from tests.conftest import SIM_START

    return ManualClock(SIM_START)


async def test_stream_status_of_a_dead_leader_is_not_running(gql: GraphQLClient, resources: Resources) -> None:
    status = {
        "instance": "gone", "connected": True, "watched": [], "ticks_per_second": 0.0, "last_tick_at": None,
        "reconnects": 0, "last_error": None, "late_ticks": 0, "symbol_errors": {}, "bars_closed": 0,
        "bars_persisted": 0, "persist_backlog": 0, "updated_at": "2026-11-20T14:37:00+00:00",
        "reported_at_epoch": time.time() - 4,
    }  # fmt: skip
    await resources.redis.set(wire.STATUS_KEY, json.dumps(status), px=60_000)
    result = (await gql.data("{ streamStatus { running connected instance } }"))["streamStatus"]
    assert result == {"running": False, "connected": False, "instance": "gone"}


async def test_a_mongodb_outage_is_store_unavailable_within_seconds(settings: Settings) -> None:
    import httpx

    from pocketquant.api.app import create_app
    from pocketquant.api.serving import serve
    from pocketquant.auth.keys import Scope
    from pocketquant.infra.embedded import MongoServerProcess
    from pocketquant.resources import open_resources

    mongodb = MongoServerProcess(None)  # MongoDB as a process of its own
    await mongodb.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(mongodb.stop)
        own = settings.model_copy(update={"mongodb_url": mongodb.url})
        resources = await stack.enter_async_context(open_resources(own))
        _, key = await resources.keys.create("reader", Scope.READ)
        _, unused = await resources.keys.create("never used", Scope.READ)
        url = await stack.enter_async_context(serve(create_app(own, resources)))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        )
        assert (await http.post("/graphql", json={"query": "{ watchedSymbols }"})).json() == {
            "data": {"watchedSymbols": []}
        }
        await mongodb.stop()  # MongoDB goes away
        started = time.monotonic()
        response = await http.post("/graphql", json={"query": "{ watchedSymbols }"})
        elapsed = time.monotonic() - started
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "STORE_UNAVAILABLE"}, error
        assert "MongoDB" in error["message"]
        assert "127.0.0.1" not in response.text  # no internal address
        assert elapsed < 5, elapsed
        # A key never seen before cannot be checked now: 503, said as such.
        unchecked = await http.post(
            "/graphql", json={"query": "{ watchedSymbols }"}, headers={"Authorization": f"Bearer {unused}"}
        )
        assert unchecked.status_code == 503
        assert "could not be checked" in unchecked.text
        # Health and readiness answer too: MongoDB is down, said without internals.
        for path in ("/health", "/ready"):
            probe = await http.get(path, headers={"Authorization": f"Bearer {unused}"})
            assert probe.json()["components"]["mongodb"] == {"ok": False, "error": "unavailable"}, probe.text


async def test_a_redis_outage_is_queue_unavailable(settings: Settings, admin_key: str) -> None:
    import httpx

    from pocketquant.api.app import create_app
    from pocketquant.api.serving import serve
    from pocketquant.auth.keys import Scope
    from pocketquant.infra.embedded import embedded_redis
    from pocketquant.resources import open_resources

    async with embedded_redis() as redis_url:
        own = settings.model_copy(update={"redis_url": redis_url})
        async with open_resources(own) as resources:
            _, key = await resources.keys.create("writer", Scope.WRITE)
            async with (
                serve(create_app(own, resources)) as url,
                httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http,
            ):
                await resources.redis.shutdown(nosave=True)
                started = time.monotonic()
                mutation = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1}) { __typename } }'
                response = await http.post("/graphql", json={"query": mutation})
                elapsed = time.monotonic() - started
            error = response.json()["errors"][0]
            assert error["extensions"] == {"code": "QUEUE_UNAVAILABLE"}, error
            assert "Redis" in error["message"]
            assert elapsed < 5, elapsed
            await resources.mongo.drop_database(own.mongodb_database)


async def test_the_worker_process_waits_out_a_redis_outage(settings: Settings, tmp_path: Path) -> None:
    from pocketquant.infra.embedded import RedisServerProcess
    from pocketquant.resources import open_resources

    redis = RedisServerProcess(tmp_path / "redis", appendonly=True)
    await redis.start()
    own = settings.model_copy(update={"redis_url": redis.url})
    worker = await asyncio.create_subprocess_exec(
        str(CLI), "worker", env=_env(own, LOG_FORMAT="json"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert worker.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert worker.stdout is not None
        while line := (await worker.stdout.readline()).decode():
            lines.append(line)

    reader = asyncio.create_task(read())

    async def started() -> bool:
        return any("Starting worker" in line for line in lines)

    try:
        await until(started, within=30)  # polling the queue
        await redis.stop()
        await asyncio.sleep(8)  # arq's poll loop fails meanwhile, and its reconnects too
        assert worker.returncode is None, "".join(lines)
        await redis.start()  # the same data (AOF), as production's Redis
        async with open_resources(own) as resources:
            series = SeriesKey("NASDAQ", "AAPL", Interval.DAY_1)
            enqueued = await resources.dispatcher.enqueue(series, 5)

            async def done() -> bool:
                from arq.jobs import Job, JobStatus

                job = Job(enqueued.job_id, resources.redis, _queue_name=own.queue_name)
                return await job.status() is JobStatus.complete

            await until(done, within=60)
            assert (await resources.store.stats(series)).bar_count == 5
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
        await reader
        await redis.stop()
    text = "".join(lines)
    assert "worker lost Redis" in text, text
    assert "Traceback" not in text, text
    # LOG_FORMAT=json: the job's own lines carry its id.
    events = [json.loads(line) for line in lines if line.startswith("{")]
    synced = [e for e in events if e["message"].startswith("synced NASDAQ:AAPL@1d")]
    assert synced, text
    assert synced[0]["job_id"] == "sync:NASDAQ:AAPL:1d"


async def test_a_sync_cut_off_by_a_killed_worker_runs_again_promptly(
    settings: Settings, resources: Resources, simulator: TradingViewSimulator, tmp_path: Path
) -> None:
    import httpx
    from arq.jobs import Job, JobStatus

    from pocketquant.api.app import create_app
    from pocketquant.api.serving import serve
    from pocketquant.history.documents import StoredSyncState, SyncStatus

    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    log_file = (tmp_path / "second-worker.log").open("w")
    simulator.series_delay = 30.0  # TradingView is slow: the job is mid-sync when its worker dies
    first = await asyncio.create_subprocess_exec(
        str(CLI), "worker", env=_env(settings), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    second: asyncio.subprocess.Process | None = None
    try:
        enqueued = await resources.dispatcher.enqueue(series, 3_000)

        async def running() -> bool:
            # Taken and started: its worker recorded itself as the owner, and the sync
            # marked the series running (a kill between the two leaves no status to tell).
            if not await resources.redis.exists("pocketquant:worker:job-owner:" + enqueued.job_id):
                return False
            status = await SyncStatus.find_one(
                {"exchange": "NASDAQ", "symbol": "AAPL", "interval": "1m", "last_job_id": enqueued.job_id}
            )
            return status is not None and status.state is StoredSyncState.RUNNING

        await until(running, within=30)
        first.kill()  # kill -9, mid-sync
        await first.wait()
        killed_at = time.monotonic()
        simulator.series_delay = 0.0
        # What syncJob says meanwhile: still running, on a worker that is gone.
        query = "query($id: ID!) { syncJob(id: $id) { state worker workerAlive } }"
        async with serve(create_app(settings, resources)) as url, httpx.AsyncClient(base_url=url) as http:

            async def worker_gone() -> dict[str, Any] | None:
                body = await http.post("/graphql", json={"query": query, "variables": {"id": enqueued.job_id}})
                job: dict[str, Any] = body.json()["data"]["syncJob"]
                return job if job["workerAlive"] is False else None

            job = await until(worker_gone, within=15)
            status_query = '{ syncStatus(exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_1) { state lastJobId } }'
            body = await http.post("/graphql", json={"query": status_query})
            # The series' status says what is known too: not RUNNING, but waiting to run again.
            assert body.json()["data"]["syncStatus"] == [{"state": "INTERRUPTED", "lastJobId": enqueued.job_id}]
        assert job["state"] == "IN_PROGRESS"
        assert job["worker"].split(":")[1] == str(first.pid)
        second = await asyncio.create_subprocess_exec(
            str(CLI), "worker", env=_env(settings), stdout=log_file, stderr=asyncio.subprocess.STDOUT
        )

        async def done() -> bool:
            job = Job(enqueued.job_id, resources.redis, _queue_name=settings.queue_name)
            return await job.status() is JobStatus.complete

        try:
            await until(done, within=60)
        except TimeoutError:
            raise AssertionError((tmp_path / "second-worker.log").read_text()) from None
        recovered = time.monotonic() - killed_at

        async def healthy() -> bool:  # the survivor's liveness key (written every 2 s, even on a loaded machine)
            return (await health(settings, "worker"))[0] == 0

        assert await until(healthy, within=15)
        # arq alone would have waited for the mark of the dead worker's job to expire
        # (the job timeout plus 10 s); the surviving worker saw the owner gone.
        assert recovered < 20, recovered
        stats = await resources.store.stats(series)
        assert stats.bar_count == 3_000  # all of it, once
        page = await resources.store.read_page(series, start=None, end=None, limit=5_000)
        instrument = simulator.market.get(AAPL)
        assert instrument is not None
        assert list(page.bars) == simulator.market.history(instrument, Interval.MINUTE_1, 3_000, int(simulator.clock()))
        status = await SyncStatus.find_one({"exchange": "NASDAQ", "symbol": "AAPL", "interval": "1m"})
        assert status is not None
        assert status.state == "succeeded"
        print(f"worker killed mid-sync: the job completed {recovered:.1f} s later on another worker")
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)


async def test_the_simulator_as_a_process_ticks_and_takes_faults_on_command(settings: Settings) -> None:
    import httpx

    from pocketquant.infra.embedded import free_port
    from pocketquant.tradingview.history import ProviderUnavailableError, SeriesError, TradingViewHistory
    from pocketquant.tradingview.quotes import QuoteClient, QuoteUpdate

    port = free_port()
    sim = await asyncio.create_subprocess_exec(
        str(CLI), "simulator", "--port", str(port), "--fault", "NASDAQ:MSFT=series_error",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        printed: dict[str, str] = {}
        while len(printed) < 2:
            name, _, value = (await asyncio.wait_for(sim.stdout.readline(), 30)).decode().strip().partition("=")
            if name.startswith("TRADINGVIEW_"):
                printed[name] = value
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            history = TradingViewHistory(
                websocket_url=printed["TRADINGVIEW_WEBSOCKET_URL"], search_url=printed["TRADINGVIEW_SEARCH_URL"],
                http=http, timeout=5,
            )  # fmt: skip
            assert len((await history.fetch(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 10)).bars) == 10
            with pytest.raises(SeriesError):  # the fault given on the command line
                await history.fetch(SeriesKey("NASDAQ", "MSFT", Interval.DAY_1), 10)
            assert (await http.get("/control/fault?symbol=NASDAQ:AAPL&fault=drop&times=1")).status_code == 200
            with pytest.raises(ProviderUnavailableError):
                await history.fetch(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 10)
            assert len((await history.fetch(SeriesKey("NASDAQ", "AAPL", Interval.DAY_1), 10)).bars) == 10
            bad = await http.get("/control/fault?symbol=NASDAQ:AAPL&fault=nonsense")
            assert bad.status_code == 400
            assert "series_error" in bad.text  # says which faults exist
            # It ticks what is quoted, and drops connections on command.
            updates: list[QuoteUpdate] = []

            async def collect(update: QuoteUpdate) -> None:
                updates.append(update)

            client = QuoteClient(printed["TRADINGVIEW_WEBSOCKET_URL"], collect, backoff_base=0.05)
            await client.set_watched([SymbolKey("BINANCE", "BTCUSDT")])  # trades around the clock
            task = asyncio.create_task(client.run())
            try:

                async def ticking() -> bool:
                    return any(u.is_trade for u in updates)

                await until(ticking, within=10)
                assert "dropped 1 connections" in (await http.get("/control/drop")).text

                async def reconnected() -> bool:
                    return client.stats.reconnects >= 1 and client.stats.connected

                await until(reconnected, within=10)
            finally:
                await cancel_and_wait(task)
    finally:
        sim.send_signal(signal.SIGINT)
        await asyncio.wait_for(sim.wait(), 10)


async def test_running_marks_are_cleared_only_for_jobs_whose_worker_is_gone(resources: Resources) -> None:
    from pocketquant.worker import ALIVE_PREFIX, reap_dead_workers_jobs

    redis = resources.redis
    ttl = 70.0
    marks = {
        "sync:A:ALIVE:1d": ("w-alive", 69_000),  # its worker says it is alive
        "sync:A:DEAD:1d": ("w-dead", 69_000),  # its worker stopped saying so
        "sync:A:NEW:1d": (None, 69_000),  # just taken: the owner is about to be recorded
        "sync:A:ORPHAN:1d": (None, 55_000),  # taken 15 s ago and never started
    }
    for job_id, (owner, pttl) in marks.items():
        await redis.psetex("arq:in-progress:" + job_id, pttl, b"1")
        if owner is not None:
            await redis.set("pocketquant:worker:job-owner:" + job_id, owner)
    await redis.set(ALIVE_PREFIX + "w-alive", "1", ex=6)
    assert sorted(await reap_dead_workers_jobs(redis, ttl)) == ["sync:A:DEAD:1d", "sync:A:ORPHAN:1d"]
    assert await redis.exists("arq:in-progress:sync:A:ALIVE:1d", "arq:in-progress:sync:A:NEW:1d") == 2
    assert await redis.exists("arq:in-progress:sync:A:DEAD:1d", "arq:in-progress:sync:A:ORPHAN:1d") == 0


# -- Outages during a stream, checked against what the provider serves -----------------
#
# The simulator's trades and its history come from one tape, so after any fault the
# stored 1m bars over the window must be exactly the provider's: the minutes the stream
# received whole from the stream, the others (the partial ones) back-filled by a history
# sync through a real worker. Nothing missing, nothing twice, no truncated bar.


async def _keep_history(series: SeriesKey) -> None:
    """Track ``series``: a partial bar's back-fill then syncs it."""
    from datetime import UTC, datetime

    from pocketquant.history.documents import SymbolRecord

    await SymbolRecord(
        exchange=series.exchange, symbol=series.symbol, tracked=True, tracked_intervals=[series.interval.value],
        updated_at=datetime.now(UTC),
    ).insert()  # fmt: skip


async def _play(
    simulator: TradingViewSimulator, stream_clock: ManualClock, until_t: int, *, step: int = 15, pause: float = 0.05
) -> None:
    """Let the market trade up to ``until_t`` (sim time), ``step`` seconds at a time; the
    stream's clock follows once each step's trades are sent."""
    clock = simulator.clock
    assert isinstance(clock, ManualClock)
    t = int(clock.now)
    while t < until_t:
        t = min(t + step, until_t)
        clock.now = t
        await simulator.play(t)
        await asyncio.sleep(pause)
        stream_clock.now = t


async def _as_served(
    resources: Resources, simulator: TradingViewSimulator, series: SeriesKey, start: int, end: int
) -> list[Any]:
    """The stored bars opening in [start, end) if they are exactly the provider's (as of
    the simulator's clock), else []."""
    instrument = simulator.market.get(series.symbol_key)
    assert instrument is not None
    with contextlib.suppress(Exception):  # the store may be down
        page = await resources.store.read_page(series, start=start, end=end - 1, limit=1_000)
        served = simulator.market.bars_between(instrument, series.interval, start, end, int(simulator.clock()))
        if list(page.bars) == served:
            return served
    return []


@contextlib.asynccontextmanager
async def _streaming(resources: Resources, stream_clock: ManualClock, instance: str) -> AsyncIterator[None]:
    """A worker (that outlives Redis outages) and a stream of NASDAQ:AAPL, whose 1m history is kept."""
    from pocketquant.realtime.stream import run_stream
    from pocketquant.worker import WorkerRunner

    await _keep_history(SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1))
    await watchlist.watch([AAPL], 10)
    runner = WorkerRunner(resources.settings, resources=resources, handle_signals=False, poll_delay=0.02)
    worker = asyncio.create_task(runner.run())
    stream = asyncio.create_task(run_stream(resources, instance=instance, clock=stream_clock))
    try:
        await until(lambda: _leader(resources), within=20)
        yield
    finally:
        await cancel_and_wait(stream)
        await cancel_and_wait(worker)


async def test_a_mongodb_outage_during_a_stream_loses_and_duplicates_no_bar(
    settings: Settings, simulator: TradingViewSimulator, stream_clock: ManualClock, tmp_path: Path
) -> None:
    from pocketquant.infra.embedded import MongoServerProcess
    from pocketquant.resources import open_resources

    mongodb = MongoServerProcess(tmp_path / "mongo.sqlite3")  # data on disk, as a real server's
    await mongodb.start()
    # Closing on the clock waits 5 s past a bar's end: the next minute's first trade closes it.
    own = settings.model_copy(update={"mongodb_url": mongodb.url, "bar_close_delay_seconds": 5})
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    try:
        async with open_resources(own) as resources, _streaming(resources, stream_clock, "outage"):
            start = int(stream_clock.now) // 60 * 60  # 14:37, joined half-way: partial, back-filled
            await _play(simulator, stream_clock, start + 120)  # and 14:38 whole
            assert await until(lambda: _as_served(resources, simulator, series, start, start + 120), within=30)
            await mongodb.stop()  # MongoDB is gone for 20 s while 14:39, 14:40 and 14:41 close
            stopped = time.monotonic()
            await _play(simulator, stream_clock, start + 300, pause=0.3)
            await asyncio.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
            await mongodb.start()
            back = time.monotonic()
            bars = await until(lambda: _as_served(resources, simulator, series, start, start + 300), within=60)
            recovered = time.monotonic() - back
            assert [b.time for b in bars] == [start + 60 * m for m in range(5)]
            print(f"MongoDB down 20 s: the 1m bars are the provider's {recovered:.1f} s after it came back")
            await resources.mongo.drop_database(own.mongodb_database)
    finally:
        await mongodb.stop()


async def test_a_redis_restart_during_a_stream_with_subscribers(
    settings: Settings, simulator: TradingViewSimulator, stream_clock: ManualClock, tmp_path: Path
) -> None:
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import serve
    from pocketquant.infra.embedded import RedisServerProcess
    from pocketquant.resources import open_resources
    from tests.utils.live import raw_subscriber

    redis = RedisServerProcess(tmp_path / "redis", appendonly=True)  # as production's: AOF
    await redis.start()
    own = settings.model_copy(update={"redis_url": redis.url, "bar_close_delay_seconds": 5})
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    try:
        async with (
            open_resources(own) as resources,
            serve(create_app(own, resources)) as url,
            _streaming(resources, stream_clock, "r"),
        ):
            document = 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { time } }'
            ws = await raw_subscriber(url.replace("http", "ws") + "/graphql", "q", document, {})
            try:
                start = int(stream_clock.now) // 60 * 60
                await _play(simulator, stream_clock, start + 120)  # 14:37 partial, 14:38 whole
                assert await until(lambda: _as_served(resources, simulator, series, start, start + 120), within=30)
                await redis.stop()  # Redis restarts: the stream cannot prove it leads, so it stops
                await asyncio.sleep(1.5)
                await _play(simulator, stream_clock, start + 150, pause=0.2)  # trades nobody streams
                await redis.start()
                back = time.monotonic()
                await until(lambda: _leader(resources), within=20)  # streaming again

                async def relayed() -> bool:
                    await _play(simulator, stream_clock, int(stream_clock.now) + 5, step=5)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            while True:
                                message = json.loads(await ws.recv())
                                sent = message["payload"]["data"]["liveQuotes"]["time"]
                                if sent > datetime_of(start + 150):
                                    return True
                    return False

                await until(relayed, within=30)  # the subscriber's socket stayed open and is live again
                recovered = time.monotonic() - back
                end = (int(stream_clock.now) // 60 + 3) * 60
                await _play(simulator, stream_clock, end)
                # 14:39 was cut by the restart: back-filled from history, like 14:37.
                bars = await until(lambda: _as_served(resources, simulator, series, start, end - 60), within=30)
                assert [b.time for b in bars] == list(range(start, end - 60, 60))
                print(f"Redis restarted: streaming and relaying again {recovered:.1f} s after it came back")
            finally:
                await ws.close()
            await resources.mongo.drop_database(own.mongodb_database)
    finally:
        await redis.stop()


def datetime_of(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat()


async def test_a_takeover_mid_minute_leaves_exactly_the_providers_bars(
    resources: Resources, simulator: TradingViewSimulator, stream_clock: ManualClock
) -> None:
    """The leader stops inside a minute (what SIGTERM does to `pocketquant stream`), trades
    go on, a standby takes over: the cut minute is back-filled, none is lost or doubled."""
    from pocketquant.realtime.stream import run_stream

    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    async with _streaming(resources, stream_clock, "first"):
        start = int(stream_clock.now) // 60 * 60
        await _play(simulator, stream_clock, start + 135)
        # _streaming's stream stops on leaving the block: the leader goes away at 14:39:15.
    await _play(simulator, stream_clock, start + 150, pause=0.2)  # no stream meanwhile
    second = asyncio.create_task(run_stream(resources, instance="second", clock=stream_clock))
    from pocketquant.worker import WorkerRunner

    runner = asyncio.create_task(WorkerRunner(resources.settings, resources=resources, handle_signals=False,
                                              poll_delay=0.02).run())  # fmt: skip
    try:

        async def second_leads() -> bool:
            return await _leader(resources) == "second"

        await until(second_leads, within=20)
        await _play(simulator, stream_clock, start + 300)
        bars = await until(lambda: _as_served(resources, simulator, series, start, start + 240), within=30)
        assert [b.time for b in bars] == [start + 60 * m for m in range(4)]
    finally:
        await cancel_and_wait(second)
        await cancel_and_wait(runner)


async def test_a_provider_drop_mid_minute_leaves_exactly_the_providers_bars(
    resources: Resources, simulator: TradingViewSimulator, stream_clock: ManualClock
) -> None:
    """TradingView cuts the connection inside a minute; trades go on while the stream
    reconnects: the minute across the drop is back-filled, the others are the stream's."""
    series = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
    async with _streaming(resources, stream_clock, "drop"):
        start = int(stream_clock.now) // 60 * 60
        await _play(simulator, stream_clock, start + 140)
        assert await simulator.drop_connections() == 1
        await _play(simulator, stream_clock, start + 150, step=5, pause=0.1)  # missed, or not, while reconnecting

        async def reconnected() -> bool:
            raw = await resources.redis.get(wire.STATUS_KEY)
            return (
                raw is not None and json.loads(raw)["reconnects"] >= 1 and AAPL.ticker in json.loads(raw)["receiving"]
            )

        await until(reconnected, within=20)
        await _play(simulator, stream_clock, start + 300)
        bars = await until(lambda: _as_served(resources, simulator, series, start, start + 240), within=30)
        assert [b.time for b in bars] == [start + 60 * m for m in range(4)]
